"""The DataLoader batch sampler: batch counts, determinism, resume, bad input."""

import io
import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from d2ace_ext import D2ACEConfig, D2ACESampler, IndexedDataset, RandomSelector, SelectionBatchSampler, force_fallback
from d2ace_ext.drawing import WeightedDraw
from d2ace_ext.selectors.base import WEIGHTED, Selector

from support.problems import drive, random_problem

SHORT = D2ACEConfig(num_epochs=8, warmup_epochs=2, t_start=3, t_end=6, num_neighbors=3)


def make(preset_config=SHORT, n=50, q=4, batch=8, seed=0):
    x, y = random_problem(n, q, seed=1)
    return D2ACESampler(y, batch, x, config=preset_config, seed=seed), y


@pytest.mark.parametrize("n,batch", [(50, 8), (48, 8), (7, 16), (50, 1)])
def test_batch_count_sizes_and_no_repeats(n, batch):
    sampler, y = make(n=n, batch=batch)
    for epoch in range(4):  # two warm-up epochs, then weighted ones
        sampler.set_epoch(epoch)
        batches = []
        for b in sampler:
            assert len(b) == len(set(b)) and all(0 <= i < n for i in b)
            batches.append(b)
            idx = torch.tensor(b)
            sampler.update(idx, torch.randn(len(b), y.shape[1]), y[idx])
        assert len(batches) == math.ceil(n / batch) == len(sampler)
        assert [len(b) for b in batches] == [batch] * (n // batch) + ([n % batch] if n % batch else [])
        if epoch < 2:
            assert sorted(sum(batches, [])) == list(range(n))  # a warm-up epoch is a permutation


def test_fixed_warmup_order_under_reference_preset():
    config = D2ACEConfig.preset("reference", num_epochs=8, warmup_epochs=2, num_neighbors=3)
    sampler, _ = make(config)
    assert sum(list(sampler), []) == list(range(50))


def test_same_seed_same_batches_other_seed_other_batches():
    a, y = make(seed=3)
    b, _ = make(seed=3)
    c, _ = make(seed=4)
    runs = [drive(s, y, 5) for s in (a, b, c)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("stop_epoch,stop_batch", [(1, 3), (3, 2), (4, 0)])
def test_state_dict_round_trip_mid_run(stop_epoch, stop_batch):
    original, y = make(seed=5)
    drive(original, y, stop_epoch)
    original.set_epoch(stop_epoch)
    iterator = iter(original)
    for _ in range(stop_batch):
        b = next(iterator)
        idx = torch.tensor(b)
        original.update(idx, torch.randn(len(b), 4), y[idx])
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    rest_original = [next(iterator) for _ in range(len(original) - stop_batch)]

    resumed, _ = make(seed=5)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    resumed.set_epoch(stop_epoch)  # what a resumed training loop does first
    assert list(resumed) == rest_original


def test_resumed_run_matches_uninterrupted_run_over_later_epochs():
    full, y = make(seed=9)
    expected = drive(full, y, 6, seed=11)
    head, _ = make(seed=9)
    drive(head, y, 3, seed=11)
    state = head.state_dict()
    tail, _ = make(seed=9)
    tail.load_state_dict(state)
    g_batches = drive(tail, y, 3, seed=0, start_epoch=3)
    assert len(g_batches) == len(expected) - 3 * len(full)
    # The first post-resume epoch depends only on the saved state, not on later logits.
    assert g_batches[: len(full)] == expected[3 * len(full) : 4 * len(full)]


def test_epoch_advances_without_set_epoch_and_probabilities_are_exposed():
    sampler, y = make()
    drive(sampler, y, 2)
    assert sampler.epoch == 1
    list(sampler)
    assert sampler.epoch == 2
    p = sampler.probabilities
    assert p.shape == (50,) and float(p.sum()) == pytest.approx(1.0) and bool((p > 0).all())
    assert sampler.report is not None and sampler.report.epoch == 2


def test_moving_the_epoch_under_a_running_iteration_is_refused_by_name():
    # It used to fail with "'NoneType' object has no attribute 'batches'", or, once
    # something had made the new epoch's plan, went on yielding that epoch's batches.
    sampler, y = make()
    drive(sampler, y, 2)
    sampler.set_epoch(2)
    batches = iter(sampler)
    next(batches)
    sampler.set_epoch(5)
    with pytest.raises(RuntimeError, match=r"set_epoch or load_state_dict.*epoch 2.*after 1 of its 7 batches"):
        next(batches)
    state = sampler.state_dict()
    batches = iter(sampler)
    next(batches)
    sampler.load_state_dict(state)
    with pytest.raises(RuntimeError, match="epoch 5"):
        next(batches)
    # an epoch handed out in full ends quietly: moving on after its last batch loses nothing
    sampler.set_epoch(3)
    batches = iter(sampler)
    seen = [next(batches) for _ in range(len(sampler))]
    sampler.set_epoch(4)
    assert list(batches) == [] and len(seen) == 7
    # re-setting the epoch under way keeps its position (what a resumed loop does)
    batches = iter(sampler)
    first = next(batches)
    sampler.set_epoch(4)
    assert len([first, *batches]) == 7


def test_importance_weights_are_one_over_n_p():
    sampler, y = make()
    sampler.set_epoch(0)
    assert torch.equal(sampler.importance_weights(torch.tensor([0, 5])), torch.ones(2))
    drive(sampler, y, 3)
    sampler.set_epoch(3)
    p = sampler.probabilities
    w = sampler.importance_weights(torch.tensor([1, 7]))
    assert torch.allclose(w, (1.0 / (50 * p[[1, 7]])).float())


def test_dataloader_integration_with_indexed_dataset():
    sampler, y = make(n=20, batch=6)
    x = torch.randn(20, 3)
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_sampler=sampler)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for idx, xb, yb in loader:
            assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
            sampler.update(idx, torch.randn(len(idx), 4), yb)
    assert len(loader) == 4


def test_random_selector_accepts_any_label_count():
    sampler = SelectionBatchSampler(RandomSelector(10), 4, seed=1)
    batches = list(sampler)
    assert sorted(sum(batches, [])) == list(range(10))
    sampler.update(torch.tensor(batches[0]), torch.randn(4, 7), torch.ones(4, 7))


class FixedProbabilities(Selector):
    """A stub selector with given probabilities, for exercising the weighted path."""

    needs_loss = False

    def __init__(self, probabilities):
        self.n, self.q, self.device = probabilities.numel(), 1, torch.device("cpu")
        self.p = probabilities

    def batch_mode(self, epoch):
        return WEIGHTED

    def probabilities(self, epoch):
        return self.p


def test_more_than_two_to_the_24_instances():
    n = 2**24 + 3
    p = torch.ones(n, dtype=torch.float64)
    p[-10:] = 1e6  # a few heavy instances at the far end of the index range
    sampler = SelectionBatchSampler(FixedProbabilities(p), 256, seed=2)
    iterator = iter(sampler)
    first = [next(iterator) for _ in range(3)]
    for b in first:
        assert len(b) == 256 == len(set(b)) and max(b) < n
    assert any(i >= n - 10 for b in first for i in b)
    again = SelectionBatchSampler(FixedProbabilities(p), 256, seed=2)
    it2 = iter(again)
    assert [next(it2) for _ in range(3)] == first


def inclusion_probability(p, size):
    """Exact P(i in batch) of successive sampling without replacement, by enumeration."""
    import itertools

    n = len(p)
    out = [0.0] * n
    for seq in itertools.permutations(range(n), size):
        prob, left = 1.0, 1.0
        for i in seq:
            prob *= p[i] / left
            left -= p[i]
        for i in seq:
            out[i] += prob
    return out


@pytest.mark.parametrize("size", [2, 4])  # rejection path (4·2 <= 8) and key path (4·4 > 8)
def test_weighted_draw_is_successive_sampling(size):
    p = torch.tensor([0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03], dtype=torch.float64)
    draw = WeightedDraw(p)
    g = torch.Generator().manual_seed(0)
    trials = 20000
    counts = torch.zeros(8)
    for _ in range(trials):
        counts[draw.batch(size, g)] += 1
    expected = torch.tensor(inclusion_probability(p.tolist(), size))
    sigma = (expected * (1 - expected) / trials).sqrt()
    assert bool(((counts / trials - expected).abs() <= 5 * sigma + 1e-3).all())


# -- bad input ------------------------------------------------------------------------
def test_bad_update_inputs_raise_and_leave_state_untouched():
    sampler, y = make()
    drive(sampler, y, 1)
    before = sampler.state_dict()
    idx = torch.tensor([0, 1, 2])
    good = torch.randn(3, 4)
    cases = [
        (dict(indices=idx, outputs=torch.randn(3, 5), targets=y[idx]), ValueError, "outputs"),
        (dict(indices=idx, outputs=good, targets=y[:2]), ValueError, "targets"),
        (dict(indices=idx, outputs=torch.ones(3, 4, dtype=torch.int64), targets=y[idx]), TypeError, "outputs"),
        (dict(indices=torch.tensor([0, 1, 99]), outputs=good, targets=y[idx]), IndexError, "indices"),
        (dict(indices=torch.tensor([0, 0, 1]), outputs=good, targets=y[idx]), ValueError, "indices"),
        (dict(indices=torch.tensor([0.0, 1.0, 2.0]), outputs=good, targets=y[idx]), TypeError, "indices"),
        (dict(indices=idx, outputs=torch.tensor([[float("nan")] * 4] * 3), targets=y[idx]), ValueError, "NaN"),
        (dict(indices=idx, outputs=torch.full((3, 4), 1.5), targets=y[idx], kind="probs"), ValueError, "probabilities"),
        (dict(indices=idx, outputs=good, targets=torch.full((3, 4), 2.0)), ValueError, "targets"),
        (dict(indices=idx, outputs=good, targets=y[idx], kind="scores"), ValueError, "kind"),
        (dict(indices=idx, outputs=torch.randn(3, 4, device="meta"), targets=y[idx]), ValueError, "device"),
    ]
    for kwargs, error, word in cases:
        with pytest.raises(error, match=word):
            sampler.update(**kwargs)
    after = sampler.state_dict()
    for name, tensor in before["selector"]["visits"].items():
        assert torch.equal(tensor, after["selector"]["visits"][name]), name


def test_bad_constructor_arguments():
    x, y = random_problem(10, 3)
    with pytest.raises(ValueError, match="batch_size"):
        D2ACESampler(y, 0, x, config=SHORT)
    with pytest.raises(ValueError, match="at least 2 instances"):
        D2ACESampler(y[:1], 4, x[:1], config=SHORT)
    with pytest.raises(ValueError, match="at least one label"):
        D2ACESampler(torch.zeros(10, 0), 4, x, config=SHORT)
    with pytest.raises(ValueError, match="labels must be 0/1"):
        D2ACESampler(y * 0.5 + 0.25, 4, x, config=SHORT)
    with pytest.raises(ValueError, match="labels must have shape"):
        D2ACESampler(y.flatten(), 4, x, config=SHORT)
    with pytest.raises(ValueError, match="features is required"):
        D2ACESampler(y, 4, None, config=SHORT)
    with pytest.raises(ValueError, match="features must be"):
        D2ACESampler(y, 4, x[:5], config=SHORT)
    with pytest.raises(ValueError, match="num_neighbors"):
        D2ACESampler(y, 4, x, config=SHORT.replace(num_neighbors=10))
    with pytest.raises(ValueError, match="seed"):
        D2ACESampler(y, 4, x, config=SHORT, seed=-1)


def test_mismatched_state_dict_is_rejected_without_changes():
    sampler, y = make()
    drive(sampler, y, 3)
    snapshot = sampler.state_dict()
    other, _ = make(batch=16)
    with pytest.raises(ValueError, match="batch_size"):
        sampler.load_state_dict(other.state_dict())
    preset_state = make(D2ACEConfig.preset("reference", num_epochs=8, warmup_epochs=2, num_neighbors=3))[0].state_dict()
    with pytest.raises(ValueError, match="D2ACEConfig"):
        sampler.load_state_dict(preset_state)
    assert sampler.epoch == snapshot["epoch"]
    with pytest.raises(ValueError, match="epoch"):
        sampler.set_epoch(-1)


def test_native_and_fallback_paths_give_the_same_batches():
    native, y = make(seed=13)
    expected = drive(native, y, 5, seed=2)
    with force_fallback():
        fallback, _ = make(seed=13)
        assert drive(fallback, y, 5, seed=2) == expected


@pytest.mark.parametrize("name", ["d2ace", "ml_unc", "infobatch"])
def test_a_sampler_built_on_cpu_0_takes_cpu_steps_and_gives_the_batches_of_cpu(name):
    # torch.device("cpu:0") is a valid device, but every CPU tensor reports plain "cpu":
    # the device check compared the two with == and refused every step.
    from d2ace_ext.factory import make_sampler

    x, y = random_problem(30, 4, seed=2)
    options = {} if name == "infobatch" else {"num_epochs": 4, "warmup_epochs": 1}
    if name == "d2ace":
        options["num_neighbors"] = 3
    runs = [drive(make_sampler(name, y, 8, x, device=device, **options), y, 4) for device in ("cpu", "cpu:0")]
    assert runs[0] == runs[1]
