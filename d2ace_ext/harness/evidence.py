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
import os
import sys

from .results import key_tuple, read_results, record_line, repair_torn_tail

#: Record fields a compact copy keeps as they are.
KEPT_FIELDS = ("key", "metrics", "best_epoch", "best_val_macro_auc", "seconds", "selection_seconds", "shape")
#: History series a compact copy keeps beside the validation curve: cumulative samples
#: drawn and wall seconds per epoch (decimals kept), which time to target reads; samples of
#: full passes are left out (derived from ``shape.train``).
COST_SERIES = {"samples_seen": 0, "elapsed_seconds": 3}


#: Decimals ``--digits`` may keep of the validation curve: below 1 a curve of AUCs rounds
#: to 0 and 1; beyond 17 nothing of a float64 is left to keep.
DIGITS_RANGE = (1, 17)


def _check_digits(digits) -> int:
    low, high = DIGITS_RANGE
    if isinstance(digits, bool) or not isinstance(digits, int) or not low <= digits <= high:
        raise ValueError(f"digits (--digits) must be an integer from {low} to {high}, got {digits!r}")
    return digits


def compact_record(record: dict, digits: int = 6) -> dict:
    """The record with its history reduced to the validation Macro-AUC curve rounded to
    ``digits`` decimals (1 to 17; NaN stays NaN) and the ``COST_SERIES`` it has.
    record: one ``results.jsonl`` record."""
    _check_digits(digits)
    out = {name: record[name] for name in KEPT_FIELDS if name in record}
    history = record.get("history") or {}
    curve = history.get("val_macro_auc")
    if curve is not None:
        out["history"] = {"val_macro_auc": [v if v is None or v != v else round(float(v), digits) for v in curve]}
        # The time-to-target report's costs per epoch (harness/time_to_target.py), where recorded.
        for name, decimals in COST_SERIES.items():
            if history.get(name) is not None and not (name == "samples_seen" and _full_passes(record)):
                out["history"][name] = [
                    v if v is None else round(float(v), decimals) if decimals else int(v) for v in history[name]
                ]
    return out


def _full_passes(record: dict) -> bool:
    """Whether the record's ``samples_seen`` is (e + 1) · n_train at every epoch e: full
    passes, which time to target derives from ``shape.train`` when the series is absent
    (``cumulative_costs``), so a compact copy leaves it out (a third of its bytes)."""
    samples = record["history"]["samples_seen"]
    train = (record.get("shape") or {}).get("train")
    return bool(train) and all(v == (e + 1) * train for e, v in enumerate(samples))


def dropped_fields(record: dict) -> list[str]:
    """What :func:`compact_record` would drop from ``record``: fields other than
    ``KEPT_FIELDS`` and history series other than the validation curve."""
    history = record.get("history") or {}
    return [name for name in record if name not in KEPT_FIELDS and name != "history"] + [
        f"history.{name}" for name in history if name != "val_macro_auc"
    ]


def _read(path: str) -> list[dict]:
    """The records of one file, read as ``compare`` reads a results file (the shared
    reader): a torn last line is passed over with a note; any other line without a
    record is an error naming it, since a compacted copy would lose it for good."""
    lines = read_results(path)
    if lines.unreadable:
        raise ValueError(
            f"{path}:{lines.unreadable[0]}: not a run record (not JSON, or without a key); "
            f"line(s) {', '.join(map(str, lines.unreadable))} are such: repair or remove them first"
        )
    if lines.torn is not None:
        print(
            f"{path}: passed over a torn last line ({len(lines.torn)} characters, a write cut short)", file=sys.stderr
        )
    return [record for _, record in lines.records]


def _same_file(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def merge_compact(target: str, sources: list[str], digits: int = 6) -> int:
    """Write ``target`` with the compact records of ``target`` (if it exists) and then of
    each source, in that order; for a key met more than once the last record wins, as in
    a results store. The file is replaced atomically. Returns the number of records.

    Refused (ValueError), with nothing written: a target that is also a source, or an
    existing target holding full records (a results file: compacting it in place would
    drop its histories), a missing source, ``digits`` outside 1..17."""
    _check_digits(digits)
    for path in sources:
        if not os.path.isfile(path):
            raise ValueError(f"source {path!r} is not a file")
        if _same_file(path, target):
            raise ValueError(
                f"the target {target!r} is also a source: it would be compacted in place and its full "
                "records lost; write the evidence to a new file"
            )
    if os.path.exists(target):
        repair_torn_tail(target)  # a torn fragment goes to TARGET.torn rather than vanish in the rewrite
    existing = _read(target) if os.path.exists(target) else []
    full = next((r for r in existing if dropped_fields(r)), None)
    if full is not None:
        raise ValueError(
            f"the target {target!r} holds full results records (with {', '.join(dropped_fields(full))}); "
            "compacting it in place would drop them: write the evidence to a new file and pass "
            f"{target!r} as a source"
        )
    merged: dict[tuple, dict] = {}
    for records in [existing] + [_read(path) for path in sources]:
        for record in records:
            merged[key_tuple(record["key"])] = compact_record(record, digits)
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    partial = target + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        for record in merged.values():
            handle.write(record_line(record) + "\n")
    os.replace(partial, target)
    return len(merged)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="merge results.jsonl files into one compact evidence file")
    parser.add_argument("target", help="the evidence file to write (a new file, or an earlier evidence file)")
    parser.add_argument("sources", nargs="+", help="results.jsonl files (or evidence files) to merge into it")
    parser.add_argument(
        "--digits",
        type=int,
        default=6,
        help=f"decimals kept of the validation curve ({DIGITS_RANGE[0]} to {DIGITS_RANGE[1]})",
    )
    args = parser.parse_args(argv)
    try:
        count = merge_compact(args.target, args.sources, args.digits)
    except ValueError as error:
        print(f"evidence: {error}", file=sys.stderr)
        return 2
    print(f"{args.target}: {count} records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
