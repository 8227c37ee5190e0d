"""The benchmark scripts still run: bench_overhead on the demo shape (one timed epoch,
no timing asserted), compare_runs on two saved runs, with and without a regression, and
bench_published on a stand-in for the published main.py (no timing asserted)."""

import json
import os
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)

import bench_overhead  # noqa: E402
import bench_published  # noqa: E402
import compare_runs  # noqa: E402
import published_code  # noqa: E402


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


# A stand-in for the published main.py: the same function names, signatures and scoring
# anchors, with trivial bodies of our own. Its top level must never run (it raises, and
# imports a package that does not exist), as the real one parses arguments and trains.
FAKE_MAIN = textwrap.dedent(
    """
    import numpy as np
    import no_such_package_d2ace_fake
    from collections import deque
    from helpers import *

    raise SystemExit("the top level of main.py ran")


    def update_L(L, loss_matrix, ids, max_history_length=4):
        for row, idx in zip(loss_matrix, ids):
            L.setdefault(idx, deque(maxlen=max_history_length)).append(np.asarray(row))
        return L


    def update_H(H, y_pred, ids, max_history_length=4):
        for row, idx in zip(y_pred, ids):
            H.setdefault(idx, deque(maxlen=max_history_length)).append(np.asarray(row))
        return H


    def update_ema_flip(ema_flip, H, ids, label_dim, alpha=0.5):
        ema_flip[ids] = alpha * ema_flip[ids]
        return ema_flip


    def update_E(H, E, ids, label_dim):
        E[ids] = np.stack([H[i][-1] for i in ids])
        return E


    def calculate_probabilities(scores, epoch, first, last, pressure):
        return np.exp(-scores / (np.abs(scores).max() + 1))


    def training(configs):
        for epoch in range(3):
            # construct loss / hard matrices: the scoring starts here
            last = np.stack([L[i][-1] for i in range(ins_dim)])
            score = last.sum(1) + ema_flip.sum(1) + custom_dataloader.E.sum(1) + nbrs_idx.shape[1]
            weights = calculate_probabilities(score, epoch, 10, num_epochs, 8)
            custom_dataloader.sample_probabilities = weights
            epoch_losses_train.append(0.0)
    """
)


def fake_published(tmp_path, text=FAKE_MAIN):
    (tmp_path / "main.py").write_text(text)
    return str(tmp_path)


def test_published_bench_skips_with_a_message_without_the_code(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("D2ACE_PUBLISHED_SRC", raising=False)
    assert bench_published.main([]) == 0
    assert bench_published.main(["--published-src", str(tmp_path)]) == 0  # a directory without main.py
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("skipped: ") for line in lines)
    assert "was not given" in lines[0] and f"no main.py at {str(tmp_path)!r}" in lines[1]
    assert "git clone https://github.com/iunanyou/D2ACE" in lines[0]


def test_published_loader_extracts_functions_and_scoring_without_the_top_level(tmp_path):
    code = published_code.load(os.path.join(fake_published(tmp_path), "main.py"))
    assert list(code.functions) == ["update_L", "update_H", "update_ema_flip", "update_E", "calculate_probabilities"]
    first_line = FAKE_MAIN.splitlines().index("        last = np.stack([L[i][-1] for i in range(ins_dim)])") + 1
    assert code.scoring_lines == (first_line, first_line + 3)  # the append after the end anchor is left out
    L = code.functions["update_L"]({}, [[1.0, 2.0], [3.0, 4.0]], [1, 0])
    assert [list(L[0][-1]), list(L[1][-1])] == [[3.0, 4.0], [1.0, 2.0]]
    loader = SimpleNamespace(E=np.zeros((2, 2)), sample_probabilities=None)
    inputs = {"ins_dim": 2, "label_dim": 2, "L": L, "ema_flip": np.zeros((2, 2)), "custom_dataloader": loader}
    inputs.update({"train_subset": None, "nbrs_idx": np.zeros((2, 7)), "epoch": 20, "num_epochs": 100})
    code.run_scoring(inputs)
    # U = (7 + 7, 3 + 7): each row's last loss sum plus the 7 neighbour columns; max |U| + 1 = 15
    assert np.allclose(loader.sample_probabilities, np.exp(-np.array([14.0, 10.0]) / 15))


def test_published_bench_runs_the_stand_in_at_the_demo_shape(tmp_path, capsys):
    src = fake_published(tmp_path)
    assert bench_published.main(["--published-src", src, "--shape", "demo", "--batches", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| side | bookkeeping s / epoch | scoring s / epoch | total s / epoch |" in out
    assert "| published (bookkeeping extrapolated from 2 of 15 batches) | " in out
    assert "| library (median of 1) | " in out and "| published / library | " in out
    assert "n = 1920, q = 14, b = 128, 15 batches" in out and "threads 1" in out
    assert "per round" not in out
    assert bench_published.main(["--published-src", src, "--shape", "demo", "--batches", "2", "--rounds", "3"]) == 0
    rounds = capsys.readouterr().out.splitlines()[-2]
    assert rounds.startswith("total per round, published / library, 3 rounds: ")
    assert len(rounds.split(": ")[1].split("; ")[0].split(", ")) == 3 and "; median " in rounds
    with pytest.raises(SystemExit):
        bench_published.main(["--published-src", src, "--rounds", "0"])
    assert "--rounds must be a positive integer, got 0" in capsys.readouterr().err


def test_published_bench_names_a_missing_anchor_or_result_or_an_unknown_name(tmp_path, capsys):
    src = fake_published(tmp_path, FAKE_MAIN.replace("construct loss / hard matrices", "build the scores"))
    assert bench_published.main(["--published-src", src, "--shape", "demo"]) == 2
    assert "the scoring anchor 'construct loss / hard matrices' was not found" in capsys.readouterr().err
    src = fake_published(tmp_path, FAKE_MAIN.replace("custom_dataloader.sample_probabilities =", "result ="))
    assert bench_published.main(["--published-src", src, "--shape", "demo"]) == 2
    assert "no assignment to custom_dataloader.sample_probabilities after line" in capsys.readouterr().err
    src = fake_published(tmp_path, FAKE_MAIN.replace("E[ids] = np.stack", "E[ids] = helper_from_util"))
    assert bench_published.main(["--published-src", src, "--shape", "demo"]) == 2
    assert "reads ['helper_from_util']" in capsys.readouterr().err


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
