"""Typed entry points of the native operators, each with its pure-PyTorch definition.

Every wrapper takes tensors and decides the path itself: ``torch.ops.d2ace_ext.<op>``
when the extension is loaded, the fallback is not forced (:func:`d2ace_ext.force_fallback`,
or ``D2ACE_EXT_FORCE_FALLBACK=1`` at import) and the extension has a kernel for the
tensors' device (CPU always; CUDA when built with CUDA); the pure-PyTorch definition
otherwise. Both paths raise the same errors for bad values (docs/fidelity.md, "Who checks
what").

The fake kernels registered here check the dtypes, shapes and options the C++ checks
(csrc/checks.cpp), with the same exception types and messages, and give the output
shapes without computing, for ``torch.compile`` and ``torch.library.opcheck``.
"""

from __future__ import annotations

import torch

from . import functional
from ._extension import extension_loaded, native_has_cuda, use_native
from .scoring import LabelContext, quantised_mixture, score_records
from .validation import check_step

_FLIP_ON = ("prediction", "probability")
_LOSS_TRANSFORMS = ("identity", "two_minus_exp")

# ---------------------------------------------------------------------------------------
# Fake kernels: the argument checks of csrc/checks.cpp, for tensors without data.
# ---------------------------------------------------------------------------------------

#: c10's names of the dtypes, as the C++ messages print them
_C10_DTYPE_NAMES = {
    torch.float32: "Float",
    torch.float64: "Double",
    torch.float16: "Half",
    torch.bfloat16: "BFloat16",
    torch.int64: "Long",
    torch.int32: "Int",
    torch.int16: "Short",
    torch.int8: "Char",
    torch.uint8: "Byte",
    torch.bool: "Bool",
}


def _dtype_name(dtype: torch.dtype) -> str:
    return _C10_DTYPE_NAMES.get(dtype, str(dtype))


def _sizes(values) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


# Float options are printed with :g, as C++'s ostream prints a double ("0", not "0.0").


def _expect_tensor(t, op: str, name: str, dtype: torch.dtype | None, shape, device) -> None:
    """expect_tensor of csrc/checks.cpp: dtype (TypeError), device and shape (ValueError).
    ``dtype=None``: any dtype (a wrapper that casts the tensor before the op)."""
    torch._check_type(
        dtype is None or t.dtype == dtype,
        lambda: f"{op}: {name} must have dtype {_dtype_name(dtype)}, got {_dtype_name(t.dtype)}",
    )
    torch._check_value(t.device == device, lambda: f"{op}: {name} must be on {device} like the state, got {t.device}")
    torch._check_value(
        t.dim() == len(shape) and all(e < 0 or t.shape[d] == e for d, e in enumerate(shape)),
        lambda: f"{op}: {name} has shape {_sizes(t.shape)}, expected {_sizes(shape)} (-1 = any)",
    )


def _expect_state(t, op: str, name: str, dtype: torch.dtype, shape, device) -> None:
    _expect_tensor(t, op, name, dtype, shape, device)
    torch._check_value(t.is_contiguous(), lambda: f"{op}: state tensor {name} must be contiguous")


def _check_record_step_arguments(
    window,
    pushes,
    last_epoch,
    loss,
    flip_average,
    flip_base,
    index_errors,
    indices,
    outputs,
    targets,
    flip_threshold,
    lambda2,
    labels,
    state_dtype: torch.dtype = torch.float32,
    step_dtype: torch.dtype | None = torch.float32,
) -> None:
    """The op's checks. The wrapper's pure-PyTorch path makes them too, with
    ``state_dtype`` the window's (a compact or float64 state) and ``step_dtype=None``
    (it takes outputs and targets in any dtype), so both paths refuse the same calls."""
    op = "record_step"
    torch._check_value(window.dim() == 3, lambda: f"{op}: window must be (n, n_t, q), got shape {_sizes(window.shape)}")
    n, n_t, q = window.shape
    device = window.device
    torch._check_value(n_t >= 1, lambda: f"{op}: window must hold at least one slot per instance")
    _expect_state(window, op, "window", state_dtype, (n, n_t, q), device)
    _expect_state(pushes, op, "pushes", torch.int64, (n,), device)
    _expect_state(last_epoch, op, "last_epoch", torch.int64, (n,), device)
    for name, t in (("loss", loss), ("flip_average", flip_average), ("flip_base", flip_base)):
        _expect_state(t, op, name, state_dtype, (n, q), device)
    _expect_state(index_errors, op, "index_errors", torch.int64, (1,), device)
    _expect_tensor(indices, op, "indices", torch.int64, (-1,), device)
    b = indices.shape[0]
    _expect_tensor(outputs, op, "outputs", step_dtype, (b, q), device)
    _expect_tensor(targets, op, "targets", step_dtype, (b, q), device)
    if labels is not None:
        _expect_tensor(labels, op, "labels", torch.bool, (n, q), device)
    torch._check_value(
        0.0 < flip_threshold < 1.0, lambda: f"{op}: flip_threshold must lie in (0, 1), got {flip_threshold:g}"
    )
    torch._check_value(0.0 < lambda2 <= 1.0, lambda: f"{op}: lambda2 must lie in (0, 1], got {lambda2:g}")


def _check_score_visits_arguments(
    window,
    pushes,
    loss,
    flip_average,
    label_ptr,
    label_cols,
    context_ptr,
    context_cols,
    workspace,
    lambda1,
    norm_eps,
    state_dtype: torch.dtype = torch.float32,
) -> None:
    """The op's checks; the wrapper makes them on every path, with ``state_dtype`` the
    window's (the pure-PyTorch path also scores a compact or float64 state) and
    ``workspace=None`` where it makes the workspace itself."""
    op = "score_visits"
    torch._check_value(window.dim() == 3, lambda: f"{op}: window must be (n, n_t, q), got shape {_sizes(window.shape)}")
    n, n_t, q = window.shape
    device = window.device
    torch._check_value(
        n >= 1 and n_t >= 1 and q >= 1, lambda: f"{op}: window must have n, n_t, q >= 1, got {_sizes(window.shape)}"
    )
    _expect_tensor(window, op, "window", state_dtype, (n, n_t, q), device)
    _expect_tensor(pushes, op, "pushes", torch.int64, (n,), device)
    _expect_tensor(loss, op, "loss", state_dtype, (n, q), device)
    _expect_tensor(flip_average, op, "flip_average", state_dtype, (n, q), device)
    _expect_tensor(label_ptr, op, "label_ptr", torch.int64, (n + 1,), device)
    _expect_tensor(label_cols, op, "label_cols", torch.int64, (-1,), device)
    _expect_tensor(context_ptr, op, "context_ptr", torch.int64, (n + 1,), device)
    _expect_tensor(context_cols, op, "context_cols", torch.int64, (-1,), device)
    if workspace is not None:
        _expect_state(workspace, op, "workspace", torch.float32, (2, n, q), device)
    torch._check_value(0.0 <= lambda1 <= 1.0, lambda: f"{op}: lambda1 must lie in [0, 1], got {lambda1:g}")
    torch._check_value(norm_eps >= 0.0, lambda: f"{op}: norm_eps must be >= 0, got {norm_eps:g}")


def _check_quantized_mixture_arguments(weights, weight_range, pressure, p_beta, index_min) -> None:
    op = "quantized_mixture"
    torch._check_value(
        weights.dim() == 2 and weights.shape[0] == 2 and weights.shape[1] >= 1,
        lambda: (
            f"{op}: weights must be (2, n) with n >= 1 (rows: uncertainty, hardness), got shape {_sizes(weights.shape)}"
        ),
    )
    _expect_tensor(weights, op, "weights", torch.float64, (2, -1), weights.device)
    if weight_range is not None:  # the wrapper computes it when not given
        _expect_tensor(weight_range, op, "weight_range", torch.float64, (2, 2), weights.device)
    torch._check_value(pressure >= 1.0, lambda: f"{op}: pressure must be >= 1, got {pressure:g}")
    torch._check_value(0.0 <= p_beta <= 1.0, lambda: f"{op}: p_beta must lie in [0, 1], got {p_beta:g}")
    torch._check_value(index_min in (0, 1), lambda: f"{op}: index_min must be 0 or 1, got {index_min}")


if extension_loaded():

    @torch.library.register_fake("d2ace_ext::binary_entropy")
    def _binary_entropy_fake(probs: torch.Tensor) -> torch.Tensor:
        torch._check_type(
            probs.is_floating_point(),
            lambda: f"binary_entropy: probs must be a floating-point tensor, got {_dtype_name(probs.dtype)}",
        )
        return torch.empty_like(probs, memory_format=torch.contiguous_format)

    @torch.library.register_fake("d2ace_ext::record_step")
    def _record_step_fake(
        window,
        pushes,
        last_epoch,
        loss,
        flip_average,
        flip_base,
        index_errors,
        indices,
        outputs,
        targets,
        epoch,
        from_logits,
        per_epoch,
        flip_on_probability,
        flip_threshold,
        lambda2,
        labels=None,
    ) -> None:
        _check_record_step_arguments(
            window,
            pushes,
            last_epoch,
            loss,
            flip_average,
            flip_base,
            index_errors,
            indices,
            outputs,
            targets,
            flip_threshold,
            lambda2,
            labels,
        )
        return None

    @torch.library.register_fake("d2ace_ext::score_visits")
    def _score_visits_fake(
        window,
        pushes,
        loss,
        flip_average,
        label_ptr,
        label_cols,
        context_ptr,
        context_cols,
        workspace,
        lambda1,
        two_minus_exp,
        norm_eps,
        row_normalize,
        label_weights_in_phi,
    ):
        _check_score_visits_arguments(
            window,
            pushes,
            loss,
            flip_average,
            label_ptr,
            label_cols,
            context_ptr,
            context_cols,
            workspace,
            lambda1,
            norm_eps,
        )
        n, _, q = window.shape
        make = lambda *shape: window.new_empty(shape, dtype=torch.float64)  # noqa: E731
        return make(2, q), make(2, q, q), make(2, n), make(2, n), make(2, 2)

    @torch.library.register_fake("d2ace_ext::quantized_mixture")
    def _quantized_mixture_fake(weights, weight_range, pressure, p_beta, index_min):
        _check_quantized_mixture_arguments(weights, weight_range, pressure, p_beta, index_min)
        return torch.empty_like(weights), weights.new_empty(weights.shape[1:])


# ---------------------------------------------------------------------------------------
# The wrappers.
# ---------------------------------------------------------------------------------------


def _wrapper_checks() -> bool:
    """Whether a wrapper makes its op's argument checks itself: always, except while
    torch.compile traces it (Dynamo cannot trace the checks' message closures; the op's
    fake kernel makes the same checks while tracing)."""
    return not torch.compiler.is_compiling()


def native_for(tensor: torch.Tensor) -> bool:
    """Whether the native kernels run for tensors on ``tensor``'s device."""
    if not use_native():
        return False
    kind = tensor.device.type
    return kind == "cpu" or (kind == "cuda" and native_has_cuda())


def binary_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Eq. 1 in bits, elementwise: (...,) -> (...,), same dtype; 0·log 0 = 0."""
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise TypeError(
            f"binary_entropy: probs must be a floating-point tensor, got {type(probs).__name__}"
            + (f" of dtype {probs.dtype}" if isinstance(probs, torch.Tensor) else "")
        )
    if native_for(probs):
        return torch.ops.d2ace_ext.binary_entropy.default(probs)
    return functional.binary_entropy(probs)


def record_step(
    window: torch.Tensor,
    pushes: torch.Tensor,
    last_epoch: torch.Tensor,
    loss: torch.Tensor,
    flip_average: torch.Tensor,
    flip_base: torch.Tensor,
    index_errors: torch.Tensor,
    indices: torch.Tensor,
    outputs: torch.Tensor,
    targets: torch.Tensor,
    epoch: int,
    *,
    from_logits: bool,
    per_epoch: bool,
    flip_on: str,
    flip_threshold: float,
    lambda2: float,
    labels: torch.Tensor | None = None,
) -> None:
    """Record one training step into the state tensors, in place (one launch natively).

    State (as :class:`~d2ace_ext.visits.VisitState` holds it): window (n, n_t, q); pushes,
    last_epoch (n,) int64; loss, flip_average, flip_base (n, q); index_errors (1,) int64.
    The kernels take a float32 state; a compact (float16 / bfloat16) one is recorded by
    the pure-PyTorch definition, in float32 arithmetic.
    indices (b,) int64; outputs (b, q) logits (``from_logits``) or probabilities, any
    floating dtype; targets (b, q) 0/1; labels (n, q) bool, the training labels, optional.
    Computes the probabilities and per-label BCE, the flip EMA (Eq. 4) and the window
    write; outputs are recorded in the state's precision.

    Every value of the step is checked before the state changes, on every path, with
    validation.py's errors: indices in [0, n) (IndexError) and distinct, no NaN outputs,
    probabilities in [0, 1], 0/1 targets, and targets equal to ``labels`` at the indices
    (ValueError). The CPU kernel checks float32 values itself, in its first pass; for
    other dtypes (checked before the cast, which could round a bad value into range), on
    CUDA (whose kernel cannot raise without a synchronisation) and on the pure-PyTorch
    path this wrapper does, with one host read. An out-of-range index that still reaches
    the CUDA kernel through ``torch.ops`` skips its row and is counted in
    ``index_errors``; the next :func:`score_visits` given that counter raises.
    The op's argument checks (dtypes, shapes, options: csrc/checks.cpp) hold on every
    path as well, with the state's tensors in the window's dtype: indices int64, labels
    bool, 0 < flip_threshold < 1, 0 < lambda2 <= 1.
    """
    if flip_on not in _FLIP_ON:
        raise ValueError(f"flip_on must be one of {_FLIP_ON}, got {flip_on!r}")
    kind = "logits" if from_logits else "probs"
    native = native_for(window) and window.dtype == torch.float32  # a compact state: the pure-PyTorch path
    kernel_checks = (
        native and window.device.type == "cpu" and outputs.dtype == torch.float32 and targets.dtype == torch.float32
    )
    if not kernel_checks and _wrapper_checks():  # the op's argument checks, which the CPU kernel makes itself
        _check_record_step_arguments(
            window,
            pushes,
            last_epoch,
            loss,
            flip_average,
            flip_base,
            index_errors,
            indices,
            outputs,
            targets,
            flip_threshold,
            lambda2,
            labels,
            state_dtype=window.dtype,
            step_dtype=None,
        )
    if not kernel_checks:  # the step's values, which the CPU kernel checks itself
        check_step(outputs, kind, targets, labels, indices, n=window.shape[0])
    if native:
        if not kernel_checks:
            outputs, targets = outputs.to(torch.float32), targets.to(torch.float32)
        torch.ops.d2ace_ext.record_step.default(
            window,
            pushes,
            last_epoch,
            loss,
            flip_average,
            flip_base,
            index_errors,
            indices,
            outputs,
            targets,
            int(epoch),
            bool(from_logits),
            bool(per_epoch),
            flip_on == "probability",
            float(flip_threshold),
            float(lambda2),
            labels,
        )
        return
    compute = torch.promote_types(window.dtype, torch.float32)  # a compact state computes in float32
    probs, losses = functional.probabilities_and_losses(outputs.to(compute), targets.to(compute), kind)
    functional.record_visits(
        window,
        pushes,
        last_epoch,
        loss,
        flip_average,
        flip_base,
        indices,
        probs,
        losses,
        epoch,
        per_epoch=per_epoch,
        flip_on=flip_on,
        flip_threshold=flip_threshold,
        lambda2=lambda2,
    )


def raise_skipped_rows(index_errors: torch.Tensor, n: int) -> None:
    """Raise IndexError if the CUDA record_step skipped rows for out-of-range indices
    since the last call, and reset the count. On CUDA one synchronisation; on the CPU,
    whose kernel raises at once, nothing to read."""
    if index_errors.device.type == "cpu":
        return
    skipped = int(index_errors.item())
    if skipped:
        index_errors.zero_()
        raise IndexError(
            f"record_step: indices must lie in [0, {n}); {skipped} batch row(s) recorded on {index_errors.device} "
            "since the last scoring had an index outside it and were skipped. Check the indices passed to the "
            "sampler, or to torch.ops.d2ace_ext.record_step"
        )


def score_visits(
    window: torch.Tensor,
    pushes: torch.Tensor,
    loss: torch.Tensor,
    flip_average: torch.Tensor,
    context: LabelContext,
    *,
    lambda1: float,
    loss_transform: str,
    norm_eps: float,
    row_normalize: bool,
    label_weights_in_phi: bool,
    workspace: torch.Tensor | None = None,
    index_errors: torch.Tensor | None = None,
):
    """Eqs. 3, 5-12 for U and H in one op (three kernels on CUDA), v = exp((μ + σ)/2).

    window (n, n_t, q), pushes (n,), loss and flip_average (n, q) as recorded by
    :func:`record_step` (the kernels read float32; a compact state is scored by the
    pure-PyTorch definition); context: the rows of Y and Z (and, for the pure-PyTorch path,
    their pairs). workspace (2, n, q) float32, optional, receives U and H (kept by the
    caller between epochs: a fresh buffer costs page faults). index_errors: the counter
    :func:`record_step` was given; raises first if the CUDA kernel skipped rows since the
    last scoring (one synchronisation per epoch). Returns float64 (v (2, q), C (2, q, q),
    δ (2, n), φ (2, n), [min, max] of w = δ + φ (2, 2)), row 0 for uncertainty and row 1
    for hardness.
    """
    if loss_transform not in _LOSS_TRANSFORMS:
        raise ValueError(f"loss_transform must be one of {_LOSS_TRANSFORMS}, got {loss_transform!r}")
    if _wrapper_checks():  # the op's checks, on every path: both refuse the same calls
        _check_score_visits_arguments(
            window,
            pushes,
            loss,
            flip_average,
            context.labels.row_ptr,
            context.labels.cols,
            context.context.row_ptr,
            context.context.cols,
            workspace,
            lambda1,
            norm_eps,
            state_dtype=window.dtype,
        )
    n, _, q = window.shape
    if index_errors is not None:
        raise_skipped_rows(index_errors, n)
    options = dict(
        lambda1=float(lambda1),
        norm_eps=float(norm_eps),
        row_normalize=bool(row_normalize),
        label_weights_in_phi=bool(label_weights_in_phi),
    )
    if not (native_for(window) and window.dtype == torch.float32):
        return score_records(
            window, pushes, loss, flip_average, context, loss_transform=loss_transform, workspace=workspace, **options
        )
    if workspace is None:
        workspace = window.new_empty((2, n, q))
    return torch.ops.d2ace_ext.score_visits.default(
        window,
        pushes,
        loss,
        flip_average,
        context.labels.row_ptr,
        context.labels.cols,
        context.context.row_ptr,
        context.context.cols,
        workspace,
        options["lambda1"],
        loss_transform == "two_minus_exp",
        options["norm_eps"],
        options["row_normalize"],
        options["label_weights_in_phi"],
    )


def quantized_mixture(
    weights: torch.Tensor, pressure: float, p_beta: float, index_min: int, weight_range: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 13-14 for both rows of w (2, n) float64, and Eq. 16's mixture.

    Returns P (2, n) (each row sums to 1) and p_β P_U + (1 - p_β) P_H (n,), which sums to
    1 up to rounding (the pure-PyTorch path renormalises it, as the scorer does).
    ``weight_range`` (2, 2) = [[min, max]] per row when already known (the scoring op
    returns it); computed here otherwise.
    """
    if _wrapper_checks():  # the op's checks, on every path: both refuse the same calls
        _check_quantized_mixture_arguments(weights, weight_range, pressure, p_beta, index_min)
    if native_for(weights):
        if weight_range is None:
            low, high = weights.aminmax(dim=1)
            weight_range = torch.stack([low, high], dim=1)
        return torch.ops.d2ace_ext.quantized_mixture.default(
            weights, weight_range, float(pressure), float(p_beta), int(index_min)
        )
    return quantised_mixture(weights, pressure, p_beta, index_min)
