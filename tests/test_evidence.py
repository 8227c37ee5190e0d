"""Compact evidence records (d2ace_ext.harness.evidence) report like the originals."""

import json
import math

import pytest

from d2ace_ext.harness.evidence import compact_record, merge_compact
from d2ace_ext.harness.paired import best_epoch, late_best
from d2ace_ext.harness.results import ResultsStore


def _record(selector, fold, curve, auc=0.7):
    return {
        "key": {
            "dataset": "toy",
            "model": "mlp",
            "selector": selector,
            "preset": "-",
            "fold": fold,
            "protocol": "abcd1234",
            "repeat": 0,
        },
        "metrics": {"macro_auc": auc, "macro_f1": 0.5},
        "best_epoch": 3,
        "best_val_macro_auc": max(curve),
        "seconds": 1.5,
        "selection_seconds": 0.01,
        "shape": {"train": 10, "q": 2},
        "history": {
            "epoch": list(range(len(curve))),
            "train_loss": [1.0] * len(curve),
            "lr": [1e-4] * len(curve),
            "val_macro_auc": curve,
        },
        "trace": None,
    }


def test_compact_keeps_what_reports_read():
    curve = [0.5, 0.61234567, float("nan"), 0.7000004, 0.7000001, 0.69]
    full = _record("random", 0, curve)
    small = compact_record(full)
    assert set(small) == {
        "key",
        "metrics",
        "best_epoch",
        "best_val_macro_auc",
        "seconds",
        "selection_seconds",
        "shape",
        "history",
    }
    assert small["metrics"] == full["metrics"] and small["key"] == full["key"]
    assert small["history"]["val_macro_auc"][1] == 0.612346
    assert math.isnan(small["history"]["val_macro_auc"][2])
    assert best_epoch(small) == best_epoch(full) == 3
    late = _record("random", 1, [0.1] * 99 + [0.9])
    assert late_best(compact_record(late)) and late_best(late)
    assert len(json.dumps(small)) < len(json.dumps(full))


def test_merge_is_last_wins_and_resumable(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(
        json.dumps(_record("random", 0, [0.5, 0.6], auc=0.1))
        + "\n"
        + json.dumps(_record("d2ace", 0, [0.5, 0.6]))
        + "\n"
    )
    second.write_text(json.dumps(_record("random", 0, [0.5, 0.6], auc=0.2)) + "\n\n")
    target = tmp_path / "store" / "results.jsonl"
    assert merge_compact(str(target), [str(first), str(second)]) == 2
    records = ResultsStore(str(tmp_path / "store")).records()
    assert len(records) == 2
    assert records[("toy", "mlp", "random", "-", 0, "abcd1234", 0)]["metrics"]["macro_auc"] == 0.2
    # merging into an existing target keeps its records
    third = tmp_path / "c.jsonl"
    third.write_text(json.dumps(_record("ml_unc", 0, [0.5])) + "\n")
    assert merge_compact(str(target), [str(third)]) == 3


def test_merge_names_the_bad_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_record("random", 0, [0.5])) + "\n{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        merge_compact(str(tmp_path / "out.jsonl"), [str(bad)])
    nokey = tmp_path / "nokey.jsonl"
    nokey.write_text('{"metrics": {}}\n')
    with pytest.raises(ValueError, match="without a key"):
        merge_compact(str(tmp_path / "out.jsonl"), [str(nokey)])
