"""The fused score_visits operator against the float64 fallback scorer, and the
probabilities built on its weights. Tolerance rule: support/fused_checks.py."""

from __future__ import annotations

import pytest
import torch

import d2ace_ext
from d2ace_ext import D2ACEConfig, functional
from d2ace_ext.sparse_rows import SparseRows
from d2ace_ext.visits import VisitState

from support.fused_checks import devices
from support.fused_score_checks import (
    assert_scores_match,
    check_probabilities,
    context_of,
    fill_state_by_recording,
    fill_state_directly,
    native_scores,
    random_selector,
)

pytestmark = pytest.mark.skipif(not d2ace_ext.extension_loaded(), reason="d2ace_ext._C is not built")


SCORE_CASES = [
    ("paper", {}),
    ("reference", {}),
    ("paper", {"loss_transform": "two_minus_exp"}),
    ("paper", {"norm_eps": 0.05}),
    ("paper", {"row_normalize_correlation": True}),
    ("paper", {"label_weights_in_phi": True}),
    ("paper", {"lambda1": 0.0}),
    ("paper", {"lambda1": 1.0}),
    ("paper", {"lambda1": 0.3}),
    ("reference", {"loss_transform": "identity", "norm_eps": 0.0}),
    ("reference", {"row_normalize_correlation": False}),
    ("reference", {"label_weights_in_phi": False}),
]


@pytest.mark.parametrize("device", devices("score_visits"))
@pytest.mark.parametrize("preset,changes", SCORE_CASES, ids=[f"{p}-{'-'.join(c) or 'preset'}" for p, c in SCORE_CASES])
@pytest.mark.parametrize("seed", range(3))
def test_score_visits_matches_float64_fallback(device, preset, changes, seed):
    g = torch.Generator().manual_seed(7919 * seed + len(changes) + (preset == "reference"))
    n = int(torch.randint(12, 90, (1,), generator=g))
    q = int(torch.randint(1, 13, (1,), generator=g))
    n_t = int(torch.randint(2, 6, (1,), generator=g))
    k = int(torch.randint(0, 5, (1,), generator=g))
    config = D2ACEConfig.preset(preset, window_size=n_t, **changes)
    selector = random_selector(g, n, q, config, k, density=[0.3, 0.6, 0.15][seed], device=device)
    if seed == 1:
        fill_state_by_recording(selector, g, epochs=n_t + 2)
    else:
        fill_state_directly(selector.visits, g)
    got, ref = assert_scores_match(selector.visits, selector.context, selector.config)
    # What the selector's native scoring builds on these matches its fallback scoring too.
    check_probabilities(got, ref, pressure=[100.0, 8.0, 2.5][seed], index_min=config.quant_index_min)


def test_probabilities_from_scores_with_weights_on_quantisation_boundaries():
    # Hardness h = ℓ (1 - f̄) chosen at (k/n)(1 ± float32 rounding): the kernel's float32
    # h rounds onto the boundary k/n (exactly representable, n = 64) while the float64
    # fallback's h lies just below or above it, so ⌈(1 - w̃) n⌉ differs by one for some
    # instances. Random states never hit this (no index moved in the random cases), so
    # this case pins down the tolerance explained in check_probabilities.
    n, q = 64, 1
    g = torch.Generator().manual_seed(5)
    state = VisitState(n, q, 2)
    state.window.copy_(torch.rand(n, 2, q, generator=g))
    state.pushes.fill_(2)
    flip = torch.rand(n, q, generator=g) * 0.5
    k = torch.randint(1, n, (n, q), generator=g).double()
    loss = ((k / n) / (1.0 - flip.double())).float()
    flip[0], loss[0] = 1.0, 0.7  # h = 0: the lowest weight
    flip[-1], loss[-1] = 0.0, 1.0  # h = 1: the highest
    state.loss.copy_(loss)
    state.flip_average.copy_(flip)
    labels = SparseRows.from_dense(torch.zeros(n, q))  # no positives: φ = 0, w = δ = h v
    got, ref = assert_scores_match(state, context_of(labels, labels), D2ACEConfig())
    w_got, w_ref = (got["delta"][1] + got["phi"][1]).cpu(), ref["delta"][1] + ref["phi"][1]
    moved = functional.quantization_index(w_got) != functional.quantization_index(w_ref)
    assert 0 < int(moved.sum()) < n
    p_got, p_ref = check_probabilities(got, ref, pressure=100.0, index_min=0)
    assert not torch.allclose(p_got[1], p_ref[1], rtol=1e-9, atol=0)  # the moved indices show in P


@pytest.mark.parametrize(
    "n, q, threads",
    [
        (70, 37, 1),  # rows of two 16-wide vectors and a tail; blocks of 16 rows and a short last one
        (4500, 101, 2),  # the mediamill label count; two chunks, whose bounds are not block bounds
    ],
)
@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_score_visits_matches_float64_fallback_at_wide_rows_and_several_chunks(n, q, threads, preset):
    # The random cases above keep q <= 12, below one vector of the CPU kernel's row loops,
    # and n small enough for a single chunk: here the vector bodies, the span over a block
    # of rows and the merge of per-chunk sums all run.
    g = torch.Generator().manual_seed(n + q)
    config = D2ACEConfig.preset(preset, window_size=5)
    selector = random_selector(g, n, q, config, 6, density=0.05)
    fill_state_directly(selector.visits, g)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert_scores_match(selector.visits, selector.context, selector.config)
    finally:
        torch.set_num_threads(before)


def test_an_unvisited_instance_scores_exactly_one_bit_of_entropy():
    # The CPU kernel writes p = 0.5 for an instance never visited and evaluates the
    # entropy's polynomials on it, where it used to write the constant one bit: the two
    # must agree exactly (u = λ1 · 1 + 0), or the quantisation of a fresh run would move.
    g = torch.Generator().manual_seed(5)
    config = D2ACEConfig.preset("paper", window_size=4, lambda1=0.3)
    selector = random_selector(g, 40, 37, config, 3, density=0.2)
    fill_state_directly(selector.visits, g)
    unseen = torch.arange(40) % 3 == 0
    selector.visits.pushes[unseen] = 0
    metrics = native_scores(selector.visits, selector.context, selector.config)["metrics"]
    assert torch.equal(metrics[0][unseen], torch.full((int(unseen.sum()), 37), 0.3, dtype=torch.float32))


def fluctuation_in_slot_order(window, pushes, lambda1):
    """Eq. 3's fluctuation term in float32 as the kernels sum it: Σ|p[k+1] - p[k]| over the
    valid ring steps k in slot order, one addition at a time, then times (1 - λ1)/(m - 1).
    window (n, n_t, q) float32, pushes (n,) -> (n, q) float32."""
    n, n_t, q = window.shape
    out = torch.zeros(n, q, dtype=torch.float32)
    for i in range(n):
        count = int(pushes[i])
        held, newest = min(count, n_t), (count - 1) % n_t
        total = torch.zeros(q, dtype=torch.float32)
        for k in range(n_t):
            if (k != newest) if count >= n_t else (k + 1 < held):
                total = total + (window[i, (k + 1) % n_t] - window[i, k]).abs()
        weight = torch.tensor(1.0 - lambda1, dtype=torch.float32) / (held - 1) if held > 1 else torch.tensor(0.0)
        out[i] = weight * total
    return out


@pytest.mark.parametrize("n_t", [2, 5, 6, 9, 12])
def test_fluctuation_sums_the_ring_steps_in_slot_order_exactly(n_t):
    # Every backend sums the ring's steps in slot order, one addition at a time (float
    # addition is not associative: regrouping four steps pairwise moves ~12 % of the sums
    # by an ulp). With λ1 = 0, U is the fluctuation term alone and must equal that sum bit
    # for bit, for rings with 0 to 11 valid steps (empty, partial, full and wrapped).
    g = torch.Generator().manual_seed(n_t)
    config = D2ACEConfig.preset("paper", window_size=n_t, lambda1=0.0)
    selector = random_selector(g, 60, 37, config, 3, density=0.2)
    fill_state_directly(selector.visits, g)
    visits = selector.visits
    metrics = native_scores(visits, selector.context, selector.config)["metrics"]
    expected = fluctuation_in_slot_order(visits.window, visits.pushes, 0.0)
    assert torch.equal(metrics[0], expected)
    assert int((visits.pushes >= n_t).sum()) > 0 and int((visits.pushes < n_t).sum()) > 0
