"""The fused native operators under torch.library.opcheck (fake kernels, schema, autograd
registration, aot dispatch) and traced by torch.compile. Edge cases and bad input:
test_fused_ops_edges.py."""

from __future__ import annotations

import pytest
import torch

import d2ace_ext
from d2ace_ext import ops
from d2ace_ext.sparse_rows import SparseRows
from d2ace_ext.visits import VisitState

from support.fused_checks import devices
from support.fused_record_checks import record

pytestmark = pytest.mark.skipif(not d2ace_ext.extension_loaded(), reason="d2ace_ext._C is not built")

# ---------------------------------------------------------------------------------------
# 5. torch.library.opcheck (fake kernels, schema, autograd registration, aot dispatch)
# ---------------------------------------------------------------------------------------


def record_args(device, from_logits, per_epoch, flip_on_probability, n=9, q=4, n_t=3, seed=0):
    """Fresh state tensors for every opcheck call: record_step mutates them."""
    g = torch.Generator().manual_seed(seed)
    state = VisitState(n, q, n_t, device)
    record(
        state,
        torch.arange(0, n, 2),
        torch.randn((n + 1) // 2, q, generator=g).to(device),
        torch.ones((n + 1) // 2, q, device=device),
        0,
    )
    outputs = torch.randn(5, q, generator=g) if from_logits else torch.rand(5, q, generator=g)
    tensors = [
        t.clone()
        for t in (
            state.window,
            state.pushes,
            state.last_epoch,
            state.loss,
            state.flip_average,
            state.flip_base,
            state.index_errors,
        )
    ]
    return (
        *tensors,
        torch.tensor([3, 0, 8, 5, 1], device=device),
        outputs.to(device),
        (torch.rand(5, q, generator=g) < 0.5).float().to(device),
        1 if per_epoch else 0,
        from_logits,
        per_epoch,
        flip_on_probability,
        0.5,
        0.7,
    )


@pytest.mark.parametrize("device", devices("record_step"))
@pytest.mark.parametrize("from_logits,per_epoch,on_probability", [(True, True, False), (False, False, True)])
def test_opcheck_record_step(device, from_logits, per_epoch, on_probability):
    torch.library.opcheck(
        torch.ops.d2ace_ext.record_step.default, record_args(device, from_logits, per_epoch, on_probability)
    )


@pytest.mark.parametrize("device", devices("score_visits"))
@pytest.mark.parametrize(
    "n,q,options", [(9, 4, (0.5, False, 0.0, False, False)), (5, 1, (0.3, True, 1e-8, True, True))]
)
def test_opcheck_score_visits(device, n, q, options):
    g = torch.Generator().manual_seed(n)
    state = VisitState(n, q, 3, device)
    record(
        state,
        torch.arange(n - 1),
        torch.randn(n - 1, q, generator=g).to(device),
        torch.ones(n - 1, q, device=device),
        0,
    )
    y = SparseRows.from_dense((torch.rand(n, q, generator=g) < 0.5).to(device))
    z = SparseRows.from_dense((torch.rand(n, q, generator=g) < 0.5).to(device))
    args = (
        state.window,
        state.pushes,
        state.loss,
        state.flip_average,
        y.row_ptr,
        y.cols,
        z.row_ptr,
        z.cols,
        state.workspace(),
        *options,
    )
    torch.library.opcheck(torch.ops.d2ace_ext.score_visits.default, args)


@pytest.mark.parametrize("device", devices("quantized_mixture"))
@pytest.mark.parametrize("n,pressure,p_beta,index_min", [(1, 8.0, 0.5, 0), (7, 100.0, 0.3, 1), (12, 1.0, 1.0, 0)])
def test_opcheck_quantized_mixture(device, n, pressure, p_beta, index_min):
    weights = torch.randn(2, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n)).to(device)
    weight_range = torch.stack(list(weights.aminmax(dim=1)), dim=1)
    torch.library.opcheck(
        torch.ops.d2ace_ext.quantized_mixture.default, (weights, weight_range, pressure, p_beta, index_min)
    )


# ---------------------------------------------------------------------------------------
# 8. torch.compile
# ---------------------------------------------------------------------------------------


def test_score_and_mixture_trace_under_torch_compile():
    # aot_eager runs the fake kernels while tracing and the real ones after, without codegen.
    n, q = 15, 3
    g = torch.Generator().manual_seed(0)
    state = VisitState(n, q, 3)
    for epoch in range(3):
        record(
            state, torch.arange(n), torch.randn(n, q, generator=g), (torch.rand(n, q, generator=g) < 0.5).float(), epoch
        )
    y = SparseRows.from_dense(torch.rand(n, q, generator=g) < 0.5)

    def pipeline(window, pushes, loss, flip, y_ptr, y_cols, workspace):
        v, c, delta, phi, weight_range = torch.ops.d2ace_ext.score_visits(
            window, pushes, loss, flip, y_ptr, y_cols, y_ptr, y_cols, workspace, 0.5, False, 0.0, False, False
        )
        return torch.ops.d2ace_ext.quantized_mixture(delta + phi, weight_range, 20.0, 0.4, 0)

    args = (state.window, state.pushes, state.loss, state.flip_average, y.row_ptr, y.cols)
    compiled = torch.compile(pipeline, backend="aot_eager", fullgraph=True)
    p, mixed = compiled(*args, torch.empty(2, n, q))
    p_eager, mixed_eager = pipeline(*args, torch.empty(2, n, q))
    assert torch.equal(p, p_eager) and torch.equal(mixed, mixed_eager)
    assert torch.allclose(mixed.sum(), torch.tensor(1.0, dtype=torch.float64))
    # the typed wrapper too (it reads the fallback switch and computes the range itself)
    wrapped = torch.compile(
        lambda w: ops.quantized_mixture(w, 20.0, 0.4, 1)[1] * 2.0, backend="aot_eager", fullgraph=True
    )
    w = torch.randn(2, n, dtype=torch.float64, generator=g)
    assert torch.equal(wrapped(w), ops.quantized_mixture(w, 20.0, 0.4, 1)[1] * 2.0)
