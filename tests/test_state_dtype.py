"""A compact D2ACE state (``D2ACEConfig.state_dtype``): window, loss and flip tensors
in 16 bits, every value computed in float32 and rounded once when stored."""

import contextlib
import math

import pytest
import torch

from d2ace_ext import D2ACEConfig, D2ACESampler, force_fallback, functional, ops
from d2ace_ext.scoring import LabelContext, score_records
from d2ace_ext.sparse_rows import SparseRows, row_pairs
from d2ace_ext.visits import VisitState

from support.problems import drive, random_problem

CONFIG = D2ACEConfig(num_epochs=6, warmup_epochs=1, t_start=1, t_end=5, num_neighbors=3)
FLOATS = ("window", "loss", "flip_average", "flip_base")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_compact_visit_state_stores_the_float32_record_rounded_once(dtype):
    g = torch.Generator().manual_seed(0)
    wide, compact = VisitState(6, 3, 3), VisitState(6, 3, 3, dtype=dtype)
    assert all(getattr(compact, name).dtype == dtype for name in FLOATS)
    assert compact.pushes.dtype == compact.last_epoch.dtype == torch.int64
    assert compact.window.element_size() == 2
    for epoch in range(3):
        index = torch.randperm(6, generator=g)[:4]
        probs, losses = torch.rand(4, 3, generator=g), torch.rand(4, 3, generator=g) * 3
        options = dict(per_epoch=True, flip_on="probability", flip_threshold=0.5, lambda2=0.7)
        for name in ("window", "flip_average", "flip_base"):  # the wide state starts from what the compact holds
            getattr(wide, name).copy_(getattr(compact, name).float())
        compact.record(index, probs, losses, epoch, **options)
        wide.record(index, probs, losses, epoch, **options)
        for name in FLOATS:  # the same float32 arithmetic, then one rounding
            assert torch.equal(getattr(compact, name), getattr(wide, name).to(dtype)), (epoch, name)
    assert torch.equal(compact.pushes, wide.pushes) and torch.equal(compact.last_epoch, wide.last_epoch)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("state_dtype", ["float16", "bfloat16"])
def test_a_compact_sampler_scores_near_float32_and_resumes(state_dtype, native):
    x, y = random_problem(n=40, q=5, seed=1)
    config = CONFIG.replace(state_dtype=state_dtype)
    with force_fallback() if not native else contextlib.nullcontext():
        sampler = D2ACESampler(y, 8, x, config=config, seed=2)
        wide = D2ACESampler(y, 8, x, config=CONFIG, seed=2)
        for s in (sampler, wide):  # the warm-up epoch: the same batches, the same records
            drive(s, y, 1, seed=3)
            s.set_epoch(1)
        p = sampler.probabilities
        wide.probabilities  # scores the wide state too
        assert p.shape == (40,) and bool((p > 0).all()) and math.isclose(float(p.sum()), 1.0, rel_tol=1e-12)
        assert sampler.selector.visits.window.dtype == getattr(torch, state_dtype)
        # 16-bit records move a quantisation index by a step at most, and only some
        for name in ("uncertainty", "hardness"):
            mine = getattr(sampler.selector.last_report, name).weights
            theirs = getattr(wide.selector.last_report, name).weights
            moved = functional.quantization_index(mine) - functional.quantization_index(theirs)
            assert int(moved.abs().max()) <= 1 and int((moved != 0).sum()) <= 20, (name, moved)
        drive(sampler, y, 2, seed=4, start_epoch=1)
        state = sampler.state_dict()
        assert state["selector"]["visits"]["loss"].dtype == getattr(torch, state_dtype)
        resumed = D2ACESampler(y, 8, x, config=config, seed=2)
        resumed.load_state_dict(state)
        resumed.set_epoch(3)
        sampler.set_epoch(3)
        assert list(resumed) == list(sampler)
        with pytest.raises(ValueError, match="different D2ACEConfig"):
            wide.load_state_dict(state)


def test_a_compact_state_checks_the_step_before_it_changes():
    """The native kernel checks float32 states' values itself; a compact state is recorded
    by the record op's pure-PyTorch definition, which checks them before anything changes."""
    x, y = random_problem(n=20, q=3, seed=4)
    sampler = D2ACESampler(y, 4, x, config=CONFIG.replace(state_dtype="float16"), seed=0)
    before = sampler.selector.visits.window.clone()
    logits = torch.zeros(2, 3)
    logits[1, 2] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        sampler.update(torch.tensor([0, 1]), logits, y[:2])
    assert torch.equal(sampler.selector.visits.window, before)


def test_a_visit_state_of_another_dtype_is_refused_by_name():
    compact = VisitState(3, 2, 3, dtype=torch.float16)
    with pytest.raises(
        ValueError,
        match=r"'window' has shape \(3, 3, 2\) and dtype torch.float32, expected "
        r"\(3, 3, 2\) and torch.float16",
    ):
        compact.load_state_dict(VisitState(3, 2, 3).state_dict())
    with pytest.raises(ValueError, match="state_dtype must be one of"):
        D2ACEConfig(state_dtype="float8")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_the_record_and_score_ops_take_a_compact_state_through_their_pure_definitions(dtype):
    """ops owns the choice of path: the kernels read a float32 state, so a compact one is
    recorded (float32 arithmetic, one rounding) and scored by the pure-PyTorch definitions,
    with the native kernels loaded or not."""
    g = torch.Generator().manual_seed(5)
    by_op, by_state = VisitState(8, 3, 3, dtype=dtype), VisitState(8, 3, 3, dtype=dtype)
    labels = torch.rand(8, 3, generator=g) < 0.5
    options = dict(per_epoch=True, flip_on="prediction", flip_threshold=0.5, lambda2=0.7)
    for epoch in range(3):
        index = torch.randperm(8, generator=g)[:5]
        logits, targets = torch.randn(5, 3, generator=g) * 3, labels[index].float()
        ops.record_step(
            *(getattr(by_op, name) for name in VisitState.TENSORS),
            by_op.index_errors,
            index,
            logits,
            targets,
            epoch,
            from_logits=True,
            labels=labels,
            **options,
        )
        probs, losses = functional.probabilities_and_losses(logits, targets, "logits")
        by_state.record(index, probs, losses, epoch, **options)
    for name in VisitState.TENSORS:
        assert torch.equal(getattr(by_op, name), getattr(by_state, name)), name
    assert by_op.window.dtype == dtype and not bool((by_op.pushes == 0).all())
    y = SparseRows.from_dense(labels)
    ctx = LabelContext(y, y, row_pairs(y, y), row_pairs(y, y))
    scored = ops.score_visits(
        by_op.window,
        by_op.pushes,
        by_op.loss,
        by_op.flip_average,
        ctx,
        lambda1=0.5,
        loss_transform="identity",
        norm_eps=0.0,
        row_normalize=False,
        label_weights_in_phi=False,
    )
    expected = score_records(
        by_op.window,
        by_op.pushes,
        by_op.loss,
        by_op.flip_average,
        ctx,
        lambda1=0.5,
        loss_transform="identity",
        norm_eps=0.0,
        row_normalize=False,
        label_weights_in_phi=False,
    )
    for got, want in zip(scored, expected):
        assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_compact_window_keeps_each_prediction_on_its_side_of_the_flip_threshold(dtype):
    """Rounding p = 0.5002 to 16 bits gives 0.5, which reads as a negative prediction: the
    next visit's flip (Eq. 4, flip_on="prediction") would vanish (p then 0.4999) or appear
    (p then 0.9) where the float32 state has the opposite. A stored value keeps its side."""
    threshold = 0.5
    first = torch.tensor([[0.5002, 0.5002, 0.4999, 0.3]])
    second = torch.tensor([[0.4999, 0.9, 0.5002, 0.2]])
    options = dict(per_epoch=True, flip_on="prediction", flip_threshold=threshold, lambda2=1.0)
    wide, compact = VisitState(1, 4, 3), VisitState(1, 4, 3, dtype=dtype)
    for epoch, probs in enumerate((first, second)):
        for state in (wide, compact):
            state.record(torch.tensor([0]), probs, torch.ones(1, 4), epoch, **options)
    assert wide.flip_average.tolist() == [[1.0, 0.0, 1.0, 0.0]]
    assert compact.flip_average.float().tolist() == wide.flip_average.tolist()
    stored = compact.window[0, :2].float()
    assert bool(((stored > threshold) == (torch.cat([first, second]) > threshold)).all())
    # still the nearest value on that side: within one step of the 16-bit grid
    assert bool(((stored - torch.cat([first, second])).abs() <= torch.finfo(dtype).eps).all())


def test_a_float32_checkpoint_into_a_compact_sampler_is_refused_naming_state_dtype():
    """The refusal used to say only "a different D2ACEConfig": it names each differing
    field with both values, and what to do."""
    x, y = random_problem(n=20, q=3, seed=4)
    wide = D2ACESampler(y, 4, x, config=CONFIG, seed=0)
    drive(wide, y, 1)
    compact = D2ACESampler(y, 4, x, config=CONFIG.replace(state_dtype="float16", lambda2=0.5), seed=0)
    with pytest.raises(
        ValueError,
        match=r"different D2ACEConfig: lambda2 saved 0.7, here 0.5; state_dtype saved 'float32', here 'float16'; "
        r"build the sampler with the saved run's config",
    ):
        compact.load_state_dict(wide.state_dict())
    assert int(compact.selector.visits.pushes.sum()) == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_compact_loss_saturates_at_the_largest_finite_value_instead_of_overflowing(dtype):
    """A logit of -70,000 on a positive label has BCE 70,000: finite in float32, inf in
    float16 (above 65,504), and one inf loss made every instance's hardness weight NaN
    (n = 6,000: P's max/min fell from 81 to 10, the instance itself near the bottom).
    A finite loss is stored finite (the dtype's largest value at most); +inf stays +inf."""
    state = VisitState(2, 3, 3, dtype=dtype)
    losses = torch.tensor([[7e4, 3.4e38, 1.0], [math.inf, 0.0, 2.0**-20]])
    probs = torch.full((2, 3), 0.3)
    state.record(
        torch.tensor([0, 1]), probs, losses, 0, per_epoch=True, flip_on="prediction", flip_threshold=0.5, lambda2=0.7
    )
    biggest = torch.finfo(dtype).max
    expected = torch.tensor([[min(7e4, biggest), min(3.4e38, biggest), 1.0], [math.inf, 0.0, 2.0**-20]]).to(dtype)
    assert torch.equal(state.loss, expected)
    unc, hard = state.metrics(0.5, "identity")
    assert bool(torch.isfinite(hard[0]).all()) and bool(torch.isfinite(unc).all())
