"""The fused record_step operator against VisitState.record_outputs' fallback (float32
and float64), over several epochs of random batches. Tolerance rule: support/fused_checks.py."""

from __future__ import annotations

import pytest
import torch

import d2ace_ext
from d2ace_ext import ops
from d2ace_ext.visits import VisitState

from support.fused_checks import devices
from support.fused_record_checks import assert_states_match, float64_state, random_batch, record_all, record_step

pytestmark = pytest.mark.skipif(not d2ace_ext.extension_loaded(), reason="d2ace_ext._C is not built")


@pytest.mark.parametrize("device", devices("record_step"))
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("per_epoch", [True, False], ids=["per_epoch", "per_visit"])
@pytest.mark.parametrize("flip_on", ["prediction", "probability"])
@pytest.mark.parametrize("seed", range(2))
def test_record_step_matches_fallback_over_epochs(device, from_logits, per_epoch, flip_on, seed):
    g = torch.Generator().manual_seed(1000 * seed + 17)
    n, q, n_t = 23 + 11 * seed, 6 + seed, 3 + seed
    flags = dict(
        from_logits=from_logits, per_epoch=per_epoch, flip_on=flip_on, flip_threshold=0.5, lambda2=[0.7, 0.35][seed]
    )
    native, fallback32 = VisitState(n, q, n_t, device), VisitState(n, q, n_t, device)
    reference64 = float64_state(n, q, n_t, device)
    # Epochs need not be consecutive; several batches per epoch, so many instances get a
    # second (third...) visit within one epoch, and some are first visited late.
    for epoch in (0, 1, 2, 4, 5, 7):
        for step in range(3):
            batch = random_batch(g, n, q, from_logits)
            record_all(native, fallback32, reference64, batch, epoch, **flags)
            assert_states_match(native, fallback32, reference64, f"epoch {epoch} step {step}")
    # The run reached every regime of the ring: unvisited-then-visited, partial and wrapped.
    pushes = native.pushes.cpu()
    assert int(pushes.max()) > n_t and int(pushes.min()) >= 1
    if per_epoch:
        assert int(pushes.max()) <= 6  # one entry per epoch, whatever the visits
    # flip_base serves epoch windows only: visit windows (a push on every visit) leave it
    # at 0 on both paths rather than moving a fifth row per record.
    for state in (native, fallback32, reference64):
        assert bool(state.flip_base.any()) == per_epoch
    assert bool(torch.isinf(native.loss).any()) == from_logits  # ±inf logits, wrong side: loss inf


@pytest.mark.parametrize("per_epoch", [True, False])
def test_record_step_flip_at_threshold_uses_float32_comparison(per_epoch):
    # A probability exactly float32(0.3) with threshold 0.3: neither the kernel nor
    # PyTorch's float32 path sees it above the threshold (it equals float32(0.3)), so the
    # flips agree exactly with the float32 fallback.
    n, q = 4, 3
    at = torch.tensor(0.3, dtype=torch.float32).item()
    seq = [torch.tensor([[0.9, at, 0.1]] * n), torch.full((n, q), at), torch.tensor([[0.1, 0.9, at]] * n)]
    native, fallback = VisitState(n, q, 3), VisitState(n, q, 3)
    flags = dict(per_epoch=per_epoch, flip_on="prediction", flip_threshold=0.3, lambda2=0.5)
    targets = torch.ones(n, q)
    for epoch, outputs in enumerate(seq):
        record_step(native, torch.arange(n), outputs, targets, epoch, from_logits=False, **flags)
        with d2ace_ext.force_fallback():
            fallback.record_outputs(torch.arange(n), outputs, targets, epoch, from_logits=False, **flags)
    for name in VisitState.TENSORS:
        assert torch.equal(getattr(native, name), getattr(fallback, name)), name
    # flips: epoch 1: [1, 0, 0]; epoch 2: [0, 1, 0] -> f̄ = 0.5 [0, 1, 0] + 0.25 [1, 0, 0]
    assert native.flip_average[0].tolist() == [0.25, 0.5, 0.0]


def test_record_helper_puts_its_tensors_on_the_state_device(monkeypatch):
    # The helper once built indices on the CPU for a CUDA state, so the first CUDA run of
    # gpu_check.sh stopped at "indices must be on cuda:0 like the state". A meta state
    # shows where the helper puts its tensors without a GPU.
    from support.fused_record_checks import record

    seen = {}
    monkeypatch.setattr(
        ops,
        "record_step",
        lambda *tensors, **kwargs: seen.update(
            indices=tensors[7].device, outputs=tensors[8].device, targets=tensors[9].device
        ),
    )
    record(VisitState(4, 2, 2, "meta"), [0, 2], torch.randn(2, 2), torch.ones(2, 2), 0)
    assert seen == {"indices": torch.device("meta"), "outputs": torch.device("meta"), "targets": torch.device("meta")}
