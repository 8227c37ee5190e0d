"""DIHCL's per-episode subset (draw="subset"): sizes, the draw's law, coverage of an
epoch, reproducibility and checkpoints."""

import math

import pytest
import torch

from d2ace_ext import make_sampler
from d2ace_ext.selectors import DIHCLSelector
from d2ace_ext.selectors.dihcl import subset_probabilities

F64 = dict(dtype=torch.float64)


def _peaked(n=1000, warmup=2, seed=0, **options):
    """A DIHCL selector whose hardness is exponential: at η = 20 its Exp3 P is peaked."""
    sel = DIHCLSelector(torch.zeros(n, 3), warmup_epochs=warmup, num_epochs=30, seed=seed, **options)
    sel.hardness = torch.empty(n, **F64).exponential_(generator=torch.Generator().manual_seed(7))
    return sel


def test_subset_sizes_follow_dihcl_schedule():
    sel = DIHCLSelector(torch.zeros(10, 2), warmup_epochs=4)
    # DIHCL shrinks k before its first selection: 0.9 at the first selection epoch
    assert [sel.subset_size(e) for e in (4, 5, 6)] == [9, 9, 8]  # ceil(9.0), ceil(8.1), ceil(7.29)
    assert sel.subset_size(40) == 3  # floor subset_min = 0.3
    assert DIHCLSelector(torch.zeros(10, 2), warmup_epochs=4, subset_decay=0.0).subset_size(30) == 10


def test_subset_is_uniform_over_distinct_instances():
    sel = _peaked(n=50, warmup=1)
    for epoch in (1, 3, 20):
        p = sel.probabilities(epoch)
        chosen = p > 1e-200
        assert int(chosen.sum()) == sel.subset_size(epoch)
        assert bool((p > 0).all()) and float(p.sum()) == pytest.approx(1.0)
        torch.testing.assert_close(p[chosen], torch.full((int(chosen.sum()),), 1 / int(chosen.sum()), **F64))


def test_subset_draw_is_successive_sampling():
    # one instance drawn from P = (0.5, 0.3, 0.2) over 3000 generators: frequencies match P
    P = torch.tensor([0.5, 0.3, 0.2], **F64)
    counts = torch.zeros(3, **F64)
    for s in range(3000):
        counts += subset_probabilities(P, 1, torch.Generator().manual_seed(s)) > 0.5
    sd = math.sqrt(0.25 / 3000)  # largest binomial sd
    assert torch.allclose(counts / 3000, P, atol=5 * sd)


def test_epochs_cover_the_subset_not_a_few_instances():
    """The point of subsets: at η = 20 per-batch draws from P keep repeating the same
    few hundred instances, while DIHCL's subset spreads the epoch over ⌈0.9 n⌉ of them."""
    distinct = {}
    for draw in ("subset", "batch"):
        sampler = make_sampler("dihcl", torch.zeros(1000, 3), 100, seed=3, num_epochs=30, warmup_epochs=0, draw=draw)
        sampler.selector.hardness = _peaked().hardness
        distinct[draw] = len({i for batch in sampler for i in batch})
    # uniform over 900 with 10 batches of 100: about 900 (1 - e^(-1000/900)) = 604 distinct
    assert distinct["subset"] > 500
    assert distinct["batch"] < 300


def test_subsets_are_reproducible_and_seeded():
    a, b, c = _peaked(seed=1), _peaked(seed=1), _peaked(seed=2)
    assert torch.equal(a.probabilities(5), b.probabilities(5))
    assert not torch.equal(a.probabilities(5), c.probabilities(5))
    assert not torch.equal(a.probabilities(5), a.probabilities(6))


def test_state_keeps_the_seed():
    sel = _peaked(seed=4)
    state = sel.state_dict()
    assert state["seed"] == 4
    other = _peaked(seed=4)
    other.hardness.zero_()
    other.load_state_dict(state)
    assert torch.equal(other.probabilities(5), sel.probabilities(5))
    with pytest.raises(ValueError, match="seed=4"):
        _peaked(seed=5).load_state_dict(state)


def test_sampler_seed_reaches_the_subsets():
    y = torch.zeros(40, 2)
    first = make_sampler("dihcl", y, 8, seed=11, warmup_epochs=0)
    assert first.selector.seed == 11
    assert make_sampler("dihcl", y, 8, seed=11, warmup_epochs=0, draw="batch").selector.config.draw == "batch"
