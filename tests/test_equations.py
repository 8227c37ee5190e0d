"""Each equation of the paper against a tiny case computed by hand."""

import math

import pytest
import torch

from d2ace_ext import functional as fn
from d2ace_ext.neighbors import local_label_appearance, nearest_neighbors
from d2ace_ext.sparse_rows import SparseRows, masked_gram, propagation_at_labels, row_pairs
from d2ace_ext.visits import VisitState

D = torch.float64


def test_eq1_binary_entropy_in_bits():
    p = torch.tensor([0.5, 0.0, 1.0, 0.25, 0.9], dtype=D)
    expected = [
        1.0,
        0.0,
        0.0,
        -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)),
        -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1)),
    ]
    assert torch.allclose(fn.binary_entropy(p), torch.tensor(expected, dtype=D))


def test_eq1_clamps_rounding_noise_and_keeps_nan_visible():
    out = fn.binary_entropy(torch.tensor([1 + 1e-7, -1e-7, float("nan")], dtype=D))
    assert out[:2].tolist() == [0.0, 0.0]
    assert math.isnan(out[2])


def _record_sequence(values, window=3, per_epoch=False, flip_on="probability", lambda2=0.7):
    state = VisitState(1, 1, window)
    for epoch, value in enumerate(values):
        state.record(
            torch.tensor([0]),
            torch.tensor([[value]]),
            torch.tensor([[0.1]]),
            epoch,
            per_epoch=per_epoch,
            flip_on=flip_on,
            flip_threshold=0.5,
            lambda2=lambda2,
        )
    return state


def test_eq2_fluctuation_over_a_wrapped_ring():
    # Pushed 0.2, 0.5, 0.4, 0.9 into a window of 3: it holds 0.5, 0.4, 0.9 in time order.
    state = _record_sequence([0.2, 0.5, 0.4, 0.9])
    d = fn.window_fluctuation(state.window.to(D), state.pushes)
    assert d.item() == pytest.approx((0.1 + 0.5) / 2, abs=1e-7)
    assert fn.latest_probability(state.window.to(D), state.pushes).item() == pytest.approx(0.9)


def test_eq2_partial_window_and_first_visit():
    assert fn.window_fluctuation(_record_sequence([0.3]).window.to(D), torch.tensor([1])).item() == 0.0
    two = _record_sequence([0.2, 0.6])
    assert fn.window_fluctuation(two.window.to(D), two.pushes).item() == pytest.approx(0.4, abs=1e-7)
    never = VisitState(1, 1, 3)
    assert fn.window_fluctuation(never.window.to(D), never.pushes).item() == 0.0
    assert fn.latest_probability(never.window.to(D), never.pushes).item() == 0.5


def test_eq3_uncertainty():
    u = fn.uncertainty(torch.tensor([1.0], dtype=D), torch.tensor([0.3], dtype=D), 0.5)
    assert u.item() == pytest.approx(0.65)
    state = _record_sequence([0.2, 0.5, 0.4, 0.9])
    unc, _ = state.metrics(0.5, "identity")
    entropy = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    assert unc.item() == pytest.approx(0.5 * entropy + 0.5 * 0.3, abs=1e-6)


def test_eq4_flip_indicator_both_modes():
    new, old = torch.tensor([0.6, 0.6, 0.3]), torch.tensor([0.4, 0.7, 0.55])
    assert fn.flip_indicator(new, old, "prediction").tolist() == [1.0, 0.0, 1.0]
    assert torch.allclose(fn.flip_indicator(new, old, "probability"), torch.tensor([0.2, 0.1, 0.25]))


def test_eq4_flip_ema_through_visits():
    # 0/1 predictions 1, 0, 0, 1: flips (none), 1, 0, 1 with λ2 = 0.7.
    state = _record_sequence([0.8, 0.2, 0.3, 0.9], window=5, flip_on="prediction")
    expected = 0.0
    for flip in (1, 0, 1):
        expected = 0.7 * flip + 0.3 * expected
    assert state.flip_average.item() == pytest.approx(expected)  # 0.763


def test_eq5_hardness_both_transforms():
    loss, flips = torch.tensor([2.0], dtype=D), torch.tensor([0.25], dtype=D)
    assert fn.hardness(loss, flips, "identity").item() == pytest.approx(1.5)
    assert fn.hardness(loss, flips, "two_minus_exp").item() == pytest.approx((2 - math.exp(-2)) * 0.75)


def test_eqs6_to_8_label_weights_and_delta():
    a = torch.tensor([[1.0, 0.0], [3.0, 2.0]], dtype=D)
    v = fn.label_weights(a)  # μ = (2, 1), population σ = (1, 1)
    assert torch.allclose(v, torch.tensor([math.exp(1.5), math.exp(1.0)], dtype=D))
    delta = fn.dynamic_weight(a, v)
    assert torch.allclose(delta, torch.tensor([math.exp(1.5), 3 * math.exp(1.5) + 2 * math.e], dtype=D))


Y3 = torch.tensor([[1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=D)
A3 = torch.tensor([[1, 2, 9], [3, 9, 4], [9, 5, 6]], dtype=D)


def test_eq9_masked_cosine_correlation():
    y = SparseRows.from_dense(Y3)
    c = fn.correlation_from_gram(masked_gram(A3[y.rows, y.cols], y, row_pairs(y, y)), 0.0)
    # M = Y ⊙ A = [[1,2,0],[3,0,4],[0,5,6]]; column norms √10, √29, √52.
    n0, n1, n2 = math.sqrt(10), math.sqrt(29), math.sqrt(52)
    expected = torch.tensor(
        [
            [1.0, 2 / (n0 * n1), 12 / (n0 * n2)],
            [2 / (n0 * n1), 1.0, 30 / (n1 * n2)],
            [12 / (n0 * n2), 30 / (n1 * n2), 1.0],
        ],
        dtype=D,
    )
    assert torch.allclose(c, expected)


@pytest.mark.parametrize("eps", [0.0, 0.5])
def test_eq9_correlation_from_gram_by_hand_with_a_massless_column(eps):
    # M = Y ⊙ A = [[1,2,0],[3,0,0],[0,4,0]]: label 2 has positives but no mass.
    # G = MᵀM = [[10,2,0],[2,20,0],[0,0,0]]; N = (√10 + ε, √20 + ε, ε); C_jk = G_jk / (N_j N_k),
    # 0 for label 2 whether N_2 = 0 (0/0 := 0) or ε > 0.
    y = SparseRows.from_dense(Y3)
    a = torch.tensor([[1, 2, 9], [3, 9, 0], [9, 4, 0]], dtype=D)
    gram = masked_gram(a[y.rows, y.cols], y, row_pairs(y, y))
    assert torch.equal(gram, torch.tensor([[10.0, 2, 0], [2, 20, 0], [0, 0, 0]], dtype=D))
    n0, n1 = math.sqrt(10) + eps, math.sqrt(20) + eps
    expected = torch.tensor(
        [[10 / n0**2, 2 / (n0 * n1), 0.0], [2 / (n0 * n1), 20 / n1**2, 0.0], [0.0, 0.0, 0.0]], dtype=D
    )
    c = fn.correlation_from_gram(gram, eps)
    assert torch.allclose(c, expected, rtol=1e-15, atol=0)
    if eps == 0.0:
        assert c[0, 1].item() == pytest.approx(math.sqrt(2) / 10, rel=1e-15)  # 2 / √200
    # a stack of Grams (one per metric, as the sharded scorer passes them) is normalised slice
    # by slice: the second holds the labels in reverse order, so its C is c reversed
    stacked = fn.correlation_from_gram(torch.stack([gram, gram.flip(0, 1)]), eps)
    assert torch.equal(stacked[0], c)
    assert torch.equal(stacked[1], c.flip(0, 1))


def test_eq10_local_label_appearance():
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    nbrs = nearest_neighbors(x, 1)
    assert nbrs.squeeze(1).tolist() == [1, 0, 1, 2]
    y = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    z = local_label_appearance(y, nbrs, include_self=False).to_dense().int().tolist()
    assert z == [[0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    z_self = local_label_appearance(y, nbrs, include_self=True).to_dense().int().tolist()
    assert z_self == [[1, 1, 0], [1, 1, 0], [0, 1, 1], [1, 0, 1]]
    assert local_label_appearance(y, None, include_self=False).to_dense().int().tolist() == y.tolist()


def test_eq11_phi_only_where_y_is_one():
    y = SparseRows.from_dense(Y3)
    z_dense = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 1]], dtype=D)
    z = SparseRows.from_dense(z_dense)
    c = torch.tensor([[1.0, 0.5, 0.25], [0.5, 1.0, 0.125], [0.25, 0.125, 1.0]], dtype=D)
    spread = propagation_at_labels(c, y, z, row_pairs(y, z))
    # (Z C) at Y's nonzeros (0,0),(0,1),(1,0),(1,2),(2,1),(2,2)
    zc = z_dense @ c
    assert torch.allclose(spread, zc[y.rows, y.cols])
    assert spread.tolist() == pytest.approx([1.75, 1.625, 1.25, 1.25, 0.125, 1.0])


def test_eq13_eq14_quantisation_and_probabilities():
    w = torch.tensor([0.0, 0.5, 1.0, 0.25], dtype=D)
    assert fn.quantization_index(w).tolist() == [4, 2, 0, 3]
    assert fn.quantization_index(w, index_min=1).tolist() == [4, 2, 1, 3]
    p = fn.quantized_probabilities(w, 16.0)  # s^(-1/4) = 1/2
    raw = torch.tensor([1 / 16, 1 / 4, 1.0, 1 / 8], dtype=D)
    assert torch.allclose(p, raw / raw.sum())
    # Min-max normalisation makes the scale of w irrelevant.
    assert torch.allclose(fn.quantized_probabilities(3 * w + 7, 16.0), p)


def test_eq14_uniform_when_weights_are_equal_or_pressure_is_one():
    flat = fn.quantized_probabilities(torch.full((5,), 2.0, dtype=D), 100.0)
    assert torch.allclose(flat, torch.full((5,), 0.2, dtype=D))
    assert torch.allclose(fn.quantized_probabilities(torch.arange(5.0, dtype=D), 1.0), flat)


def test_eq16_eq17_mixture_and_mixing_coefficient():
    assert fn.mixing_coefficient(10, 0.7, 0.3, 30, 70) == 0.7
    assert fn.mixing_coefficient(50, 0.7, 0.3, 30, 70) == pytest.approx(0.5)
    assert fn.mixing_coefficient(90, 0.7, 0.3, 30, 70) == 0.3
    pu, ph = torch.tensor([0.5, 0.5], dtype=D), torch.tensor([0.9, 0.1], dtype=D)
    assert fn.mixture(pu, ph, 0.7).tolist() == pytest.approx([0.62, 0.38])


def test_eq21_selection_pressure_paper_and_reference():
    assert fn.selection_pressure(10, 10, 100, 100.0, "paper") == pytest.approx(100.0)
    assert fn.selection_pressure(99, 10, 100, 100.0, "paper") == pytest.approx(1.0)
    assert fn.selection_pressure(15, 10, 21, 100.0, "paper") == pytest.approx(10.0)
    assert fn.selection_pressure(5, 10, 100, 8.0, "reference") == 8.0
    assert fn.selection_pressure(55, 10, 100, 8.0, "reference") == pytest.approx(math.sqrt(8.0))
    assert fn.selection_pressure(100, 10, 100, 8.0, "reference") == pytest.approx(1.0)
