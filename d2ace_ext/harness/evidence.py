"""Compact copies of results records, small enough to commit as evidence.

A results record carries every epoch's training loss, learning rate and validation
Macro-AUC: about 6 KB per 100-epoch run and 100 KB per 2,000-epoch run. The tables of
``d2ace compare --report-only`` read only the test metrics and, for the convergence
check, the validation curve, so a compact record keeps those (the curve rounded to
``digits`` decimals) and, for time to target, the cumulative cost series
``samples_seen`` and ``elapsed_seconds`` where recorded, and drops the rest. A folder
whose ``results.jsonl`` holds compact records resumes and reports like the original;
``d2ace plot`` draws its validation curves but no training loss.

    python -m d2ace_ext.harness.evidence TARGET.jsonl SOURCE.jsonl [SOURCE.jsonl ...]
"""
from __future__ import annotations

import argparse
import json
import os

from .results import key_tuple, record_line

#: Record fields a compact copy keeps as they are.
KEPT_FIELDS = ("key", "metrics", "best_epoch", "best_val_macro_auc", "seconds", "selection_seconds", "shape")
#: History series a compact copy keeps beside the validation curve: cumulative samples
#: drawn and wall seconds per epoch (decimals kept), which time to target reads.
COST_SERIES = {"samples_seen": 0, "elapsed_seconds": 3}


def compact_record(record: dict, digits: int = 6) -> dict:
    """The record with its history reduced to the validation Macro-AUC curve rounded to
    ``digits`` decimals (NaN stays NaN) and the ``COST_SERIES`` it has.
    record: one ``results.jsonl`` record."""
    out = {name: record[name] for name in KEPT_FIELDS if name in record}
    history = record.get("history") or {}
    curve = history.get("val_macro_auc")
    if curve is not None:
        out["history"] = {"val_macro_auc": [v if v is None or v != v else round(float(v), digits) for v in curve]}
        # The time-to-target report's costs per epoch (harness/time_to_target.py), where recorded.
        for name, decimals in COST_SERIES.items():
            if history.get(name) is not None:
                out["history"][name] = [v if v is None else round(float(v), decimals) if decimals else int(v)
                                        for v in history[name]]
    return out


def _read(path: str) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{number} is not a JSON record") from None
    return records


def merge_compact(target: str, sources: list[str], digits: int = 6) -> int:
    """Write ``target`` with the compact records of ``target`` (if it exists) and then of
    each source, in that order; for a key met more than once the last record wins, as in
    a results store. The file is replaced atomically. Returns the number of records."""
    merged: dict[tuple, dict] = {}
    for path in ([target] if os.path.exists(target) else []) + list(sources):
        for record in _read(path):
            if "key" not in record:
                raise ValueError(f"{path} holds a record without a key")
            merged[key_tuple(record["key"])] = compact_record(record, digits)
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    partial = target + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        for record in merged.values():
            handle.write(record_line(record) + "\n")
    os.replace(partial, target)
    return len(merged)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="merge results.jsonl files into one compact evidence file")
    parser.add_argument("target")
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--digits", type=int, default=6, help="decimals kept of the validation curve")
    args = parser.parse_args(argv)
    count = merge_compact(args.target, args.sources, args.digits)
    print(f"{args.target}: {count} records")


if __name__ == "__main__":
    main()
