"""The fused native operators record_step, score_visits and quantized_mixture against
their pure-PyTorch definitions, and the sampler driven by either path.

Tolerance rule (as in test_ops.py): the reference is the pure-PyTorch pipeline run in
float64 on the same inputs (the same float32 state for the scoring); the kernel's error
against it must stay within K times the error of that same pipeline run by PyTorch in
float32, plus a floor of a few float32 eps times the magnitude of the quantity.
Edge cases, opcheck and bad input are in test_fused_ops_edges.py.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import pytest
import torch

import d2ace_ext
from d2ace_ext import D2ACEConfig, D2ACESampler, functional, ops, scoring
from d2ace_ext.scoring import LabelContext
from d2ace_ext.selectors.d2ace import D2ACESelector
from d2ace_ext.sparse_rows import SparseRows, row_pairs
from d2ace_ext.visits import VisitState

pytestmark = pytest.mark.skipif(not d2ace_ext.extension_loaded(), reason="d2ace_ext._C is not built")

FORCE_ENV = "D2ACE_EXT_FORCE_FALLBACK"
EPS32 = torch.finfo(torch.float32).eps
K = 4              # kernel error may be this many times PyTorch's float32 error ...
FLOOR_ULPS = 8     # ... plus this many float32 eps times the magnitude
STATE_FLOATS = ("window", "loss", "flip_average", "flip_base")
STATE_INTS = ("pushes", "last_epoch")


def has_cuda_kernel(op: str) -> bool:
    return d2ace_ext.extension_loaded() and torch._C._dispatch_has_kernel_for_dispatch_key(f"d2ace_ext::{op}", "CUDA")


def devices(op: str):
    """cpu, and cuda skipped unless a GPU is present and the extension has a CUDA kernel for ``op``."""
    reason = ("no GPU on this machine" if not torch.cuda.is_available()
              else f"the extension has no CUDA kernel of {op}")
    usable = torch.cuda.is_available() and has_cuda_kernel(op)
    return ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not usable, reason=reason))]


@contextlib.contextmanager
def forced_fallback(monkeypatch):
    """The pure-PyTorch path, for the calls inside the block only."""
    with monkeypatch.context() as patch:
        patch.setenv(FORCE_ENV, "1")
        assert not d2ace_ext.use_native()
        yield
    assert d2ace_ext.use_native()


def assert_within_rule(name, kernel, torch32, ref64, k=K, floor_ulps=FLOOR_ULPS):
    """max |kernel - ref64| <= k max |torch32 - ref64| + floor_ulps eps32 max |ref64|.

    Non-finite entries (infinite losses) must be identical in all three."""
    kernel, torch32, ref64 = (t.detach().to("cpu", torch.float64) for t in (kernel, torch32, ref64))
    assert kernel.shape == ref64.shape, (name, kernel.shape, ref64.shape)
    finite = torch.isfinite(ref64)
    assert torch.equal(torch.isfinite(kernel), finite), f"{name}: non-finite entries differ"
    assert torch.equal(kernel[~finite], ref64[~finite]), f"{name}: infinite entries differ"
    assert torch.equal(torch32[~finite], ref64[~finite])
    if not bool(finite.any()):
        return
    err = (kernel - ref64)[finite].abs().max().item()
    torch_err = (torch32 - ref64)[finite].abs().max().item()
    scale = ref64[finite].abs().max().item()
    tol = k * torch_err + floor_ulps * EPS32 * scale + 1e-36
    assert err <= tol, f"{name}: kernel error {err:.3e} > tolerance {tol:.3e} (PyTorch float32 error {torch_err:.3e})"


# ---------------------------------------------------------------------------------------
# 1. record_step against VisitState.record_outputs' fallback
# ---------------------------------------------------------------------------------------

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


def record_all(native, fallback32, reference64, batch, epoch, monkeypatch, **flags):
    indices, outputs, targets = batch
    device = native.device
    ops.record_step(native, indices.to(device), outputs.to(device), targets.to(device), epoch, **flags)
    from_logits = flags["from_logits"]
    options = {name: flags[name] for name in ("per_epoch", "flip_on", "flip_threshold", "lambda2")}
    with forced_fallback(monkeypatch):
        fallback32.record_outputs(indices.to(device), outputs.to(device), targets.to(device), epoch,
                                  from_logits=from_logits, **options)
        reference64.record_outputs(indices.to(device), outputs.to(device).double(), targets.to(device).double(),
                                   epoch, from_logits=from_logits, **options)


def assert_states_match(native, fallback32, reference64, where=""):
    for name in STATE_INTS:
        assert torch.equal(getattr(native, name).cpu(), getattr(fallback32, name).cpu()), f"{name} {where}"
        assert torch.equal(getattr(native, name).cpu(), getattr(reference64, name).cpu()), f"{name} {where}"
    for name in STATE_FLOATS:
        got = getattr(native, name)
        assert got.dtype == torch.float32 and got.is_contiguous()
        assert_within_rule(f"{name} {where}", got, getattr(fallback32, name), getattr(reference64, name))


@pytest.mark.parametrize("device", devices("record_step"))
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("per_epoch", [True, False], ids=["per_epoch", "per_visit"])
@pytest.mark.parametrize("flip_on", ["prediction", "probability"])
@pytest.mark.parametrize("seed", range(2))
def test_record_step_matches_fallback_over_epochs(device, from_logits, per_epoch, flip_on, seed, monkeypatch):
    g = torch.Generator().manual_seed(1000 * seed + 17)
    n, q, n_t = 23 + 11 * seed, 6 + seed, 3 + seed
    flags = dict(from_logits=from_logits, per_epoch=per_epoch, flip_on=flip_on,
                 flip_threshold=0.5, lambda2=[0.7, 0.35][seed])
    native, fallback32 = VisitState(n, q, n_t, device), VisitState(n, q, n_t, device)
    reference64 = float64_state(n, q, n_t, device)
    # Epochs need not be consecutive; several batches per epoch, so many instances get a
    # second (third...) visit within one epoch, and some are first visited late.
    for epoch in (0, 1, 2, 4, 5, 7):
        for step in range(3):
            batch = random_batch(g, n, q, from_logits)
            record_all(native, fallback32, reference64, batch, epoch, monkeypatch, **flags)
            assert_states_match(native, fallback32, reference64, f"epoch {epoch} step {step}")
    # The run reached every regime of the ring: unvisited-then-visited, partial and wrapped.
    pushes = native.pushes.cpu()
    assert int(pushes.max()) > n_t and int(pushes.min()) >= 1
    if per_epoch:
        assert int(pushes.max()) <= 6  # one entry per epoch, whatever the visits
    assert bool(torch.isinf(native.loss).any()) == from_logits  # ±inf logits, wrong side: loss inf


@pytest.mark.parametrize("per_epoch", [True, False])
def test_record_step_flip_at_threshold_uses_float32_comparison(per_epoch, monkeypatch):
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
        ops.record_step(native, torch.arange(n), outputs, targets, epoch, from_logits=False, **flags)
        with forced_fallback(monkeypatch):
            fallback.record_outputs(torch.arange(n), outputs, targets, epoch, from_logits=False, **flags)
    for name in VisitState.TENSORS:
        assert torch.equal(getattr(native, name), getattr(fallback, name)), name
    # flips: epoch 1: [1, 0, 0]; epoch 2: [0, 1, 0] -> f̄ = 0.5 [0, 1, 0] + 0.25 [1, 0, 0]
    assert native.flip_average[0].tolist() == [0.25, 0.5, 0.0]


# ---------------------------------------------------------------------------------------
# 2. score_visits against the float64 fallback scorer
# ---------------------------------------------------------------------------------------

def context_of(labels: SparseRows, context: SparseRows) -> LabelContext:
    return LabelContext(labels, context, row_pairs(labels, labels), row_pairs(labels, context))


def fallback_scores(state, ctx, config, dtype):
    """v (2, q), C (2, q, q), δ (2, n), φ (2, n), [min, max] of w (2, 2) and the metrics
    (2, n, q), by the pure-PyTorch scorer in ``dtype`` (call with the fallback forced)."""
    metrics = state.metrics(config.lambda1, config.loss_transform, dtype=dtype)
    out = {"v": [], "C": [], "delta": [], "phi": [], "range": []}
    for metric in metrics:
        v = functional.label_weights(metric)
        delta = functional.dynamic_weight(metric, v)
        phi, gram = scoring.correlation_phi(metric, v, ctx, config)
        low, high = (delta + phi).aminmax()
        for key, value in zip(out, (v, gram, delta, phi, torch.stack([low, high]))):
            out[key].append(value)
    result = {key: torch.stack(values) for key, values in out.items()}
    result["metrics"] = torch.stack(metrics)
    return result


def native_scores(state, ctx, config):
    v, c, delta, phi, weight_range = ops.score_visits(
        state, ctx.labels, ctx.context, lambda1=config.lambda1, loss_transform=config.loss_transform,
        norm_eps=config.norm_eps, row_normalize=config.row_normalize_correlation,
        label_weights_in_phi=config.label_weights_in_phi)
    for t in (v, c, delta, phi, weight_range):
        assert t.dtype == torch.float64 and t.device == state.device
    return {"v": v, "C": c, "delta": delta, "phi": phi, "range": weight_range, "metrics": state.workspace()}


def assert_scores_match(state, ctx, config, monkeypatch, where=""):
    """Kernel against the float64 fallback; returns both for further checks."""
    got = native_scores(state, ctx, config)
    with forced_fallback(monkeypatch):
        ref = fallback_scores(state, ctx, config, torch.float64)
        f32 = fallback_scores(state, ctx, config, torch.float32)
    n, q = state.n, state.q
    shapes = {"v": (2, q), "C": (2, q, q), "delta": (2, n), "phi": (2, n), "range": (2, 2), "metrics": (2, n, q)}
    for key, shape in shapes.items():
        assert tuple(got[key].shape) == shape, key
        assert_within_rule(f"{key} {where}", got[key], f32[key], ref[key])
    # The range is that of the kernel's own w = δ + φ, exactly.
    w = (got["delta"] + got["phi"]).cpu()
    assert torch.equal(got["range"].cpu(), torch.stack(list(w.aminmax(dim=1)), dim=1))
    return got, ref


def random_selector(g, n, q, config, k, density, device="cpu"):
    labels = (torch.rand(n, q, generator=g) < density).float()
    neighbors = torch.randint(0, n, (n, k), generator=g) if k else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # label columns without a positive are fine here
        return D2ACESelector(labels, None, config.replace(num_neighbors=k), neighbors=neighbors, device=device)


def fill_state_directly(state, g):
    """Random state tensors: every window slot holds a value (also the slots not yet
    pushed, which the scorer must ignore), pushes 0..3 n_t so rings are empty, partial,
    full and wrapped; saturated probabilities, flip EMAs of exactly 0 and 1."""
    n, n_t, q = state.window.shape
    window = torch.rand(n, n_t, q, generator=g)
    saturate = torch.rand(n, n_t, q, generator=g) < 0.1
    window = torch.where(saturate, (torch.rand(n, n_t, q, generator=g) < 0.5).float(), window)
    pushes = torch.randint(0, 3 * n_t + 1, (n,), generator=g)
    pushes[: min(n, 3)] = torch.tensor([0, 1, n_t])[: min(n, 3)]
    loss = -torch.log(torch.rand(n, q, generator=g).clamp(min=1e-6)) * 2
    flip = torch.rand(n, q, generator=g)
    flip = torch.where(torch.rand(n, q, generator=g) < 0.1, (torch.rand(n, q, generator=g) < 0.5).float(), flip)
    for name, value in (("window", window), ("pushes", pushes), ("loss", loss), ("flip_average", flip)):
        getattr(state, name).copy_(value)
    state.last_epoch.copy_(torch.where(pushes > 0, 0, -1))


def fill_state_by_recording(selector, g, epochs):
    """The selector's own record_outputs (native) over a few epochs of random batches."""
    n, q = selector.n, selector.q
    for epoch in range(epochs):
        for _ in range(2):
            indices, logits, _ = random_batch(g, n, q, from_logits=True, special_fraction=0.02)
            logits = logits.clamp(-60, 60)  # finite losses: an infinite loss makes H infinite
            targets = selector.context.labels.to_dense(torch.float32)[indices]
            selector.record_outputs(indices.to(selector.device), logits.to(selector.device),
                                    targets.to(selector.device), "logits", epoch)


SCORE_CASES = [
    ("paper", {}),
    ("reference", {}),
    ("paper", {"loss_transform": "two_minus_exp"}),
    ("paper", {"norm_eps": 0.05}),
    ("paper", {"row_normalize_correlation": True}),
    ("paper", {"label_weights_in_phi": True}),
    ("paper", {"lambda1": 0.0}),
    ("paper", {"lambda1": 1.0}),
    ("paper", {"lambda1": 0.3}),
    ("reference", {"loss_transform": "identity", "norm_eps": 0.0}),
    ("reference", {"row_normalize_correlation": False}),
    ("reference", {"label_weights_in_phi": False}),
]


@pytest.mark.parametrize("device", devices("score_visits"))
@pytest.mark.parametrize("preset,changes", SCORE_CASES, ids=[f"{p}-{'-'.join(c) or 'preset'}" for p, c in SCORE_CASES])
@pytest.mark.parametrize("seed", range(3))
def test_score_visits_matches_float64_fallback(device, preset, changes, seed, monkeypatch):
    g = torch.Generator().manual_seed(7919 * seed + len(changes) + (preset == "reference"))
    n = int(torch.randint(12, 90, (1,), generator=g))
    q = int(torch.randint(1, 13, (1,), generator=g))
    n_t = int(torch.randint(2, 6, (1,), generator=g))
    k = int(torch.randint(0, 5, (1,), generator=g))
    config = D2ACEConfig.preset(preset, window_size=n_t, **changes)
    selector = random_selector(g, n, q, config, k, density=[0.3, 0.6, 0.15][seed], device=device)
    if seed == 1:
        fill_state_by_recording(selector, g, epochs=n_t + 2)
    else:
        fill_state_directly(selector.visits, g)
    got, ref = assert_scores_match(selector.visits, selector.context, selector.config, monkeypatch)
    # What the selector's native scoring builds on these matches its fallback scoring too.
    check_probabilities(got, ref, pressure=[100.0, 8.0, 2.5][seed], index_min=config.quant_index_min)


# ---------------------------------------------------------------------------------------
# 3. quantized_mixture against functional.quantized_probabilities + mixture
# ---------------------------------------------------------------------------------------

def fallback_mixture(weights, pressure, p_beta, index_min):
    per_metric = torch.stack([functional.quantized_probabilities(w, pressure, index_min) for w in weights])
    return per_metric, functional.mixture(per_metric[0], per_metric[1], p_beta)


def assert_mixture_exact(weights, pressure, p_beta, index_min, range_given=True):
    """Same float64 weights: the same quantisation indices, so P equal to rounding only.

    One index step changes P by s^(1/n) - 1 >= 1e-5 in these tests, far above the
    1e-12 allowed, so the check pins every index."""
    n = weights.shape[1]
    assert pressure == 1.0 or pressure ** (1.0 / n) - 1.0 > 1e-6
    weight_range = torch.stack(list(weights.aminmax(dim=1)), dim=1) if range_given else None
    p, mixed = ops.quantized_mixture(weights, pressure, p_beta, index_min, weight_range)
    expected_p, expected_mixed = fallback_mixture(weights.cpu(), pressure, p_beta, index_min)
    assert p.dtype == torch.float64 and p.shape == (2, n) and mixed.shape == (n,)
    torch.testing.assert_close(p.cpu(), expected_p, rtol=1e-12, atol=0)
    torch.testing.assert_close(mixed.cpu(), expected_mixed, rtol=1e-12, atol=0)
    torch.testing.assert_close(p.sum(1).cpu(), torch.ones(2, dtype=torch.float64), rtol=1e-12, atol=0)
    return p, mixed


@pytest.mark.parametrize("device", devices("quantized_mixture"))
@pytest.mark.parametrize("index_min", [0, 1])
@pytest.mark.parametrize("pressure", [1.0, 1.5, 8.0, 100.0])
@pytest.mark.parametrize("seed", range(3))
def test_quantized_mixture_matches_fallback_on_random_weights(device, index_min, pressure, seed):
    g = torch.Generator().manual_seed(seed)
    n = [1, 7, 50][seed] if pressure == 1.0 else [7, 50, 1000][seed]
    weights = (torch.randn(2, n, generator=g, dtype=torch.float64) * 10 ** seed).to(device)
    p_beta = [0.0, 0.3, 1.0][seed]
    p, mixed = assert_mixture_exact(weights, pressure, p_beta, index_min, range_given=seed != 1)
    if pressure == 1.0 or n == 1:
        assert torch.equal(p.cpu(), torch.full((2, n), 1.0 / n, dtype=torch.float64))
    else:
        # The largest weight holds the largest P, the smallest the smallest: ratio s^((n - Q_top)/n).
        for m in range(2):
            hi, lo = p[m, weights[m].argmax()], p[m, weights[m].argmin()]
            assert math.isclose(hi / lo, pressure ** ((n - index_min) / n), rel_tol=1e-12)


@pytest.mark.parametrize("device", devices("quantized_mixture"))
@pytest.mark.parametrize("n", [4, 8, 10, 37, 64])
@pytest.mark.parametrize("index_min", [0, 1])
def test_quantized_mixture_weights_exactly_on_boundaries(device, n, index_min):
    # w = low + (k/n) span puts (1 - w̃) n at, or within rounding of, the integer n - k:
    # exactly for powers of two, off by an ulp either way otherwise. The kernel repeats
    # the fallback's arithmetic operation for operation, so it rounds the same way and
    # must give the same index for every weight.
    for low, span in [(0.0, 1.0), (0.1, 3.0), (-2.5, 0.7), (1e3, 1e-3)]:
        k = torch.arange(n + 1, dtype=torch.float64)
        row = low + k / n * span
        other = (low - 1.0) + torch.arange(n + 1, dtype=torch.float64).flip(0) * (span / n)
        weights = torch.stack([row, other]).to(device)
        assert_mixture_exact(weights, 7.0, 0.4, index_min)


@pytest.mark.parametrize("device", devices("quantized_mixture"))
@pytest.mark.parametrize("index_min", [0, 1])
def test_quantized_mixture_uniform_cases(device, index_min):
    n = 9
    ones = torch.full((n,), 2.5, dtype=torch.float64)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    with_inf = ramp.clone()
    with_inf[3] = math.inf
    uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for rows, uniform_rows in [((ones, ramp), [0]), ((ramp, ones), [1]), ((ones, ones), [0, 1]),
                               ((with_inf, ramp), [0])]:
        weights = torch.stack(rows).to(device)
        p, mixed = assert_mixture_exact(weights, 50.0, 0.25, index_min)
        for m in uniform_rows:
            assert torch.equal(p[m].cpu(), uniform)  # all equal (or an infinite range): uniform
    p, mixed = ops.quantized_mixture(torch.stack([ramp, ramp]).to(device), 1.0, 0.6, index_min)
    assert torch.equal(p.cpu(), torch.stack([uniform, uniform]))  # s = 1: uniform whatever w
    torch.testing.assert_close(mixed.cpu(), uniform, rtol=1e-15, atol=0)


def check_probabilities(got, ref, pressure, index_min):
    """P from the kernel's weights (float32 metrics, float64 sums) against P from the
    float64 fallback's weights.

    The weights agree only to about float32 precision, so a weight lying within that
    error of a quantisation boundary ((1 - w̃) n an integer) may get the neighbouring
    index Q ± 1 on one path: its P then differs by the factor s^(1/n), and the softmax's
    normaliser by at most that factor too. So: every index equal or off by one, an
    index off by one only for a weight that near a boundary, and P within s^(2/n) per
    instance (equal to rounding where no index moved).
    """
    w_got = (got["delta"] + got["phi"]).cpu()
    w_ref = (ref["delta"] + ref["phi"]).cpu()
    n = w_got.shape[1]
    p_got, mixed_got = ops.quantized_mixture(got["delta"] + got["phi"], pressure, 0.4, index_min, got["range"])
    p_got, mixed_got = p_got.cpu(), mixed_got.cpu()
    # The kernel quantises its own weights exactly as the fallback would.
    p_own, mixed_own = fallback_mixture(w_got, pressure, 0.4, index_min)
    torch.testing.assert_close(p_got, p_own, rtol=1e-12, atol=0)
    torch.testing.assert_close(mixed_got, mixed_own, rtol=1e-12, atol=0)
    p_ref, _ = fallback_mixture(w_ref, pressure, 0.4, index_min)
    for m in range(2):
        q_got = functional.quantization_index(w_got[m], index_min)
        q_ref = functional.quantization_index(w_ref[m], index_min)
        if q_ref is None or q_got is None:
            # all weights equal on one path: the other must be (numerically) flat too
            assert (w_got[m].max() - w_got[m].min()).item() <= 1e-6 * max(1.0, w_got[m].abs().max().item())
            assert (w_ref[m].max() - w_ref[m].min()).item() <= 1e-6 * max(1.0, w_ref[m].abs().max().item())
            continue
        moved = q_got != q_ref
        assert bool(((q_got - q_ref).abs() <= 1).all())
        if bool(moved.any()):
            low, high = w_ref[m].min(), w_ref[m].max()
            position = (1.0 - (w_ref[m] - low) / (high - low)) * n
            w_err = (w_got[m] - w_ref[m]).abs().max() + (got["range"][m].cpu() - ref["range"][m].cpu()).abs().max()
            slack = 4 * n * w_err.item() / (high - low).item() + 1e-9
            distance = (position - position.round()).abs()
            assert bool((distance[moved] <= slack).all()), (distance[moved], slack)
            bound = pressure ** (2.0 / n) * (1 + 1e-12)
        else:
            bound = 1 + 1e-12
        ratio = p_got[m] / p_ref[m]
        assert ratio.max().item() <= bound and (1 / ratio).max().item() <= bound
    return p_got, p_ref


def test_probabilities_from_scores_with_weights_on_quantisation_boundaries(monkeypatch):
    # Hardness h = ℓ (1 - f̄) chosen at (k/n)(1 ± float32 rounding): the kernel's float32
    # h rounds onto the boundary k/n (exactly representable, n = 64) while the float64
    # fallback's h lies just below or above it, so ⌈(1 - w̃) n⌉ differs by one for some
    # instances. Random states never hit this (no index moved in the random cases), so
    # this case pins down the tolerance explained in check_probabilities.
    n, q = 64, 1
    g = torch.Generator().manual_seed(5)
    state = VisitState(n, q, 2)
    state.window.copy_(torch.rand(n, 2, q, generator=g))
    state.pushes.fill_(2)
    flip = torch.rand(n, q, generator=g) * 0.5
    k = torch.randint(1, n, (n, q), generator=g).double()
    loss = ((k / n) / (1.0 - flip.double())).float()
    flip[0], loss[0] = 1.0, 0.7    # h = 0: the lowest weight
    flip[-1], loss[-1] = 0.0, 1.0  # h = 1: the highest
    state.loss.copy_(loss)
    state.flip_average.copy_(flip)
    labels = SparseRows.from_dense(torch.zeros(n, q))  # no positives: φ = 0, w = δ = h v
    got, ref = assert_scores_match(state, context_of(labels, labels), D2ACEConfig(), monkeypatch)
    w_got, w_ref = (got["delta"][1] + got["phi"][1]).cpu(), ref["delta"][1] + ref["phi"][1]
    moved = functional.quantization_index(w_got) != functional.quantization_index(w_ref)
    assert 0 < int(moved.sum()) < n
    p_got, p_ref = check_probabilities(got, ref, pressure=100.0, index_min=0)
    assert not torch.allclose(p_got[1], p_ref[1], rtol=1e-9, atol=0)  # the moved indices show in P


# ---------------------------------------------------------------------------------------
# 7. The sampler: kernels and fallback draw the same batches
# ---------------------------------------------------------------------------------------

def run_sampler(labels, neighbors, config, table, drift, epochs, seed):
    sampler = D2ACESampler(labels, 7, config=config, neighbors=neighbors, seed=seed)
    batches, probabilities = [], []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in sampler:
            index = torch.tensor(batch)
            # model outputs: a fixed function of (instance, epoch)
            sampler.update(index, table[index] + epoch * drift[index], labels[index])
            batches.append(batch)
        probabilities.append(sampler.probabilities)
    return batches, probabilities, sampler


@pytest.mark.parametrize("preset", ["paper", "reference"])
@pytest.mark.parametrize("seed", range(2))
def test_sampler_native_and_fallback_draw_identical_batches(preset, seed, monkeypatch):
    g = torch.Generator().manual_seed(31 + seed)
    n, q, epochs = 60, 5, 6
    config = D2ACEConfig.preset(preset).scaled_to(epochs).replace(window_size=3)
    labels = (torch.rand(n, q, generator=g) < 0.35).float()
    labels[0] = 1.0  # every column has a positive
    neighbors = torch.randint(0, n, (n, config.num_neighbors), generator=g)
    table = torch.randn(n, q, generator=g) * 3
    drift = torch.randn(n, q, generator=g)
    assert d2ace_ext.use_native()
    native = run_sampler(labels, neighbors, config, table, drift, epochs, seed)
    with forced_fallback(monkeypatch):
        fallback = run_sampler(labels, neighbors, config, table, drift, epochs, seed)
    assert native[0] == fallback[0]
    weighted = [e for e in range(epochs) if e >= config.warmup_epochs]
    assert len(weighted) >= 4
    for epoch in weighted:
        p_native, p_fallback = native[1][epoch], fallback[1][epoch]
        assert not torch.equal(p_native, torch.full_like(p_native, 1.0 / n)) or epoch == epochs - 1
        torch.testing.assert_close(p_native, p_fallback, rtol=1e-5, atol=0)
    # the states the two runs ended with agree too
    for name in STATE_FLOATS:
        torch.testing.assert_close(getattr(native[2].selector.visits, name), getattr(fallback[2].selector.visits, name),
                                   rtol=1e-5, atol=1e-6)
