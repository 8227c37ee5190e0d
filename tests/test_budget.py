"""The epoch budget: ⌈ρ n⌉ samples an epoch for every selector, the head of the full
epoch's batches, unbiased importance weights, exact resume, equal shards per rank."""

import hashlib
import io
import math
import warnings

import pytest
import torch

from d2ace_ext import SelectionBatchSampler, make_sampler
from d2ace_ext.budget import EpochBudget, full_pass_epoch, full_pass_epochs
from d2ace_ext.integrations.resume import rewound_state
from d2ace_ext.selectors.base import FIXED, SHUFFLE, WEIGHTED, Selector

from support.problems import random_problem

# Short schedules: warm-up epochs 0-1, weighted epochs from 2 on.
SETUPS = {
    "random": {},
    "balance": {},
    "dihcl": dict(num_epochs=6, warmup_epochs=2),
    "hard_imb": dict(num_epochs=6, warmup_epochs=2),
    "d2ace": dict(num_epochs=6, warmup_epochs=2, t_start=2, t_end=5, num_neighbors=3),
    "d2ace_reference": dict(preset="reference", num_epochs=6, warmup_epochs=2, t_start=2, t_end=5, num_neighbors=3),
}
# sha256 (first 16 hex digits) of every batch and its importance weights over 6 epochs,
# computed with the code before budgets existed (main at a554434): budget 1 must not
# change one bit, whatever the anneal.
BEFORE_BUDGETS = {
    "random": "30b3835427601466",
    "balance": "30b3835427601466",
    "dihcl": "a791efecb85be877",
    "hard_imb": "eb1ab00d5edea36e",
    "d2ace": "17cf31fa3c6b8e51",
    "d2ace_reference": "1866c08ca20261a5",
}


def build(name, n=53, q=4, batch=8, seed=4, **extra):
    x, y = random_problem(n, q, seed=1)
    registry_name = "d2ace" if name.startswith("d2ace") else name
    return make_sampler(registry_name, y, batch, x, seed=seed, **SETUPS[name], **extra), y


def fingerprint(sampler, y, epochs=6):
    g = torch.Generator().manual_seed(2)
    digest = hashlib.sha256()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in sampler:
            index = torch.tensor(batch)
            digest.update(repr(batch).encode())
            digest.update(sampler.importance_weights(index).numpy().tobytes())
            sampler.update(index, torch.randn(len(batch), y.shape[1], generator=g) * 2, y[index])
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("name", list(SETUPS))
def test_full_budget_is_bit_identical_to_the_sampler_before_budgets(name):
    assert fingerprint(*build(name)) == BEFORE_BUDGETS[name]
    assert fingerprint(*build(name, budget=1.0, anneal=0.5, run_epochs=6)) == BEFORE_BUDGETS[name]


@pytest.mark.parametrize("name", list(SETUPS))
@pytest.mark.parametrize("rho", [0.3, 0.5])
def test_budget_epoch_length_and_no_repeats(name, rho):
    sampler, y = build(name, budget=rho)
    n, b = 53, 8
    samples = math.ceil(rho * n)  # 16 and 27
    g = torch.Generator().manual_seed(3)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        assert len(sampler) == math.ceil(samples / b)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert [len(batch) for batch in batches] == [b] * (len(batches) - 1) + [samples - b * (len(batches) - 1)]
        assert all(len(set(batch)) == len(batch) for batch in batches)
        if sampler.selector.batch_mode(epoch) != WEIGHTED:  # an ordered epoch: a subset, no instance twice
            flat = [i for batch in batches for i in batch]
            assert len(set(flat)) == samples
        for batch in batches:
            index = torch.tensor(batch)
            sampler.update(index, torch.randn(len(batch), 4, generator=g), y[index])


def _copy_selector_state(source, target):
    target.selector.load_state_dict(source.selector.state_dict())


@pytest.mark.parametrize("name", ["random", "hard_imb", "d2ace", "dihcl"])
@pytest.mark.parametrize("epoch", [1, 3])  # a warm-up and a weighted epoch
def test_a_budgeted_epoch_is_the_head_of_the_full_epoch(name, epoch):
    full, y = build(name)
    budgeted, _ = build(name, budget=0.5)
    g = torch.Generator().manual_seed(5)
    for e in range(epoch):  # records from full passes, then the same state in both
        full.set_epoch(e)
        for batch in full:
            index = torch.tensor(batch)
            full.update(index, torch.randn(len(batch), 4, generator=g), y[index])
    _copy_selector_state(full, budgeted)
    full.set_epoch(epoch)
    budgeted.set_epoch(epoch)
    head = list(budgeted)
    whole = list(full)
    assert len(head) == 4 and len(whole) == 7
    assert head[:3] == whole[:3]  # the full-size batches are the same draws
    assert len(head[3]) == 27 - 24
    if full.selector.batch_mode(epoch) == SHUFFLE:
        assert head[3] == whole[3][:3]  # the head of the same permutation


def test_fixed_order_warmup_under_a_budget_walks_a_uniform_subset_in_index_order():
    full, _ = build("d2ace_reference")
    budgeted, _ = build("d2ace_reference", budget=0.3)
    assert full.selector.batch_mode(0) == FIXED
    full.set_epoch(0)
    assert [i for batch in full for i in batch] == list(range(53))
    subsets = []
    for epoch in (0, 1):
        budgeted.set_epoch(epoch)
        flat = [i for batch in budgeted for i in batch]
        assert len(flat) == 16 and flat == sorted(flat) and len(set(flat)) == 16
        subsets.append(flat)
    assert subsets[0] != subsets[1]  # not the same head of 0..n-1 every warm-up epoch
    assert subsets[0] != list(range(16))


def test_annealed_last_epochs_are_full_passes():
    assert full_pass_epochs(100, 0.125) == 13 and full_pass_epochs(200, 0.125) == 25
    assert full_pass_epochs(30, 0.1) == 3  # 0.1 * 30 = 3.0000000000000004
    assert [full_pass_epoch(e, 8, 0.25) for e in range(9)] == [False] * 6 + [True] * 3
    sampler, _ = build("random", budget=0.5, anneal=0.25, run_epochs=8)
    counts = []
    for epoch in range(8):
        sampler.set_epoch(epoch)
        counts.append(len(sampler))
    assert counts == [4] * 6 + [7] * 2
    assert sampler.planned_batches() == 6 * 4 + 2 * 7


def test_budget_arguments_are_checked():
    with pytest.raises(ValueError, match=r"budget must be a number in \(0, 1\]"):
        build("random", budget=0.0)
    with pytest.raises(ValueError, match="budget must be"):
        build("random", budget=1.5)
    with pytest.raises(ValueError, match="anneal must be"):
        build("random", budget=0.5, anneal=-0.1)
    with pytest.raises(ValueError, match="run_epochs"):  # Random does not know the run's length
        build("random", budget=0.5, anneal=0.2)
    assert build("hard_imb", budget=0.5, anneal=0.5)[0].budget.num_epochs == 6  # the selector's own length
    with pytest.raises(ValueError, match="planned_batches needs num_epochs"):
        EpochBudget(0.5).planned_batches(10, 2)


# -- importance weights: unbiased under a budget --------------------------------------------------
class FixedProbabilities(Selector):
    """Weighted epochs from fixed probabilities P (n,)."""

    uses_records = False

    def __init__(self, probabilities):
        self.n, self.q, self.device = probabilities.numel(), None, torch.device("cpu")
        self.p = probabilities

    def batch_mode(self, epoch):
        return WEIGHTED

    def probabilities(self, epoch):
        return self.p


def _epoch_estimates(sampler, f, epochs, weighted=True):
    """(1 / S) Σ w_i f_i over each epoch's S samples, for ``epochs`` epochs."""
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        total, count = 0.0, 0
        for batch in sampler:
            index = torch.tensor(batch)
            w = sampler.importance_weights(index).double() if weighted else torch.ones(len(batch), dtype=torch.float64)
            total += float((w * f[index]).sum())
            count += len(batch)
        out.append(total / count)
    return torch.tensor(out, dtype=torch.float64)


def test_weighted_epoch_under_a_budget_estimates_the_full_mean_without_bias():
    # One instance per draw (b = 1): the draws are i.i.d. from P, Lemma 2's setting, and
    # E[w f] = Σ P_i f_i / (n P_i) = mean f exactly. A budget keeps each draw's law.
    n, rho, epochs = 200, 0.3, 400
    g = torch.Generator().manual_seed(0)
    p = torch.rand(n, generator=g, dtype=torch.float64) ** 3 + 0.02  # max P / min P about 50
    p = p / p.sum()
    f = torch.rand(n, generator=g, dtype=torch.float64) * (1 + 4 * p * n)  # f correlated with P
    sampler = SelectionBatchSampler(FixedProbabilities(p), 1, seed=1, budget=rho)
    estimates = _epoch_estimates(sampler, f, epochs)
    mean = float(f.mean())
    per_draw_variance = float((p * (f / (n * p)) ** 2).sum()) - mean**2
    samples = math.ceil(rho * n)
    tolerance = 4 * math.sqrt(per_draw_variance / (samples * epochs))  # 4 standard errors
    assert abs(float(estimates.mean()) - mean) < tolerance
    plain = _epoch_estimates(sampler, f, epochs, weighted=False)  # the test has the power to see a bias
    assert abs(float(plain.mean()) - mean) > 10 * tolerance


@pytest.mark.parametrize("name", ["random", "d2ace_reference"])  # shuffled and fixed-order warm-up
def test_ordered_epoch_under_a_budget_is_a_uniform_sample(name):
    # An ordered epoch's S samples are a uniform subset without replacement: the weights
    # are 1 and the plain mean is unbiased, variance (σ² / S)(n - S)/(n - 1).
    sampler, _ = build(name, budget=0.3)
    n, samples, epochs = 53, 16, 2  # warm-up epochs only for d2ace: reseed instead of going on
    g = torch.Generator().manual_seed(6)
    f = torch.rand(n, generator=g, dtype=torch.float64) ** 2
    estimates = []
    for seed in range(150):
        sampler, _ = build(name, budget=0.3, seed=seed)
        estimates.append(_epoch_estimates(sampler, f, epochs))
    estimates = torch.cat(estimates)
    variance = float(f.var(unbiased=False)) / samples * (n - samples) / (n - 1)
    tolerance = 4 * math.sqrt(variance / estimates.numel())
    assert abs(float(estimates.mean()) - float(f.mean())) < tolerance
    sampler.set_epoch(0)
    assert bool((sampler.importance_weights(torch.arange(5)) == 1).all())


# -- checkpoints ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["random", "d2ace", "dihcl"])
@pytest.mark.parametrize("stop_epoch", [1, 3])
def test_state_dict_round_trip_mid_epoch_under_a_budget(name, stop_epoch):
    original, y = build(name, budget=0.5, anneal=0.3, run_epochs=6)
    g = torch.Generator().manual_seed(7)

    def step(sampler, batch, generator):
        index = torch.tensor(batch)
        sampler.update(index, torch.randn(len(batch), 4, generator=generator), y[index])

    for epoch in range(stop_epoch):
        original.set_epoch(epoch)
        for batch in original:
            step(original, batch, g)
    original.set_epoch(stop_epoch)
    iterator = iter(original)
    for _ in range(2):
        step(original, next(iterator), g)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    resumed, _ = build(name, budget=0.5, anneal=0.3, run_epochs=6)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert len(resumed) == len(original) == 4
    tails = []
    for sampler in (original, resumed):
        h = torch.Generator().manual_seed(8)
        seen = []
        for epoch in range(stop_epoch, 6):  # the rest of this epoch, then later (annealed) ones
            sampler.set_epoch(epoch)
            for batch in sampler:
                step(sampler, batch, h)
                seen.append(batch)
        tails.append(seen)
    assert tails[0] == tails[1]
    assert sum(len(b) for b in tails[0][-14:]) == 2 * 53  # the last two epochs are full passes


def test_state_of_another_budget_is_rejected():
    sampler, _ = build("random", budget=0.5)
    sampler.set_epoch(0)
    next(iter(sampler))
    state = sampler.state_dict()
    for other in (build("random")[0], build("random", budget=0.3)[0]):
        with pytest.raises(ValueError, match="budget"):
            other.load_state_dict(state)
    full_state = build("random")[0].state_dict()
    with pytest.raises(ValueError, match="budget"):
        sampler.load_state_dict(full_state)
    legacy = {k: v for k, v in full_state.items() if k != "budget"}  # saved before budgets
    build("random")[0].load_state_dict(legacy)
    bad = sampler.state_dict()
    bad["position"] = 5  # the budgeted epoch has 4 batches
    with pytest.raises(ValueError, match="at most the plan's 4 batches"):
        build("random", budget=0.5)[0].load_state_dict(bad)


def test_loop_checkpoint_rewinds_a_budgeted_weighted_epoch():
    sampler, y = build("d2ace", budget=0.5)
    g = torch.Generator().manual_seed(9)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = []
        for batch in sampler:
            index = torch.tensor(batch)
            sampler.update(index, torch.randn(len(batch), 4, generator=g), y[index])
            batches.append(batch)
    sampler.set_epoch(3)
    iterator = iter(sampler)
    handed = [next(iterator) for _ in range(3)]  # one batch prefetched beyond the 2 consumed
    state = rewound_state(sampler, 2)
    resumed, _ = build("d2ace", budget=0.5)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)
    assert next(iter(resumed)) == handed[2]


# -- DistributedDataParallel sharding -------------------------------------------------------------
@pytest.mark.parametrize("name", ["random", "d2ace", "d2ace_reference"])
@pytest.mark.parametrize("epoch", [0, 3])
def test_every_rank_yields_the_same_number_of_batches_under_a_budget(name, epoch):
    world, n, b, rho = 3, 41, 8, 0.3  # 13 samples: batches of 8 and 5 (5 >= 3 ranks)
    shards = []
    for rank in range(world):
        x, y = random_problem(n, 4, seed=1)
        registry_name = "d2ace" if name.startswith("d2ace") else name
        sampler = make_sampler(
            registry_name, y, b, x, seed=2, budget=rho, num_replicas=world, rank=rank, **SETUPS[name]
        )
        sampler.set_epoch(epoch)
        shards.append(list(sampler))
        assert len(sampler) == 2
    assert all(len(s) == 2 for s in shards)
    for step in range(2):
        merged = [i for r in range(world) for i in shards[r][step]]
        assert len(merged) == len(set(merged)) == (8 if step == 0 else 5)
    single, _ = build(name, n=n, batch=b, seed=2, budget=rho)
    single.set_epoch(epoch)
    expected = list(single)
    for step, batch in enumerate(expected):
        assert sorted(batch) == sorted(i for r in range(world) for i in shards[r][step])


def test_a_tiny_budget_tops_the_last_batch_up_for_the_ranks():
    x, y = random_problem(20, 3, seed=1)
    shards = []
    for rank in range(4):
        sampler = make_sampler("random", y, 8, x, seed=2, budget=0.45, num_replicas=4, rank=rank)  # 9 samples
        sampler.set_epoch(0)
        shards.append(list(sampler))
    assert all(len(s) == 2 for s in shards)
    last = [i for r in range(4) for i in shards[r][1]]
    assert len(last) == len(set(last)) == 4  # 1 sample topped up to one distinct instance per rank


# -- the harness ------------------------------------------------------------------------------------
def test_protocol_digests_of_the_committed_evidence_are_unchanged():
    from d2ace_ext.harness.experiment import Protocol, with_published_variants

    from support.evidence_digests import KNOWN_DIGESTS, LATER_SETTINGS, PUBLISHED_CLIF, tabular_evidence_digests

    assert with_published_variants(["clif"], {}) == PUBLISHED_CLIF
    expected = {digest: Protocol(**settings) for digest, settings in KNOWN_DIGESTS.items()}
    for digest, protocol in expected.items():
        assert protocol.digest() == digest
        assert Protocol(**{**protocol.to_dict(), "budget": 1.0, "anneal": 0.0}).digest() == digest
    assert (
        Protocol(budget=0.5).digest() not in expected
        and Protocol(budget=0.5, anneal=0.1).digest() != Protocol(budget=0.5).digest()
    )
    budgeted = {digest: Protocol(**settings) for digest, settings in LATER_SETTINGS.items()}
    assert all(protocol.digest() == digest for digest, protocol in budgeted.items())
    found = tabular_evidence_digests()
    assert found and found <= set(expected) | set(budgeted)  # every tabular evidence digest is one of these


def test_protocol_rejects_a_bad_budget():
    from d2ace_ext.harness.experiment import Protocol

    for field, value in (("budget", 0), ("budget", 1.2), ("budget", True), ("anneal", -0.5), ("anneal", float("nan"))):
        with pytest.raises(ValueError, match=f"protocol {field} must be"):
            Protocol(**{field: value})


def test_command_line_budget_reaches_the_protocol():
    from d2ace_ext import cli

    args = cli.build_parser().parse_args(["run", "--dataset", "emotions", "--budget", "0.5", "--anneal", "0.1"])
    args.epochs = args.epochs[0]  # one value of the --epochs sweep
    protocol = cli._protocol(args, ["mlp"], ["random"])
    assert (protocol.budget, protocol.anneal) == (0.5, 0.1)
    args = cli.build_parser().parse_args(["compare", "--datasets", "emotions"])
    args.epochs = args.epochs[0]
    assert cli._protocol(args, ["mlp"], ["random"]).digest() == "32866394"


def _fold(protocol):
    from d2ace_ext.datasets.synthetic import make_multilabel
    from d2ace_ext.harness.fold_data import PreparedDataset

    x, y = make_multilabel(n=300, d=12, q=4, cardinality=1.5, seed=3)
    return PreparedDataset("toy", x.double().numpy(), y.long().numpy(), [f"l{j}" for j in range(4)], protocol).fold(0)


@pytest.mark.parametrize("selector", ["random", "d2ace", "infobatch"])
def test_a_budgeted_run_records_samples_and_seconds_and_scales_the_warmup(selector):
    from d2ace_ext.harness.experiment import Protocol, RunKey
    from d2ace_ext.harness.fold_run import build_sampler, run_fold, warmup_steps

    protocol = Protocol(
        folds=3,
        epochs=8,
        batch_size=16,
        lr=1e-3,
        lr_warmup_epochs=2,
        min_positives=5,
        budget=0.5,
        anneal=0.25,
        selector_options={"d2ace": {"warmup_epochs": 1}},
    )
    data = _fold(protocol)
    n = data.train_y.shape[0]
    key = RunKey.make("toy", "mlp", selector, "paper", 0, protocol)
    record = run_fold(key, data, protocol, progress=False)
    history = record["history"]
    per_epoch = [b - a for a, b in zip([0] + history["samples_seen"][:-1], history["samples_seen"])]
    half = math.ceil(0.5 * n)
    if selector == "infobatch":  # pruned epochs: at most the budget, fewer where it prunes more
        assert per_epoch[0] == half and all(s <= half for s in per_epoch[:6])
        assert per_epoch[6] < n and per_epoch[7] == n  # the budget's anneal: 2 epochs, InfoBatch's own: ⌈8/8⌉
    else:
        assert per_epoch == [half] * 6 + [n] * 2
    seconds = history["elapsed_seconds"]
    assert len(seconds) == 8 and all(b > a for a, b in zip([0.0] + seconds[:-1], seconds))
    assert seconds[-1] <= record["seconds"]
    sampler = build_sampler(key, data, protocol, 0, "cpu")
    batches = 6 * math.ceil(half / 16) + 2 * math.ceil(n / 16)
    assert sampler.planned_batches(8) == batches
    assert warmup_steps(sampler, protocol) == (2 * batches + 4) // 8
    full = Protocol(folds=3, epochs=8, batch_size=16, lr_warmup_epochs=2, min_positives=5)
    assert warmup_steps(build_sampler(key, data, full, 0, "cpu"), full) == 2 * math.ceil(n / 16)  # as before budgets


def test_image_protocol_budget_keeps_earlier_digests_and_reaches_the_sampler():
    from d2ace_ext.harness import image_cli
    from d2ace_ext.harness.image_protocol import ImageProtocol, build_image_sampler

    mosaic = ImageProtocol(
        epochs=8,
        lr=1e-3,
        weight_decay=1e-4,
        image_size=32,
        scale_size=37,
        mosaic={"train_size": 3000, "test_size": 1000, "grid": 2},
        model_options={"mlgcn": {"backbone": "resnet18", "hidden": 256}},
    )
    assert mosaic.digest() == "6f926316"  # docs/evidence/mosaic_dihcl_subset.jsonl
    assert ImageProtocol().digest() == ImageProtocol(budget=1.0).digest() == "8505bd54"
    assert ImageProtocol(budget=0.5).digest() != "8505bd54"
    with pytest.raises(ValueError, match="image protocol budget must be"):
        ImageProtocol(budget=0)
    args = image_cli.build_parser().parse_args(["run", "--dataset", "digits-mosaic", "--budget", "0.5"])
    image_cli.cpu_defaults(args, ["digits-mosaic"])
    protocol = image_cli.protocol_from(args, ["mlgcn"], ["d2ace"])
    assert protocol.budget == 0.5
    _, y = random_problem(100, 3, seed=1)
    sampler = build_image_sampler("random", y, None, protocol, seed=0)
    sampler.set_epoch(0)
    assert len(sampler) == math.ceil(50 / protocol.batch_size) and sum(len(b) for b in sampler) == 50


def test_protocol_refuses_an_anneal_without_a_budget():
    # At budget 1 every epoch is a full pass: --anneal alone changed no run but forked the
    # digest (and read as InfoBatch's own anneal, which it is not).
    from d2ace_ext import cli
    from d2ace_ext.harness.experiment import Protocol

    with pytest.raises(ValueError, match=r"protocol anneal must be 0 at budget 1.*infobatch\.anneal"):
        Protocol(anneal=0.125)
    args = cli.build_parser().parse_args(["compare", "--datasets", "emotions", "--anneal", "0.1"])
    args.epochs = args.epochs[0]
    with pytest.raises(ValueError, match="protocol anneal must be 0 at budget 1"):
        cli._protocol(args, ["mlp"], ["infobatch"])
    assert Protocol(budget=0.5, anneal=0.125).anneal == 0.125


def test_an_epoch_past_run_epochs_under_an_annealed_budget_warns_once():
    # D2ACE's default num_epochs is 100: trained for longer without run_epochs, every epoch
    # from 88 on was silently a full pass.
    sampler, _ = build("d2ace", budget=0.5, anneal=0.5)  # run_epochs: the selector's 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for epoch in range(6):
            sampler.set_epoch(epoch)
        build("d2ace", budget=0.5)[0].set_epoch(6)  # no anneal: nothing counts from the run's end
    with pytest.warns(RuntimeWarning, match=r"epoch 6 is past the run's 6 epochs .* from 3 on is a full pass"):
        sampler.set_epoch(6)
    assert len(sampler) == 7  # a full pass, as documented
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampler.set_epoch(7)  # once per sampler
