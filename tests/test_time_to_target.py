"""Time to target (d2ace_ext.harness.time_to_target): hand-computed pairs, unreached
pairs, the bootstrap interval of the median, old-record estimates, budget pairing, the
protocols file, the compare report, and the committed evidence against issue 26's table."""

import csv
import dataclasses
import json
import math
import os

import numpy as np
import pytest

from d2ace_ext.harness.experiment import Protocol
from d2ace_ext.harness.paired import bootstrap_interval
from d2ace_ext.harness.protocol_index import protocol_labels, protocol_of, read_protocols, remember_protocol
from d2ace_ext.harness.time_to_target import (
    baseline_digests,
    baseline_protocol,
    cumulative_costs,
    first_reach,
    full_budget,
    pair_time,
    paired_times,
    summarise_pairs,
    time_to_target,
    tolerances,
)
from d2ace_ext.harness.time_to_target_tables import grid_markdown, ratio_text, saved_text

from support.records import run_key

EVIDENCE = os.path.join(os.path.dirname(__file__), "..", "docs", "evidence")


def run(
    selector, curve, *, dataset="a", fold=0, repeat=0, protocol="p0", preset="-", train=100, seconds=10.0, **history
):
    return {
        "key": run_key(selector, fold, protocol, dataset=dataset, preset=preset, repeat=repeat),
        "seconds": seconds,
        "shape": {"train": train},
        "history": {"val_macro_auc": list(curve), **history},
    }


RANDOM = [0.5, 0.6, 0.7, 0.8, 0.79]  # best .80 at epoch 3 (4 epochs trained)
SELECTOR = [0.5, 0.7, 0.79, 0.78, 0.77]  # best .79 at epoch 2


def test_first_reach_is_where_the_best_so_far_first_gets_there():
    assert first_reach([0.5, 0.7, 0.6, 0.8], 0.65) == 1
    assert first_reach([0.5, float("nan"), None, 0.8], 0.6) == 3  # NaN / null epochs never reach
    assert first_reach([0.5, 0.6], 0.61) is None


def test_hand_computed_pair_from_an_old_record():
    # Tolerance 0.01: target .79. The selector reaches it at epoch 2 (3 epochs, 300
    # samples), Random at epoch 3 (4 epochs, 400 samples). Old records have no
    # elapsed_seconds: seconds x (epoch + 1) / epochs = 10 x 3/5 = 6 and 20 x 4/5 = 16.
    timed = pair_time(run("d2ace", SELECTOR), run("random", RANDOM, seconds=20.0), 0.01)
    assert timed["target"] == pytest.approx(0.79)
    assert timed["reached"] and (timed["epoch"], timed["random_epoch"]) == (2, 3)
    assert timed["cost"] == pytest.approx({"epochs": 3, "samples": 300, "seconds": 6.0})
    assert timed["random_cost"] == pytest.approx({"epochs": 4, "samples": 400, "seconds": 16.0})
    assert timed["ratio"] == pytest.approx({"epochs": 0.75, "samples": 0.75, "seconds": 0.375})
    assert timed["seconds_estimated"]


def test_a_run_that_never_reaches_counts_as_not_reaching_not_as_its_last_epoch():
    timed = pair_time(run("d2ace", SELECTOR), run("random", RANDOM), 0.005)  # target .795 > .79
    assert not timed["reached"] and timed["epoch"] is None
    assert timed["ratio"] == {"epochs": math.inf, "samples": math.inf, "seconds": math.inf}


def test_new_records_use_samples_seen_and_elapsed_seconds():
    # A budgeted selector draws 50 samples an epoch: 150 by the end of epoch 2, against
    # Random's 400 by the end of epoch 3; wall seconds recorded, not estimated.
    selector = run("d2ace", SELECTOR, samples_seen=[50, 100, 150, 200, 250], elapsed_seconds=[1, 2, 3, 4, 5])
    random = run("random", RANDOM, samples_seen=[100, 200, 300, 400, 500], elapsed_seconds=[2, 4, 6, 8, 10])
    timed = pair_time(selector, random, 0.01)
    assert timed["ratio"] == pytest.approx({"epochs": 0.75, "samples": 150 / 400, "seconds": 3 / 8})
    assert not timed["seconds_estimated"]
    costs, estimated = cumulative_costs(run("random", RANDOM, train=None, seconds=None))
    assert estimated and np.isnan(costs["samples"]).all() and np.isnan(costs["seconds"]).all()


def test_unreached_pairs_enter_the_median_as_infinite():
    def pairs(*ratios):
        return [
            {
                "reached": math.isfinite(r),
                "seconds_estimated": False,
                "ratio": {"epochs": r, "samples": r, "seconds": r},
            }
            for r in ratios
        ]

    most = summarise_pairs(pairs(0.5, 0.6, math.inf))
    assert most["ratio"]["samples"]["median"] == pytest.approx(0.6)  # 2 of 3 reach: finite
    assert most["reached"] == 2 and most["share"] == pytest.approx(2 / 3)
    assert most["ratio"]["samples"]["high"] == math.inf and most["saved"]["samples"]["low"] == -math.inf
    assert ratio_text(most) == "0.60 [0.50, ∞] 2/3"
    few = summarise_pairs(pairs(0.5, math.inf, math.inf))
    assert few["ratio"]["samples"]["median"] == math.inf
    assert ratio_text(few).startswith("not reached") and ratio_text(few).endswith("1/3")
    assert saved_text(few) == "not reached"
    one = summarise_pairs(pairs(0.8))["ratio"]["samples"]  # one pair: a median, no interval
    assert one["median"] == pytest.approx(0.8) and math.isnan(one["low"]) and math.isnan(one["high"])


def test_bootstrap_interval_of_the_median_contains_it():
    ratios = np.array([0.62, 0.7, 0.75, 0.81, 0.84, 0.9, 0.93, 1.0, 1.05, 1.2])
    low, high = bootstrap_interval(ratios, np.median)
    assert low <= np.median(ratios) <= high and low < high
    assert low >= ratios.min() and high <= ratios.max()
    assert (low, high) == bootstrap_interval(ratios, np.median)  # fixed seed
    cell = summarise_pairs(
        [
            {"reached": True, "seconds_estimated": False, "ratio": {m: r for m in ("epochs", "samples", "seconds")}}
            for r in ratios
        ]
    )
    stats = cell["ratio"]["samples"]
    assert stats["low"] <= stats["median"] <= stats["high"]
    assert cell["saved"]["samples"]["low"] == pytest.approx(1 - stats["high"])
    # +inf values (unreached): interpolating towards them is undefined; the bounds are order statistics.
    low, high = bootstrap_interval(np.array([0.5, 0.6, 0.7, math.inf, math.inf]), np.median)
    assert low in (0.5, 0.6, 0.7) and high == math.inf


def test_pairs_match_cells_skip_the_baseline_itself_and_follow_the_budget_baseline():
    records = [
        run("random", RANDOM, fold=0),
        run("d2ace", SELECTOR, fold=0, preset="paper"),
        run("d2ace", SELECTOR, fold=1, preset="paper"),  # no Random in fold 1: left out
        run("random", [0.5, 0.9], fold=0, repeat=1),  # another repeat: its own cell
        run("hard_imb", [0.5, 0.89], fold=0, repeat=1),
        # budgeted protocol "half": its runs pair with the full-budget Random of "p0"
        run("random", [0.5, 0.6, 0.65, 0.7, 0.8], fold=0, protocol="half"),
        run("d2ace", SELECTOR, fold=0, protocol="half", preset="paper"),
    ]
    pairs = paired_times(records, 0.01, {"half": "p0"})
    got = sorted(
        (p["selector"], p["protocol"], p["baseline_protocol"], p["repeat"], p["fold"], p["epoch"]) for p in pairs
    )
    assert got == [
        ("d2ace", "half", "p0", 0, 0, 2),
        ("d2ace", "p0", "p0", 0, 0, 2),
        ("hard_imb", "p0", "p0", 1, 0, 1),
        ("random", "half", "p0", 0, 0, 4),
    ]
    # Without the mapping a budgeted run pairs with its own protocol's Random.
    own = [p for p in paired_times(records, 0.01) if p["protocol"] == "half"]
    assert [(p["selector"], p["baseline_protocol"]) for p in own] == [("d2ace", "half")]


def test_full_budget_resets_only_the_budget_fields():
    assert full_budget(Protocol(epochs=7)) == Protocol(epochs=7)  # no budget fields (yet): unchanged

    @dataclasses.dataclass(frozen=True)
    class Budgeted:
        epochs: int = 100
        budget: float = 1.0
        anneal: float = 0.0

    assert full_budget(Budgeted(epochs=50, budget=0.5, anneal=0.125)) == Budgeted(epochs=50)
    digest = Protocol(epochs=1000).digest()
    assert baseline_digests({digest: Protocol(epochs=1000).to_dict()}) == {digest: (digest,)}


def test_runs_with_another_selectors_options_pair_with_random_run_without_them():
    plain = Protocol(epochs=3)
    tuned = Protocol(epochs=3, selector_options={"infobatch": {"rescale": False}})
    assert baseline_protocol(tuned) == plain
    assert baseline_digests({tuned.digest(): tuned.to_dict()}) == {tuned.digest(): (plain.digest(), tuned.digest())}
    curve_random, curve_fast = [0.5, 0.7, 0.8], [0.7, 0.8, 0.8]

    def run(selector, digest, curve):
        return {
            "key": {
                "dataset": "d",
                "model": "mlp",
                "selector": selector,
                "preset": "-",
                "fold": 0,
                "protocol": digest,
                "repeat": 0,
            },
            "history": {"val_macro_auc": curve, "samples_seen": [10, 20, 30]},
            "seconds": 3.0,
        }

    baseline_of = baseline_digests({tuned.digest(): tuned.to_dict()})
    # Random run without the options: the InfoBatch run pairs with it, reaching 0.8 in 2 epochs of 3
    pairs = paired_times(
        [run("random", plain.digest(), curve_random), run("infobatch", tuned.digest(), curve_fast)], 0.0, baseline_of
    )
    assert [(p["selector"], p["baseline_protocol"], p["ratio"]["samples"]) for p in pairs] == [
        ("infobatch", plain.digest(), 20 / 30)
    ]
    # only the grid's own Random (run with the options): the second choice, and that Random is not paired with itself
    pairs = paired_times(
        [run("random", tuned.digest(), curve_random), run("infobatch", tuned.digest(), curve_fast)], 0.0, baseline_of
    )
    assert [(p["selector"], p["baseline_protocol"]) for p in pairs] == [("infobatch", tuned.digest())]


def test_tolerances_headline_first_and_bad_values_refused():
    assert tolerances() == (0.005, 0.01)
    assert tolerances(0.01) == (0.01, 0.005)
    assert tolerances(0.02) == (0.02, 0.005, 0.01)
    with pytest.raises(ValueError, match="--target-tolerance"):
        tolerances(-0.1)


def test_protocols_file_round_trip_labels_and_digest_check(tmp_path):
    folder = str(tmp_path)
    assert read_protocols(folder) == {}
    path = remember_protocol(folder, Protocol(epochs=1000))
    remember_protocol(folder, Protocol(epochs=2000))
    known = read_protocols(folder)
    assert sorted(known) == sorted([Protocol(epochs=1000).digest(), Protocol(epochs=2000).digest()])
    assert read_protocols(os.path.join(folder, "results.jsonl")) == known  # beside a results file too
    assert protocol_of(known[Protocol(epochs=1000).digest()], Protocol(epochs=1000).digest()) == Protocol(epochs=1000)
    with pytest.raises(ValueError, match="hash to"):
        protocol_of(known[Protocol(epochs=1000).digest()], "deadbeef")
    a, b, c = Protocol(epochs=100).digest(), Protocol(epochs=100, lr=1e-3).digest(), "cafe0001"
    labels = protocol_labels(
        {a: 100, b: 100, c: 100}, {a: Protocol(epochs=100).to_dict(), b: Protocol(epochs=100, lr=1e-3).to_dict()}
    )
    assert labels == {a: "100 epochs, lr 0.0001", b: "100 epochs, lr 0.001", c: "100 epochs, protocol cafe0001"}
    assert protocol_labels({a: 1000, c: 2000}) == {a: "1,000 epochs", c: "2,000 epochs"}
    with open(path, "w") as handle:
        handle.write("{not json")
    with pytest.raises(ValueError, match="protocols.json is not JSON"):
        read_protocols(folder)


def test_committed_protocols_file_names_the_evidence_digests():
    known = read_protocols(EVIDENCE)
    for digest, settings in known.items():
        assert protocol_of(settings, digest).digest() == digest
    digests = set()
    for name in (
        "grid_clif_published.jsonl",
        "grid_mlp_large.jsonl",
        "sweep_cal500_mlp.jsonl",
        "published_yeast.jsonl",
    ):
        with open(os.path.join(EVIDENCE, name)) as handle:
            digests |= {json.loads(line)["key"]["protocol"] for line in handle}
    assert digests <= set(known)


def test_grid_report_and_its_markdown():
    records = []
    for fold, (random_curve, selector_curve) in enumerate(
        [(RANDOM, [0.5, 0.8, 0.8, 0.8, 0.8]), (RANDOM, [0.5, 0.6, 0.8, 0.8, 0.8]), (RANDOM, SELECTOR)]
    ):
        records += [run("random", random_curve, fold=fold), run("d2ace", selector_curve, fold=fold, preset="paper")]
    report = time_to_target(records, ["a"], ["mlp"], ["random", "d2ace"], 0.005)
    assert report["tolerances"] == [0.005, 0.01]
    block = report["by_tolerance"]["0.005"]["mlp"]
    assert list(block) == ["d2ace"]  # Random is the baseline, not a column
    cell = block["d2ace"]["all"]
    # Ratios 2/4, 3/4 and inf (fold 2 never reaches .795): median 0.75, 2 of 3 reach.
    assert cell["ratio"]["samples"]["median"] == pytest.approx(0.75) and (cell["reached"], cell["pairs"]) == (2, 3)
    assert block["d2ace"]["datasets"]["a"] == cell
    text = grid_markdown(report, ["a"], ["mlp"])
    assert "| a | 0.75 [0.50, ∞] 2/3 |" in text
    assert "| compute saved (sample passes), all | +25 % [−∞, +50 %] |" in text
    assert "ratio ∞" in text and "(est.)" in text


def test_compare_report_only_writes_the_time_to_target_tables(tmp_path):
    from d2ace_ext import cli

    protocol = Protocol(folds=2, epochs=5)
    with open(tmp_path / "results.jsonl", "w") as handle:
        for fold in range(2):
            for selector, preset, curve in (("random", "-", RANDOM), ("d2ace", "paper", [0.5, 0.8, 0.8, 0.8, 0.8])):
                record = run(selector, curve, dataset="emotions", fold=fold, protocol=protocol.digest(), preset=preset)
                record["metrics"] = {"macro_auc": max(curve)}
                handle.write(json.dumps(record) + "\n")
    code = cli.main(
        [
            "compare",
            "--datasets",
            "emotions",
            "--models",
            "mlp",
            "--selectors",
            "random",
            "d2ace",
            "--folds",
            "2",
            "--epochs",
            "5",
            "--results-dir",
            str(tmp_path),
            "--report-only",
            "--no-progress",
        ]
    )
    assert code == 0
    text = (tmp_path / "comparison.md").read_text()
    assert "### Time to target, mlp: sample passes to Random's best validation Macro-AUC − 0.005" in text
    assert "| emotions | 0.50 [0.50, 0.50] 2/2 |" in text
    saved = json.loads((tmp_path / "comparison.json").read_text())["time_to_target"]
    assert saved["by_tolerance"]["0.01"]["mlp"]["d2ace"]["all"]["ratio"]["samples"]["median"] == pytest.approx(0.5)
    with open(tmp_path / "comparison_time_to_target.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["tolerance"], r["dataset"], r["measure"]) for r in rows} >= {
        ("0.005", "all", "samples"),
        ("0.01", "emotions", "seconds"),
    }
    assert not (tmp_path / "protocols.json").exists()  # report-only writes no settings


def test_compare_refuses_a_negative_tolerance_before_running(capsys):
    from d2ace_ext import cli

    assert cli.main(["compare", "--datasets", "nowhere", "--target-tolerance", "-1"]) == 2
    assert "--target-tolerance must be in [0, 1)" in capsys.readouterr().err


def _pooled_median(pairs, protocols, selector, preset, dataset=None):
    chosen = [
        p["ratio"]["samples"]
        for p in pairs
        if p["protocol"] in protocols
        and p["selector"] == selector
        and p["preset"] == preset
        and (dataset is None or p["dataset"] == dataset)
    ]
    return round(float(np.median(chosen)), 2), len(chosen)


def test_committed_evidence_gives_the_issue_table():
    # Issue 26's table, measured at tolerance 0.01: median over folds of the ratio to Random.
    from d2ace_ext.harness.plot_records import load_records

    mlp = paired_times(load_records(os.path.join(EVIDENCE, "grid_mlp_large.jsonl")), 0.01)
    converged = {Protocol(epochs=1000).digest(), Protocol(epochs=2000).digest()}
    assert _pooled_median(mlp, converged, "d2ace", "paper") == (0.87, 50)
    assert _pooled_median(mlp, converged, "d2ace", "reference") == (0.90, 40)
    assert _pooled_median(mlp, converged, "hard_imb", "-") == (0.85, 30)
    assert _pooled_median(mlp, converged, "dihcl", "-") == (0.93, 30)
    assert _pooled_median(mlp, converged, "ml_unc", "-") == (0.92, 23)
    e1000 = {Protocol(epochs=1000).digest()}
    assert _pooled_median(mlp, e1000, "d2ace", "paper", "yahoo-Business1") == (0.48, 5)
    assert _pooled_median(mlp, e1000, "d2ace", "reference", "yahoo-Business1") == (0.65, 5)
    tight = paired_times(load_records(os.path.join(EVIDENCE, "grid_mlp_large.jsonl")), 0.005)
    assert [
        _pooled_median(tight, converged, s, p)[0]
        for s, p in (("d2ace", "paper"), ("d2ace", "reference"), ("hard_imb", "-"), ("dihcl", "-"), ("ml_unc", "-"))
    ] == [0.81, 0.89, 0.78, 0.85, 0.88]


def test_compact_evidence_keeps_the_cost_series():
    from d2ace_ext.harness.evidence import compact_record

    full = run(
        "d2ace",
        SELECTOR,
        samples_seen=[50, 100, 150, 200, 250],
        elapsed_seconds=[1.00041, 2.1, 3.2, 4.3, 5.4],
        train_loss=[1.0] * 5,
        lr=[1e-4] * 5,
    )
    compact = compact_record(full)
    assert sorted(compact["history"]) == ["elapsed_seconds", "samples_seen", "val_macro_auc"]
    assert compact["history"]["samples_seen"] == [50, 100, 150, 200, 250]
    assert compact["history"]["elapsed_seconds"][0] == 1.0
    assert (
        pair_time(compact, run("random", RANDOM), 0.01)["ratio"]
        == pair_time(full, run("random", RANDOM), 0.01)["ratio"]
    )
    assert sorted(compact_record(run("d2ace", SELECTOR))["history"]) == ["val_macro_auc"]  # old records: as before


def test_compact_evidence_derives_full_passes_from_the_training_size():
    from d2ace_ext.harness.evidence import compact_record

    full = run("d2ace", SELECTOR, train=100, samples_seen=[100, 200, 300, 400, 500], elapsed_seconds=[1, 2, 3, 4, 5])
    compact = compact_record(full)
    assert "samples_seen" not in compact["history"]  # (e + 1) * train: derived, not stored
    assert cumulative_costs(compact)[0]["samples"].tolist() == [100, 200, 300, 400, 500]
    assert (
        pair_time(compact, run("random", RANDOM), 0.01)["ratio"]
        == pair_time(full, run("random", RANDOM), 0.01)["ratio"]
    )
    budgeted = run("d2ace", SELECTOR, train=100, samples_seen=[100, 150, 200, 250, 300])
    assert compact_record(budgeted)["history"]["samples_seen"] == [100, 150, 200, 250, 300]


def test_committed_clif_evidence_gives_the_issue_table():
    from d2ace_ext.harness.plot_records import load_records

    model = {"clif": {"variant": "published"}}
    clif = paired_times(load_records(os.path.join(EVIDENCE, "grid_clif_published.jsonl")), 0.01)
    both = {Protocol(model_options=model).digest(), Protocol(model_options=model, epochs=200).digest()}
    assert _pooled_median(clif, both, "d2ace", "paper") == (0.98, 140)
    assert _pooled_median(clif, both, "d2ace", "reference") == (1.02, 140)
    assert _pooled_median(clif, both, "hard_imb", "-") == (0.97, 25)
    assert _pooled_median(clif, both, "dihcl", "-") == (1.00, 25)
    assert _pooled_median(clif, both, "ml_unc", "-") == (1.04, 25)


def test_compare_without_random_pairs_with_random_runs_already_in_the_folder(tmp_path, capsys):
    from d2ace_ext import cli

    protocol = Protocol(folds=2, epochs=5)
    with open(tmp_path / "results.jsonl", "w") as handle:
        for fold in range(2):
            for selector, preset, curve in (("random", "-", RANDOM), ("hard_imb", "-", [0.5, 0.6, 0.8, 0.8, 0.8])):
                record = run(selector, curve, dataset="emotions", fold=fold, protocol=protocol.digest(), preset=preset)
                record["metrics"] = {"macro_auc": max(curve)}
                handle.write(json.dumps(record) + "\n")
    assert (
        cli.main(
            [
                "compare",
                "--datasets",
                "emotions",
                "--models",
                "mlp",
                "--selectors",
                "hard_imb",
                "--folds",
                "2",
                "--epochs",
                "5",
                "--results-dir",
                str(tmp_path),
                "--report-only",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "time to target: 2 of 2 full-budget Random runs" in capsys.readouterr().out
    assert "| emotions | 0.75 [0.75, 0.75] 2/2 |" in (tmp_path / "comparison.md").read_text()


def test_tables_command_says_what_is_missing_in_one_line(tmp_path, capsys):
    from d2ace_ext.harness.time_to_target_tables import NO_PAIRS, main

    with pytest.raises(SystemExit):  # no results file: an error naming it, not a traceback
        main([str(tmp_path)])
    assert f"no results: expected {tmp_path / 'results.jsonl'}" in capsys.readouterr().err
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps(run("d2ace", SELECTOR, preset="paper")) + "\n")  # no Random to pair with
    main([str(tmp_path)])
    out, err = capsys.readouterr()
    assert out.strip() == NO_PAIRS
    assert f"there is no {tmp_path / 'protocols.json'}" in err  # and what pairing falls back to
    results.write_text("".join(json.dumps(r) + "\n" for r in (run("random", RANDOM), run("d2ace", SELECTOR))))
    (tmp_path / "protocols.json").write_text(json.dumps({"p0": {"epochs": 5}}))  # does not hash to p0
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "protocols.json entry p0: its settings hash to" in capsys.readouterr().err
