"""Whole runs of the harness: one fold on synthetic data, and the ``d2ace`` command on a
tiny real set (skipped without the MULAN folder)."""

import json
import os

import numpy as np
import pytest

from d2ace_ext import cli
from d2ace_ext.cli_options import options_per_name, parse_options
from d2ace_ext.datasets.synthetic import make_multilabel
from d2ace_ext.harness.experiment import Protocol, RunKey
from d2ace_ext.harness.fold_data import PreparedDataset
from d2ace_ext.harness.fold_run import run_fold
from d2ace_ext.harness.results import ResultsStore


def _synthetic(protocol, name="toy"):
    x, y = make_multilabel(n=300, d=12, q=4, cardinality=1.5, seed=3)
    return PreparedDataset(name, x.double().numpy(), y.long().numpy(), [f"l{j}" for j in range(4)], protocol)


@pytest.mark.parametrize("selector", ["random", "d2ace", "balance"])
def test_one_fold_record_and_trace(tmp_path, selector):
    protocol = Protocol(
        folds=3,
        epochs=4,
        lr=1e-3,
        lr_warmup_epochs=1,
        min_positives=5,
        selector_options={"d2ace": {"warmup_epochs": 1}},
    )
    prepared = _synthetic(protocol)
    data = prepared.fold(1)
    assert data.train_y.shape[0] + data.val_y.shape[0] + data.test_y.shape[0] == prepared.shape[0]
    assert bool((data.train_y.sum(1) > 0).all())  # label-less rows were dropped
    key = RunKey.make("toy", "mlp", selector, "paper", 1, protocol)
    record = run_fold(key, data, protocol, results_dir=str(tmp_path), trace=True, progress=False)
    history = record["history"]
    assert history["epoch"] == [0, 1, 2, 3] and len(history["val_macro_auc"]) == 4
    assert record["best_epoch"] == int(np.nanargmax(history["val_macro_auc"]))
    assert record["best_val_macro_auc"] == max(history["val_macro_auc"])
    assert history["lr"][0] < history["lr"][1] == pytest.approx(1e-3)  # warm-up over epoch 0's steps
    assert 0.0 <= record["metrics"]["macro_auc"] <= 1.0 and record["metrics"]["coverage"] >= 1.0
    trace = np.load(os.path.join(tmp_path, record["trace"]))
    n = data.train_y.shape[0]
    assert trace["probabilities"].shape == (len(trace["epochs"]), n)
    np.testing.assert_allclose(trace["probabilities"].sum(1), 1.0, rtol=1e-9)
    assert trace["label_auc"].shape == (4, 4) and trace["outlier"].shape == (n,)
    has_u = np.isfinite(trace["label_weights_u"]).any()
    assert has_u == (selector == "d2ace")  # only D2ACE reports v_U, after its warm-up
    assert np.isfinite(trace["label_weights"]).all() == (selector == "balance")


def test_best_copy_differs_from_last_epoch_model_selection(tmp_path):
    protocol = Protocol(folds=3, epochs=5, lr=3e-3, lr_warmup_epochs=0, min_positives=5)
    data = _synthetic(protocol).fold(0)
    key = RunKey.make("toy", "mlp", "random", "paper", 0, protocol)
    best = run_fold(key, data, protocol, progress=False)
    last_protocol = Protocol(**{**protocol.to_dict(), "model_selection": "last"})
    last = run_fold(key, data, last_protocol, progress=False)
    assert last["best_epoch"] == 4
    timed = ("elapsed_seconds",)  # wall time differs from run to run
    assert {k: v for k, v in best["history"].items() if k not in timed} == {
        k: v for k, v in last["history"].items() if k not in timed
    }  # same seeds: the same training
    if best["best_epoch"] != 4:
        assert best["metrics"]["macro_auc"] != last["metrics"]["macro_auc"]


def test_leak_free_folds_fit_on_training_rows(tmp_path):
    protocol = Protocol(folds=3, epochs=1, preprocessing="leak_free", min_positives=5)
    prepared = _synthetic(protocol)
    fold = prepared.fold(0)
    assert float(fold.train_x.min()) == 0.0 and float(fold.train_x.max()) <= 1.0
    # Test rows are scaled with the training fold's range (clipped), never refitted.
    assert fold.test_y.shape[0] == len(prepared.splits[0][1])


def test_command_on_a_real_set_writes_resumable_results_and_figures(data_dir, tmp_path, capsys):
    out = str(tmp_path / "res")
    common = [
        "--data-dir",
        data_dir,
        "--results-dir",
        out,
        "--folds",
        "2",
        "--epochs",
        "3",
        "--lr-warmup-epochs",
        "1",
        "--no-progress",
        "--selector-opt",
        "d2ace.warmup_epochs=1",
    ]
    argv = [
        "compare",
        "--datasets",
        "emotions",
        "--models",
        "mlp",
        "--selectors",
        "random",
        "d2ace",
        "--trace",
        "first",
    ] + common
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "Macro-AUC" in text and "| emotions |" in text and "Wilcoxon" in text
    store = ResultsStore(out)
    records = store.records()
    assert len(records) == 4
    assert {r["key"]["selector"] for r in records.values()} == {"random", "d2ace"}
    for ext in ("md", "csv", "json"):
        assert os.path.getsize(os.path.join(out, f"comparison.{ext}")) > 0
    table = json.load(open(os.path.join(out, "comparison.json")))
    assert table["summary"]["macro_auc"]["mlp"]["rows"]["emotions"]["d2ace"]["folds"] == 2
    lines = open(store.path).read().count("\n")
    assert cli.main(argv) == 0  # a rerun skips every finished run
    assert "4 of 4 runs already" in capsys.readouterr().out
    assert open(store.path).read().count("\n") == lines
    assert cli.main(["run", "--dataset", "emotions", "--model", "mlp", "--selector", "random"] + common) == 0
    assert "Macro-AUC" in capsys.readouterr().out  # served from the results file
    assert cli.main(["plot", "--results-dir", out]) == 0
    pngs = [p for p in capsys.readouterr().out.split() if p.endswith(".png")]
    assert any("convergence" in p for p in pngs) and any("deciles" in p for p in pngs)
    for path in pngs:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_command_names_a_missing_data_set(tmp_path, capsys):
    code = cli.main(
        [
            "run",
            "--dataset",
            "nothere",
            "--data-dir",
            str(tmp_path),
            "--results-dir",
            str(tmp_path / "r"),
            "--epochs",
            "1",
            "--no-progress",
        ]
    )
    assert code == 2
    assert "nothere" in capsys.readouterr().err


def test_command_rejects_unknown_selector(tmp_path):
    with pytest.raises(SystemExit, match="unknown selector"):
        cli.main(["run", "--dataset", "x", "--selector", "nope", "--results-dir", str(tmp_path)])


@pytest.mark.parametrize("model", ["clif", "dela", "paca"])
def test_every_base_model_trains_through_the_harness(model):
    protocol = Protocol(
        folds=3,
        epochs=2,
        lr=1e-3,
        lr_warmup_epochs=0,
        min_positives=5,
        model_options={"clif": {"feature_dim": 64}, "paca": {"flow_hidden": 16}},
    )
    data = _synthetic(protocol).fold(2)
    record = run_fold(RunKey.make("toy", model, "d2ace", "paper", 2, protocol), data, protocol, progress=False)
    assert all(np.isfinite(record["history"]["train_loss"]))
    assert 0.0 <= record["metrics"]["macro_auc"] <= 1.0
    assert record["shape"]["q"] == 4


def test_options_are_routed_by_name():
    assert options_per_name(["clif.graph=published", "clif.lam=0.01"], "--model-opt", ["mlp", "clif"]) == {
        "clif": {"graph": "published", "lam": 0.01}
    }
    assert options_per_name(["num_neighbors=8"], "--selector-opt", ["d2ace"]) == {"d2ace": {"num_neighbors": 8}}
    assert options_per_name(
        ["ML-Unc.window_size=3"], "--selector-opt", ["random", "ml_unc"], cli.canonical_selector
    ) == {"ml_unc": {"window_size": 3}}
    with pytest.raises(SystemExit, match="name which one"):
        options_per_name(["lam=0.01"], "--model-opt", ["mlp", "clif"])
    assert parse_options(["tau=0.4", "words=glove.txt", "sizes=[1, 2]"], "--mosaic-opt") == {
        "tau": 0.4,
        "words": "glove.txt",
        "sizes": [1, 2],
    }
    with pytest.raises(SystemExit, match="--mosaic-opt takes key=value"):
        parse_options(["tau"], "--mosaic-opt")
