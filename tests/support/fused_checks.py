"""What the fused-operator tests share: the tolerance rule and the device list (the
pure-PyTorch path is d2ace_ext.force_fallback()).

Tolerance rule: the reference is the pure-PyTorch pipeline run in float64 on the same
inputs (the same float32 state for the scoring); the kernel's error against it must stay
within K times the error of that same pipeline run by PyTorch in float32, plus a floor of
a few float32 eps times the magnitude of the quantity.
"""

from __future__ import annotations

import pytest
import torch

import d2ace_ext

EPS32 = torch.finfo(torch.float32).eps
K = 4  # kernel error may be this many times PyTorch's float32 error ...
FLOOR_ULPS = 8  # ... plus this many float32 eps times the magnitude
STATE_FLOATS = ("window", "loss", "flip_average", "flip_base")
STATE_INTS = ("pushes", "last_epoch")


def has_cuda_kernel(op: str) -> bool:
    return d2ace_ext.extension_loaded() and torch._C._dispatch_has_kernel_for_dispatch_key(f"d2ace_ext::{op}", "CUDA")


def devices(op: str):
    """cpu, and cuda skipped unless a GPU is present and the extension has a CUDA kernel for ``op``."""
    reason = "no GPU on this machine" if not torch.cuda.is_available() else f"the extension has no CUDA kernel of {op}"
    usable = torch.cuda.is_available() and has_cuda_kernel(op)
    return ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not usable, reason=reason))]


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
