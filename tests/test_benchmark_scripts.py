"""The benchmark scripts still run: bench_overhead on the demo shape (one timed epoch,
no timing asserted) and compare_runs on two saved runs, with and without a regression."""
import json
import os
import sys

import pytest

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
    benchmarks = [{"fullname": name, "stats": {"median": m, "min": m, "max": m, "mean": m, "stddev": 0.0, "iqr": 0.0}}
                  for name, m in medians.items()]
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
