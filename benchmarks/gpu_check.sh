#!/usr/bin/env bash
# GPU checks for a lent accelerator machine (H100/H200, torch and the CUDA toolkit there,
# no network), in stages that each fit one command:
#
#   bash benchmarks/gpu_check.sh core       build in place, the CUDA tests, cuda_check.py's
#                                           equivalence, compute-sanitizer memcheck, synccheck and
#                                           racecheck; within STAGE_BUDGET_S (default 330 s)
#   bash benchmarks/gpu_check.sh sanitizer  the three sanitizer runs alone (a rerun)
#   bash benchmarks/gpu_check.sh bench      kernel timing table (medians) at the MS-COCO, 1M x 100 and
#                                           kernel-path shapes; with BASELINE_SRC=<checkout> that
#                                           checkout is built too (nvcc flags BASELINE_NVCC_FLAGS) and
#                                           timed beside, e.g. BASELINE_SRC=. BASELINE_NVCC_FLAGS=--fmad=false
#   bash benchmarks/gpu_check.sh images     the image training step, D2ACE vs Random
#   bash benchmarks/gpu_check.sh nccl       the sampler's collectives under NCCL (nccl_check.py): the
#                                           per-step exchanges on CUDA tensors with any number of GPUs,
#                                           and with 2 or more a row-sharded run against a replicated one
#
# Every stage begins with `machine` and `build` (a no-op rebuild on a warm machine) and stops
# early only when one of those fails; every other step runs whatever the steps before did.
# A step gets its own time limit, cut to what is left of the stage's budget; a step that
# would start with under STEP_MIN_S (15) seconds left is skipped. Each stage ends with a Markdown table
# (step | outcome | seconds), also written to $GPU_CHECK_SUMMARY when set; exit status 1
# when a step failed. PYTHON picks the interpreter; CUDA_HOME the toolkit.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY="${PYTHON:-python3}"
STAGE="${1:-core}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # the scripts import this checkout's package
export D2ACE_EXT_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0+PTX}"
if [[ -z ${CUDA_HOME:-} ]]; then
    if [[ -x /usr/local/cuda/bin/nvcc ]]; then CUDA_HOME=/usr/local/cuda
    elif command -v nvcc >/dev/null; then CUDA_HOME=$(dirname "$(dirname "$(command -v nvcc)")"); fi
fi
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
TMP=$(mktemp -d)
STARTED=$(date +%s)
ROWS=()
FAILED=0
SKIP_REASON=""

elapsed() { echo $(( $(date +%s) - STARTED )); }

# ---- steps: each returns 0 (pass), 77 (skip, reason in SKIP_REASON) or another code (fail),
# ---- and bounds its work by STEP_LIMIT seconds.

step_machine() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    fi
    timeout -k 5 "$STEP_LIMIT" "$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; \
print(torch.cuda.get_device_name() + ', torch ' + torch.__version__ + ', CUDA ' + str(torch.version.cuda))" \
        | tee "$TMP/machine"
}

# A build with nothing to do prints only "ninja: no work to do.": that passes; a failed
# build fails the step (its exit status, never the filter's, decides).
step_build() {
    if ! timeout -k 10 "$STEP_LIMIT" "$PY" setup.py -q build_ext --inplace >"$TMP/build.log" 2>&1; then
        tail -n 40 "$TMP/build.log"
        return 1
    fi
    if grep -qv '^ninja: no work to do' "$TMP/build.log"; then
        grep -v '^ninja: no work to do' "$TMP/build.log" | tail -n 15
    else
        echo "nothing to rebuild"
    fi
    "$PY" -c "import d2ace_ext; info = d2ace_ext.build_info(); print(info); \
assert info['native_cuda_kernels'], 'the CUDA kernels were not built'"
}

step_cuda_tests() {
    if ! "$PY" -c "import pytest" 2>/dev/null; then
        SKIP_REASON="pytest is not installed here (cuda_check.py check covers the equivalence)"
        return 77
    fi
    # No -x: every CUDA case runs and the summary lists each failure.
    timeout -k 10 "$STEP_LIMIT" "$PY" -m pytest -q -rfEs -p no:cacheprovider -k cuda tests/test_ops.py tests/test_fused_*.py
}

step_equivalence() { timeout -k 10 "$STEP_LIMIT" "$PY" benchmarks/cuda_check.py check; }

# compute-sanitizer from $CUDA_HOME/bin (often off PATH), without the caching allocator:
# out-of-bounds accesses inside a pooled block would go unseen.
sanitize() {
    local tool=$1 bin="$CUDA_HOME/bin/compute-sanitizer"
    [[ -x $bin ]] || bin=$(command -v compute-sanitizer) || {
        SKIP_REASON="compute-sanitizer not found under $CUDA_HOME/bin or on PATH"
        return 77
    }
    local only_ours=()  # instrument this package's kernels alone, where the tool can filter
    "$bin" --help 2>&1 | grep -q -- "--kernel-name" && only_ours=(--kernel-name kns=d2ace_ext)
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout -k 10 "$STEP_LIMIT" "$bin" --tool "$tool" --error-exitcode 1 \
        ${only_ours[@]+"${only_ours[@]}"} "$PY" benchmarks/cuda_check.py small
}
step_memcheck() { sanitize memcheck; }
step_synccheck() { sanitize synccheck; }
step_racecheck() { sanitize racecheck; }

step_timing() { timeout -k 10 "$STEP_LIMIT" "$PY" benchmarks/cuda_check.py timing --json "$TMP/new.json"; }

step_baseline() {
    if [[ -z ${BASELINE_SRC:-} ]]; then
        SKIP_REASON="set BASELINE_SRC=<checkout> (and BASELINE_NVCC_FLAGS) to time another build beside"
        return 77
    fi
    local copy="$TMP/baseline" t0=$SECONDS
    mkdir -p "$copy" && cp -a "$BASELINE_SRC"/setup.py "$BASELINE_SRC"/csrc "$BASELINE_SRC"/d2ace_ext "$copy"/ || return 1
    rm -f "$copy"/d2ace_ext/_C*.so
    if ! (cd "$copy" && D2ACE_EXT_NVCC_FLAGS="${BASELINE_NVCC_FLAGS:-}" timeout -k 10 "$STEP_LIMIT" \
            "$PY" setup.py -q build_ext --inplace >"$TMP/baseline_build.log" 2>&1); then
        tail -n 40 "$TMP/baseline_build.log"
        return 1
    fi
    local left=$(( STEP_LIMIT - (SECONDS - t0) ))
    (( left >= 10 )) || return 124
    D2ACE_CHECK_PACKAGE_ROOT="$copy" timeout -k 10 "$left" "$PY" benchmarks/cuda_check.py timing --json "$TMP/baseline.json"
}

step_compare() {
    if [[ ! -s $TMP/baseline.json || ! -s $TMP/new.json ]]; then
        SKIP_REASON="needs both timing runs"
        return 77
    fi
    "$PY" benchmarks/cuda_check.py compare "$TMP/baseline.json" "$TMP/new.json"
}

step_image_step() { timeout -k 10 "$STEP_LIMIT" "$PY" benchmarks/bench_image_step.py --device cuda; }

step_nccl() {
    local rc=0
    timeout -k 10 "$STEP_LIMIT" "$PY" benchmarks/nccl_check.py || rc=$?
    if (( rc == 77 )); then SKIP_REASON="no GPU or no NCCL in this torch build"; fi
    return $rc
}

# ---- stages: "name limit_s function [gate]"; a failed gate skips the rest.
SETUP=("machine 60 step_machine gate" "build 300 step_build gate")
case $STAGE in
    core) BUDGET=${STAGE_BUDGET_S:-330}
          STEPS=("${SETUP[@]}" "cuda_tests 200 step_cuda_tests" "equivalence 90 step_equivalence"
                 "memcheck 90 step_memcheck" "synccheck 90 step_synccheck" "racecheck 90 step_racecheck") ;;
    sanitizer) BUDGET=${STAGE_BUDGET_S:-420}
          STEPS=("${SETUP[@]}" "memcheck 120 step_memcheck" "synccheck 120 step_synccheck"
                 "racecheck 120 step_racecheck") ;;
    bench) BUDGET=${STAGE_BUDGET_S:-540}
          STEPS=("${SETUP[@]}" "timing 120 step_timing" "baseline 360 step_baseline" "compare 30 step_compare") ;;
    images) BUDGET=${STAGE_BUDGET_S:-540}
          STEPS=("${SETUP[@]}" "image_step 300 step_image_step") ;;
    nccl) BUDGET=${STAGE_BUDGET_S:-300}
          STEPS=("${SETUP[@]}" "nccl 180 step_nccl") ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [core|sanitizer|bench|images|nccl]" >&2; exit 2 ;;
esac

summary() {
    local device="unknown device"
    [[ -s $TMP/machine ]] && device=$(tail -n 1 "$TMP/machine")
    {
        echo
        echo "gpu_check.sh $STAGE on $device: $(elapsed) s of a ${BUDGET} s budget, $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "| step | outcome | seconds |"
        echo "|---|---|---:|"
        printf '%s\n' "${ROWS[@]}"
    } | tee ${GPU_CHECK_SUMMARY:+"$GPU_CHECK_SUMMARY"}
    rm -rf "$TMP"
}
trap summary EXIT
trap 'exit 143' TERM INT

stopped=""
for entry in "${STEPS[@]}"; do
    read -r name limit fn kind <<<"$entry"
    if [[ -n $stopped ]]; then
        ROWS+=("| $name | skip ($stopped failed) | 0 |")
        continue
    fi
    left=$(( BUDGET - $(elapsed) ))
    if (( left < ${STEP_MIN_S:-15} )); then
        ROWS+=("| $name | skip (the stage's ${BUDGET} s budget was spent) | 0 |")
        continue
    fi
    (( limit > left )) && limit=$left
    echo "== $name (at $(elapsed) s, limit $limit s)"
    t0=$(date +%s)
    rc=0
    SKIP_REASON=""
    STEP_LIMIT=$limit "$fn" || rc=$?
    took=$(( $(date +%s) - t0 ))
    case $rc in
        0) outcome=pass ;;
        77) outcome="skip: $SKIP_REASON" ;;
        124|137) outcome="fail (timed out after $limit s)"; FAILED=1 ;;
        *) outcome="fail (exit $rc)"; FAILED=1 ;;
    esac
    ROWS+=("| $name | $outcome | $took |")
    if [[ $rc -ne 0 && $rc -ne 77 && ${kind:-} == gate ]]; then stopped=$name; fi
done
exit $FAILED
