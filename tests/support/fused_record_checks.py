"""Building blocks of the record_step tests: random batches, a float64 VisitState, and
one step recorded by the kernel, the float32 fallback and the float64 fallback."""

from __future__ import annotations

import math

import torch

from d2ace_ext import D2ACEConfig, force_fallback, ops
from d2ace_ext.visits import VisitState

from .fused_checks import STATE_FLOATS, STATE_INTS, assert_within_rule


def state_tensors(state):
    """A VisitState's tensors in the order ops.record_step takes them."""
    return (
        state.window,
        state.pushes,
        state.last_epoch,
        state.loss,
        state.flip_average,
        state.flip_base,
        state.index_errors,
    )


def record_step(state, indices, outputs, targets, epoch, **flags):
    """ops.record_step on a VisitState's tensors."""
    ops.record_step(*state_tensors(state), indices, outputs, targets, epoch, **flags)


def float64_state(n, q, n_t, device="cpu"):
    """A VisitState whose float tensors are float64: the pure-PyTorch record in float64."""
    state = VisitState(n, q, n_t, device)
    for name in STATE_FLOATS:
        setattr(state, name, getattr(state, name).double())
    return state


def random_batch(g, n, q, from_logits, special_fraction=0.15):
    """indices (b,) distinct in random order, outputs (b, q) float32, targets (b, q) 0/1.

    Logits are kept at least 1e-2 away from 0 so that σ(x) is never within rounding of
    the 0.5 threshold (a flip there would differ between float32 and float64 for a
    reason that is not the kernel's); probabilities are float32 values, identical in
    every precision. Saturated values are sprinkled in: logits ±30, ±100, ±inf;
    probabilities exactly 0, 1 and 0.5.
    """
    b = int(torch.randint(1, n + 1, (1,), generator=g))
    indices = torch.randperm(n, generator=g)[:b]
    targets = (torch.rand(b, q, generator=g) < 0.4).float()
    if from_logits:
        outputs = torch.randn(b, q, generator=g) * 4
        outputs = outputs + torch.where(outputs >= 0, 1e-2, -1e-2)
        specials = torch.tensor([30.0, -30.0, 100.0, -100.0, math.inf, -math.inf])
    else:
        outputs = torch.rand(b, q, generator=g)
        specials = torch.tensor([0.0, 1.0, 0.5])
    mask = torch.rand(b, q, generator=g) < special_fraction
    pick = torch.randint(0, specials.numel(), (b, q), generator=g)
    outputs = torch.where(mask, specials[pick], outputs)
    return indices, outputs, targets


def record_all(native, fallback32, reference64, batch, epoch, **flags):
    indices, outputs, targets = batch
    device = native.device
    record_step(native, indices.to(device), outputs.to(device), targets.to(device), epoch, **flags)
    from_logits = flags["from_logits"]
    options = {name: flags[name] for name in ("per_epoch", "flip_on", "flip_threshold", "lambda2")}
    with force_fallback():
        fallback32.record_outputs(
            indices.to(device), outputs.to(device), targets.to(device), epoch, from_logits=from_logits, **options
        )
        reference64.record_outputs(
            indices.to(device),
            outputs.to(device).double(),
            targets.to(device).double(),
            epoch,
            from_logits=from_logits,
            **options,
        )


def assert_states_match(native, fallback32, reference64, where=""):
    for name in STATE_INTS:
        assert torch.equal(getattr(native, name).cpu(), getattr(fallback32, name).cpu()), f"{name} {where}"
        assert torch.equal(getattr(native, name).cpu(), getattr(reference64, name).cpu()), f"{name} {where}"
    for name in STATE_FLOATS:
        got = getattr(native, name)
        assert got.dtype == torch.float32 and got.is_contiguous()
        assert_within_rule(f"{name} {where}", got, getattr(fallback32, name), getattr(reference64, name))


def record(state, indices, outputs, targets, epoch, config=None, from_logits=True):
    """One record_step through ops (kernel or fallback, as switched) with a preset's flags
    (default: the paper preset); indices, outputs and targets go to the state's device."""
    config = config or D2ACEConfig.preset("paper")
    device = state.device
    record_step(
        state,
        torch.as_tensor(indices, device=device),
        outputs.to(device),
        targets.to(device),
        epoch,
        from_logits=from_logits,
        per_epoch=config.window_unit == "epoch",
        flip_on=config.flip_on,
        flip_threshold=config.flip_threshold,
        lambda2=config.lambda2,
    )
