"""The comparison report's paired effect with its bootstrap interval, the convergence
check, and tables over repeated cross-validation."""

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from d2ace_ext.harness.experiment import Protocol, RunKey
from d2ace_ext.harness.paired import best_epoch, bootstrap_effect, convergence, late_best, paired_differences
from d2ace_ext.harness.results import ResultsStore
from d2ace_ext.harness.runner import Grid
from d2ace_ext.harness.tables import markdown, summarise, write_tables


def test_paired_differences_match_cells_and_point_towards_d2ace():
    target = {(0, 0): 0.8, (0, 1): 0.7, (1, 0): float("nan"), (1, 1): 0.9}
    baseline = {(0, 0): 0.7, (0, 1): 0.75, (1, 0): 0.6}  # (1, 1) missing: not paired
    assert paired_differences(target, baseline, True) == pytest.approx([0.1, -0.05])
    assert paired_differences(target, baseline, False) == pytest.approx([-0.1, 0.05])  # lower is better


def test_bootstrap_effect_interval():
    constant = bootstrap_effect(np.full(10, 0.003))
    assert constant["mean"] == pytest.approx(0.003) and constant["low"] == pytest.approx(0.003)
    assert constant["high"] == pytest.approx(0.003) and math.isnan(constant["dz"]) and constant["cells"] == 10
    diffs = np.random.default_rng(1).normal(0.002, 0.004, size=75)
    effect = bootstrap_effect(diffs)
    assert effect["low"] < effect["mean"] < effect["high"]
    assert effect["high"] - effect["low"] == pytest.approx(2 * 1.96 * diffs.std(ddof=1) / math.sqrt(75), rel=0.15)
    assert effect == bootstrap_effect(diffs)  # fixed seed: the report is reproducible
    assert effect["dz"] == pytest.approx(diffs.mean() / diffs.std(ddof=1))
    one = bootstrap_effect(np.array([0.01]))
    assert one["mean"] == 0.01 and math.isnan(one["low"]) and one["cells"] == 1


def _history(best_at: int, epochs: int = 100) -> dict:
    auc = np.linspace(0.5, 0.6, epochs)
    auc[best_at] = 0.9
    return {"history": {"val_macro_auc": auc.tolist()}, "best_epoch": epochs - 1}


def test_late_best_epoch():
    assert best_epoch(_history(40)) == 40  # read from the history, not the tested epoch
    assert not late_best(_history(94)) and late_best(_history(95)) and late_best(_history(99))
    assert late_best(_history(9, epochs=10)) and not late_best(_history(8, epochs=10))
    assert not late_best({"history": {"val_macro_auc": []}})


def _records(repeats=2, folds=3):
    rng = np.random.default_rng(0)
    out = []
    for r in range(repeats):
        for f in range(folds):
            base = 0.7 + 0.01 * f + 0.005 * r
            for selector, shift, best_at in (("random", 0.0, 99), ("d2ace", 0.002, 50)):
                auc = base + shift + rng.normal(0, 1e-4)
                out.append(
                    {
                        "key": {
                            "dataset": "a",
                            "model": "mlp",
                            "selector": selector,
                            "preset": "-",
                            "fold": f,
                            "repeat": r,
                            "protocol": "x",
                        },
                        "metrics": {"macro_auc": auc, "ranking_loss": 1 - auc},
                        **_history(best_at),
                    }
                )
    return out


def test_tables_over_repeats_pair_cells_and_report_effect_and_convergence(tmp_path):
    records = _records()
    summary = summarise(records, ["a"], ["mlp"], ["random", "d2ace"])
    auc = summary["macro_auc"]["mlp"]
    assert auc["rows"]["a"]["d2ace"]["folds"] == 6  # every (repeat, fold) run, none overwritten
    effect = auc["effect"]["random"]
    assert effect["cells"] == 6 and effect["mean"] == pytest.approx(0.002, abs=2e-4) and effect["low"] > 0
    loss_effect = summary["ranking_loss"]["mlp"]["effect"]["random"]
    assert loss_effect["mean"] == pytest.approx(effect["mean"])  # lower loss: D2ACE better, positive
    diffs = [a["metrics"]["macro_auc"] - b["metrics"]["macro_auc"] for a, b in zip(records[1::2], records[::2])]
    assert auc["wilcoxon"]["random"]["folds"] == pytest.approx(wilcoxon(diffs).pvalue)
    late = convergence(records, ["a"], ["mlp"], ["random", "d2ace"])
    assert late["mlp"]["a"]["random"] == {"late": 6, "runs": 6} and late["mlp"]["a"]["d2ace"]["late"] == 0
    text = markdown(summary, ["a"], ["mlp"], ["random", "d2ace"], late=late)
    assert "D2ACE better by, 95 % bootstrap CI (paired runs) | +0.00" in text
    assert "| a | 6/6 | 0/6 |" in text and "data set × repeat × fold" in text
    # one data set: the across-data-set test is undefined and says so, not "nan"
    assert math.isnan(auc["wilcoxon"]["random"]["datasets"])
    assert "| Wilcoxon p vs D2ACE (data sets) | – |  |" in text
    assert "nan" not in text  # Macro-F1 has no records here: its ranks and p print "–" too
    assert "per data set" not in text  # with one data set the pooled row is the per-set effect
    paths = write_tables(summary, ["a"], ["mlp"], ["random", "d2ace"], str(tmp_path), late=late)
    assert "6/6" in open(paths[0]).read()


def test_tables_report_the_effect_per_data_set():
    # Two data sets: on "a" D2ACE is ahead by 0.002 in every cell, on "b" behind by 0.004;
    # the pooled effect hides the split, the per-data-set rows show it.
    records = _records()
    for r in _records():
        r["key"]["dataset"] = "b"
        if r["key"]["selector"] == "d2ace":
            auc = r["metrics"]["macro_auc"] - 0.006
            r["metrics"] = {"macro_auc": auc, "ranking_loss": 1 - auc}
        records.append(r)
    summary = summarise(records, ["a", "b"], ["mlp"], ["random", "d2ace"])
    per = summary["macro_auc"]["mlp"]["dataset_effect"]["random"]
    assert per["a"]["mean"] == pytest.approx(0.002, abs=2e-4) and per["a"]["low"] > 0 and per["a"]["cells"] == 6
    assert per["b"]["mean"] == pytest.approx(-0.004, abs=2e-4) and per["b"]["high"] < 0
    pooled = summary["macro_auc"]["mlp"]["effect"]["random"]
    assert pooled["cells"] == 12 and pooled["mean"] == pytest.approx((per["a"]["mean"] + per["b"]["mean"]) / 2)
    loss = summary["ranking_loss"]["mlp"]["dataset_effect"]["random"]
    assert loss["b"]["mean"] == pytest.approx(per["b"]["mean"])  # signed so that positive is D2ACE better
    text = markdown(summary, ["a", "b"], ["mlp"], ["random", "d2ace"])
    assert "D2ACE better by, per data set (Macro-AUC, mlp" in text
    row_b = next(line for line in text.splitlines() if line.startswith("| b | -0.00"))
    assert row_b.endswith("(6) |")
    missing = summarise(records, ["a", "c"], ["mlp"], ["random", "d2ace"])
    assert missing["macro_auc"]["mlp"]["dataset_effect"]["random"]["c"]["cells"] == 0
    assert "| c | – |" in markdown(missing, ["a", "c"], ["mlp"], ["random", "d2ace"])


def test_repeats_in_keys_and_store():
    protocol = Protocol(folds=2)
    keys = Grid(("a",), ("mlp",), ("random",), repeats=3).keys(protocol)
    assert [(k.repeat, k.fold) for k in keys] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert keys[0].stem() == "a__mlp__random__-__f0" and keys[2].stem() == "a__mlp__random__-__r1__f0"
    with pytest.raises(ValueError, match="repeats"):
        Grid(("a",), ("mlp",), ("random",), repeats=0).keys(protocol)


def test_records_written_before_repeats_are_repeat_zero(tmp_path):
    store = ResultsStore(str(tmp_path))
    old = RunKey.make("a", "mlp", "random", "paper", 0, Protocol()).to_dict()
    del old["repeat"]
    store.append({"key": old, "metrics": {}})
    new = RunKey.make("a", "mlp", "random", "paper", 0, Protocol(), repeat=1).to_dict()
    store.append({"key": new, "metrics": {}})
    assert sorted(k[-1] for k in store.records()) == [0, 1]


def test_epochs_sweep_runs_each_length(monkeypatch):
    from d2ace_ext import cli

    seen = []
    monkeypatch.setattr(cli, "cmd_compare", lambda args: seen.append((args.epochs, args.stem)) or 0)
    assert cli.main(["compare", "--datasets", "cal500", "--epochs", "100", "200", "300"]) == 0
    assert seen == [(100, "comparison_e100"), (200, "comparison_e200"), (300, "comparison_e300")]
    seen.clear()
    assert cli.main(["compare", "--datasets", "cal500"]) == 0
    assert seen == [(100, "comparison")]


def test_report_only_runs_nothing_and_returns_what_is_there(tmp_path):
    from d2ace_ext.harness.runner import run_grid

    protocol = Protocol(folds=2)
    grid = Grid(("nowhere",), ("mlp",), ("random", "d2ace"), repeats=2)
    store = ResultsStore(str(tmp_path))
    present = grid.keys(protocol)[2]
    store.append({"key": present.to_dict(), "metrics": {"macro_auc": 0.7}})
    found = run_grid(grid, protocol, str(tmp_path), data_dir=str(tmp_path), report_only=True, progress=False)
    assert list(found.values()) == [{"key": present.to_dict(), "metrics": {"macro_auc": 0.7}}]


def test_convergence_counts_only_runs_with_a_validation_curve():
    # A record without history cannot tell where its best epoch was: it was once counted
    # as a run that peaked early ("0/2" for two runs of which one is unknown).
    key = {"dataset": "a", "model": "mlp", "selector": "random"}
    records = [{"key": key, **_history(99)}, {"key": key, "metrics": {}, "best_epoch": 3}]
    assert convergence(records, ["a"], ["mlp"], ["random"])["mlp"]["a"]["random"] == {"late": 1, "runs": 1}


@pytest.mark.parametrize("field, other", [("preset", "reference"), ("protocol", "y")])
def test_tables_refuse_two_runs_of_one_cell_instead_of_keeping_the_last(field, other):
    # Cells are keyed (data set, model, selector, repeat, fold): a second D2ACE run of the same
    # cell under another preset or protocol used to overwrite the first silently, so the
    # table mixed presets/protocols. It must say so instead.
    records = _records()
    twin = next(r for r in records if r["key"]["selector"] == "d2ace")
    records.append({**twin, "key": {**twin["key"], field: other}, "metrics": {"macro_auc": 0.1, "ranking_loss": 0.9}})
    with pytest.raises(ValueError, match=f"two runs of one cell .*: {field} .* vs {other};"):
        summarise(records, ["a"], ["mlp"], ["random", "d2ace"])
