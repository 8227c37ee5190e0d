"""benchmarks/gpu_check.sh on the CPU: its build filter, step logic and summary, with the
GPU steps stubbed by a fake python, nvidia-smi and compute-sanitizer that log how they
were called. A GPU is lent rarely and briefly; these keep the script's own bugs from
spending it: a CUDA test run that stopped everything after it, a no-op rebuild that
ended the script, a sanitizer step that ran with the caching allocator or not at all."""

from __future__ import annotations

import os
import re
import stat
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")

# Answers by what it was asked: the first keyword of $FAKE_FAIL that matches fails
# (exit 1), of $FAKE_SLOW sleeps $FAKE_SLEEP s first. Every call is logged.
FAKE_PYTHON = r"""#!/usr/bin/env bash
args="$*"
case "$args" in
    *torch.cuda.is_available*) key=machine ;;
    *"import pytest"*) key=has_pytest ;;
    *build_info*) key=build_info ;;
    setup.py*) key=build ;;
    "-m pytest"*) key=pytest ;;
    *cuda_check.py\ check*) key=check ;;
    *cuda_check.py\ small*) key=small ;;
    *cuda_check.py\ timing*) key=timing ;;
    *cuda_check.py\ compare*) key=compare ;;
    *bench_image_step.py*) key=image ;;
    *nccl_check.py*) key=nccl ;;
    *) key=other ;;
esac
echo "python[$key] $args | cwd=$(pwd) | nocache=${PYTORCH_NO_CUDA_MEMORY_CACHING:-} | package=${D2ACE_CHECK_PACKAGE_ROOT:-}" >>"$FAKE_LOG"
[[ " ${FAKE_SLOW:-} " == *" $key "* ]] && sleep "${FAKE_SLEEP:-1}"
[[ $key == machine ]] && echo "Fake GPU 80GB, torch 0.0, CUDA 0.0"
[[ $key == build ]] && printf '%b\n' "${FAKE_BUILD_OUTPUT:-ninja: no work to do.}"
if [[ $key == timing ]]; then  # cuda_check.py timing --json FILE
    shift $(( $# - 1 )); echo '{"rows": []}' >"$1"
fi
[[ " ${FAKE_FAIL:-} " == *" $key "* ]] && exit 1
exit 0
"""

FAKE_SANITIZER = r"""#!/usr/bin/env bash
if [[ $1 == --help ]]; then echo "  --kernel-name arg   Filter the kernels"; exit 0; fi
echo "sanitizer $* | nocache=${PYTORCH_NO_CUDA_MEMORY_CACHING:-}" >>"$FAKE_LOG"
[[ " ${FAKE_FAIL:-} " == *" sanitizer "* ]] && exit 1
exit 0
"""


def executable(path, text):
    with open(path, "w") as out:
        out.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)


@pytest.fixture
def fake(tmp_path):
    bin_dir, cuda_bin = tmp_path / "bin", tmp_path / "cuda" / "bin"
    bin_dir.mkdir()
    cuda_bin.mkdir(parents=True)
    executable(bin_dir / "python", FAKE_PYTHON)
    executable(bin_dir / "nvidia-smi", "#!/usr/bin/env bash\necho 'Fake GPU, 81559 MiB, 580.00'\n")
    executable(cuda_bin / "compute-sanitizer", FAKE_SANITIZER)
    return tmp_path


def run(fake, stage="core", **env):
    """Runs the script; returns (exit status, output, the summary rows {step: outcome}, log lines)."""
    log, summary = fake / "calls.log", fake / "summary.md"
    for path in (log, summary):  # each run's own
        if path.exists():
            path.unlink()
    environment = {
        **os.environ,
        "PYTHON": str(fake / "bin" / "python"),
        "CUDA_HOME": str(fake / "cuda"),
        "PATH": f"{fake / 'bin'}:/usr/bin:/bin",
        "FAKE_LOG": str(log),
        "GPU_CHECK_SUMMARY": str(summary),
        **env,
    }
    done = subprocess.run(["bash", SCRIPT, stage], capture_output=True, text=True, env=environment, timeout=120)
    rows = {}
    if summary.exists():
        for line in summary.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if line.startswith("| ") and len(cells) == 3 and cells[0] != "step":
                rows[cells[0]] = cells[1]
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, done.stdout + done.stderr, rows, calls


CORE_STEPS = ["machine", "build", "cuda_tests", "equivalence", "memcheck", "synccheck", "racecheck"]


def test_core_runs_every_step_and_prints_the_summary_table(fake):
    code, out, rows, calls = run(fake)
    assert code == 0, out
    assert list(rows) == CORE_STEPS and set(rows.values()) == {"pass"}, rows
    assert "gpu_check.sh core on Fake GPU 80GB, torch 0.0, CUDA 0.0" in out
    assert "| step | outcome | seconds |" in out
    pytest_call = next(c for c in calls if c.startswith("python[pytest]"))
    assert " -x" not in pytest_call and "-k cuda tests/test_ops.py tests/test_fused_" in pytest_call
    sanitizer_calls = [c for c in calls if c.startswith("sanitizer")]
    assert [c.split("--tool ")[1].split()[0] for c in sanitizer_calls] == ["memcheck", "synccheck", "racecheck"]
    for call in sanitizer_calls:  # without the caching allocator, our kernels only, the small case
        assert call.endswith("nocache=1") and "--kernel-name kns=d2ace_ext" in call
        assert "--error-exitcode 1" in call and "benchmarks/cuda_check.py small" in call
    assert any(c.startswith("python[check]") for c in calls)


def test_a_no_op_rebuild_passes_and_a_failed_build_stops_the_stage(fake):
    # A warm machine's rebuild prints only "ninja: no work to do." (the old filter then
    # selected nothing, and pipefail ended the script after its build line).
    code, out, rows, calls = run(fake, FAKE_BUILD_OUTPUT="ninja: no work to do.")
    assert code == 0 and rows["build"] == "pass", out
    code, out, rows, calls = run(fake, FAKE_BUILD_OUTPUT="[1/3] nvcc ...\\nerror: expected a ';'", FAKE_FAIL="build")
    assert code == 1
    assert rows["build"] == "fail (exit 1)" and "error: expected a ';'" in out
    assert all(rows[step] == "skip (build failed)" for step in CORE_STEPS[2:]), rows
    assert not any(c.startswith(("python[pytest]", "sanitizer")) for c in calls)


def test_a_failing_step_does_not_stop_the_ones_after_it(fake):
    # The CUDA tests once stopped at their second file, and -x with || exit 1 stopped
    # the equivalence and sanitizer steps with them.
    code, out, rows, calls = run(fake, FAKE_FAIL="pytest small")
    assert code == 1
    assert rows == {
        "machine": "pass",
        "build": "pass",
        "cuda_tests": "fail (exit 1)",
        "equivalence": "pass",
        "memcheck": "pass",
        "synccheck": "pass",
        "racecheck": "pass",
    }, rows
    code, out, rows, calls = run(fake, FAKE_FAIL="sanitizer")
    assert code == 1 and [rows[s] for s in CORE_STEPS[4:]] == ["fail (exit 1)"] * 3


def test_a_missing_sanitizer_is_a_skip_with_its_reason(fake):
    os.remove(fake / "cuda" / "bin" / "compute-sanitizer")
    code, out, rows, calls = run(fake)
    assert code == 0, out
    for step in CORE_STEPS[4:]:
        assert rows[step] == f"skip: compute-sanitizer not found under {fake / 'cuda'}/bin or on PATH"


def test_a_failed_machine_check_stops_the_stage(fake):
    code, out, rows, calls = run(fake, FAKE_FAIL="machine")
    assert code == 1 and rows["machine"] == "fail (exit 1)"
    assert all(rows[step] == "skip (machine failed)" for step in CORE_STEPS[1:])


def test_a_step_is_cut_to_the_stage_budget_and_later_steps_are_skipped(fake):
    code, out, rows, calls = run(fake, STAGE_BUDGET_S="6", STEP_MIN_S="2", FAKE_SLOW="pytest", FAKE_SLEEP="60")
    assert code == 1
    # the step's own limit is 200 s; the budget leaves it what the first two steps did not use
    assert re.fullmatch(r"fail \(timed out after [2-6] s\)", rows["cuda_tests"]), rows
    assert all(rows[step] == "skip (the stage's 6 s budget was spent)" for step in CORE_STEPS[3:]), rows


def test_bench_stage_times_a_baseline_beside_when_asked(fake):
    code, out, rows, calls = run(fake, "bench")
    assert code == 0, out
    assert rows["timing"] == "pass" and rows["baseline"].startswith("skip: set BASELINE_SRC=")
    assert rows["compare"] == "skip: needs both timing runs"
    code, out, rows, calls = run(fake, "bench", BASELINE_SRC=ROOT, BASELINE_NVCC_FLAGS="--fmad=false")
    assert code == 0, out
    assert [rows[s] for s in ("timing", "baseline", "compare")] == ["pass"] * 3, rows
    builds = [c for c in calls if c.startswith("python[build]")]
    assert len(builds) == 2 and "/baseline |" in builds[1]
    baseline_timing = [c for c in calls if c.startswith("python[timing]")][1]
    assert baseline_timing.endswith("/baseline") and "--json" in baseline_timing


def test_other_stages_and_a_wrong_stage_name(fake):
    code, out, rows, calls = run(fake, "images")
    assert code == 0 and list(rows) == ["machine", "build", "image_step"]
    code, out, rows, calls = run(fake, "sanitizer")
    assert code == 0 and list(rows) == ["machine", "build", "memcheck", "synccheck", "racecheck"]
    code, out, rows, calls = run(fake, "nccl")
    assert code == 0 and list(rows) == ["machine", "build", "nccl"] and rows["nccl"] == "pass"
    assert any(c.startswith("python[nccl] benchmarks/nccl_check.py") for c in calls)
    code, out, rows, calls = run(fake, "everything")
    assert code == 2 and "usage: bash benchmarks/gpu_check.sh [core|sanitizer|bench|images|nccl]" in out
