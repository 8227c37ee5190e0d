"""Loading of the native extension ``d2ace_ext._C``, and the switch to the fallback.

The extension is only ever imported, never compiled here: building at import time can
hang on a stale lock after a killed build. If it cannot be loaded, the package warns
once and every operator runs its pure-PyTorch definition instead.

The switch to the pure-PyTorch path is one module flag, read by every wrapper in
:mod:`d2ace_ext.ops`. Users set it with the environment variable
``D2ACE_EXT_FORCE_FALLBACK=1``, read once when the package is imported; code and tests
use :func:`force_fallback`, a context manager. Changing the variable after import has no
effect.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator

import torch

FORCE_FALLBACK_ENV = "D2ACE_EXT_FORCE_FALLBACK"

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


def _environment_forces_fallback() -> bool:
    return os.environ.get(FORCE_FALLBACK_ENV, "0").strip().lower() not in {"", "0", "false", "no"}


_fallback_forced: bool = _environment_forces_fallback()
_native_cuda: bool | None = None  # whether _C has CUDA kernels, asked once


def extension_loaded() -> bool:
    """True when ``d2ace_ext._C`` was imported and its operators are registered."""
    return _load_error is None


def fallback_forced() -> bool:
    """True while the pure-PyTorch path is forced (:func:`force_fallback`, or
    ``D2ACE_EXT_FORCE_FALLBACK`` set when the package was imported)."""
    return _fallback_forced


@contextlib.contextmanager
def force_fallback(enabled: bool = True) -> Iterator[None]:
    """Within the block every operator takes its pure-PyTorch definition
    (``enabled=False``: the native kernels, even under ``D2ACE_EXT_FORCE_FALLBACK``).
    The previous setting comes back on exit. One flag for the process: do not switch it
    while another thread runs operators."""
    global _fallback_forced
    before = _fallback_forced
    _fallback_forced = bool(enabled)
    try:
        yield
    finally:
        _fallback_forced = before


def use_native() -> bool:
    """Whether operators dispatch to the native kernels right now."""
    return _load_error is None and not _fallback_forced


def native_has_cuda() -> bool:
    """Whether the loaded extension carries CUDA kernels."""
    global _native_cuda
    if _native_cuda is None:
        _native_cuda = extension_loaded() and torch._C._dispatch_has_kernel_for_dispatch_key(
            "d2ace_ext::binary_entropy", "CUDA"
        )
    return _native_cuda


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
