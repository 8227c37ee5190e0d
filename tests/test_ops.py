"""The native binary_entropy operator against its pure-PyTorch definition."""

import os
import subprocess
import sys

import pytest
import torch

import d2ace_ext
from d2ace_ext import functional, ops
from d2ace_ext.functional import binary_entropy as functional_entropy

from support.paths import ROOT

requires_native = pytest.mark.skipif(not d2ace_ext.extension_loaded(), reason="d2ace_ext._C is not built")
# cuda cases are always collected (skipped without a GPU), so gpu_check.sh's -k cuda finds them.
_CUDA_USABLE = torch.cuda.is_available() and d2ace_ext.build_info()["native_cuda_kernels"]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not _CUDA_USABLE, reason="no GPU or no CUDA kernels"))]


def test_extension_is_built_and_loaded():
    # make test always builds _C; a silent fallback here would hide a broken build.
    if os.environ.get("D2ACE_EXT_ALLOW_NO_EXTENSION") == "1":
        pytest.skip("D2ACE_EXT_ALLOW_NO_EXTENSION=1")
    info = d2ace_ext.build_info()
    assert info["extension_loaded"], info["extension_error"]
    if torch.version.cuda:
        assert info["native_cuda_kernels"], "a CUDA build of torch should give CUDA kernels"


def edge_inputs(dtype, device):
    tiny = torch.finfo(dtype).tiny
    return torch.tensor([0.0, 1.0, 0.5, tiny, 1 - 1e-7, 1e-7, 1.0 + 1e-7, -1e-7, 0.25], dtype=dtype, device=device)


def tolerance(p64, dtype):
    """Error of the same computation done by PyTorch in ``dtype``, against float64."""
    reference = functional.binary_entropy(p64)
    torch_error = (functional.binary_entropy(p64.to(dtype)).double() - reference).abs().max().item()
    return reference, 2 * torch_error + 4 * torch.finfo(dtype).eps


@requires_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(5))
def test_kernel_matches_float64_fallback(device, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    p64 = torch.cat([torch.rand(1000 + 37 * seed, generator=g, dtype=torch.float64), edge_inputs(torch.float64, "cpu")])
    reference, tol = tolerance(p64, dtype)
    out = torch.ops.d2ace_ext.binary_entropy(p64.to(dtype).to(device))
    assert out.dtype == dtype and out.shape == p64.shape
    assert (out.double().cpu() - reference).abs().max().item() <= tol


@requires_native
@pytest.mark.parametrize("device", DEVICES)
def test_kernel_edge_cases(device):
    out = torch.ops.d2ace_ext.binary_entropy(edge_inputs(torch.float64, device)).cpu()
    assert out[:2].tolist() == [0.0, 0.0] and out[2].item() == 1.0
    assert out[6].item() == 0.0 and out[7].item() == 0.0  # clamped rounding noise
    nan = torch.ops.d2ace_ext.binary_entropy(torch.tensor([float("nan"), 0.5], device=device)).cpu()
    assert torch.isnan(nan[0]) and nan[1].item() == 1.0
    empty = torch.ops.d2ace_ext.binary_entropy(torch.empty(0, 3, device=device))
    assert empty.shape == (0, 3)


@requires_native
@pytest.mark.parametrize("device", DEVICES)
def test_kernel_on_non_contiguous_and_reduced_precision_inputs(device):
    base = torch.rand(64, 48, dtype=torch.float64, device=device)
    view = base.t()[::2]
    assert not view.is_contiguous()
    assert torch.allclose(torch.ops.d2ace_ext.binary_entropy(view), functional.binary_entropy(view))
    for dtype in (torch.float16, torch.bfloat16):
        out = torch.ops.d2ace_ext.binary_entropy(base.to(dtype))
        _, tol = tolerance(base.cpu(), dtype)
        assert out.dtype == dtype
        assert (out.double() - functional.binary_entropy(base)).abs().max().item() <= tol


@requires_native
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fallback_entropy_in_16_bits_rounds_once_like_the_kernel(dtype):
    # The pure-PyTorch definition used to compute a float16 / bfloat16 entropy step by
    # step in 16 bits: e(0.5) = 0.996 in bfloat16, and 12,586 of the 15,362 float16 values
    # in [0, 1] differed from the kernel's (float32 arithmetic, one rounding). Every
    # 16-bit value in [0, 1]:
    every = torch.arange(2**16, dtype=torch.int32).to(torch.int16).view(dtype)
    p = every[(every >= 0) & (every <= 1)]
    native = ops.binary_entropy(p)
    with d2ace_ext.force_fallback():
        fallback = ops.binary_entropy(p)
    assert fallback.dtype == dtype
    assert fallback[p == 0.5].item() == 1.0 and (fallback[(p == 0) | (p == 1)] == 0).all()  # p = ±0 and 1
    # the two float32 formulas (log2f against log / ln 2) may round a value next to a
    # 16-bit rounding boundary apart: one step at most, at a handful of values
    ulp = torch.finfo(dtype).eps * native.double().abs().clamp(min=torch.finfo(dtype).tiny)
    assert ((fallback.double() - native.double()).abs() <= ulp).all()
    assert int((fallback != native).sum()) <= 4


@requires_native
def test_kernel_rejects_integer_input():
    with pytest.raises(TypeError, match="probs must be a floating-point"):
        torch.ops.d2ace_ext.binary_entropy(torch.ones(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="probs"):
        ops.binary_entropy(torch.ones(3, dtype=torch.int64))


@requires_native
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    samples = [
        torch.rand(17, dtype=torch.float32, device=device),
        torch.rand(4, 5, dtype=torch.float64, device=device),
        torch.rand(8, 6, dtype=torch.float64, device=device).t(),
        torch.empty(0, dtype=torch.float32, device=device),
    ]
    for sample in samples:
        torch.library.opcheck(torch.ops.d2ace_ext.binary_entropy.default, (sample,))


def test_wrapper_dispatch_and_forced_fallback(monkeypatch):
    p = torch.rand(100, dtype=torch.float64)
    native = ops.binary_entropy(p)
    calls = []
    monkeypatch.setattr(functional, "binary_entropy", lambda x: calls.append(1) or functional_entropy(x))
    with d2ace_ext.force_fallback():
        assert not d2ace_ext.use_native() and d2ace_ext.fallback_forced()
        fallback = ops.binary_entropy(p)
        with d2ace_ext.force_fallback(False):  # nested: the native kernels again, then back
            assert d2ace_ext.use_native()
        assert not d2ace_ext.use_native()
    assert d2ace_ext.use_native() == d2ace_ext.extension_loaded() and not d2ace_ext.fallback_forced()
    assert calls == [1]
    assert torch.allclose(fallback, native, rtol=1e-12, atol=1e-15)


def test_force_fallback_restores_the_switch_when_its_block_raises():
    with pytest.raises(KeyError):
        with d2ace_ext.force_fallback():
            raise KeyError("x")
    assert not d2ace_ext.fallback_forced()


def test_the_environment_variable_is_read_once_at_import():
    # Users set D2ACE_EXT_FORCE_FALLBACK before starting Python; setting it later changes
    # nothing (the switch is a module flag, not an environment read on every op call).
    code = (
        "import os, torch, d2ace_ext\n"
        "from d2ace_ext import ops\n"
        "print(d2ace_ext.fallback_forced(), d2ace_ext.use_native())\n"
        "os.environ['D2ACE_EXT_FORCE_FALLBACK'] = '0' if d2ace_ext.fallback_forced() else '1'\n"
        "print(d2ace_ext.fallback_forced(), d2ace_ext.use_native())\n"
    )
    results = {}
    for value in ("1", "0"):
        env = {**os.environ, "D2ACE_EXT_FORCE_FALLBACK": value}
        run = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr
        results[value] = run.stdout.split()
    loaded = str(d2ace_ext.extension_loaded())
    assert results["1"] == ["True", "False", "True", "False"]
    assert results["0"] == ["False", loaded, "False", loaded]


def test_missing_extension_warns_once_and_falls_back():
    code = (
        "import sys, warnings\n"
        "sys.modules['d2ace_ext._C'] = None\n"  # makes `from . import _C` raise ImportError
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import d2ace_ext, torch\n"
        "    from d2ace_ext import ops\n"
        "    out = ops.binary_entropy(torch.tensor([0.5]))\n"
        "hits = [w for w in caught if 'native extension could not be loaded' in str(w.message)]\n"
        "assert len(hits) == 1, hits\n"
        "assert not d2ace_ext.extension_loaded() and out.item() == 1.0\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


@requires_native
def test_op_traces_under_torch_compile():
    # aot_eager runs the fake kernel during tracing and the real kernel after, without codegen.
    compiled = torch.compile(lambda p: torch.ops.d2ace_ext.binary_entropy(p) * 2.0, backend="aot_eager", fullgraph=True)
    p = torch.rand(33, dtype=torch.float64)
    assert torch.allclose(compiled(p), 2.0 * functional.binary_entropy(p))
