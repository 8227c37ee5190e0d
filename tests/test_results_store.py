"""Nothing lost, nothing silently wrong around the results store and the command-line
options. One test per case, named after what it protects; each failed on the code
before its fix."""

import json
import os

import pytest

from d2ace_ext import cli
from d2ace_ext.harness.evidence import main as evidence_main
from d2ace_ext.harness.evidence import merge_compact
from d2ace_ext.harness.experiment import Protocol, RunKey
from d2ace_ext.harness.fold_run import trace_file
from d2ace_ext.harness.results import ResultsStore

from support.mulan_files import write_toy_mulan


def read_results(path):
    from d2ace_ext.harness.results import read_results  # the shared reader

    return read_results(path)


def _record(fold, auc=0.7, selector="random", epochs=3):
    key = RunKey.make("toy", "mlp", selector, "paper", fold, Protocol()).to_dict()
    return {
        "key": key,
        "metrics": {"macro_auc": auc},
        "best_epoch": 1,
        "history": {
            "epoch": list(range(epochs)),
            "train_loss": [1.0] * epochs,
            "val_macro_auc": [0.5 + 0.01 * e for e in range(epochs)],
            "lr": [1e-4] * epochs,
        },
        "trace": None,
    }


def _grid_argv(data_dir, results_dir, *extra):
    return [
        "compare",
        "--datasets",
        "toy",
        "--models",
        "mlp",
        "--selectors",
        "random",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--min-positives",
        "5",
        "--no-progress",
        "--data-dir",
        data_dir,
        "--results-dir",
        str(results_dir),
        *extra,
    ]


# -- torn and unreadable lines -----------------------------------------------------------
def test_an_append_after_a_torn_line_starts_a_fresh_line_and_keeps_the_fragment(tmp_path):
    store = ResultsStore(str(tmp_path))
    store.append(_record(0))
    with open(store.path, "a") as handle:
        handle.write('{"key": {"dataset": "toy", "mod')  # a write cut short: no newline
    assert len(store.records()) == 1  # the torn tail is passed over without a word
    with pytest.warns(UserWarning, match=r"torn line.*results\.jsonl\.torn"):
        store.append(_record(1))  # the resumed run's record
    records = store.records()
    assert sorted(k[4] for k in records) == [0, 1]
    assert open(store.path).read().count("\n") == 2
    assert open(store.path + ".torn").read() == '{"key": {"dataset": "toy", "mod\n'
    # a complete record that only lost its newline is kept and ended, not moved away
    with open(store.path, "a") as handle:
        handle.write(json.dumps(_record(2)))
    store.append(_record(3))
    assert sorted(k[4] for k in store.records()) == [0, 1, 2, 3]
    assert open(store.path + ".torn").read().count("\n") == 1


def test_an_append_waits_for_another_process_s_append_instead_of_cutting_its_line(tmp_path):
    """Two commands appending to one results file: the other's line, still being written,
    used to look torn, was moved to results.jsonl.torn and cut, and the rest of it then
    landed as an unreadable line; both runs' records were lost."""
    import fcntl
    import threading

    store = ResultsStore(str(tmp_path))
    store.append(_record(0))
    theirs = (json.dumps(_record(1)) + "\n").encode()
    with open(store.path, "ab") as other:  # the other process, half-way through its append
        fcntl.flock(other, fcntl.LOCK_EX)
        other.write(theirs[:40])
        other.flush()
        ours = threading.Thread(target=store.append, args=(_record(2),))
        ours.start()
        ours.join(0.5)  # left to run: without waiting for the lock it would cut the half-written line now
        other.write(theirs[40:])
        other.flush()
        fcntl.flock(other, fcntl.LOCK_UN)
    ours.join()
    lines = read_results(store.path)
    assert [record["key"]["fold"] for _, record in lines.records] == [0, 1, 2]
    assert lines.unreadable == [] and not os.path.exists(store.path + ".torn")


def test_unreadable_lines_before_the_last_are_named_in_a_warning_and_glued_records_kept(tmp_path):
    store = ResultsStore(str(tmp_path))
    good, glued = json.dumps(_record(0)), json.dumps(_record(1))
    # line 2: garbage; line 3: a torn fragment with the next record glued on (what
    # appending after a torn line used to leave); line 5: a record without a key
    with open(store.path, "w") as handle:
        handle.write(good + "\n{oops\n" + '{"key": {"data' + glued + "\n\n" + '{"metrics": {}}\n')
    with pytest.warns(UserWarning) as caught:
        records = store.records()
    message = str(caught[0].message)
    assert "unreadable line(s) 2, 5" in message and "line(s) 3 began with a torn fragment" in message
    assert sorted(k[4] for k in records) == [0, 1]
    lines = read_results(store.path)
    assert lines.unreadable == [2, 5] and lines.salvaged == [3] and lines.torn is None


# -- a failing run under --jobs ----------------------------------------------------------
def test_a_failing_run_under_jobs_keeps_every_other_runs_record_and_exits_non_zero(tmp_path, capsys):
    data_dir = write_toy_mulan(tmp_path / "data")
    out = tmp_path / "res"
    key = RunKey.make("toy", "mlp", "random", "paper", 0, Protocol(folds=2, epochs=1, min_positives=5))
    # fold 0's trace file cannot be written (a folder is in its way): that run fails
    # after training, fold 1 and the other selector finish in the other worker
    os.makedirs(out / trace_file(key))
    argv = _grid_argv(data_dir, out, "--trace", "first", "--jobs", "2", "--selectors", "random", "ml_unc")
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "1 of 4 runs failed" in err and key.stem() in err and "IsADirectoryError" in err
    records = ResultsStore(str(out)).records()
    assert sorted((k[2], k[4]) for k in records) == [("ml_unc", 0), ("ml_unc", 1), ("random", 1)]


# -- an unwritable results folder --------------------------------------------------------
def test_an_unwritable_results_folder_is_refused_before_any_training(tmp_path, capsys):
    data_dir = write_toy_mulan(tmp_path / "data")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert cli.main(_grid_argv(data_dir, blocker / "res")) == 2
    err = capsys.readouterr().err
    assert "results folder (--results-dir)" in err and "not writable" in err and str(blocker) in err
    assert len(err.strip().splitlines()) == 1
    # results.jsonl itself unwritable (a folder in its place): refused, nothing trained
    out = tmp_path / "res2"
    (out / "results.jsonl").mkdir(parents=True)
    assert cli.main(_grid_argv(data_dir, out)) == 2
    assert "results.jsonl" in capsys.readouterr().err
    from d2ace_ext.harness.writable import require_writable  # where the image command checks its folders

    with pytest.raises(ValueError, match="checkpoint folder"):
        require_writable(str(blocker / "checkpoints"), "checkpoint folder")
    require_writable(str(tmp_path / "fine" / "checkpoints"), "checkpoint folder")
    assert os.listdir(tmp_path / "fine" / "checkpoints") == []  # the check leaves nothing behind


# -- the evidence tool -------------------------------------------------------------------
def test_the_evidence_tool_never_compacts_a_results_file_in_place(tmp_path, capsys):
    store = ResultsStore(str(tmp_path / "res"))
    store.append(_record(0))
    store.append(_record(1))
    before = open(store.path).read()
    assert evidence_main([store.path, store.path]) == 2
    assert "also a source" in capsys.readouterr().err
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps(_record(2)) + "\n")
    assert evidence_main([store.path, str(other)]) == 2
    assert "holds full results records (with trace, history.epoch" in capsys.readouterr().err
    assert open(store.path).read() == before  # histories intact
    evidence = tmp_path / "evidence.jsonl"
    assert evidence_main([str(evidence), store.path]) == 0
    assert evidence_main([str(evidence), str(other)]) == 0  # an evidence target takes more sources
    assert len(read_results(str(evidence)).records) == 3


def test_the_evidence_tool_reads_a_torn_last_line_as_compare_does_and_refuses_nonsense_digits(tmp_path, capsys):
    store = ResultsStore(str(tmp_path / "res"))
    store.append(_record(0))
    store.append(_record(1))
    with open(store.path, "a") as handle:
        handle.write('{"key": {"dataset": "to')
    target = tmp_path / "evidence.jsonl"
    assert evidence_main([str(target), store.path]) == 0
    assert "torn last line" in capsys.readouterr().err
    assert len(read_results(str(target)).records) == len(store.records()) == 2
    for digits in ("-1", "0", "18"):
        assert evidence_main([str(tmp_path / "e2.jsonl"), store.path, "--digits", digits]) == 2
        assert "--digits" in capsys.readouterr().err
    assert not (tmp_path / "e2.jsonl").exists()
    with pytest.raises(ValueError, match="digits"):
        merge_compact(str(tmp_path / "e3.jsonl"), [store.path], digits=True)


# -- model and selector options ----------------------------------------------------------
@pytest.mark.parametrize(
    "option,expected",
    [
        (["--model-opt", "hidden=-5"], "--model-opt mlp.hidden=-5: cannot build mlp on toy (RuntimeError: "),
        (["--model-opt", "nosuch=1"], "unknown option(s) nosuch; valid options: hidden, dropout"),
        (
            ["--selector-opt", "nosuchopt=1"],
            "--selector-opt d2ace.nosuchopt=1: d2ace has no such option; it takes: window_size, window_unit",
        ),
        (["--selector-opt", "window_size=1"], "D2ACEConfig.window_size must be an integer >= 2"),
        (["--selector-opt", "num_neighbors=500"], "cannot build d2ace on toy"),
    ],
)
def test_bad_model_and_selector_options_are_one_line_errors_before_training(tmp_path, capsys, option, expected):
    data_dir = write_toy_mulan(tmp_path / "data")
    out = tmp_path / "res"
    argv = [
        "run",
        "--dataset",
        "toy",
        "--model",
        "mlp",
        "--selector",
        "d2ace",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--min-positives",
        "5",
        "--no-progress",
        "--data-dir",
        data_dir,
        "--results-dir",
        str(out),
        *option,
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(out / "results.jsonl")


def test_options_for_a_model_or_selector_that_does_not_exist_are_refused(tmp_path):
    argv = ["compare", "--datasets", "toy", "--selectors", "random", "ml_unc", "--results-dir", str(tmp_path)]
    with pytest.raises(SystemExit, match=r"--selector-opt mlunc.window_size=3: no model or selector is called 'mlunc'"):
        cli.main(argv + ["--selector-opt", "mlunc.window_size=3"])
    with pytest.raises(SystemExit, match=r"--model-opt mpl.hidden=8: no model or selector is called 'mpl'"):
        cli.main(argv + ["--model-opt", "mpl.hidden=8"])


# -- --report-only over a partial grid ---------------------------------------------------
def test_report_only_marks_the_cells_missing_runs_in_the_printed_and_written_tables(tmp_path, capsys):
    """A partial grid's tables used to print Random over fold 0 beside ML-Unc over fold 1,
    ranked against each other, with nothing saying either cell was incomplete."""
    data_dir = write_toy_mulan(tmp_path / "data")
    out = tmp_path / "res"
    argv = _grid_argv(data_dir, out, "--selectors", "random", "ml_unc")
    assert cli.main(argv) == 0
    with open(out / "results.jsonl") as handle:
        lines = handle.read().splitlines()
    kept = [
        line
        for line in lines
        if (json.loads(line)["key"]["selector"], json.loads(line)["key"]["fold"]) != ("random", 1)
    ]
    with open(out / "results.jsonl", "w") as handle:
        handle.write("\n".join(kept) + "\n")
    capsys.readouterr()
    assert cli.main([*argv, "--report-only"]) == 0
    printed = capsys.readouterr().out
    written = (out / "comparison.md").read_text()
    for text in (printed, written):
        row = next(line for line in text.splitlines() if line.startswith("| toy |"))
        random_cell, ml_unc_cell = row.split(" | ")[1:3]
        assert random_cell.endswith("[1 of 2 runs]") and "runs]" not in ml_unc_cell
        assert "k of 2 runs: an incomplete cell" in text


# -- traces of two protocols in one results folder ---------------------------------------
def test_two_protocols_tracing_into_one_folder_keep_their_own_trace_files(tmp_path):
    """Trace files were named by run alone: a second protocol's run (here 2 epochs instead
    of 1) overwrote the first's trace, whose record then pointed at the other's data."""
    import numpy as np

    data_dir = write_toy_mulan(tmp_path / "data")
    out = tmp_path / "res"
    for epochs in ("1", "2"):
        argv = _grid_argv(data_dir, out, "--trace", "first")
        argv[argv.index("--epochs") + 1] = epochs
        assert cli.main(argv) == 0
    traced = [r for r in ResultsStore(str(out)).records().values() if r["trace"]]
    assert len(traced) == 2 and len({r["trace"] for r in traced}) == 2
    for record in traced:
        with np.load(out / record["trace"]) as trace:
            assert list(trace["label_epochs"]) == record["history"]["epoch"]


def test_report_only_over_a_folder_without_results_is_refused_and_writes_nothing(tmp_path, capsys):
    """A mistyped --results-dir under --report-only used to print tables of dashes, exit 0
    and create the folder with empty comparison files."""
    data_dir = write_toy_mulan(tmp_path / "data")
    typo = tmp_path / "reslts"
    assert cli.main([*_grid_argv(data_dir, typo), "--report-only"]) == 2
    assert f"no {typo}/results.jsonl" in capsys.readouterr().err
    assert not typo.exists()


def test_a_record_that_cannot_be_written_stops_the_grid_with_a_one_line_error(tmp_path, capsys, monkeypatch):
    """A full disk at the first append used to end the command in an OSError traceback that
    also swallowed the earlier runs' failures; now it stops before training more runs
    whose records could not be written either, and says what to do."""
    from d2ace_ext.harness import runner

    def full_disk(store, record):
        raise OSError(28, "No space left on device", store.path)

    trained = []
    real_run_one = runner._run_one
    monkeypatch.setattr(runner, "_run_one", lambda key, *a: trained.append(key.fold) or real_run_one(key, *a))
    monkeypatch.setattr(ResultsStore, "append", full_disk)
    data_dir = write_toy_mulan(tmp_path / "data")
    assert cli.main(_grid_argv(data_dir, tmp_path / "res")) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "results.jsonl" in err and "rerun" in err
    assert trained == [0]  # fold 1 was not trained for nothing
