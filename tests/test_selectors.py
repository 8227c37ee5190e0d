"""The baseline selectors on hand-computed tiny cases (contracts: test_selector_contracts.py)."""

import math

import pytest
import torch
from sklearn.metrics import mutual_info_score

from d2ace_ext.selectors import (
    SHUFFLE,
    ActiveSelector,
    BalanceSelector,
    DIHCLSelector,
    HardImbSelector,
    MLUncSelector,
    RecentSelector,
)
from d2ace_ext.selectors._common import QuantizedConfig, pressure, rank_probabilities, value_probabilities
from d2ace_ext.selectors.balance import balance_mask
from d2ace_ext.selectors.hard_imb import imbalance_weights, minority_labels
from d2ace_ext.selectors.ml_unc import correlation_matrix, mutual_information, uncertainty_bins

F64 = dict(dtype=torch.float64)


def h2(p):
    """Binary entropy in bits, by hand."""
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def rec(selector, index, probs=None, losses=None, epoch=0):
    q = selector.q
    probs = torch.full((len(index), q), 0.5) if probs is None else torch.tensor(probs, dtype=torch.float32)
    losses = torch.zeros(len(index), q) if losses is None else torch.tensor(losses, dtype=torch.float32)
    selector.record(torch.tensor(index), probs, losses, epoch)


Y3 = torch.zeros(3, 2)


# -- the shared schedule and quantisers ------------------------------------------------
def test_pressure_schedules():
    cfg = QuantizedConfig(num_epochs=20, warmup_epochs=4)
    assert pressure(cfg, 4) == pytest.approx(100.0) and pressure(cfg, 19) == pytest.approx(1.0)
    assert pressure(cfg, 2) == pytest.approx(100.0)  # warm-up: not used, s0 by convention
    assert pressure(cfg, 4) > pressure(cfg, 10) > pressure(cfg, 15) > 1.0  # decays
    rising = cfg.replace(pressure_schedule="rising")
    assert pressure(rising, 4) == pytest.approx(1.0) and pressure(rising, 19) == pytest.approx(100.0)


def test_rank_quantiser_by_hand():
    w = torch.tensor([3.0, 1.0, 3.0, 2.0], **F64)
    p = rank_probabilities(w, 16.0)
    # ranks (number of larger weights): 0, 3, 0, 2 -> P ∝ 16^(-r/4) = 2^(-r)
    expected = torch.tensor([1.0, 1 / 8, 1.0, 1 / 4], **F64)
    torch.testing.assert_close(p, expected / expected.sum())
    assert torch.allclose(rank_probabilities(torch.ones(5, **F64), 16.0), torch.full((5,), 0.2, **F64))


def test_value_quantiser_by_hand():
    w = torch.tensor([4.0, 2.0, 1.0, 0.0], **F64)
    # Δ = max/n = 1, Q = w, P ∝ 16^(Q/4) = 2^Q
    expected = torch.tensor([16.0, 4.0, 2.0, 1.0], **F64)
    torch.testing.assert_close(value_probabilities(w, 16.0), expected / expected.sum())
    assert torch.allclose(value_probabilities(torch.zeros(4, **F64), 16.0), torch.full((4,), 0.25, **F64))


# -- Active -------------------------------------------------------------------------------
def test_active_by_hand():
    sel = ActiveSelector(Y3)
    for epoch, p in enumerate([[0.2, 0.5], [0.6, 0.5], [0.4, 0.5]]):
        rec(sel, [0], [p], epoch=epoch)
    rec(sel, [1], [[0.5, 0.5]], epoch=0)
    rec(sel, [1], [[0.5, 0.5]], epoch=1)
    # instance 0, label 0: mean 0.4, M2 = 0.08, v = 0.04, std-hat = sqrt(0.04 + 0.04²/2)
    # instance 1: v = 0; instance 2: never seen, v = 0.25 per label with m = 2
    expected = torch.tensor([math.sqrt(0.04 + 0.0016 / 2), 0.0, 2 * math.sqrt(0.25 + 0.0625)], **F64)
    torch.testing.assert_close(sel.weights(), expected, rtol=1e-5, atol=1e-6)


def test_active_welford_matches_whole_history_variance():
    g = torch.Generator().manual_seed(0)
    sel = ActiveSelector(torch.zeros(6, 3))
    history = []
    for epoch in range(7):
        p = torch.rand(6, 3, generator=g)
        history.append(p)
        sel.record(torch.arange(6), p, None, epoch)
    h = torch.stack(history).double()
    v = h.var(0, correction=1)
    expected = torch.sqrt(v + v * v / 6).sum(1)
    torch.testing.assert_close(sel.weights(), expected, rtol=1e-4, atol=1e-6)


# -- Recent -------------------------------------------------------------------------------
def test_recent_by_hand_window_slides():
    sel = RecentSelector(Y3, window_size=3)
    for p in ([0.9, 0.9], [0.1, 0.9], [0.8, 0.9]):
        rec(sel, [0], [p])
    # instance 0: label 0 positive in 2 of 3, label 1 in 3 of 3; instance 1, 2 unseen: 1 bit each label
    torch.testing.assert_close(sel.weights(), torch.tensor([h2(2 / 3), 2.0, 2.0], **F64))
    rec(sel, [0], [[0.9, 0.2]])  # the first entry leaves: label 0 {0.1, 0.8, 0.9}, label 1 {0.9, 0.9, 0.2}
    torch.testing.assert_close(sel.weights()[0], torch.tensor(2 * h2(2 / 3), **F64))
    rec(sel, [1], [[0.7, 0.3]])  # one entry: fractions 1 and 0 -> 0 bits
    assert float(sel.weights()[1]) == 0.0


def test_recent_per_epoch_window_overwrites_within_an_epoch():
    sel = RecentSelector(Y3, window_size=3, window_unit="epoch")
    rec(sel, [0], [[0.9, 0.9]], epoch=0)
    rec(sel, [0], [[0.1, 0.9]], epoch=0)  # replaces epoch 0's entry
    assert int(sel.pushes[0]) == 1
    assert float(sel.weights()[0]) == 0.0


# -- DIHCL --------------------------------------------------------------------------------
def test_dihcl_by_hand():
    sel = DIHCLSelector(Y3, gamma=0.5)
    rec(sel, [0, 2], losses=[[1.0, 2.0], [0.0, 0.0]], epoch=0)  # first visits: no feedback
    rec(sel, [0, 2], losses=[[2.0, 0.0], [20.0, 0.0]], epoch=1)  # a = 1 + 2 = 3; |20 - 0| clipped to 10
    rec(sel, [0, 1], losses=[[2.0, 0.0], [5.0, 5.0]], epoch=2)  # a = 0; instance 1's first visit
    torch.testing.assert_close(sel.hardness, torch.tensor([0.75, 0.0, 5.0], **F64))
    eta = sel.inverse_temperature(12)  # warm-up 10: 20 * 0.8^2
    assert eta == pytest.approx(12.8)
    assert sel.inverse_temperature(5) == 20.0 and sel.inverse_temperature(100) == 1.0
    r = torch.tensor([0.75, 0.0, 5.0], **F64)
    expected = torch.softmax(eta * r / r.mean(), 0)
    torch.testing.assert_close(sel.exp3(12), expected)
    torch.testing.assert_close(
        DIHCLSelector(Y3, gamma=0.5, draw="batch").probabilities(12), torch.full((3,), 1 / 3, **F64)
    )


def test_dihcl_flip_feedback_and_floors():
    sel = DIHCLSelector(Y3, gamma=0.0, feedback="flip", draw="batch")
    assert not sel.needs_loss
    rec(sel, [0, 1], probs=[[0.6, 0.6], [0.6, 0.6]])
    rec(sel, [0, 1], probs=[[0.4, 0.7], [0.7, 0.7]])
    torch.testing.assert_close(sel.hardness, torch.tensor([1.0, 0.0, 0.0], **F64))
    p = sel.probabilities(10)  # exp(20 * 3) vs 1: tiny but strictly positive
    assert bool((p > 0).all()) and float(p.sum()) == pytest.approx(1.0)
    assert torch.equal(DIHCLSelector(Y3, draw="batch").probabilities(10), torch.full((3,), 1 / 3, **F64))


# -- Balance ------------------------------------------------------------------------------
def test_balance_mask_by_hand():
    targets = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.float32)
    keys = torch.tensor([[0.5, 0.1, 0.3], [0.9, 0.2, 0.1], [0.1, 0.3, 0.2], [0.4, 0.4, 0.4]], **F64)
    mask = balance_mask(targets, keys, None)
    # label 0: 1 positive of 4 -> weight 4/2 = 2; keep 2 of 3 negatives, the smallest keys (rows 2, 3)
    # label 1: 2:2 already balanced -> all 1; label 2: no positive -> cannot balance, all 1
    expected = torch.tensor([[2, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1]], dtype=torch.float32)
    torch.testing.assert_close(mask, expected)


def test_balance_mask_properties_and_cap():
    g = torch.Generator().manual_seed(3)
    targets = (torch.rand(64, 7, generator=g) < torch.linspace(0.02, 0.9, 7)).float()
    mask = balance_mask(targets, torch.rand(64, 7, generator=g, **F64), None)
    pos = (mask * targets).sum(0)
    neg = (mask * (1 - targets)).sum(0)
    both = (targets.sum(0) > 0) & (targets.sum(0) < 64)
    assert torch.allclose(pos[both], neg[both], atol=1.0)  # 1:1 up to rounding
    assert torch.allclose((pos + neg)[both], torch.full_like(pos[both], 64.0), atol=1.0)
    capped = balance_mask(targets, torch.rand(64, 7, generator=g, **F64), 3.0)
    assert float(capped.max()) <= 3.0


def test_balance_selector_seeded_and_resumable():
    y = (torch.rand(20, 3, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    a, b = BalanceSelector(y, seed=5), BalanceSelector(y, seed=5)
    idx = torch.arange(8)
    assert a.batch_mode(0) == SHUFFLE and a.batch_mode(50) == SHUFFLE
    assert torch.equal(a.loss_mask(idx, y[idx]), b.loss_mask(idx, y[idx]))
    state = a.state_dict()
    first = a.loss_mask(idx, y[idx])
    c = BalanceSelector(y, seed=5)
    c.load_state_dict(state)
    assert torch.equal(c.loss_mask(idx, y[idx]), first)
    with pytest.raises(ValueError, match="targets must have shape"):
        a.loss_mask(idx, y[:7])
    with pytest.raises(ValueError, match="0/1"):
        a.loss_mask(idx, y[idx] * 2)
    with pytest.raises(IndexError, match="indices"):
        a.loss_mask(torch.tensor([0, 20]), y[:2])
    with pytest.raises(ValueError, match="seed"):
        BalanceSelector(y, seed=6).load_state_dict(state)


# -- Hard-Imb -----------------------------------------------------------------------------
HI_LABELS = torch.tensor([[1, 1], [1, 1], [1, 0], [0, 0]], dtype=torch.float32)
HI_NEIGHBORS = torch.tensor([[1, 2], [2, 3], [0, 1], [0, 1]])


def test_hard_imb_by_hand():
    # counts 3 and 2: IRLbl = 1 and 1.5, mean 1.25 -> label 1 is the minority label.
    assert minority_labels(HI_LABELS).tolist() == [False, True]
    # label 1: instance 0's neighbours {1, 2}: one lacks it -> 0.5; instance 1's {2, 3}: both -> 1 (excluded)
    torch.testing.assert_close(imbalance_weights(HI_LABELS, HI_NEIGHBORS), torch.tensor([2.0, 1.0, 1.0, 1.0], **F64))
    sel = HardImbSelector(
        HI_LABELS,
        neighbors=HI_NEIGHBORS,
        num_neighbors=HI_NEIGHBORS.shape[1],
        num_epochs=3,
        warmup_epochs=1,
        initial_pressure=16.0,
    )
    rec(sel, [0, 1, 2, 3], losses=[[1.0, 1.0], [2.0, 2.0], [0.0, 2.0], [0.0, 0.0]])
    w = torch.tensor([2.0, 2.0, 1.0, 0.0], **F64)
    torch.testing.assert_close(sel.weights(), w)
    # value quantiser at s = 16: Δ = 2/4, Q = 4, 4, 2, 0, P ∝ 16^(Q/4) = 2^Q
    expected = torch.tensor([16.0, 16.0, 4.0, 1.0], **F64)
    torch.testing.assert_close(sel.probabilities(1), expected / expected.sum())


def test_hard_imb_needs_features_or_neighbors():
    with pytest.raises(ValueError, match="features is required"):
        HardImbSelector(HI_LABELS)
    with pytest.raises(ValueError, match="num_neighbors must be below"):
        HardImbSelector(HI_LABELS, torch.rand(4, 2))
    with pytest.raises(ValueError, match=r"indices in \[0, 4\)"):
        HardImbSelector(HI_LABELS, neighbors=torch.tensor([[1, 9]] * 4), num_neighbors=2)
    with pytest.raises(ValueError, match="2 columns but num_neighbors = 5"):
        HardImbSelector(HI_LABELS, neighbors=torch.tensor([[1, 2]] * 4))
    sel = HardImbSelector(HI_LABELS, torch.rand(4, 2), num_neighbors=2)
    assert sel.imbalance.shape == (4,)


# -- ML-Unc -------------------------------------------------------------------------------
def test_ml_unc_uncertainty_by_hand():
    sel = MLUncSelector(Y3, correlation="ones")
    rec(sel, [0], [[0.5, 1.0]], epoch=0)
    rec(sel, [0, 1], [[0.5, 0.0], [0.9, 0.5]], epoch=1)
    # instance 0: e = (1, 0), d = (0, 1) -> u = (0.5, 0.5); instance 1: one entry, d = 0,
    # e = (H(0.9), 1); instance 2 unseen: p = 0.5, u = (0.5, 0.5)
    unc = torch.tensor([[0.5, 0.5], [0.5 * h2(0.9), 0.5], [0.5, 0.5]], **F64)
    torch.testing.assert_close(sel.uncertainty(), unc, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(sel.weights(), 2 * unc.sum(1), rtol=1e-6, atol=1e-7)


def test_ml_unc_correlation_by_hand():
    unc = torch.tensor([[0.1, 0.1, 0.5], [0.1, 0.1, 0.5], [0.9, 0.9, 0.5], [0.9, 0.9, 0.5]], **F64)
    # columns 0 and 1 identical with two equiprobable bins: MI = ln 2; column 2 constant: MI 0
    ln2 = math.log(2.0)
    expected = torch.tensor([[1.0, ln2, 0.0], [ln2, 1.0, 0.0], [0.0, 0.0, 1.0]], **F64)
    torch.testing.assert_close(correlation_matrix(unc), expected)
    sel = MLUncSelector(torch.zeros(4, 3))
    sel.uncertainty = lambda: unc  # the weight step alone: w = U C 1
    torch.testing.assert_close(sel.weights(), unc @ expected.sum(1))


def test_mutual_information_matches_sklearn():
    g = torch.Generator().manual_seed(1)
    bins = torch.randint(0, 5, (300, 6), generator=g)
    bins[:, 1] = bins[:, 0]
    bins[:, 2] = bins[:, 0] // 2
    bins[:100, 3] = 4
    mi = mutual_information(bins)
    ref = torch.tensor([[mutual_info_score(bins[:, i], bins[:, j]) for j in range(6)] for i in range(6)], **F64)
    torch.testing.assert_close(mi, ref, rtol=1e-9, atol=1e-12)
    assert uncertainty_bins(torch.tensor([0.0, 0.19, 0.2, 0.4, 0.79, 0.8, 1.0], **F64)).tolist() == [
        0,
        0,
        1,
        2,
        3,
        4,
        4,
    ]
