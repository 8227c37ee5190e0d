"""Who checks what (docs/fidelity.md): the sampler checks the form of a step, the record
path its values. Whichever path holds the step (the CPU kernel, the pure-PyTorch path,
a baseline selector, a float64 step checked before its cast), the same bad step raises
the same error, class and message, before any state changes; and D2ACE's pure-PyTorch
path is the pure-PyTorch scorer, exactly."""

from __future__ import annotations

import math

import pytest
import torch

import d2ace_ext
from d2ace_ext import D2ACEConfig, D2ACESampler, force_fallback, make_sampler
from d2ace_ext.scoring import score_epoch

from support.fused_checks import devices

pytestmark = pytest.mark.skipif(not d2ace_ext.extension_loaded(), reason="d2ace_ext._C is not built")

N, Q, BATCH = 24, 4, 6
CONFIG = D2ACEConfig(num_neighbors=0, warmup_epochs=1, num_epochs=4)


def problem():
    g = torch.Generator().manual_seed(3)
    labels = (torch.rand(N, Q, generator=g) < 0.4).float()
    labels[0] = 1.0
    return labels, g


def bad_steps(labels, g):
    """name: (indices, outputs, targets, kind) of a step with one bad value."""
    index = torch.tensor([2, 5, 7, 11])
    logits = torch.randn(4, Q, generator=g)
    probs = torch.rand(4, Q, generator=g)
    targets = labels[index].clone()
    nan_logits = logits.clone()
    nan_logits[1, 2] = math.nan
    outside = probs.clone()
    outside[3, 0] = 1.5
    half = targets.clone()
    half[0, 1] = 0.5
    nan_targets = targets.clone()
    nan_targets[2, 3] = math.nan
    wrong = targets.clone()
    wrong[1] = 1.0 - wrong[1]
    wrong[3] = 1.0 - wrong[3]
    return {
        "NaN logits": (index, nan_logits, targets, "logits"),
        "probabilities outside [0, 1]": (index, outside, targets, "probs"),
        "targets of 0.5": (index, logits, half, "logits"),
        "NaN targets": (index, logits, nan_targets, "logits"),
        "targets of other instances": (index, logits, wrong, "logits"),
    }


def tensors_of(state, prefix=""):
    """Every tensor of a (nested) state dict, by path, cloned."""
    found = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            found[prefix + key] = value.clone()
        elif isinstance(value, dict):
            found.update(tensors_of(value, f"{prefix}{key}."))
    return found


def error_of(sampler, step, dtype=torch.float32):
    index, outputs, targets, kind = step
    before = tensors_of(sampler.selector.state_dict())
    assert before, "nothing to compare"
    with pytest.raises((TypeError, ValueError, IndexError)) as caught:
        sampler.update(index, outputs.to(dtype), targets, kind=kind)
    after = tensors_of(sampler.selector.state_dict())
    assert all(torch.equal(before[name], after[name]) for name in before), "a rejected step changed the state"
    return type(caught.value), str(caught.value)


def test_every_record_path_rejects_a_bad_step_with_the_same_error():
    labels, g = problem()
    for name, step in bad_steps(labels, g).items():
        native = D2ACESampler(labels, BATCH, config=CONFIG)
        errors = {"CPU kernel": error_of(native, step)}
        errors["float64, checked before the cast"] = error_of(native, step, torch.float64)
        with force_fallback():
            errors["pure PyTorch"] = error_of(D2ACESampler(labels, BATCH, config=CONFIG), step)
        errors["baseline selector"] = error_of(make_sampler("ml_unc", labels, BATCH, num_epochs=4), step)
        assert len(set(errors.values())) == 1, (name, errors)
        assert errors["CPU kernel"][0] is ValueError, (name, errors)
    # the message names what is wrong, and for foreign targets the instances
    wrong = error_of(D2ACESampler(labels, BATCH, config=CONFIG), bad_steps(labels, g)["targets of other instances"])
    assert "at instance(s) 5, 11:" in wrong[1] and "IndexedDataset" in wrong[1]


@pytest.mark.parametrize("device", devices("record_step"))
def test_a_bad_step_on_each_device_raises_the_cpu_kernels_error(device):
    # On CUDA the kernel cannot raise without a synchronisation: ops.record_step checks the
    # step with one host read before the launch, and must say what the CPU kernel says.
    labels, g = problem()
    for name, (index, outputs, targets, kind) in bad_steps(labels, g).items():
        expected = error_of(D2ACESampler(labels, BATCH, config=CONFIG), (index, outputs, targets, kind))
        here = D2ACESampler(labels.to(device), BATCH, config=CONFIG, device=device)
        assert error_of(here, (index, outputs.to(device), targets.to(device), kind)) == expected, name


def test_the_sampler_no_longer_asks_the_selector_who_checks():
    # One rule, not a question per selector: the sampler checks the form of every step and
    # hands every selector the step in the dtypes given.
    from d2ace_ext.selectors.base import Selector

    assert not hasattr(Selector, "checks_outputs")
    labels, g = problem()
    sampler = D2ACESampler(labels, BATCH, config=CONFIG)
    seen = []
    real = sampler.selector.record_outputs
    sampler.selector.record_outputs = lambda *args: seen.append(args) or real(*args)
    index = torch.tensor([1, 3])
    sampler.update(index, torch.randn(2, Q, dtype=torch.float64), labels[index].bool())
    ((indices, outputs, targets, kind, epoch),) = seen
    assert outputs.dtype == torch.float64 and targets.dtype == torch.bool and kind == "logits"
    assert int(sampler.selector.visits.pushes.sum()) == 2


@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_d2ace_pure_path_is_the_pure_pytorch_scorer_exactly(preset):
    # The fused ops' pure-PyTorch definitions (ops.score_visits, ops.quantized_mixture) are
    # the scorer of scoring.py, number for number: the fallback decision moved into ops.py
    # without changing what the pure path computes.
    labels, g = problem()
    config = D2ACEConfig.preset(preset, num_neighbors=3, warmup_epochs=1, num_epochs=4)
    features = torch.rand(N, 5, generator=g)
    with force_fallback():
        sampler = D2ACESampler(labels, BATCH, features, config=config)
        for epoch in range(3):
            index = torch.randperm(N, generator=g)
            for start in range(0, N, BATCH):
                rows = index[start : start + BATCH]
                sampler.update(rows, torch.randn(len(rows), Q, generator=g) * 3, labels[rows])
        report = sampler.selector.score(3)
        unc, hard = sampler.selector.visits.metrics(config.lambda1, config.loss_transform)
        expected = score_epoch(unc, hard, sampler.selector.context, config, 3)
    assert torch.equal(report.probabilities, expected.probabilities)
    for metric in ("uncertainty", "hardness"):
        for part in ("label_weights", "correlation", "delta", "phi", "probabilities"):
            assert torch.equal(getattr(getattr(report, metric), part), getattr(getattr(expected, metric), part)), (
                metric,
                part,
            )
