"""Budgeted runs against the full-budget Random of the same folds
(d2ace_ext.harness.budget_accuracy): hand-computed differences, the direction of a
lower-is-better metric, what is left out, the Markdown, and the committed evidence
against the ρ = 0.3 table of docs/results.md."""

import json
import os

import numpy as np
import pytest

from d2ace_ext.harness.budget_accuracy import budget_accuracy, budget_markdown, effect_text, main
from d2ace_ext.harness.experiment import Protocol

from support.records import run_key

EVIDENCE = os.path.join(os.path.dirname(__file__), "..", "docs", "evidence")
FULL, HALF, TENTH = Protocol(epochs=4), Protocol(epochs=4, budget=0.5), Protocol(epochs=4, budget=0.1)
PROTOCOLS = {p.digest(): p.to_dict() for p in (FULL, HALF)}


def run(selector, protocol, fold, auc, loss, *, preset="-", dataset="a", repeat=0):
    return {
        "key": run_key(selector, fold, protocol.digest(), dataset=dataset, preset=preset, repeat=repeat),
        "metrics": {"macro_auc": auc, "ranking_loss": loss},
        "seconds": 1.0,
        "history": {"val_macro_auc": [0.5, 0.6, 0.7, 0.8]},
    }


def records():
    full = [run("random", FULL, f, auc, 0.2) for f, auc in enumerate([0.80, 0.70, 0.90])]
    half_random = [run("random", HALF, f, auc, 0.3) for f, auc in enumerate([0.78, 0.69, 0.85])]
    half_d2ace = [run("d2ace", HALF, f, auc, 0.1, preset="paper") for f, auc in enumerate([0.82, 0.69, 0.95])]
    # a fold without its full-budget Random, and a protocol protocols.json does not name
    stray = [run("d2ace", HALF, 7, 0.99, 0.0, preset="paper"), run("d2ace", TENTH, 0, 0.5, 0.5, preset="paper")]
    return full + half_random + half_d2ace + stray


def test_differences_are_paired_with_the_full_budget_random_of_the_same_fold():
    report = budget_accuracy(records(), PROTOCOLS)
    assert list(report) == [("mlp", HALF.digest())]  # neither the full budget nor an unnamed protocol
    panel = report[("mlp", HALF.digest())]
    assert panel["budget"] == 0.5 and "budget 0.5" in panel["label"]
    row = panel["datasets"]["a"]
    assert row["full_random"] == pytest.approx(0.8)
    random, d2ace = row["series"][("random", "-")], row["series"][("d2ace", "paper")]
    # (0.78 - 0.80, 0.69 - 0.70, 0.85 - 0.90): mean -0.02667, none ahead
    assert random["mean"] == pytest.approx(-0.08 / 3) and random["ahead"] == 0 and random["cells"] == 3
    # (+0.02, -0.01, +0.05) over folds 0-2 only: fold 7 has no full-budget Random
    assert d2ace["mean"] == pytest.approx(0.02) and d2ace["ahead"] == 2 and d2ace["cells"] == 3
    assert d2ace["value"] == pytest.approx((0.82 + 0.69 + 0.95) / 3)
    assert d2ace["low"] <= d2ace["mean"] <= d2ace["high"]


def test_a_lower_is_better_metric_counts_a_lower_value_as_ahead():
    row = budget_accuracy(records(), PROTOCOLS, "ranking_loss")[("mlp", HALF.digest())]["datasets"]["a"]
    assert row["series"][("d2ace", "paper")]["mean"] == pytest.approx(0.1)  # 0.2 - 0.1 on every fold
    assert row["series"][("d2ace", "paper")]["ahead"] == 3
    assert (
        row["series"][("random", "-")]["mean"] == pytest.approx(-0.1) and row["series"][("random", "-")]["ahead"] == 0
    )
    with pytest.raises(ValueError, match="metric must be one of .*got 'auc'"):
        budget_accuracy(records(), PROTOCOLS, "auc")


def test_markdown_rows_and_cells():
    text = budget_markdown(budget_accuracy(records(), PROTOCOLS))
    assert "test Macro-AUC − full-budget Random" in text
    assert "| data set (full-budget Random) | Random | D2ACE paper |" in text
    assert "| a (0.8000) | −0.0267 [" in text and "] 0/3 | +0.0200 [" in text and "] 2/3 |" in text
    one = {"mean": -0.5, "low": float("nan"), "high": float("nan"), "ahead": 0, "cells": 1}
    assert effect_text(one) == "−0.5000 0/1"  # no interval from one cell


def test_command_line_needs_the_protocols_file(tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()))
    with pytest.raises(SystemExit):
        main([str(folder)])
    assert "has no protocols.json" in capsys.readouterr().err
    (folder / "protocols.json").write_text(json.dumps(PROTOCOLS))
    main([str(folder)])
    assert "| a (0.8000) | −0.0267" in capsys.readouterr().out


def test_committed_evidence_gives_the_results_table_at_rho_0_3(tmp_path):
    folder = tmp_path / "evidence"
    folder.mkdir()
    with open(folder / "results.jsonl", "w") as out:
        for name in ("grid_mlp_large.jsonl", "budget_mlp.jsonl"):
            with open(os.path.join(EVIDENCE, name)) as source:
                out.write(source.read())
    with open(os.path.join(EVIDENCE, "protocols.json")) as source:
        protocols = json.load(source)
    from d2ace_ext.harness.plot_records import load_records

    report = budget_accuracy(load_records(str(folder)), protocols)
    yahoo = report[("mlp", "f9f30ad4")]["datasets"]["yahoo-Business1"]  # ρ = 0.3, docs/results.md
    assert yahoo["full_random"] == pytest.approx(0.7497, abs=5e-5)
    random, dihcl = yahoo["series"][("random", "-")], yahoo["series"][("dihcl", "-")]
    assert np.round([random["mean"], random["low"], random["high"]], 4).tolist() == [-0.0102, -0.0127, -0.0084]
    assert round(dihcl["mean"], 4) == 0.0117 and dihcl["ahead"] == 4


def test_a_budgeted_compare_ends_with_its_cost_against_full_budget_random(tmp_path, capsys):
    from d2ace_ext import cli

    full, half = Protocol(folds=2, epochs=4), Protocol(folds=2, epochs=4, budget=0.5)
    lines = []
    for fold, (random_full, random_half, d2ace_half) in enumerate([(0.80, 0.76, 0.83), (0.70, 0.68, 0.69)]):
        lines += [
            run("random", full, fold, random_full, 0.2, dataset="emotions"),
            run("random", half, fold, random_half, 0.2, dataset="emotions"),
            run("d2ace", half, fold, d2ace_half, 0.2, dataset="emotions", preset="paper"),
        ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    argv = ["compare", "--datasets", "emotions", "--models", "mlp", "--selectors", "random", "d2ace"]
    argv += ["--folds", "2", "--epochs", "4", "--results-dir", str(tmp_path), "--report-only", "--no-progress"]
    assert cli.main(argv + ["--budget", "0.5"]) == 0
    text = (tmp_path / "comparison.md").read_text()
    assert "budget 0.5" in text and "test Macro-AUC − full-budget Random, same folds" in text
    # Random: (-0.04, -0.02); D2ACE: (+0.03, -0.01), one fold ahead
    assert "| emotions (0.7500) | −0.0300 [" in text and "] 0/2 | +0.0100 [" in text and "] 1/2 |" in text
    assert "full-budget Random, same folds" in capsys.readouterr().out
    rows = json.loads((tmp_path / "comparison.json").read_text())["budget_accuracy"]
    d2ace = [r for r in rows if r["selector"] == "d2ace"][0]
    assert d2ace["budget"] == 0.5 and d2ace["mean"] == pytest.approx(0.01) and d2ace["ahead"] == 1
    assert cli.main(argv) == 0  # at full budget there is no such table
    assert "full-budget Random, same folds" not in (tmp_path / "comparison.md").read_text()
    assert json.loads((tmp_path / "comparison.json").read_text())["budget_accuracy"] is None


def test_full_budget_random_of_a_row_does_not_depend_on_the_records_order():
    # Budgeted Random ran folds 0-1, D2ACE folds 0-2: the row's full-budget Random is its
    # mean over the folds either paired with (0.80, 0.70, 0.90), whichever series comes first.
    full = [run("random", FULL, f, auc, 0.2) for f, auc in enumerate([0.80, 0.70, 0.90])]
    half_random = [run("random", HALF, f, 0.7, 0.3) for f in range(2)]
    half_d2ace = [run("d2ace", HALF, f, 0.8, 0.1, preset="paper") for f in range(3)]
    for order in (full + half_random + half_d2ace, full + half_d2ace + half_random):
        row = budget_accuracy(order, PROTOCOLS)[("mlp", HALF.digest())]["datasets"]["a"]
        assert row["full_random"] == pytest.approx(0.8)
        assert row["series"][("random", "-")]["cells"] == 2 and row["series"][("d2ace", "paper")]["cells"] == 3


def test_command_line_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "protocols.json").write_text(json.dumps(PROTOCOLS))
    with pytest.raises(SystemExit):  # protocols.json without results.jsonl
        main([str(tmp_path)])
    assert f"no results: expected {tmp_path / 'results.jsonl'}" in capsys.readouterr().err
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()))
    (tmp_path / "protocols.json").write_text("{not json")
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "protocols.json is not JSON" in capsys.readouterr().err
    (tmp_path / "protocols.json").write_text(json.dumps(PROTOCOLS))
    main([str(tmp_path)])
    out, err = capsys.readouterr()  # TENTH's runs are not in protocols.json: said, not silently dropped
    assert "| a (0.8000) |" in out and f"does not list {TENTH.digest()}" in err
