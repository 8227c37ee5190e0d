"""Build of the one native extension, ``d2ace_ext._C``.

The C++ CPU kernels are always built. The CUDA kernels are added when the flag
``D2ACE_EXT_CUDA`` allows it: ``auto`` (default) builds them when nvcc and a CUDA build
of torch are present, without needing a GPU; ``1`` requires them; ``0`` skips them.
"""
import glob
import os
import shutil

# cpp_extension reads CUDA_HOME when it is imported, so it must be settled first.
if "CUDA_HOME" not in os.environ and os.path.isfile("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")

import torch  # noqa: E402
from setuptools import setup  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("csrc")


def cuda_wanted() -> bool:
    flag = os.environ.get("D2ACE_EXT_CUDA", "auto").strip().lower()
    if flag not in {"auto", "0", "1"}:
        raise SystemExit(f"D2ACE_EXT_CUDA must be auto, 0 or 1, got {flag!r}")
    if flag == "0":
        return False
    home = cpp_extension.CUDA_HOME
    nvcc = home and os.path.isfile(os.path.join(home, "bin", "nvcc"))
    available = bool(torch.version.cuda) and bool(nvcc)
    if flag == "1" and not available:
        raise SystemExit(
            "D2ACE_EXT_CUDA=1 but the CUDA kernels cannot be built: "
            f"torch.version.cuda={torch.version.cuda!r}, nvcc under CUDA_HOME={home!r}: {bool(nvcc)}"
        )
    return available


def wheel_cuda_includes() -> list:
    """Headers that the local CUDA toolkit lacks ship in the nvidia wheels torch brings."""
    try:
        import nvidia  # type: ignore
    except ImportError:
        return []
    found = []
    for base in getattr(nvidia, "__path__", []):
        found += sorted(glob.glob(os.path.join(base, "cu*", "include")))
    return found


def extension():
    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp")) + glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
    # The language standard is the one torch itself asks for. -fopenmp is what makes
    # at::parallel_for run in parallel inside an extension: without _OPENMP its header
    # falls back to a serial loop.
    # -ffp-contract=off (and nvcc's --fmad=false): no FMA contraction, so the AVX2 and
    # baseline clones of the CPU loops (csrc/cpu/fast_math_cpu.h) round identically, and
    # the CUDA kernels round each product as the CPU ones do.
    cxx_flags = ["-O3", "-fopenmp", "-ffp-contract=off"]
    link_flags = ["-fopenmp"]
    if cuda_wanted():
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
        return cpp_extension.CUDAExtension(
            name="d2ace_ext._C",
            sources=sources,
            include_dirs=wheel_cuda_includes(),
            define_macros=[("D2ACE_EXT_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-DD2ACE_EXT_WITH_CUDA", "--fmad=false"]},
            extra_link_args=link_flags,
        )
    return cpp_extension.CppExtension(
        name="d2ace_ext._C", sources=sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)},
)
