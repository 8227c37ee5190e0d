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
# +PTX on the last architecture embeds its PTX too, which the driver compiles for a newer
# GPU at load time (without it the kernels would not run there at all).
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")

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


def extra_nvcc_flags() -> list:
    """Flags appended to nvcc's from D2ACE_EXT_NVCC_FLAGS (space-separated), e.g. for a
    timing build with --fmad=false."""
    return os.environ.get("D2ACE_EXT_NVCC_FLAGS", "").split()


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
    # -ffp-contract=off: no FMA contraction, so the AVX2 and baseline clones of the CPU
    # loops (csrc/cpu/fast_math_cpu.h) round identically. nvcc keeps its default
    # (--fmad=true): the CUDA kernels cannot round as the CPU ones do anyway (the CPU
    # evaluates log and exp by its own polynomials, CUDA by libdevice), and the rank
    # quantiser's bin, ceil((1 - (w - low) / span) n), has no product-and-sum to contract.
    # --fmad=false changed 0.3-3 % of each kernel's PTX instructions (nvcc 13.0, sm_90);
    # D2ACE_EXT_NVCC_FLAGS="--fmad=false" builds it that way, to time the difference.
    cxx_flags = ["-O3", "-fopenmp", "-ffp-contract=off"]
    link_flags = ["-fopenmp"]
    if cuda_wanted():
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
        return cpp_extension.CUDAExtension(
            name="d2ace_ext._C",
            sources=sources,
            include_dirs=wheel_cuda_includes(),
            define_macros=[("D2ACE_EXT_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-DD2ACE_EXT_WITH_CUDA", *extra_nvcc_flags()]},
            extra_link_args=link_flags,
        )
    return cpp_extension.CppExtension(
        name="d2ace_ext._C", sources=sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)},
)
