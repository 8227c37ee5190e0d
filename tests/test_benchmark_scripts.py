"""The benchmark scripts still run: bench_overhead on the demo shape (one timed epoch,
no timing asserted) and compare_runs on two saved runs, with and without a regression."""

import json
import os
import sys

import pytest
import torch

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)

import bench_overhead  # noqa: E402
import compare_runs  # noqa: E402


def test_overhead_script_prints_every_arm_of_the_demo_case(capsys):
    assert bench_overhead.main(["--sets", "demo", "--workers", "0", "--reps", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for arm in ("random", "ml_unc", "d2ace"):
        assert f"| demo | mlp | 0 | {arm} |" in out
    assert "| demo | mlp | 0 | " in out.split("share of the plain epoch")[1]


def test_overhead_script_skips_a_missing_set_with_a_message(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("D2ACE_DATA_DIR", str(tmp_path))
    assert bench_overhead.load_cases(["cal500"], ["mlp"], 1) == []
    assert "skipping cal500" in capsys.readouterr().out


def saved_run(path, medians):
    benchmarks = [
        {"fullname": name, "stats": {"median": m, "min": m, "max": m, "mean": m, "stddev": 0.0, "iqr": 0.0}}
        for name, m in medians.items()
    ]
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return str(path)


def test_compare_runs_fails_only_past_the_threshold(tmp_path, capsys):
    old = saved_run(tmp_path / "old.json", {"a": 1.0, "b": 2.0, "gone": 1.0})
    slower = saved_run(tmp_path / "new.json", {"a": 1.05, "b": 2.6, "added": 1.0})
    assert compare_runs.main([old, slower, "--fail", "median:10%"]) == 1
    out = capsys.readouterr().out
    assert "b: Field 'median'" in out and "a: Field" not in out and "2 benchmark(s) in only one" in out
    assert compare_runs.main([old, slower, "--fail", "median:40%"]) == 0
    assert compare_runs.main([old, slower]) == 0  # no threshold: report only


def test_compare_runs_needs_two_runs(tmp_path, capsys):
    assert compare_runs.main(["--storage", str(tmp_path)]) == 2
    assert "need two saved runs" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        compare_runs.main(["--fail", "median:ten", str(tmp_path / "a"), str(tmp_path / "b")])
    assert "median:10%" in capsys.readouterr().err


def test_gpu_check_names_test_files_that_hold_cuda_cases():
    # gpu_check.sh runs once on a lent GPU; a renamed test file would make it pass on nothing.
    import glob
    import re
    import subprocess

    root = os.path.dirname(BENCHMARKS)
    script = open(os.path.join(BENCHMARKS, "gpu_check.sh")).read()
    line = next(line for line in script.splitlines() if "pytest -q" in line)
    patterns = re.findall(r"tests/\S+\.py", line)
    assert patterns, line
    files = []
    for pattern in patterns:
        matched = sorted(glob.glob(os.path.join(root, pattern)))
        assert matched, f"gpu_check.sh names {pattern}, which matches no file"
        files += matched
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", "-k", "cuda", *files],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    for path in files:
        if os.path.basename(path) != "test_fused_sampler.py":  # the sampler test has no device axis
            assert os.path.relpath(path, root) + "::" in collected.stdout, f"no CUDA case collected from {path}"


def test_record_floor_moves_the_rows_of_the_batch_and_keeps_a_valid_state():
    import pipeline_state

    state = pipeline_state.build_state("yeast")
    visits = state.selector.visits
    before = {name: getattr(visits, name).clone() for name in ("window", "loss", "flip_average", "flip_base")}
    index = state.batches[state.step % len(state.targets)]
    state.move_rows()
    # loss and the flip tensors are written back unchanged; window slot 1 of the batch's
    # rows now holds slot 0 (the copy is the write the floor times), nothing else moved
    for name in ("loss", "flip_average", "flip_base"):
        assert torch.equal(getattr(visits, name), before[name])
    expected = before["window"].clone()
    expected[index, 1] = expected[index, 0]
    assert torch.equal(visits.window, expected)
    assert state.record_bytes() == 128 * state.q * 37
