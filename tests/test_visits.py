"""Recording semantics: window per epoch or per visit, flip EMA redone on overwrite."""

import math

import pytest
import torch

from d2ace_ext.visits import VisitState


def record(state, index, prob, epoch, per_epoch, flip_on="probability", loss=0.5):
    state.record(
        torch.tensor([index]),
        torch.tensor([[prob]]),
        torch.tensor([[loss]]),
        epoch,
        per_epoch=per_epoch,
        flip_on=flip_on,
        flip_threshold=0.5,
        lambda2=0.5,
    )


def test_per_epoch_window_overwrites_a_second_visit_in_the_same_epoch():
    state = VisitState(2, 1, 3)
    record(state, 0, 0.2, 0, True)
    record(state, 0, 0.6, 1, True)  # flip 0.4 -> f̄ = 0.2
    record(state, 0, 0.9, 1, True)  # overwrites epoch 1: flip 0.7 from the same base 0
    assert int(state.pushes[0]) == 2
    assert state.flip_average[0].item() == pytest.approx(0.35)
    assert state.window[0, 1].item() == pytest.approx(0.9)
    record(state, 0, 0.5, 2, True)  # new epoch: base = 0.35, flip 0.4
    assert state.flip_average[0].item() == pytest.approx(0.5 * 0.4 + 0.5 * 0.35)


def test_per_visit_window_pushes_every_visit():
    state = VisitState(2, 1, 3)
    record(state, 0, 0.2, 0, False)
    record(state, 0, 0.6, 1, False)
    record(state, 0, 0.9, 1, False)
    assert int(state.pushes[0]) == 3
    assert state.flip_average[0].item() == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)
    # The other instance was never visited: stale defaults, loss ln 2.
    assert int(state.pushes[1]) == 0 and state.loss[1].item() == pytest.approx(math.log(2))


def test_first_visit_has_no_flip_and_latest_loss_is_kept():
    state = VisitState(1, 2, 4)
    state.record(
        torch.tensor([0]),
        torch.tensor([[0.9, 0.1]]),
        torch.tensor([[0.1, 2.0]]),
        0,
        per_epoch=True,
        flip_on="prediction",
        flip_threshold=0.5,
        lambda2=0.7,
    )
    assert state.flip_average.tolist() == [[0.0, 0.0]]
    assert torch.allclose(state.loss, torch.tensor([[0.1, 2.0]]))


def test_state_dict_round_trip_and_rejection():
    state = VisitState(3, 2, 3)
    record(state, 1, 0.7, 0, True)
    other = VisitState(3, 2, 3)
    other.load_state_dict(state.state_dict())
    for name in VisitState.TENSORS:
        assert torch.equal(getattr(other, name), getattr(state, name))
    wrong = VisitState(4, 2, 3).state_dict()
    with pytest.raises(ValueError, match="window"):
        other.load_state_dict(wrong)
    assert torch.equal(other.window, state.window)


def test_metrics_are_the_same_in_blocks(monkeypatch):
    from d2ace_ext import ring

    g = torch.Generator().manual_seed(0)
    state = VisitState(37, 3, 4)
    for epoch in range(6):
        idx = torch.randperm(37, generator=g)[:25]
        state.record(
            idx,
            torch.rand(25, 3, generator=g),
            torch.rand(25, 3, generator=g),
            epoch,
            per_epoch=True,
            flip_on="prediction",
            flip_threshold=0.5,
            lambda2=0.7,
        )
    whole = state.metrics(0.5, "identity")
    monkeypatch.setattr(ring, "BLOCK_ELEMENTS", 4 * 3 * 5)  # blocks of 5 rows
    blocked = state.metrics(0.5, "identity")
    for a, b in zip(whole, blocked):
        assert torch.equal(a, b)
