"""What an image command prints and writes when its runs are done: a run's metrics, a
comparison's mAP table (Markdown and JSON), and the selection overhead per selector."""

from __future__ import annotations

import json
import math
import os

import numpy as np

from .experiment import DISPLAY_NAMES

#: The metrics ``d2ace run`` prints for an image set, in order.
RUN_METRICS = (
    "map",
    "map_voc_interpolated",
    "macro_auc",
    "macro_f1",
    "micro_f1",
    "ranking_loss",
    "one_error",
    "average_precision",
)


def overhead(records: list[dict]) -> tuple[float, float, float]:
    """(ms per training step, selection ms per step, selection as % of the rest of the step)."""
    steps = sum(r["steps"] for r in records) or 1
    loop, selection = sum(r["loop_seconds"] for r in records), sum(r["selection_seconds"] for r in records)
    return 1000 * loop / steps, 1000 * selection / steps, 100 * selection / max(1e-12, loop - selection)


def table(records: list[dict], datasets, models, selectors) -> str:
    """Markdown: mAP mean ± std over seeds per (data set, model) × selector, ranked."""
    lines = [
        "| data set | model | " + " | ".join(DISPLAY_NAMES[s] for s in selectors) + " |",
        "|---|---|" + "---|" * len(selectors),
    ]
    for d in datasets:
        for m in models:
            cells = {}
            for s in selectors:
                v = [
                    r["metrics"]["map"]
                    for r in records
                    if (r["key"]["dataset"], r["key"]["model"], r["key"]["selector"]) == (d, m, s)
                ]
                cells[s] = (float(np.mean(v)), float(np.std(v)), len(v)) if v else (math.nan, math.nan, 0)
            order = sorted(selectors, key=lambda s: -round(cells[s][0], 4) if math.isfinite(cells[s][0]) else math.inf)
            rank = {s: 1 + sum(round(cells[t][0], 4) > round(cells[s][0], 4) for t in selectors) for s in order}
            lines.append(
                f"| {d} | {m} | "
                + " | ".join(f"{cells[s][0]:.4f} ± {cells[s][1]:.4f} ({rank[s]})" for s in selectors)
                + " |"
            )
    return "\n".join(lines)


def print_run(args, records: list[dict], selector: str) -> None:
    """``d2ace run``: the settings line, then each metric's mean ± std over the seeds."""
    print(
        f"\n{args.dataset} · {args.model} · {DISPLAY_NAMES[selector]} · {args.seeds} seed(s) · "
        f"{args.epochs} epochs · {args.backbone} · protocol {records[0]['key']['protocol']}"
    )
    for metric in RUN_METRICS:
        v = [r["metrics"][metric] for r in records if metric in r["metrics"]]  # older records lack newer ones
        if v:
            print(f"  {metric:<18} {np.mean(v):.4f} ± {np.std(v):.4f}")


def write_comparison(args, records: list[dict], datasets, models, selectors) -> None:
    """``d2ace compare``: the mAP table, printed and written to ``<results-dir>/<stem>.md``,
    and every run's key and metrics to ``<stem>.json``."""
    text = table(records, datasets, models, selectors)
    print("\nmAP (mean ± std over seeds, rank)\n\n" + text)
    os.makedirs(args.results_dir, exist_ok=True)
    with open(os.path.join(args.results_dir, f"{args.stem}.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    with open(os.path.join(args.results_dir, f"{args.stem}.json"), "w", encoding="utf-8") as handle:
        json.dump([{"key": r["key"], "metrics": r["metrics"]} for r in records], handle, indent=1, default=float)


def print_overheads(records: list[dict], selectors, wall: float, results_dir: str) -> None:
    """Per selector: ms per training step and the selection's share; then the call's wall time."""
    for s in selectors:
        step, select, share = overhead([r for r in records if r["key"]["selector"] == s])
        print(f"  {DISPLAY_NAMES[s]:<8} {step:8.1f} ms per training step, selection {select:.2f} ms ({share:.2f} %)")
    print(f"  this call {wall:.1f} s; results: {results_dir}/results.jsonl")
