"""Checkpoints saved by earlier code still load: tests/data/sampler_state_format1.pt holds
sampler states (format 1) written at commit 6da4961, when the epoch plan was a dict, one
per batch mode (each stopped after two batches of an epoch under a budget of 0.7) and one
before any epoch, with the batches and importance weights that code went on to produce.
The current code must resume them to the same batches and save them back unchanged."""

import os

import pytest
import torch

from d2ace_ext.sampler import SelectionBatchSampler
from d2ace_ext.selectors.base import FIXED, PRUNED, SHUFFLE, WEIGHTED, Selector

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sampler_state_format1.pt")
MODES = (SHUFFLE, FIXED, WEIGHTED, PRUNED)


class PlanSelector(Selector):
    """Epoch e in mode MODES[e % 4], with fixed probabilities and pruning: the selector
    the fixture was written with (it keeps no state, so only the sampler's is tested)."""

    uses_records = False

    def __init__(self, n):
        self.n, self.q, self.device = n, None, torch.device("cpu")

    def batch_mode(self, epoch):
        return MODES[epoch % 4]

    def probabilities(self, epoch):
        p = torch.arange(1, self.n + 1, dtype=torch.float64)
        return p / p.sum()

    def pruned_weights(self, epoch):
        w = torch.full((self.n,), 2.0, dtype=torch.float64)
        w[::3] = 0.0
        return w


def fixture():
    return torch.load(FIXTURE, weights_only=True)


def sampler_of(name):
    return SelectionBatchSampler(PlanSelector(20), 4, seed=3, budget=1.0 if name == "no-plan" else 0.7, run_epochs=8)


def same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return type(a) is type(b) and a == b


NAMES = [f"{mode}-budget0.7" for mode in MODES] + ["no-plan"]


@pytest.mark.parametrize("name", NAMES)
def test_a_state_saved_by_the_dict_plan_code_resumes_to_the_same_batches(name):
    saved = fixture()
    sampler = sampler_of(name)
    sampler.load_state_dict(saved["states"][name])
    if name in saved["importance_weights"]:
        assert torch.equal(sampler.importance_weights(torch.arange(20)), saved["importance_weights"][name])
    assert list(sampler) == saved["remaining"][name]


@pytest.mark.parametrize("name", NAMES)
def test_a_state_saved_by_the_dict_plan_code_is_saved_back_unchanged(name):
    state = fixture()["states"][name]
    sampler = sampler_of(name)
    sampler.load_state_dict(state)
    again = sampler.state_dict()
    assert same(again, state)
    if name != "no-plan":
        assert again["plan"]["mode"] == name.split("-")[0]
        assert again["plan"]["samples"] == (13 if name.startswith(PRUNED) else 14)
