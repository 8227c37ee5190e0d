"""LoopCheckpoint: a state saved while batches are prefetched resumes at the first batch
the loop has not consumed, in shuffled and weighted epochs alike."""

import pytest
import torch

from d2ace_ext import D2ACEConfig, D2ACESampler, make_sampler
from d2ace_ext.integrations import LoopCheckpoint, rewound_state

from support.problems import random_problem

CONFIG = D2ACEConfig(num_epochs=6, warmup_epochs=2, t_start=2, t_end=5, num_neighbors=3)


def logits_for(index: torch.Tensor, epoch: int, q: int) -> torch.Tensor:
    return torch.sin(index.double().unsqueeze(1) * 0.9 + epoch + torch.arange(q)).float() * 3


def run(sampler, y, epochs, stop_at=None, ahead=2):
    """Drives ``sampler`` with ``ahead`` batches prefetched; returns the consumed batches
    and, at (epoch, step) == stop_at, the tracker's saved state."""
    tracker, seen, saved = LoopCheckpoint(sampler), [], None
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches = iter(sampler)
        queue = [b for _, b in zip(range(ahead), batches)]
        step = 0
        while queue:
            batch = queue.pop(0)
            queue += [b for _, b in zip(range(1), batches)]
            index = torch.tensor(batch)
            tracker.update(index, logits_for(index, epoch, y.shape[1]), y[index])
            seen.append(batch)
            step += 1
            if (epoch, step) == stop_at:
                saved = tracker.state_dict()
                return seen, saved
    return seen, saved


@pytest.mark.parametrize("stop_at", [(1, 2), (3, 1), (3, 2), (4, 5), (2, 6)])
def test_resume_from_a_prefetched_state_gives_the_uninterrupted_batches(stop_at):
    x, y = random_problem(n=45, q=4, d=5)
    reference, _ = run(D2ACESampler(y, 8, x, config=CONFIG, seed=2), y, 6)
    first, saved = run(D2ACESampler(y, 8, x, config=CONFIG, seed=2), y, 6, stop_at=stop_at)
    assert saved["consumed"] == stop_at[1]
    resumed = D2ACESampler(y, 8, x, config=CONFIG, seed=2)
    tracker = LoopCheckpoint(resumed)
    tracker.load_state_dict(saved)
    rest = []
    assert tracker.resume_epoch == stop_at[0] + (stop_at[1] == len(resumed))
    for epoch in range(tracker.resume_epoch, 6):
        resumed.set_epoch(epoch)
        for batch in resumed:
            index = torch.tensor(batch)
            tracker.update(index, logits_for(index, epoch, y.shape[1]), y[index])
            rest.append(batch)
    assert first + rest == reference


def test_nothing_to_rewind_when_the_loop_is_not_behind():
    x, y = random_problem(n=30, q=3)
    sampler = make_sampler("random", y, 8, seed=1)
    sampler.set_epoch(0)
    batches = iter(sampler)
    next(batches)
    assert rewound_state(sampler, 1)["position"] == 1
    assert rewound_state(sampler, 0)["position"] == 0
    assert LoopCheckpoint(sampler).consumed == 0


def test_a_state_that_cannot_be_redrawn_is_kept_with_a_warning():
    x, y = random_problem(n=40, q=4)
    sampler = D2ACESampler(y, 8, x, config=CONFIG, seed=0)
    run(sampler, y, 3)
    sampler.set_epoch(3)
    batches = iter(sampler)
    next(batches), next(batches)
    state = sampler.state_dict()
    state["plan"]["generator"] = torch.Generator().manual_seed(123).get_state()
    sampler.load_state_dict(state)
    with pytest.warns(RuntimeWarning, match="could not rewind"):
        kept = rewound_state(sampler, 1)
    assert kept["position"] == 2


def test_tracker_needs_a_selection_sampler():
    with pytest.raises(TypeError, match="SelectionBatchSampler"):
        LoopCheckpoint(object())


def test_a_resumed_loop_restarting_at_epoch_zero_is_stopped_before_recording():
    """A plain loop resumed with ``for epoch in range(epochs)`` used to train the finished
    epochs again, silently; resume_epoch is where it must start."""
    x, y = random_problem(n=45, q=4, d=5)
    _, saved = run(D2ACESampler(y, 8, x, config=CONFIG, seed=2), y, 6, stop_at=(3, 2))
    resumed = D2ACESampler(y, 8, x, config=CONFIG, seed=2)
    tracker = LoopCheckpoint(resumed)
    tracker.load_state_dict(saved)
    resumed.set_epoch(0)
    batch = torch.tensor(next(iter(resumed)))
    with pytest.raises(RuntimeError, match="resumed at epoch 3"):
        tracker.update(batch, logits_for(batch, 0, 4), y[batch])
    with pytest.raises(RuntimeError, match="resumed at epoch 3"):
        tracker.step()


@pytest.mark.parametrize("damage", ["bare sampler state", "no consumed", "consumed past position", "negative"])
def test_a_damaged_tracker_state_is_a_clear_error_and_changes_nothing(damage):
    x, y = random_problem(n=45, q=4, d=5)
    _, saved = run(D2ACESampler(y, 8, x, config=CONFIG, seed=2), y, 6, stop_at=(3, 2))
    state = {
        "bare sampler state": saved["sampler"],
        "no consumed": {"sampler": saved["sampler"]},
        "consumed past position": {**saved, "consumed": 3},
        "negative": {**saved, "consumed": -1},
    }[damage]
    resumed = D2ACESampler(y, 8, x, config=CONFIG, seed=2)
    tracker = LoopCheckpoint(resumed)
    with pytest.raises(ValueError, match="LoopCheckpoint state"):
        tracker.load_state_dict(state)
    assert resumed.epoch == 0 and tracker.consumed == 0
