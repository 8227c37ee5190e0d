"""Loading of the native extension ``d2ace_ext._C``, and the switch to the fallback.

The extension is only ever imported, never compiled here: building at import time can
hang on a stale lock after a killed build. If it cannot be loaded, the package warns
once and every operator runs its pure-PyTorch definition instead.
``D2ACE_EXT_FORCE_FALLBACK=1`` forces that path even when ``_C`` loads.
"""
from __future__ import annotations

import os
import warnings

import torch

_FORCE_ENV = "D2ACE_EXT_FORCE_FALLBACK"

_load_error: str | None = None
try:
    from . import _C  # noqa: F401  (importing registers the torch.ops.d2ace_ext operators)
except ImportError as exc:  # the shared object is missing or was built for another torch
    _load_error = f"{type(exc).__name__}: {exc}"
    warnings.warn(
        f"d2ace_ext: the native extension could not be loaded ({_load_error}); "
        "using the pure-PyTorch fallback. Rebuild with `pip install --no-build-isolation -e .`.",
        RuntimeWarning,
        stacklevel=2,
    )


def extension_loaded() -> bool:
    """True when ``d2ace_ext._C`` was imported and its operators are registered."""
    return _load_error is None


def fallback_forced() -> bool:
    """True when ``D2ACE_EXT_FORCE_FALLBACK`` asks for the pure-PyTorch path."""
    return os.environ.get(_FORCE_ENV, "0").strip().lower() not in {"", "0", "false", "no"}


def use_native() -> bool:
    """Whether operators should dispatch to the native kernels right now."""
    return extension_loaded() and not fallback_forced()


def native_has_cuda() -> bool:
    """Whether the loaded extension carries CUDA kernels."""
    if not extension_loaded():
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("d2ace_ext::binary_entropy", "CUDA")


def build_info() -> dict:
    """A summary of what was built and what will run, for logs and bug reports."""
    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "extension_loaded": extension_loaded(),
        "extension_error": _load_error,
        "native_cuda_kernels": native_has_cuda(),
        "fallback_forced": fallback_forced(),
        "cuda_available": torch.cuda.is_available(),
    }
