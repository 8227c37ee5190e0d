#!/usr/bin/env bash
# One command for the accelerator machine (H100/H200, torch + CUDA preinstalled, no
# network): builds the package in place against that torch, runs the CUDA tests,
# compute-sanitizer memcheck on a small case, and prints the kernel timing table.
# Budget: about 4 min build (one architecture) + 3 min checks + 2 min image step; under 10 minutes.
#     bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
started=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - started )) s)"; }

stamp "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

stamp "build (D2ACE_EXT_CUDA=1, sm_90)"
export D2ACE_EXT_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
[ -x /usr/local/cuda/bin/nvcc ] && export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
# build_ext --inplace needs neither pip nor a recent setuptools' pyproject support.
"$PY" setup.py -q build_ext --inplace 2>&1 | grep -v "^ninja: no work" | tail -n 20
"$PY" -c "import d2ace_ext; info = d2ace_ext.build_info(); print(info); assert info['native_cuda_kernels']"

stamp "CUDA tests"
if "$PY" -c "import pytest" 2>/dev/null; then
    "$PY" -m pytest -q -x -k "cuda" tests/test_ops.py tests/test_fused_*.py || exit 1
else
    echo "pytest not installed here: running benchmarks/cuda_check.py only"
fi

stamp "compute-sanitizer memcheck (small case)"
if command -v compute-sanitizer >/dev/null; then
    compute-sanitizer --tool memcheck --error-exitcode 1 "$PY" benchmarks/cuda_check.py --small
else
    echo "compute-sanitizer not found"
fi

stamp "equivalence, opcheck, launch count, timings"
"$PY" benchmarks/cuda_check.py
stamp "image training step: D2ACE vs Random, ResNet-101 @ 128 and ResNet-50 @ 64, 448 px, MS-COCO shape"
# About 1-2 minutes; a failure here is reported, not fatal to the kernel checks above.
timeout 300 "$PY" benchmarks/bench_image_step.py --device cuda || echo "bench_image_step.py failed (rc=$?)"
stamp "done"
