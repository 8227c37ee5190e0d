"""The fused native operators on edge cases and on bad input (opcheck and torch.compile:
test_fused_opcheck.py). Helpers and the tolerance rule: support/fused_checks.py and
the fused_record_checks / fused_score_checks modules."""

from __future__ import annotations

import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import d2ace_ext
from d2ace_ext import D2ACEConfig, ops
from d2ace_ext.neighbors import random_neighbors
from d2ace_ext.selectors.d2ace import D2ACESelector
from d2ace_ext.sparse_rows import SparseRows
from d2ace_ext.visits import VisitState

from support.fused_checks import devices
from support.fused_record_checks import (
    assert_states_match,
    float64_state,
    record,
    record_all,
    record_step,
    state_tensors,
)
from support.fused_score_checks import assert_scores_match, context_of

pytestmark = pytest.mark.skipif(not d2ace_ext.extension_loaded(), reason="d2ace_ext._C is not built")

PAPER, REFERENCE = D2ACEConfig.preset("paper"), D2ACEConfig.preset("reference")


def sparse(rows, device="cpu") -> SparseRows:
    return SparseRows.from_dense(torch.tensor(rows, dtype=torch.float32, device=device))


def ones64(*shape):
    """float64 ones on the CPU, to compare results from any device with."""
    return torch.ones(*shape, dtype=torch.float64)


def mixture_of(scores, pressure=50.0, p_beta=0.5, index_min=0):
    return ops.quantized_mixture(scores["delta"] + scores["phi"], pressure, p_beta, index_min, scores["range"])


# ---------------------------------------------------------------------------------------
# 4. Edge cases
# ---------------------------------------------------------------------------------------

# Every edge case runs on each device: the CUDA kernels have their own code for each.
SCORE_DEVICES = devices("score_visits")


@pytest.mark.parametrize("device", SCORE_DEVICES)
@pytest.mark.parametrize("config", [PAPER, REFERENCE], ids=["paper", "reference"])
@pytest.mark.parametrize("visits", [0, 1, 3])
def test_single_instance(config, visits, device):
    # n = 1 at the op level (the selector itself asks for n >= 2).
    state = VisitState(1, 3, 2, device)
    g = torch.Generator().manual_seed(visits)
    for epoch in range(visits):
        record(state, [0], torch.randn(1, 3, generator=g) * 3, torch.tensor([[1.0, 0.0, 1.0]]), epoch, config)
    labels, context = sparse([[1, 0, 1]], device), sparse([[1, 1, 0]], device)
    got, _ = assert_scores_match(state, context_of(labels, context), config)
    p, mixed = mixture_of(got, index_min=config.quant_index_min)
    assert p.tolist() == [[1.0], [1.0]] and mixed.tolist() == [1.0]


@pytest.mark.parametrize("device", SCORE_DEVICES)
@pytest.mark.parametrize("config", [PAPER, REFERENCE], ids=["paper", "reference"])
def test_single_label_column(config, device):
    g = torch.Generator().manual_seed(3)
    labels = (torch.rand(20, 1, generator=g) < 0.5).float()
    selector = D2ACESelector(
        labels,
        None,
        config.replace(num_neighbors=2),
        neighbors=random_neighbors(20, 2, g),
        device=device,
    )
    for epoch in range(4):
        record(
            selector.visits,
            torch.randperm(20, generator=g)[:12],
            torch.randn(12, 1, generator=g) * 2,
            torch.ones(12, 1),
            epoch,
            config,
        )
    got, ref = assert_scores_match(selector.visits, selector.context, config)
    assert got["C"].shape == (2, 1, 1)
    # one column: M̄ is a unit vector, C = [[1]] for both metrics (less ~ε/‖M‖ with norm_eps)
    rtol = 1e-12 if config.norm_eps == 0.0 else 1e-6
    torch.testing.assert_close(got["C"].cpu(), ones64(2, 1, 1), rtol=rtol, atol=0)
    # G / (√G)² is 1 to within an ulp either way (functional.correlation_from_gram, shared by the kernels)
    assert got["C"].max().item() <= 1.0 + 2.0**-52


@pytest.mark.parametrize("device", SCORE_DEVICES)
@pytest.mark.parametrize("config", [PAPER, REFERENCE, PAPER.replace(norm_eps=0.1)], ids=["paper", "reference", "eps"])
def test_label_columns_without_positives_and_all_positive(config, device):
    g = torch.Generator().manual_seed(11)
    n, q = 30, 5
    labels = (torch.rand(n, q, generator=g) < 0.4).float()
    labels[:, 0] = 0.0  # no positive
    labels[:, 3] = 1.0  # all positive
    with pytest.warns(RuntimeWarning, match="no positive"):
        selector = D2ACESelector(
            labels,
            None,
            config.replace(num_neighbors=3),
            neighbors=random_neighbors(n, 3, g),
            device=device,
        )
    for epoch in range(3):
        idx = torch.randperm(n, generator=g)[:20]
        record(selector.visits, idx, torch.randn(20, q, generator=g) * 2, labels[idx], epoch, config)
    got, _ = assert_scores_match(selector.visits, selector.context, config)
    assert bool(torch.isfinite(got["phi"]).all())
    assert got["C"][:, 0, :].abs().max().item() == 0.0 and got["C"][:, :, 0].abs().max().item() == 0.0
    if config.norm_eps == 0.0:  # diagonal of a normalised Gram matrix: 1 where the column has mass
        torch.testing.assert_close(got["C"][:, 3, 3].cpu(), ones64(2), rtol=1e-12, atol=0)


@pytest.mark.parametrize("device", SCORE_DEVICES)
@pytest.mark.parametrize("config", [PAPER, REFERENCE], ids=["paper", "reference"])
def test_saturated_probabilities_and_zero_metric_columns(config, device):
    # Probabilities exactly 0/1 (entropy 0, losses 0 or the clamped 100) and a column
    # whose hardness is 0 at every positive (f̄ = 1): with norm_eps = 0 its norm is 0,
    # and 0/0 must give 0 in C, never NaN.
    n, q = 12, 4
    labels = torch.zeros(n, q)
    labels[::2, 0] = 1
    labels[:, 1] = 1
    labels[1::3, 2] = 1
    labels[:, 3] = torch.arange(n) % 2
    selector = D2ACESelector(labels, None, config.replace(num_neighbors=0), device=device)
    state = selector.visits
    for epoch in range(3):
        outputs = ((torch.arange(n * q).view(n, q) + epoch) % 2).float()  # 0/1, flipping every epoch
        record(state, torch.arange(n), outputs, labels, epoch, config, from_logits=False)
    assert set(state.loss.unique().tolist()) <= {0.0, 100.0}
    state.flip_average[:, 0] = 1.0
    got, _ = assert_scores_match(state, selector.context, config.replace(norm_eps=0.0))
    assert bool(torch.isfinite(got["C"]).all()) and got["C"][1, 0].abs().max().item() == 0.0
    p, _ = mixture_of(got, index_min=config.quant_index_min)
    assert bool((p > 0).all()) and torch.allclose(p.sum(1).cpu(), ones64(2))


@pytest.mark.parametrize("device", SCORE_DEVICES)
@pytest.mark.parametrize("config", [PAPER, REFERENCE], ids=["paper", "reference"])
def test_unvisited_state_and_all_equal_metrics(config, device):
    # No visit at all: every instance reads as p = 0.5, ℓ = ln 2, f̄ = 0, so U and H are
    # constant. With every Y and Z row identical, w is constant too -> P exactly uniform.
    n, q = 10, 3
    same = sparse([[1, 1, 1]] * n, device)
    state = VisitState(n, q, 4, device)
    got, _ = assert_scores_match(state, context_of(same, same), config)
    assert got["range"][:, 0].tolist() == got["range"][:, 1].tolist()
    p, mixed = mixture_of(got, pressure=100.0, index_min=config.quant_index_min)
    assert bool((p == 1.0 / n).all()) and torch.allclose(mixed.cpu(), torch.full((n,), 1.0 / n, dtype=torch.float64))
    # Unvisited, but with varied Y and Z: φ differs between rows, still matching.
    g = torch.Generator().manual_seed(2)
    labels = SparseRows.from_dense((torch.rand(n, q, generator=g) < 0.5).to(device))
    context = SparseRows.from_dense((torch.rand(n, q, generator=g) < 0.5).to(device))
    assert_scores_match(state, context_of(labels, context), config)


@pytest.mark.parametrize("device", SCORE_DEVICES)
@pytest.mark.parametrize("config", [PAPER, REFERENCE], ids=["paper", "reference"])
def test_empty_context_rows(config, device):
    g = torch.Generator().manual_seed(4)
    n, q = 16, 4
    labels = (torch.rand(n, q, generator=g) < 0.6).float()
    labels[0] = 1.0
    context = (torch.rand(n, q, generator=g) < 0.5).float()
    context[::3] = 0.0  # empty Z rows, many of them where Y is not empty
    state = VisitState(n, q, 3, device)
    for epoch in range(4):
        record(
            state,
            torch.randperm(n, generator=g)[:10],
            torch.randn(10, q, generator=g),
            (torch.rand(10, q, generator=g) < 0.5).float(),
            epoch,
            config,
        )
    y, z = SparseRows.from_dense(labels.to(device)), SparseRows.from_dense(context.to(device))
    got, _ = assert_scores_match(state, context_of(y, z), config)
    assert got["phi"][:, ::3].abs().max().item() == 0.0  # nothing to propagate from


@pytest.mark.parametrize("device", devices("record_step"))
@pytest.mark.parametrize("from_logits", [True, False])
def test_record_step_non_contiguous_inputs(device, from_logits):
    g = torch.Generator().manual_seed(8)
    n, q, b = 20, 5, 7
    strided, contiguous = VisitState(n, q, 3, device), VisitState(n, q, 3, device)
    fallback32, reference64 = VisitState(n, q, 3, device), float64_state(n, q, 3, device)
    flags = dict(from_logits=from_logits, per_epoch=True, flip_on="probability", flip_threshold=0.5, lambda2=0.6)
    for epoch in range(4):
        if from_logits:
            outputs = torch.randn(b, q, generator=g) * 4
            outputs[epoch % b, 1], outputs[(epoch + 1) % b, 2] = float("inf"), -30.0
        else:
            outputs = torch.rand(b, q, generator=g)
            outputs[epoch % b, 1], outputs[(epoch + 1) % b, 2] = 1.0, 0.0
        wide_out = torch.zeros(q, 2 * b)
        wide_out[:, ::2] = outputs.t()
        outputs_view = wide_out.t()[::2]  # (b, q), strides (1, 2b)... transposed and strided
        targets = (torch.rand(b, q, generator=g) < 0.5).float()
        targets_view = targets.t().contiguous().t()  # (b, q) column-major
        indices_view = torch.randperm(n, generator=g)[: 2 * b].view(b, 2)[:, 1]  # stride 2
        assert not (outputs_view.is_contiguous() or targets_view.is_contiguous() or indices_view.is_contiguous())
        views = [t.to(device) for t in (indices_view, outputs_view, targets_view)]
        if device != "cpu":  # .to() made them contiguous: make strided views there again
            views = [views[0].repeat_interleave(2)[::2], views[1].t().contiguous().t(), views[2].t().contiguous().t()]
        record_step(strided, *views, epoch, **flags)
        record_step(contiguous, *(t.contiguous() for t in views), epoch, **flags)
        for name in VisitState.TENSORS:
            assert torch.equal(getattr(strided, name), getattr(contiguous, name)), name
        record_all(
            VisitState(n, q, 3, device),
            fallback32,
            reference64,
            (indices_view.contiguous(), outputs_view.contiguous(), targets_view.contiguous()),
            epoch,
            **flags,
        )
        assert_states_match(strided, fallback32, reference64, f"epoch {epoch}")


# ---------------------------------------------------------------------------------------
# 6. Bad input: TypeError (dtype), ValueError (shape, device, layout, option, value) or
#    IndexError (index) naming the argument; a rejected record changes nothing; the fake
#    kernels (torch.compile, opcheck) raise the same
# ---------------------------------------------------------------------------------------


def _raises_alike(call, fake_call, error, message):
    """``call`` on real tensors and ``fake_call`` on fake ones raise ``error`` with the same message."""
    with pytest.raises(error, match=message) as real:
        call()
    with FakeTensorMode(allow_non_fake_inputs=False) as mode:
        with pytest.raises(error) as fake:
            fake_call(mode)
    assert str(fake.value) == str(real.value)


def test_record_step_rejects_bad_input_and_keeps_state():
    n, q = 8, 3
    state = VisitState(n, q, 3)
    record(state, torch.arange(n), torch.randn(n, q), torch.ones(n, q), 0)
    before = {name: getattr(state, name).clone() for name in VisitState.TENSORS}
    good = dict(indices=torch.tensor([1, 4, 6]), outputs=torch.randn(3, q), targets=torch.ones(3, q))
    flags = dict(from_logits=True, per_epoch=True, flip_on="prediction", flip_threshold=0.5, lambda2=0.7)
    cases = [
        ({"indices": torch.tensor([1, 4, 8])}, {}, IndexError, r"indices must lie in \[0, 8\), got values from 1 to 8"),
        ({"indices": torch.tensor([1, -1, 6])}, {}, IndexError, r"indices must lie in"),
        ({"indices": torch.tensor([1, 4, 1])}, {}, ValueError, "indices must not repeat"),
        ({"indices": torch.tensor([1, 4, 6], dtype=torch.int32)}, {}, TypeError, "indices must have dtype Long"),
        ({"outputs": torch.randn(3, q + 1)}, {}, ValueError, "outputs has shape"),
        ({"targets": torch.ones(2, q)}, {}, ValueError, "targets has shape"),
        ({"outputs": torch.tensor([[0.0, float("nan"), 1.0]] * 3)}, {}, ValueError, r"outputs contain NaN \(logits\)"),
        ({"outputs": torch.full((3, q), 1.5)}, {"from_logits": False}, ValueError, r"probabilities in \[0, 1\]"),
        ({"targets": torch.full((3, q), 0.5)}, {}, ValueError, "targets must be 0/1 labels"),
        ({}, {"lambda2": 0.0}, ValueError, "lambda2 must lie in"),
        ({}, {"lambda2": 1.5}, ValueError, "lambda2 must lie in"),
        ({}, {"flip_threshold": 1.0}, ValueError, "flip_threshold must lie in"),
        ({}, {"flip_threshold": 0.0}, ValueError, "flip_threshold must lie in"),
        ({}, {"flip_on": "probabilty"}, ValueError, "flip_on must be one of"),
    ]
    for tensor_changes, flag_changes, error, message in cases:
        args = {**good, **tensor_changes}
        with pytest.raises(error, match=message):
            record_step(state, args["indices"], args["outputs"], args["targets"], 1, **{**flags, **flag_changes})
        for name in VisitState.TENSORS:
            assert torch.equal(getattr(state, name), before[name]), (message, name)
    # state tensors of the wrong kind, and outputs and targets of another dtype, at the op
    raw = list(state_tensors(state))
    tail = (1, True, True, False, 0.5, 0.7)
    for position, bad, error, message in [
        (1, state.pushes.int(), TypeError, "pushes must have dtype Long"),
        (3, state.loss.double(), TypeError, "loss must have dtype Float"),
        (0, state.window.transpose(1, 2).contiguous().transpose(1, 2), ValueError, "window must be contiguous"),
        (4, state.flip_average[:-1], ValueError, "flip_average has shape"),
        (6, torch.zeros(2, dtype=torch.int64), ValueError, "index_errors has shape"),
        (6, state.index_errors.int(), TypeError, "index_errors must have dtype Long"),
        (8, good["outputs"].double(), TypeError, "outputs must have dtype Float, got Double"),
        (9, good["targets"].long(), TypeError, "targets must have dtype Float, got Long"),
    ]:
        args = raw + [good["indices"], good["outputs"], good["targets"]]
        args[position] = bad
        with pytest.raises(error, match=message):
            torch.ops.d2ace_ext.record_step(*args, *tail)
    with pytest.raises(ValueError, match=r"labels has shape \[8, 2\], expected \[8, 3\]"):
        torch.ops.d2ace_ext.record_step(*raw, *good.values(), *tail, torch.zeros(n, 2, dtype=torch.bool))
    for name in VisitState.TENSORS:
        assert torch.equal(getattr(state, name), before[name]), name


def test_record_step_checks_targets_against_the_labels_it_is_given():
    n, q = 8, 3
    state = VisitState(n, q, 3)
    labels = torch.zeros(n, q, dtype=torch.bool)
    labels[4, 1] = labels[6, 0] = True
    flags = dict(from_logits=True, per_epoch=True, flip_on="prediction", flip_threshold=0.5, lambda2=0.7)
    indices = torch.tensor([1, 4, 6])
    record_step(state, indices, torch.randn(3, q), labels[indices].float(), 0, labels=labels, **flags)
    before = {name: getattr(state, name).clone() for name in VisitState.TENSORS}
    with pytest.raises(ValueError, match=r"targets differ from the training labels .* at instance\(s\) 4, 6: "):
        record_step(state, indices, torch.randn(3, q), torch.zeros(3, q), 1, labels=labels, **flags)
    for name in VisitState.TENSORS:
        assert torch.equal(getattr(state, name), before[name]), name


def test_record_step_checks_values_in_the_dtype_given_then_records_them_as_float32():
    # The wrapper accepts any floating dtype: a float64 probability of 1 + 1e-9 is refused
    # (its float32 cast is 1.0), a valid float64 step records exactly as its float32 cast.
    n, q = 6, 2
    flags = dict(from_logits=False, per_epoch=True, flip_on="probability", flip_threshold=0.5, lambda2=0.7)
    cast, given = VisitState(n, q, 3), VisitState(n, q, 3)
    indices, targets = torch.tensor([0, 3, 5]), torch.tensor([[1.0, 0.0]] * 3)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        record_step(given, indices, torch.full((3, q), 1 + 1e-9, dtype=torch.float64), targets, 0, **flags)
    outputs = torch.rand(3, q, dtype=torch.float64)
    record_step(given, indices, outputs, targets.double(), 0, **flags)
    record_step(cast, indices, outputs.float(), targets, 0, **flags)
    for name in VisitState.TENSORS:
        assert torch.equal(getattr(given, name), getattr(cast, name)), name


def test_fake_kernels_raise_what_the_kernels_raise():
    # torch.compile and opcheck run the fake kernels of ops.py, which must refuse what
    # csrc/checks.cpp refuses, with the same exception and message.
    n, q = 6, 3
    state = VisitState(n, q, 3)
    raw = list(state_tensors(state))
    step = [torch.tensor([1, 4]), torch.randn(2, q), torch.ones(2, q)]
    tail = (1, True, True, False, 0.5, 0.7)
    record_cases = [
        (1, state.pushes.int(), TypeError, "pushes must have dtype Long"),
        (0, state.window.transpose(1, 2).contiguous().transpose(1, 2), ValueError, "must be contiguous"),
        (3, state.loss[:, :2].contiguous(), ValueError, "loss has shape"),
        (8, step[1].double(), TypeError, "outputs must have dtype Float"),
        (9, torch.ones(3, q), ValueError, "targets has shape"),
    ]
    for position, bad, error, message in record_cases:
        args = raw + step
        args[position] = bad
        _raises_alike(
            lambda: torch.ops.d2ace_ext.record_step(*args, *tail),
            lambda mode: torch.ops.d2ace_ext.record_step(*[mode.from_tensor(t) for t in args], *tail),
            error,
            message,
        )
    args = raw + step
    _raises_alike(
        lambda: torch.ops.d2ace_ext.record_step(*args, 1, True, True, False, 0.5, 1.5),
        lambda mode: torch.ops.d2ace_ext.record_step(
            *[mode.from_tensor(t) for t in args], 1, True, True, False, 0.5, 1.5
        ),
        ValueError,
        "lambda2 must lie in",
    )
    y = sparse([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1]])
    score_args = [
        state.window,
        state.pushes,
        state.loss,
        state.flip_average,
        y.row_ptr,
        y.cols,
        y.row_ptr,
        y.cols,
        torch.empty(2, n, q),
    ]
    for position, bad, error, message in [
        (2, state.loss.double(), TypeError, "loss must have dtype Float"),
        (4, y.row_ptr[:-1], ValueError, "label_ptr has shape"),
        (8, torch.empty(2, q, n).transpose(1, 2), ValueError, "must be contiguous"),
    ]:
        args = list(score_args)
        args[position] = bad
        options = (0.5, False, 0.0, False, False)
        _raises_alike(
            lambda: torch.ops.d2ace_ext.score_visits(*args, *options),
            lambda mode: torch.ops.d2ace_ext.score_visits(*[mode.from_tensor(t) for t in args], *options),
            error,
            message,
        )
    weights = torch.randn(2, 5, dtype=torch.float64)
    weight_range = torch.stack(list(weights.aminmax(dim=1)), dim=1)
    for args, error, message in [
        ((weights.float(), weight_range, 2.0, 0.5, 0), TypeError, "weights must have dtype"),
        ((weights, weight_range, 0.5, 0.5, 0), ValueError, "pressure must be >= 1"),
    ]:
        _raises_alike(
            lambda: torch.ops.d2ace_ext.quantized_mixture(*args),
            lambda mode: torch.ops.d2ace_ext.quantized_mixture(
                mode.from_tensor(args[0]), mode.from_tensor(args[1]), *args[2:]
            ),
            error,
            message,
        )
    _raises_alike(
        lambda: torch.ops.d2ace_ext.binary_entropy(torch.ones(3, dtype=torch.int64)),
        lambda mode: torch.ops.d2ace_ext.binary_entropy(mode.from_tensor(torch.ones(3, dtype=torch.int64))),
        TypeError,
        "probs must be a floating-point tensor, got Long",
    )


def test_score_visits_rejects_bad_input():
    n, q = 6, 3
    state = VisitState(n, q, 3)
    y = sparse([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1]])
    base = dict(
        window=state.window,
        pushes=state.pushes,
        loss=state.loss,
        flip_average=state.flip_average,
        label_ptr=y.row_ptr,
        label_cols=y.cols,
        context_ptr=y.row_ptr,
        context_cols=y.cols,
        workspace=torch.empty(2, n, q),
        lambda1=0.5,
        two_minus_exp=False,
        norm_eps=0.0,
        row_normalize=False,
        label_weights_in_phi=False,
    )
    order = list(base)
    torch.ops.d2ace_ext.score_visits(*base.values())  # the good call works
    cases = [
        ({"lambda1": -0.1}, ValueError, "lambda1 must lie in"),
        ({"lambda1": 1.5}, ValueError, "lambda1 must lie in"),
        ({"norm_eps": -1e-3}, ValueError, "norm_eps must be >= 0"),
        ({"window": state.window.double()}, TypeError, "window must have dtype Float"),
        ({"pushes": state.pushes.int()}, TypeError, "pushes must have dtype Long"),
        ({"loss": state.loss[:, :2]}, ValueError, "loss has shape"),
        ({"flip_average": state.flip_average.half()}, TypeError, "flip_average must have dtype Float"),
        ({"label_ptr": y.row_ptr[:-1]}, ValueError, "label_ptr has shape"),
        ({"label_cols": y.cols.int()}, TypeError, "label_cols must have dtype Long"),
        ({"label_cols": torch.where(y.cols == 2, 3, y.cols)}, IndexError, "label_cols and context_cols must lie in"),
        ({"context_cols": y.cols[:-1]}, ValueError, "context_ptr does not describe context_cols"),
        # right ends, but row 1 would span [4, 2): the ends alone are not enough
        (
            {"label_ptr": torch.tensor([0, 4, 2, 6, 6, 7, 8])},
            ValueError,
            "label_ptr does not describe label_cols: it decreases at row 1",
        ),
        ({"workspace": torch.empty(2, n, q + 1)}, ValueError, "workspace has shape"),
        ({"workspace": torch.empty(2, n, q, dtype=torch.float64)}, TypeError, "workspace must have dtype Float"),
        ({"workspace": torch.empty(2, q, n).transpose(1, 2)}, ValueError, "workspace must be contiguous"),
    ]
    for changes, error, message in cases:
        args = {**base, **changes}
        with pytest.raises(error, match=message):
            torch.ops.d2ace_ext.score_visits(*(args[key] for key in order))


def test_quantized_mixture_rejects_bad_input():
    weights = torch.randn(2, 5, dtype=torch.float64)
    weight_range = torch.stack(list(weights.aminmax(dim=1)), dim=1)
    cases = [
        ((weights.float(), weight_range, 2.0, 0.5, 0), TypeError, "weights must have dtype Double"),
        ((torch.randn(3, 5, dtype=torch.float64), weight_range, 2.0, 0.5, 0), ValueError, "weights must be \\(2, n\\)"),
        ((weights[:, :0], weight_range, 2.0, 0.5, 0), ValueError, "weights must be \\(2, n\\) with n >= 1"),
        ((weights, weight_range[:, :1], 2.0, 0.5, 0), ValueError, "weight_range has shape"),
        ((weights, weight_range.float(), 2.0, 0.5, 0), TypeError, "weight_range must have dtype Double"),
        ((weights, weight_range, 0.5, 0.5, 0), ValueError, "pressure must be >= 1"),
        ((weights, weight_range, 2.0, 1.5, 0), ValueError, "p_beta must lie in"),
        ((weights, weight_range, 2.0, -0.1, 0), ValueError, "p_beta must lie in"),
        ((weights, weight_range, 2.0, 0.5, 2), ValueError, "index_min must be 0 or 1"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            torch.ops.d2ace_ext.quantized_mixture(*args)
    with pytest.raises(ValueError, match="pressure must be >= 1"):
        ops.quantized_mixture(weights, 0.9, 0.5, 0)


def _refusal(call):
    """(exception class, message) of ``call()``, or None when it returns."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the class is what is compared
        return type(exc), str(exc)
    return None


def test_the_op_wrappers_refuse_a_bad_call_alike_on_the_native_and_the_pure_path():
    # The pure-PyTorch path of ops.* used to skip the op's argument checks: int32 indices
    # were recorded, uint8 ones read as a mask, float labels, flip_threshold 0, lambda2
    # 1.5, lambda1 1.5, pressure 0.5 or a float32 w went through, and wrong shapes gave
    # broadcasting errors. Now every path refuses them with the kernel's error, and leaves
    # the state as it was.
    n, q = 6, 3
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    indices = torch.tensor([0, 2, 5])
    good = dict(indices=indices, outputs=torch.randn(3, q), targets=labels[indices].float(), labels=labels)
    flags = dict(from_logits=True, per_epoch=True, flip_on="prediction", flip_threshold=0.5, lambda2=0.7)
    record_cases = [
        ({"indices": indices.int()}, {}, TypeError, "record_step: indices must have dtype Long, got Int"),
        ({"indices": indices.to(torch.uint8)}, {}, TypeError, "indices must have dtype Long, got Byte"),
        ({"indices": indices[None]}, {}, ValueError, r"indices has shape \[1, 3\], expected \[-1\]"),
        ({"outputs": torch.randn(3, q + 1)}, {}, ValueError, r"outputs has shape \[3, 4\], expected \[3, 3\]"),
        ({"targets": torch.ones(2, q)}, {}, ValueError, "targets has shape"),
        ({"labels": labels.float()}, {}, TypeError, "labels must have dtype Bool, got Float"),
        ({"labels": labels[:, :2]}, {}, ValueError, "labels has shape"),
        ({}, {"flip_threshold": 0.0}, ValueError, r"flip_threshold must lie in \(0, 1\), got 0$"),
        ({}, {"lambda2": 1.5}, ValueError, r"lambda2 must lie in \(0, 1\], got 1.5"),
    ]
    for tensor_changes, flag_changes, error, message in record_cases:
        args = {**good, **tensor_changes}
        seen = []
        for native in (True, False):
            state = VisitState(n, q, 3)
            record_step(state, torch.arange(n), torch.randn(n, q), labels.float(), 0, **flags)
            before = {name: getattr(state, name).clone() for name in VisitState.TENSORS}
            with d2ace_ext.force_fallback(not native):
                with pytest.raises(error, match=message) as raised:
                    record_step(
                        state,
                        args["indices"],
                        args["outputs"],
                        args["targets"],
                        1,
                        labels=args["labels"],
                        **{**flags, **flag_changes},
                    )
            seen.append(str(raised.value))
            for name in VisitState.TENSORS:
                assert torch.equal(getattr(state, name), before[name]), (message, native, name)
        assert seen[0] == seen[1], message
    # a compact state, recorded by the pure-PyTorch path only, refuses what the kernel refuses
    compact = VisitState(n, q, 3, dtype=torch.float16)
    with pytest.raises(TypeError, match="indices must have dtype Long, got Int"):
        record_step(compact, indices.int(), good["outputs"], good["targets"], 0, **flags)
    assert int(compact.pushes.sum()) == 0

    state = VisitState(n, q, 3)
    ctx = context_of(SparseRows.from_dense(labels), SparseRows.from_dense(labels))
    options = dict(
        lambda1=0.5, loss_transform="identity", norm_eps=0.0, row_normalize=False, label_weights_in_phi=False
    )
    score_cases = [
        ({"lambda1": 1.5}, ValueError, r"lambda1 must lie in \[0, 1\], got 1.5"),
        ({"norm_eps": -1.0}, ValueError, "norm_eps must be >= 0, got -1$"),
        ({"workspace": torch.empty(2, n, q, dtype=torch.float64)}, TypeError, "workspace must have dtype Float"),
        ({"workspace": torch.empty(2, n, q + 1)}, ValueError, "workspace has shape"),
        ({"pushes": state.pushes.int()}, TypeError, "pushes must have dtype Long, got Int"),
        ({"loss": state.loss[:, :2]}, ValueError, "loss has shape"),
        ({"flip_average": state.flip_average.half()}, TypeError, "flip_average must have dtype Float, got Half"),
    ]
    tensors = dict(window=state.window, pushes=state.pushes, loss=state.loss, flip_average=state.flip_average)
    for changes, error, message in score_cases:
        args = {**tensors, **options, **changes}
        call = lambda: ops.score_visits(  # noqa: E731
            args.pop("window"), args.pop("pushes"), args.pop("loss"), args.pop("flip_average"), ctx, **args
        )
        native = _refusal(lambda: call())
        args = {**tensors, **options, **changes}
        with d2ace_ext.force_fallback():
            fallback = _refusal(lambda: call())
        assert native is not None and native[0] is error and re.search(message, native[1]), (message, native)
        assert fallback == native, message

    weights = torch.randn(2, 5, dtype=torch.float64)
    mixture_cases = [
        ((weights, 0.5, 0.5, 0), ValueError, "pressure must be >= 1, got 0.5"),
        ((weights, 2.0, 1.5, 0), ValueError, r"p_beta must lie in \[0, 1\], got 1.5"),
        ((weights, 2.0, 0.5, 2), ValueError, "index_min must be 0 or 1, got 2"),
        ((weights.float(), 2.0, 0.5, 0), TypeError, "weights must have dtype Double, got Float"),
        ((weights[:, :0], 2.0, 0.5, 0), ValueError, r"weights must be \(2, n\) with n >= 1"),
        ((weights[0], 2.0, 0.5, 0), ValueError, r"weights must be \(2, n\)"),
    ]
    for args, error, message in mixture_cases:
        native = _refusal(lambda: ops.quantized_mixture(*args))
        with d2ace_ext.force_fallback():
            fallback = _refusal(lambda: ops.quantized_mixture(*args))
        assert native is not None and native[0] is error and re.search(message, native[1]), (message, native)
        assert fallback == native, message


def test_sparse_rows_reject_corrupt_rows_where_they_are_built():
    # The scoring kernels trust the rows: on CUDA a row_ptr that runs past cols is read
    # out of bounds (and breaks the CUDA context), so SparseRows checks them once.
    good = sparse([[1, 0, 1], [0, 1, 0], [1, 1, 1]])  # row_ptr [0, 2, 3, 6]
    fields = dict(rows=good.rows, cols=good.cols, row_ptr=good.row_ptr, shape=good.shape)
    assert SparseRows(**fields).nnz == 6
    cases = [
        ({"row_ptr": torch.tensor([0, 4, 3, 6])}, r"row_ptr must start at 0, never decrease .* and it decreases"),
        ({"row_ptr": torch.tensor([0, 2, 3, 7])}, r"end at the number of nonzeros \(6\); got first 0, last 7"),
        ({"row_ptr": torch.tensor([1, 2, 3, 6])}, "got first 1"),
        ({"row_ptr": torch.tensor([0, 2, 6])}, r"row_ptr must have n \+ 1 = 4 entries"),
        ({"row_ptr": good.row_ptr.int()}, "row_ptr must be a 1-D int64 tensor"),
        ({"cols": torch.tensor([0, 2, 1, 0, 1, 3])}, r"cols must lie in \[0, 3\)"),
        ({"cols": good.cols[:-1]}, "rows and cols must have one entry per nonzero"),
        ({"rows": torch.tensor([0, 0, 1, 2, 2, 1])}, "rows must give each nonzero's row"),
    ]
    for changes, message in cases:
        with pytest.raises(ValueError, match=message):
            SparseRows(**{**fields, **changes})
