"""Typed entry points of the native operators, each with its pure-PyTorch twin.

``binary_entropy`` dispatches to ``torch.ops.d2ace_ext.binary_entropy`` when the
extension is loaded (CPU, or CUDA when built with CUDA kernels) and to
:func:`d2ace_ext.functional.binary_entropy` otherwise.
"""
from __future__ import annotations

import torch

from . import functional
from ._extension import extension_loaded, native_has_cuda, use_native

if extension_loaded():
    # Fake (meta) kernels give shapes without computing, for torch.compile and opcheck.
    @torch.library.register_fake("d2ace_ext::binary_entropy")
    def _binary_entropy_fake(probs: torch.Tensor) -> torch.Tensor:
        torch._check(probs.is_floating_point(), lambda: "binary_entropy: probs must be floating point")
        return torch.empty_like(probs, memory_format=torch.contiguous_format)


def _native_for(tensor: torch.Tensor) -> bool:
    if not use_native():
        return False
    if tensor.device.type == "cpu":
        return True
    return tensor.device.type == "cuda" and native_has_cuda()


def binary_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Eq. 1 in bits, elementwise: (...,) -> (...,), same dtype; 0·log 0 = 0."""
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise TypeError(f"binary_entropy: probs must be a floating-point tensor, got {type(probs).__name__}"
                        + (f" of dtype {probs.dtype}" if isinstance(probs, torch.Tensor) else ""))
    if _native_for(probs):
        return torch.ops.d2ace_ext.binary_entropy.default(probs)
    return functional.binary_entropy(probs)
