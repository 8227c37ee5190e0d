"""What a budget costs in accuracy: the test metric of every budgeted run against the
**full-budget** Random of the same (data set, repeat, fold), the question "I can afford
a fraction ρ of the passes: which selector keeps the most?" answers with.

The comparison tables of one ``compare --budget`` call pair each selector with the
budgeted Random of its own protocol, and the time-to-target tables count passes; this
report gives the other half of the verdict, the end result against uniform batches at
full budget, with a bootstrap interval:

    python -m d2ace_ext.harness.budget_accuracy RESULTS [--metric macro_auc]

RESULTS is a results folder or ``.jsonl`` file (compact evidence included) with its
``protocols.json``, which names each protocol's budget and pairs it with the
otherwise-equal full-budget protocol (``time_to_target.baseline_digests``).
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from .paired import bootstrap_effect, interval_text
from .plot_records import load_records
from .protocol_index import protocol_epochs, protocol_labels, read_protocols, unlisted_note
from .series import series_name, series_order
from .tables import METRICS
from .time_to_target import BASELINE, baseline_digests

DEFAULT_METRIC = "macro_auc"


def _budget(settings: dict | None) -> float:
    return float((settings or {}).get("budget", 1.0))


def budget_accuracy(records: list[dict], protocols: dict, metric: str = DEFAULT_METRIC) -> dict:
    """Per (model, budgeted digest): {"label": str, "budget": ρ, "datasets": {dataset:
    {"full_random": its mean over the cells any series paired, "series": {(selector, preset): effect}}}}, where
    an effect is ``paired.bootstrap_effect`` of (run − full-budget Random) over the cells
    both hold (positive: better, whichever direction ``metric`` counts as better), plus
    "value" (the run's mean over those cells) and "ahead" (cells where it did better).
    Only protocols with a budget below 1 that ``protocols`` names are reported."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    sign = 1.0 if METRICS[metric][1] else -1.0
    baselines = baseline_digests({d: s for d, s in protocols.items() if _budget(s) < 1.0})
    # (dataset, model, selector, preset, protocol) -> {(repeat, fold): metric}
    series: dict = {}
    for record in records:
        k, got = record["key"], (record.get("metrics") or {}).get(metric)
        if got is not None and np.isfinite(got):
            name = (k["dataset"], k["model"], k["selector"], k.get("preset", "-"), k["protocol"])
            series.setdefault(name, {})[(int(k.get("repeat", 0)), int(k["fold"]))] = float(got)
    labels = protocol_labels(protocol_epochs(records), protocols)
    out: dict = {}
    paired: dict = {}  # (model, digest, dataset) -> (full-budget Random's {cell: value}, cells any series paired)
    for (dataset, model, selector, preset, digest), runs in series.items():
        if digest not in baselines:
            continue
        full = next(
            (
                series[(dataset, model, BASELINE, "-", base)]
                for base in baselines[digest]
                if (dataset, model, BASELINE, "-", base) in series
            ),
            {},
        )
        cells = sorted(set(runs) & set(full))
        if not cells:
            continue
        diffs = sign * np.array([runs[c] - full[c] for c in cells])
        panel = out.setdefault(
            (model, digest), {"label": labels.get(digest, digest), "budget": _budget(protocols[digest]), "datasets": {}}
        )
        row = panel["datasets"].setdefault(dataset, {"full_random": math.nan, "series": {}})
        row["series"][(selector, preset)] = {
            **bootstrap_effect(diffs),
            "value": float(np.mean([runs[c] for c in cells])),
            "ahead": int((diffs > 0).sum()),
        }
        paired.setdefault((model, digest, dataset), (full, set()))[1].update(cells)
    # Over every cell the row's series paired, whatever order the records came in.
    for (model, digest, dataset), (full, cells) in paired.items():
        out[(model, digest)]["datasets"][dataset]["full_random"] = float(np.mean([full[c] for c in cells]))
    return out


def budget_rows(report: dict) -> list[dict]:
    """The report as flat JSON rows: model, protocol, label, budget, dataset, full_random,
    selector, preset and the effect's fields (``budget_accuracy``)."""
    rows = []
    for (model, digest), panel in report.items():
        for dataset, row in panel["datasets"].items():
            for (selector, preset), effect in row["series"].items():
                rows.append(
                    {
                        "model": model,
                        "protocol": digest,
                        "label": panel["label"],
                        "budget": panel["budget"],
                        "dataset": dataset,
                        "full_random": row["full_random"],
                        "selector": selector,
                        "preset": preset,
                        **effect,
                    }
                )
    return rows


def effect_text(effect: dict) -> str:
    """'+0.0032 [−0.0006, +0.0065] 4/5': mean difference, 95 % interval (none below two
    cells), and the cells where the run did better than full-budget Random."""
    return interval_text(effect).replace("-", "−") + f" {effect['ahead']}/{effect['cells']}"


def budget_markdown(report: dict, metric: str = DEFAULT_METRIC) -> str:
    """One table per (model, budgeted protocol): a row per data set, a column per series."""
    lines = []
    for (model, digest), panel in report.items():
        keys = sorted({s for row in panel["datasets"].values() for s in row["series"]}, key=lambda s: series_order(*s))
        lines += [
            f"### {model}, {panel['label']} (protocol {digest}): test {METRICS[metric][0]} − full-budget Random, "
            "same folds",
            "",
            "| data set (full-budget Random) | " + " | ".join(series_name(*k) for k in keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for dataset, row in panel["datasets"].items():
            cells = [effect_text(row["series"][k]) if k in row["series"] else "–" for k in keys]
            lines.append(f"| {dataset} ({row['full_random']:.4f}) | " + " | ".join(cells) + " |")
        lines.append("")
    if lines:
        lines.append(
            "Mean paired difference (positive: better than uniform batches at full budget), 95 % bootstrap "
            "interval over the (repeat, fold) cells, and the cells where the run did better."
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="budgeted runs against the full-budget Random of the same folds")
    parser.add_argument("results", help="a results folder or .jsonl file, with its protocols.json")
    parser.add_argument(
        "--metric", default=DEFAULT_METRIC, choices=list(METRICS), help=f"test metric (default {DEFAULT_METRIC})"
    )
    args = parser.parse_args(argv)
    try:
        protocols = read_protocols(args.results)
        if not protocols:
            parser.error(f"{args.results} has no protocols.json: it names each protocol's budget")
        records = load_records(args.results)
        text = budget_markdown(budget_accuracy(records, protocols, args.metric), args.metric)
    except (FileNotFoundError, ValueError) as error:  # no results file, a protocols.json entry that does not hash
        parser.error(str(error))
    note = unlisted_note(records, protocols, args.results)
    if note:
        print(note, file=sys.stderr)
    print(text or "no budgeted run has a full-budget Random on the same folds here")


if __name__ == "__main__":
    main()
