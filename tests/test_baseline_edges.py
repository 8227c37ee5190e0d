"""The baselines on the edge cases an audit against their papers checked: a saturated wrong
prediction (an infinite BCE) must make an instance the hardest one, not switch the
selector's whole distribution off or poison its state; DIHCL's two readings of γ; Balance's
rounding at an odd batch."""

import math

import pytest
import torch

from d2ace_ext.selectors import DIHCLSelector, HardImbSelector
from d2ace_ext.selectors._common import value_probabilities
from d2ace_ext.selectors.balance import balance_mask

F64 = dict(dtype=torch.float64)
INF = math.inf


def test_value_quantiser_puts_an_infinite_weight_on_top_instead_of_going_uniform():
    # Q = ⌈w n / max w⌉: as one weight grows without bound every finite positive weight's
    # Q tends to 1 and a zero weight's stays 0, so the limit at max w = inf is Q = (n, 1, 1, 0)
    w = torch.tensor([INF, 2.0, 1.0, 0.0], **F64)
    expected = torch.tensor([16.0, 2.0, 2.0, 1.0], **F64)  # P ∝ 16^(Q/4) = 2^Q
    torch.testing.assert_close(value_probabilities(w, 16.0), expected / expected.sum())
    # the limit itself: a huge finite weight gives the same P
    huge = torch.tensor([1e300, 2.0, 1.0, 0.0], **F64)
    torch.testing.assert_close(value_probabilities(huge, 16.0), expected / expected.sum())
    # NaN (no order at all) still samples uniformly
    nan = torch.tensor([math.nan, 2.0, 1.0, 0.0], **F64)
    torch.testing.assert_close(value_probabilities(nan, 16.0), torch.full((4,), 0.25, **F64))


@pytest.mark.filterwarnings("ignore:labels:RuntimeWarning")  # one label: no minority, W = 1, on purpose
def test_hard_imb_keeps_selecting_when_a_prediction_saturates_wrong():
    labels = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    neighbors = torch.tensor([[1], [0], [3], [2]])
    sel = HardImbSelector(labels, neighbors=neighbors, num_neighbors=1, warmup_epochs=1, num_epochs=3)
    logits = torch.tensor([[-INF], [-2.0], [0.0], [-3.0]])  # instance 0: certain and wrong
    sel.record_outputs(torch.arange(4), logits, labels, "logits", 0)
    assert math.isinf(float(sel.loss[0]))
    p = sel.probabilities(1)  # s = 100, n = 4: Q = (4, 1, 1, 1), the loss of 3 is > 0
    expected = torch.tensor([100.0, 100**0.25, 100**0.25, 100**0.25], **F64)
    torch.testing.assert_close(p, expected / expected.sum())


def test_dihcl_loss_change_of_two_infinite_losses_is_zero_not_nan():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    sel = DIHCLSelector(labels, gamma=0.5, draw="batch", warmup_epochs=1, num_epochs=4)
    logits = torch.tensor([[-INF, -1.0], [1.0, 1.0]])  # instance 0 label 0: certain and wrong
    for epoch, shift in enumerate((0.0, 1.0, 2.0)):
        sel.record_outputs(torch.arange(2), logits + shift, labels, "logits", epoch)
    # instance 0: label 0 is inf at every visit (change 0), label 1 BCE softplus(x) changes
    a0 = [abs(math.log1p(math.exp(-1.0 + k + 1)) - math.log1p(math.exp(-1.0 + k))) for k in (0, 1)]
    a1 = [
        abs(math.log1p(math.exp(2.0 + k)) - math.log1p(math.exp(1.0 + k)))  # label 0, y = 0
        + abs(math.log1p(math.exp(-(2.0 + k))) - math.log1p(math.exp(-(1.0 + k))))  # label 1, y = 1
        for k in (0, 1)
    ]
    expected = torch.tensor([0.5 * (0.5 * a0[0]) + 0.5 * a0[1], 0.5 * (0.5 * a1[0]) + 0.5 * a1[1]], **F64)
    torch.testing.assert_close(sel.hardness, expected, rtol=1e-5, atol=1e-7)
    # Exp3 at η = 20 from those r, not the uniform fallback a NaN r would give
    expected_p = torch.softmax(20.0 * expected / expected.mean(), 0)
    torch.testing.assert_close(sel.probabilities(1), expected_p, rtol=1e-4, atol=1e-9)


def test_dihcl_gamma_weighs_the_history_by_default_or_the_feedback_on_request():
    labels = torch.zeros(2, 2)
    losses = ([[1.0, 1.0]], [[2.0, 1.0]], [[2.0, 3.0]])  # feedback a = 1 at visit 2, 2 at visit 3
    states = {}
    for gamma_on in ("history", "feedback"):
        sel = DIHCLSelector(labels, gamma=0.9, gamma_on=gamma_on)
        for epoch, loss in enumerate(losses):
            sel.record(torch.tensor([0]), torch.full((1, 2), 0.5), torch.tensor(loss), epoch)
        states[gamma_on] = float(sel.hardness[0])
    assert states["history"] == pytest.approx(0.9 * (0.1 * 1.0) + 0.1 * 2.0)  # 0.29
    assert states["feedback"] == pytest.approx(0.1 * (0.9 * 1.0) + 0.9 * 2.0)  # 1.89
    with pytest.raises(ValueError, match="gamma"):
        DIHCLSelector(labels, gamma=0.0, gamma_on="feedback")  # r would never leave 0
    DIHCLSelector(labels, gamma=1.0, gamma_on="feedback")  # the newest feedback alone


def test_dihcl_state_saved_before_gamma_on_loads_as_the_history_reading():
    labels = torch.zeros(3, 2)
    saved = DIHCLSelector(labels, seed=4)
    saved.record(torch.tensor([0, 1]), torch.full((2, 2), 0.5), torch.ones(2, 2), 0)
    saved.record(torch.tensor([0, 1]), torch.full((2, 2), 0.5), torch.tensor([[2.0, 1.0], [1.0, 4.0]]), 1)
    state = saved.state_dict()
    del state["config"]["gamma_on"]  # as written before the option existed
    loaded = DIHCLSelector(labels, seed=4)
    loaded.load_state_dict(state)
    torch.testing.assert_close(loaded.hardness, saved.hardness)
    with pytest.raises(ValueError, match="gamma_on"):
        DIHCLSelector(labels, seed=4, gamma_on="feedback").load_state_dict(state)


def test_balance_mask_is_one_to_one_only_up_to_rounding_at_an_odd_batch():
    # b = 5, one positive: minority weight 5/2, round(5/2) = 3 negatives kept (2.5 against 3)
    targets = torch.tensor([[1.0], [0.0], [0.0], [0.0], [0.0]])
    keys = torch.tensor([[0.9], [0.4], [0.1], [0.3], [0.2]], **F64)
    mask = balance_mask(targets, keys, None)
    assert mask[:, 0].tolist() == [2.5, 0.0, 1.0, 1.0, 1.0]  # the 3 smallest keys' negatives kept


@pytest.mark.filterwarnings("ignore:labels:RuntimeWarning")  # one label: no minority, W = 1, on purpose
def test_hard_imb_index_quantiser_also_puts_an_infinite_loss_on_top():
    labels = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    neighbors = torch.tensor([[1], [0], [3], [2]])
    sel = HardImbSelector(
        labels, neighbors=neighbors, num_neighbors=1, warmup_epochs=1, num_epochs=3, quantizer="index"
    )
    logits = torch.tensor([[-INF], [-2.0], [0.0], [-3.0]])
    sel.record_outputs(torch.arange(4), logits, labels, "logits", 0)
    # Eq. 13 in the limit: w̃ = 1, Q = 0 for the infinite loss; w̃ = 0, Q = n for the rest: P ∝ 1, 1/s, ...
    expected = torch.tensor([1.0, 0.01, 0.01, 0.01], **F64)
    torch.testing.assert_close(sel.probabilities(1), expected / expected.sum())
