"""The CUDA kernels on the paths the small tests never reach (tests/support/fused_cuda_shapes.py
says which shape reaches which: wrapping grids, several columns per thread, the global
atomics beyond q = 2,048, one window slot), against the float64 pure-PyTorch pipeline
and the CPU op; and what only the CUDA path does: rows with an out-of-range index
skipped and reported at the next scoring, the determinism alert, one host
synchronisation per sampler step. Every case needs a GPU (benchmarks/gpu_check.sh runs
them with -k cuda); tolerance rule: support/fused_checks.py."""

from __future__ import annotations

import warnings

import pytest
import torch

import d2ace_ext
from d2ace_ext import D2ACEConfig, D2ACESampler, ops
from d2ace_ext.visits import VisitState

from support.fused_checks import assert_within_rule, has_cuda_kernel
from support.fused_cuda_shapes import KERNEL_PATH_SHAPES, random_batches, random_problem, sparse_rows
from support.fused_record_checks import assert_states_match, float64_state, record_all, record_step, state_tensors
from support.fused_score_checks import (
    check_probabilities,
    context_of,
    fallback_scores,
    fill_state_directly,
    native_scores,
    score_visits,
)

CUDA_USABLE = torch.cuda.is_available() and has_cuda_kernel("score_visits")
pytestmark = [
    pytest.mark.skipif(not d2ace_ext.extension_loaded(), reason="d2ace_ext._C is not built"),
    pytest.mark.skipif(not CUDA_USABLE, reason="needs a GPU and the extension's CUDA kernels"),
]

PRESETS = ("paper", "reference")


def preset_config(preset: str) -> D2ACEConfig:
    # The state's n_t is the shape's; a config asks for a window of 2 or more (Eq. 2), so
    # n_t = 1 is reachable at the op level only, and the options do not depend on it.
    return D2ACEConfig.preset(preset)


def record_flags(config: D2ACEConfig) -> dict:
    return dict(
        from_logits=True,
        per_epoch=config.window_unit == "epoch",
        flip_on=config.flip_on,
        flip_threshold=config.flip_threshold,
        lambda2=config.lambda2,
    )


def copy_state(state: VisitState, device) -> VisitState:
    other = VisitState(state.n, state.q, state.window_size, device)
    for name in VisitState.TENSORS:
        getattr(other, name).copy_(getattr(state, name))
    return other


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("shape", list(KERNEL_PATH_SHAPES))
def test_cuda_record_step_on_kernel_path_shapes(shape, preset):
    n, q, n_t, _ = KERNEL_PATH_SHAPES[shape]
    labels, _ = random_problem(n, q, seed=1)
    flags = record_flags(preset_config(preset))
    native, fallback32, reference64 = (
        VisitState(n, q, n_t, "cuda"),
        VisitState(n, q, n_t, "cuda"),
        float64_state(n, q, n_t, "cuda"),
    )
    on_cpu = VisitState(n, q, n_t)
    for epoch in range(n_t + 1):  # rows in both index sets are visited every epoch: their rings wrap
        for batch in random_batches(n, q, labels, index_seed=epoch % 2, logit_seed=epoch, batches=2):
            record_all(native, fallback32, reference64, batch, epoch, **flags)
            record_step(on_cpu, *batch, epoch, **flags)
    assert int(native.pushes.max()) > n_t
    assert_states_match(native, fallback32, reference64, f"{shape} CUDA")
    assert_states_match(on_cpu, fallback32, reference64, f"{shape} CPU op")


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("shape", list(KERNEL_PATH_SHAPES))
def test_cuda_score_visits_on_kernel_path_shapes(shape, preset):
    # One random state (empty, partial, full and wrapped rings), scored by the CUDA op
    # and by the CPU op; each must meet the rule against the float64 pipeline.
    n, q, n_t, _ = KERNEL_PATH_SHAPES[shape]
    labels, context = random_problem(n, q, seed=2)
    config = preset_config(preset)
    on_cpu = VisitState(n, q, n_t)
    fill_state_directly(on_cpu, torch.Generator().manual_seed(3))
    on_gpu = copy_state(on_cpu, "cuda")
    ctx_gpu, ctx_cpu = (
        context_of(*sparse_rows(labels, context, "cuda")),
        context_of(*sparse_rows(labels, context, "cpu")),
    )
    got = native_scores(on_gpu, ctx_gpu, config)
    got_cpu = native_scores(on_cpu, ctx_cpu, config)
    with d2ace_ext.force_fallback():  # the references, on the GPU
        ref = fallback_scores(on_gpu, ctx_gpu, config, torch.float64)
        f32 = fallback_scores(on_gpu, ctx_gpu, config, torch.float32)
    for key in ("v", "C", "delta", "phi", "range", "metrics"):
        assert_within_rule(f"{shape} {key} CUDA", got[key], f32[key], ref[key])
        assert_within_rule(f"{shape} {key} CPU op", got_cpu[key], f32[key], ref[key])
    w = (got["delta"] + got["phi"]).cpu()
    assert torch.equal(got["range"].cpu(), torch.stack(list(w.aminmax(dim=1)), dim=1))
    check_probabilities(got, ref, pressure=50.0, index_min=config.quant_index_min)


def test_cuda_record_step_skips_out_of_range_rows_and_the_next_scoring_raises():
    # The wrapper checks a CUDA step's indices with its values (one host read). The kernel
    # itself, reached through torch.ops, cannot raise without a synchronisation, and a
    # device assertion would break the CUDA context for the rest of the process: the row
    # is skipped and counted, and the next scoring (which synchronises anyway) raises.
    n, q = 6, 3
    state = VisitState(n, q, 2, "cuda")
    outputs, targets = torch.randn(3, q, device="cuda"), torch.ones(3, q, device="cuda")
    flags = dict(from_logits=True, per_epoch=True, flip_on="prediction", flip_threshold=0.5, lambda2=0.7)
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 6\), got values from 1 to 7"):
        record_step(state, torch.tensor([1, 7, 4], device="cuda"), outputs, targets, 0, **flags)
    assert state.pushes.tolist() == [0] * n
    for indices in ([1, 7, 4], [-1, 2, 9]):
        torch.ops.d2ace_ext.record_step(
            *state_tensors(state),
            torch.tensor(indices, device="cuda"),
            outputs,
            targets,
            0,
            True,
            True,
            False,
            0.5,
            0.7,
        )
    torch.cuda.synchronize()  # no device-side assertion fired
    assert state.index_errors.item() == 3
    assert state.pushes.tolist() == [0, 1, 1, 0, 1, 0]  # the rows in range were recorded
    ctx = context_of(*sparse_rows(torch.ones(n, q), torch.ones(n, q), "cuda"))
    options = dict(
        lambda1=0.5, loss_transform="identity", norm_eps=0.0, row_normalize=False, label_weights_in_phi=False
    )
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 6\); 3 batch row\(s\)"):
        score_visits(state, ctx, **options)
    assert state.index_errors.item() == 0
    delta = score_visits(state, ctx, **options)[2]  # reported once; the context still works
    assert bool(torch.isfinite(delta).all())


def test_cuda_ops_with_float_atomics_alert_under_deterministic_algorithms():
    state = VisitState(5, 2, 2, "cuda")
    ctx = context_of(*sparse_rows(torch.ones(5, 2), torch.ones(5, 2), "cuda"))
    weights = torch.rand(2, 5, dtype=torch.float64, device="cuda")
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(RuntimeError, match="score_visits_cuda does not have a deterministic implementation"):
            score_visits(
                state,
                ctx,
                lambda1=0.5,
                loss_transform="identity",
                norm_eps=0.0,
                row_normalize=False,
                label_weights_in_phi=False,
            )
        with pytest.raises(RuntimeError, match="quantized_mixture_cuda does not have a deterministic implementation"):
            ops.quantized_mixture(weights, 10.0, 0.5, 0)
    finally:
        torch.use_deterministic_algorithms(False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with pytest.warns(UserWarning, match="quantized_mixture_cuda"):
            ops.quantized_mixture(weights, 10.0, 0.5, 0)
    finally:
        torch.use_deterministic_algorithms(False)


def test_cuda_sampler_update_synchronises_once_per_step():
    g = torch.Generator().manual_seed(0)
    n, q = 200, 6
    labels = (torch.rand(n, q, generator=g) < 0.3).float()
    labels[0] = 1.0
    sampler = D2ACESampler(labels, 16, config=D2ACEConfig(num_neighbors=0), device="cuda")
    sampler.set_epoch(0)
    batches = iter(sampler)

    def step():
        index = torch.tensor(next(batches))
        sampler.update(index, torch.randn(len(index), q, generator=g).cuda(), labels[index].cuda())

    step()  # first call: kernels load, memory is allocated
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 1, syncs
