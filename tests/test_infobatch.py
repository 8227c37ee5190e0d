"""InfoBatch: random pruning of the below-mean-loss instances, 1/(1 - r) on the kept ones,
full passes in the annealed last epochs, reproducible by seed, exact resume."""

import io
import math

import pytest
import torch

from d2ace_ext import make_sampler, make_selector
from d2ace_ext.harness.experiment import Protocol
from d2ace_ext.harness.selection_loss import loss_weights
from d2ace_ext.selectors import PRUNED, SHUFFLE, InfoBatchSelector

from support.problems import drive, random_problem


def scored(n=40, r=0.5, scores=None, seed=0, **options):
    """An InfoBatch selector whose every instance was visited with the given mean BCE."""
    _, y = random_problem(n, 3, seed=1)
    selector = InfoBatchSelector(y, prune_ratio=r, seed=seed, **options)
    if scores is None:
        scores = torch.linspace(0.05, 2.0, n)
    selector.record(torch.arange(n), None, scores.unsqueeze(1).repeat(1, 3), epoch=0)
    return selector, scores


@pytest.mark.parametrize("r", [0.0, 0.3, 0.5, 0.9])
def test_prunes_the_fraction_r_of_the_below_mean_instances_and_reweights_the_rest(r):
    selector, scores = scored(r=r)
    low = scores.double() < scores.double().mean()
    assert int(low.sum()) == 20
    weights = selector.pruned_weights(1)
    kept_low = math.floor((1 - r) * 20 + 1e-9)  # 20, 14, 10, 2
    assert int(((weights > 0) & low).sum()) == kept_low
    assert bool((weights[~low] == 1).all())  # above the mean: always kept, weight 1
    torch.testing.assert_close(weights[low & (weights > 0)], torch.full((kept_low,), 1 / (1 - r), dtype=torch.float64))
    assert set(weights[low].tolist()) <= {0.0, 1 / (1 - r)}


def test_without_rescale_the_same_instances_are_pruned_and_every_kept_one_weighs_one():
    rescaled, _ = scored(r=0.5)
    plain, _ = scored(r=0.5, rescale=False)
    with_weights, without = rescaled.pruned_weights(1), plain.pruned_weights(1)
    assert torch.equal(with_weights > 0, without > 0)  # the same draw prunes the same instances
    assert set(without.tolist()) == {0.0, 1.0} and 2.0 in set(with_weights.tolist())
    with pytest.raises(ValueError, match="rescale"):
        InfoBatchSelector(random_problem(4, 2)[1], rescale=1)


def test_the_mean_per_label_bce_of_the_last_visit_is_the_score():
    selector, _ = scored(n=4, scores=torch.tensor([0.1, 0.2, 0.3, 0.4]))
    selector.record(torch.tensor([2]), None, torch.tensor([[0.0, 0.3, 3.0]]), epoch=1)
    assert selector.score.tolist() == pytest.approx([0.1, 0.2, 1.1, 0.4])


def test_unvisited_instances_keep_infobatch_s_initial_score_and_epoch_zero_prunes_nothing():
    _, y = random_problem(30, 3, seed=1)
    selector = InfoBatchSelector(y)
    assert bool((selector.score == 3.0).all())
    assert bool((selector.pruned_weights(0) == 1).all())
    # half visited with a low loss: those are below the mean (which the unvisited 3s lift)
    selector.record(torch.arange(15), None, torch.full((15, 3), 0.2), epoch=0)
    weights = selector.pruned_weights(1)
    assert bool((weights[15:] == 1).all()) and int((weights[:15] == 0).sum()) == 15 - 7


def test_annealed_last_epochs_train_on_the_full_data():
    _, y = random_problem(30, 3, seed=1)
    assert [InfoBatchSelector(y, num_epochs=16).batch_mode(e) for e in (0, 13, 14, 15)] == [
        PRUNED,
        PRUNED,
        SHUFFLE,
        SHUFFLE,
    ]
    modes = [InfoBatchSelector(y, num_epochs=100).batch_mode(e) for e in range(100)]
    assert modes.count(SHUFFLE) == 13 and modes[87:] == [SHUFFLE] * 13  # ⌈0.125 · 100⌉, as InfoBatch's code
    assert InfoBatchSelector(y, num_epochs=200, anneal=0.125).batch_mode(174) == PRUNED
    assert InfoBatchSelector(y, num_epochs=200, anneal=0.125).batch_mode(175) == SHUFFLE
    assert all(InfoBatchSelector(y, num_epochs=10, anneal=0.0).batch_mode(e) == PRUNED for e in range(12))


def _sampler(seed=0, n=50, batch=8, **options):
    x, y = random_problem(n, 4, seed=1)
    return make_sampler("infobatch", y, batch, x, seed=seed, num_epochs=8, **options), y


def test_a_pruned_epoch_walks_the_kept_instances_once_with_their_weights():
    sampler, y = _sampler()
    drive(sampler, y, 1, seed=3)  # epoch 0: every score is 3, nothing pruned
    assert sampler.state_dict()["plan"]["samples"] == 50
    sampler.set_epoch(1)
    weights = sampler.selector.pruned_weights(1)
    kept = int((weights > 0).sum())
    assert kept < 50
    assert len(sampler) == math.ceil(kept / 8)
    flat = [i for batch in sampler for i in batch]
    assert sorted(flat) == torch.nonzero(weights > 0).squeeze(1).tolist()  # every kept instance, once
    index = torch.tensor(flat)
    assert torch.equal(sampler.importance_weights(index), weights[index].float())
    p = sampler.probabilities
    assert float(p.sum()) == pytest.approx(1.0) and bool((p[weights == 0] == 0).all())
    sampler.set_epoch(7)  # annealed: a full pass, weight 1
    assert len(sampler) == 7 and bool((sampler.importance_weights(torch.arange(50)) == 1).all())


def test_the_epoch_sum_of_weighted_losses_estimates_the_full_sum_without_bias():
    # E[Σ_kept w_i f_i] = Σ_high f_i + (k / |low|)(1 / (1 - r)) Σ_low f_i = Σ f_i when
    # k = (1 - r)|low| (here 20 of 40); the variance is that of a simple random sample.
    selector, scores = scored(r=0.5)
    f = torch.rand(40, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + scores.double()
    sums = torch.tensor([float((selector.pruned_weights(e) * f).sum()) for e in range(2000)], dtype=torch.float64)
    low = scores.double() < scores.double().mean()
    L, k, w = int(low.sum()), 10, 2.0
    variance = w**2 * k**2 * float(f[low].var(unbiased=False)) / k * (L - k) / (L - 1)
    assert abs(float(sums.mean()) - float(f.sum())) < 4 * math.sqrt(variance / sums.numel())


def test_same_seed_same_run_other_seed_other_run():
    runs = []
    for seed in (3, 3, 4):
        sampler, y = _sampler(seed=seed)
        runs.append(drive(sampler, y, 8, seed=11))
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert make_sampler("infobatch", random_problem(10, 2)[1], 4, seed=12).selector.seed == 12


def test_state_dict_round_trip_mid_pruned_epoch():
    original, y = _sampler(seed=5, budget=0.6)
    drive(original, y, 2, seed=7)
    original.set_epoch(2)
    iterator = iter(original)
    g = torch.Generator().manual_seed(8)
    for _ in range(2):
        batch = next(iterator)
        index = torch.tensor(batch)
        original.update(index, torch.randn(len(batch), 4, generator=g), y[index])
    assert original.state_dict()["plan"]["mode"] == PRUNED
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    resumed, _ = _sampler(seed=5, budget=0.6)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    tails = []
    for sampler in (original, resumed):
        h = torch.Generator().manual_seed(9)
        seen = []
        for epoch in range(2, 8):
            sampler.set_epoch(epoch)
            for batch in sampler:
                index = torch.tensor(batch)
                seen.append((batch, sampler.importance_weights(index).tolist()))
                sampler.update(index, torch.randn(len(batch), 4, generator=h), y[index])
        tails.append(seen)
    assert tails[0] == tails[1]


def test_a_budget_caps_a_pruned_epoch():
    sampler, y = _sampler(budget=0.3)  # at most 15 samples, 2 batches
    drive(sampler, y, 2, seed=3)
    for epoch in (2, 3):
        sampler.set_epoch(epoch)
        kept = int((sampler.selector.pruned_weights(epoch) > 0).sum())
        flat = [i for batch in sampler for i in batch]
        assert len(flat) == min(15, kept) and len(set(flat)) == len(flat)


def test_the_harness_always_applies_infobatch_s_weights():
    sampler, y = _sampler()
    drive(sampler, y, 1, seed=3)
    sampler.set_epoch(1)
    batch = torch.tensor(next(iter(sampler)))
    weights = loss_weights(sampler, batch, y[batch], Protocol().importance_weights)  # off
    assert weights is not None and torch.equal(weights.squeeze(1), sampler.importance_weights(batch))
    random_sampler = make_sampler("random", y, 8)
    random_sampler.set_epoch(0)
    assert loss_weights(random_sampler, batch, y[batch], Protocol().importance_weights) is None


def test_bad_options_and_states_are_rejected():
    _, y = random_problem(10, 2)
    with pytest.raises(ValueError, match="prune_ratio"):
        make_selector("infobatch", y, prune_ratio=0.95)
    with pytest.raises(ValueError, match="anneal"):
        make_selector("infobatch", y, anneal=1.5)
    with pytest.raises(TypeError, match="no option"):
        make_selector("infobatch", y, delta=0.875)
    state = InfoBatchSelector(y, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        InfoBatchSelector(y, seed=2).load_state_dict(state)
    state["score"] = torch.full((10,), float("nan"))
    with pytest.raises(ValueError, match="corrupt"):
        InfoBatchSelector(y, seed=1).load_state_dict(state)


def test_every_rank_yields_the_same_pruned_epoch_shards():
    x, y = random_problem(50, 4, seed=1)
    single = make_sampler("infobatch", y, 8, x, seed=6, num_epochs=8)
    drive(single, y, 2, seed=3)
    state = single.selector.state_dict()
    single.set_epoch(2)
    expected = list(single)
    shards = []
    for rank in range(3):
        sampler = make_sampler("infobatch", y, 8, x, seed=6, num_epochs=8, num_replicas=3, rank=rank)
        sampler.selector.load_state_dict(state)  # the records every rank holds after gathering
        sampler.set_epoch(2)
        shards.append(list(sampler))
        assert len(sampler) == len(expected)
    for step, batch in enumerate(expected):
        assert sorted(batch) == sorted(i for r in range(3) for i in shards[r][step])


def test_len_makes_no_hidden_collective_call_under_a_process_group(monkeypatch):
    from d2ace_ext import distributed

    x, y = random_problem(50, 4, seed=1)
    single = make_sampler("infobatch", y, 8, x, seed=6, num_epochs=8)
    drive(single, y, 1, seed=3)
    single.set_epoch(1)
    assert len(single) == 5  # 38 kept: the plan is made to count them
    sampler = make_sampler("infobatch", y, 8, x, seed=6, num_epochs=8, num_replicas=2, rank=0)
    sampler.selector.load_state_dict(single.selector.state_dict())
    sampler.set_epoch(1)
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "from_rank_zero", lambda tensor: pytest.fail("len() broadcast"))
    assert len(sampler) == 7  # the budget's count, an upper bound, until the epoch's plan exists


def test_infobatch_s_own_anneal_reaches_it_and_the_budget_s_is_not_taken_for_it():
    from d2ace_ext.factory import make_run_sampler
    from d2ace_ext.harness.fold_run import TABULAR_SCHEDULE

    x, y = random_problem(30, 3, seed=1)
    # the harness's selector_options {"infobatch": {"anneal": 0.25}}: a TypeError before
    # (two values for make_sampler's anneal)
    run = make_run_sampler("infobatch", y, 8, x, epochs=8, schedule=TABULAR_SCHEDULE, options={"anneal": 0.25})
    assert run.selector.config.anneal == 0.25 and run.selector.batch_mode(5) == PRUNED
    assert run.selector.batch_mode(6) == SHUFFLE  # ⌈0.25 · 8⌉ = 2 full epochs
    assert run.budget.anneal == 0.0
    budgeted = make_run_sampler("infobatch", y, 8, x, epochs=8, schedule=TABULAR_SCHEDULE, budget=0.5, anneal=0.5)
    assert (budgeted.budget.anneal, budgeted.selector.config.anneal) == (0.5, 0.125)
    # anneal= at budget 1 did nothing while InfoBatch kept its 0.125: now refused
    with pytest.raises(ValueError, match=r"selector_options=\{'anneal': 0.4\}"):
        make_sampler("infobatch", y, 8, anneal=0.4)
    assert make_sampler("infobatch", y, 8, selector_options={"anneal": 0.4}).selector.config.anneal == 0.4
    assert make_sampler("random", y, 8, anneal=0.4, run_epochs=5).budget.anneal == 0.4  # no option of its own


@pytest.mark.parametrize("budget", [1.0, 0.3])
def test_through_the_sampler_a_pruned_epoch_s_weighted_sum_is_unbiased_with_or_without_a_budget(budget):
    # End to end (pruning draw, budget's uniform subset of the kept, importance_weights):
    # (kept / S) Σ_epoch w_i f_i over the epoch's S samples estimates Σ_i f_i. Tolerance:
    # 4 standard errors of the mean over the seeds (measured: +0.04 SE at 1, +0.5 at 0.3
    # over 3000 seeds); without the weights the same sum is off by over 60 SE.
    n, b = 40, 4
    _, y = random_problem(n, 3, seed=1)
    scores = torch.linspace(0.05, 2.0, n)
    f = torch.rand(n, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + scores.double()
    weighted, plain = [], []
    for seed in range(800):
        sampler = make_sampler("infobatch", y, b, seed=seed, num_epochs=8, budget=budget)
        sampler.selector.record(torch.arange(n), None, scores.unsqueeze(1).repeat(1, 3), epoch=0)
        sampler.set_epoch(1)
        kept = int((sampler.probabilities > 0).sum())
        flat = torch.tensor([i for batch in sampler for i in batch])
        assert flat.numel() == min(kept, math.ceil(budget * n)) and kept == 30  # 20 above the mean, 10 of 20 below
        scale = kept / flat.numel()
        weighted.append(scale * float((sampler.importance_weights(flat).double() * f[flat]).sum()))
        plain.append(scale * float(f[flat].sum()))
    weighted, plain = torch.tensor(weighted), torch.tensor(plain)
    standard_error = float(weighted.std()) / math.sqrt(weighted.numel())
    assert abs(float(weighted.mean()) - float(f.sum())) < 4 * standard_error
    assert abs(float(plain.mean()) - float(f.sum())) > 30 * standard_error


def test_the_plain_training_loop_applies_a_selector_s_loss_weights():
    # d2ace_ext.training.train trained InfoBatch's epochs unweighted: a selector whose
    # method weighs every loss 1e-30 must leave Adam's step (without weight decay) at 0.
    from d2ace_ext import SelectionBatchSampler
    from d2ace_ext.training import train

    class TinyWeights(InfoBatchSelector):
        def batch_mode(self, epoch):
            return PRUNED

        def pruned_weights(self, epoch):
            return torch.full((self.n,), 1e-30, dtype=torch.float64)

    x, y = random_problem(24, 3, seed=1)
    model = torch.nn.Linear(x.shape[1], 3)
    before = [p.detach().clone() for p in model.parameters()]
    sampler = SelectionBatchSampler(TinyWeights(y, num_epochs=2), 8)
    train(model, sampler, x, y, x, y, epochs=2, weight_decay=0.0, progress=False)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(before, model.parameters()))
