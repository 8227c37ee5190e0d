"""Checkpoints are all-or-nothing: a corrupt or incomplete state raises an error naming
the field and leaves the sampler exactly as it was."""

import copy
import math

import pytest
import torch

from d2ace_ext import D2ACEConfig, D2ACESampler
from d2ace_ext.factory import make_sampler

from support.problems import drive, random_problem

CONFIG = D2ACEConfig(num_epochs=6, warmup_epochs=1, t_start=1, t_end=5, num_neighbors=3)


def trained(seed=0, epochs=2, mid_epoch=True):
    x, y = random_problem(n=30, q=4, seed=seed)
    sampler = D2ACESampler(y, 8, x, config=CONFIG, seed=5)
    drive(sampler, y, epochs, seed=seed)
    if mid_epoch:  # stop inside a weighted epoch, so the plan holds probabilities
        sampler.set_epoch(epochs)
        batches = iter(sampler)
        batch = next(batches)
        index = torch.tensor(batch)
        sampler.update(index, torch.randn(len(batch), 4), y[index])
    return sampler, y


def same_state(a: dict, b: dict) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def test_a_state_missing_epoch_or_position_changes_nothing():
    source, _ = trained(seed=1)
    target, _ = trained(seed=2, mid_epoch=False)
    before = target.state_dict()
    for missing in ("epoch", "position", "plan", "selector"):
        state = source.state_dict()
        del state[missing]
        with pytest.raises(ValueError, match=missing):
            target.load_state_dict(state)
        assert same_state(target.state_dict(), before), missing


def corrupt(name):
    """(field named in the error, function that corrupts a saved state in place)."""

    def plan(key, value):
        return lambda s: s["plan"].__setitem__(key, value)

    def visits(key, value):
        def apply(s):
            s["selector"]["visits"][key] = s["selector"]["visits"][key].clone().fill_(value)

        return apply

    return {
        "short probabilities": (
            "plan.probabilities",
            plan("probabilities", torch.full((29,), 1 / 29, dtype=torch.float64)),
        ),
        "long probabilities": (
            "plan.probabilities",
            plan("probabilities", torch.full((31,), 1 / 31, dtype=torch.float64)),
        ),
        "NaN probabilities": (
            "plan.probabilities",
            plan("probabilities", torch.full((30,), math.nan, dtype=torch.float64)),
        ),
        "unknown mode": ("plan.mode", plan("mode", "sorted")),
        "bad generator": ("plan.generator", plan("generator", torch.zeros(3, dtype=torch.uint8))),
        "negative position": ("position", lambda s: s.__setitem__("position", -1)),
        "position past the epoch": ("position", lambda s: s.__setitem__("position", 5)),
        "float position": ("position", lambda s: s.__setitem__("position", 1.5)),
        "negative epoch": ("epoch", lambda s: s.__setitem__("epoch", -1)),
        "NaN window": ("window", visits("window", math.nan)),
        "window above 1": ("window", visits("window", 2.0)),
        "infinite flip EMA": ("flip_average", visits("flip_average", math.inf)),
        "NaN loss": ("loss", visits("loss", math.nan)),
        "negative pushes": ("pushes", visits("pushes", -3)),
    }[name]


@pytest.mark.parametrize(
    "name",
    [
        "short probabilities",
        "long probabilities",
        "NaN probabilities",
        "unknown mode",
        "bad generator",
        "negative position",
        "position past the epoch",
        "float position",
        "negative epoch",
        "NaN window",
        "window above 1",
        "infinite flip EMA",
        "NaN loss",
        "negative pushes",
    ],
)
def test_a_corrupt_saved_state_is_rejected_by_field_and_changes_nothing(name):
    source, _ = trained(seed=1)
    target, _ = trained(seed=2)
    before = target.state_dict()
    field, damage = corrupt(name)
    state = copy.deepcopy(source.state_dict())
    damage(state)
    with pytest.raises(ValueError, match=field):
        target.load_state_dict(state)
    assert same_state(target.state_dict(), before)


def test_a_corrupt_order_of_an_ordered_epoch_is_rejected():
    x, y = random_problem(n=30, q=4, seed=3)
    sampler = D2ACESampler(y, 8, x, config=CONFIG, seed=5)
    sampler.set_epoch(0)
    next(iter(sampler))  # a shuffled warm-up epoch, started
    target = D2ACESampler(y, 8, x, config=CONFIG, seed=5)
    before = target.state_dict()
    for order, why in (
        (torch.arange(29), "order"),
        (torch.zeros(30, dtype=torch.int64), "permutation"),
        (torch.arange(30).float(), "order"),
    ):
        state = copy.deepcopy(sampler.state_dict())
        state["plan"]["order"] = order
        with pytest.raises(ValueError, match=why):
            target.load_state_dict(state)
        assert same_state(target.state_dict(), before)


def test_a_valid_state_still_round_trips_mid_epoch():
    source, y = trained(seed=4)
    state = copy.deepcopy(source.state_dict())
    resumed, _ = trained(seed=9, mid_epoch=False)
    resumed.load_state_dict(state)
    assert list(resumed) == list(source)


def test_baseline_selector_states_reject_nan_but_keep_infinite_losses():
    x, y = random_problem(n=30, q=4, seed=5)
    sampler = make_sampler("hard_imb", y, 8, x, seed=1, num_epochs=6, warmup_epochs=1)
    drive(sampler, y, 2)
    state = sampler.state_dict()
    state["selector"]["loss"][0] = math.inf  # a saturated wrong prediction: legal
    sampler.load_state_dict(copy.deepcopy(state))
    state["selector"]["loss"][1] = math.nan
    with pytest.raises(ValueError, match="loss"):
        sampler.load_state_dict(state)


@pytest.mark.parametrize("source", ["d2ace", "active", "infobatch", "balance"])
def test_a_random_sampler_refuses_another_selector_s_state_and_changes_nothing(source):
    # Random keeps no state, so its selector once took any saved state, and the sampler
    # then took over the other run's epoch plan: a weighted D2ACE epoch's draws, or an
    # InfoBatch epoch without its pruned instances, from a "random" sampler.
    x, y = random_problem(n=30, q=4, seed=6)
    options = {"num_neighbors": 3} if source == "d2ace" else {}
    if source in ("d2ace", "active"):
        options.update(num_epochs=6, warmup_epochs=1)
    other = make_sampler(source, y, 8, x, seed=5, **options)
    drive(other, y, 2)
    other.set_epoch(2)
    next(iter(other))  # mid-epoch: the state holds this epoch's plan
    target = make_sampler("random", y, 8, x, seed=5)
    drive(target, y, 1)
    before = target.state_dict()
    with pytest.raises(ValueError, match="RandomSelector keeps no state.*saved by another selector"):
        target.load_state_dict(other.state_dict())
    assert same_state(target.state_dict(), before)
    with pytest.raises(ValueError, match="RandomSelector keeps no state"):
        target.selector.load_state_dict(None)
    target.load_state_dict(make_sampler("random", y, 8, seed=5).state_dict())  # its own kind still loads


def test_a_baseline_state_of_another_config_names_the_differing_field():
    from d2ace_ext.selectors import ActiveSelector

    y = (torch.rand(10, 3, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    saved = ActiveSelector(y, warmup_epochs=2).state_dict()
    with pytest.raises(
        ValueError,
        match=r"^ActiveSelector state was saved with a different config: warmup_epochs saved 2, here 3; "
        r"build the selector with the saved run's options$",
    ):
        ActiveSelector(y, warmup_epochs=3).load_state_dict(saved)
