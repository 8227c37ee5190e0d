"""The paper's Table 3/4 layout from a grid's records: per data set the mean (± std
over its folds, all repeats) of each selector with its rank, the average rank, Wilcoxon
signed-rank p-values of D2ACE against each baseline, the paired effect with a bootstrap
interval (``paired``), and the convergence check. Written as Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
from scipy.stats import rankdata

from .experiment import DISPLAY_NAMES
from .paired import bootstrap_effect, interval_text, paired_differences, wilcoxon_p
from .time_to_target_tables import CSV_HEADER, csv_rows, grid_markdown

#: metric -> (printed name, True when higher is better)
METRICS = {
    "macro_auc": ("Macro-AUC", True),
    "macro_f1": ("Macro-F1", True),
    "ranking_loss": ("Ranking-Loss", False),
    "micro_f1": ("Micro-F1", True),
    "hamming_loss": ("Hamming-Loss", False),
    "one_error": ("One-Error", False),
    "coverage": ("Coverage", False),
    "average_precision": ("Average-Precision", True),
}
PAPER_METRICS = ("macro_auc", "macro_f1", "ranking_loss")


def _or_dash(value: float, spec: str) -> str:
    """``value`` formatted with ``spec``, or "–" where it is undefined (NaN: a test over
    fewer than two pairs, e.g. across data sets when only one is run; a rank without records)."""
    return format(value, spec) if math.isfinite(value) else "–"


def summarise(records: list[dict], datasets, models, selectors, target: str = "d2ace") -> dict:
    """{metric: {model: {"rows": {dataset: {selector: {mean, std, folds, rank}}},
    "average_rank": {selector: r}, "wilcoxon": {baseline: {"datasets": p, "folds": p}},
    "effect": {baseline: {mean, low, high, dz, cells}},
    "dataset_effect": {baseline: {dataset: {mean, low, high, dz, cells}}}}}}. ``folds``
    counts the runs (repeats x folds) with a finite value, ``runs`` those with a record; the "folds" test and the effects pair runs by
    (data set, repeat, fold); a positive effect means D2ACE did better, whichever way the
    metric points. ``records``: runs of one protocol and one preset (two runs of one
    (data set, model, selector, repeat, fold) cell raise ValueError)."""
    by, seen = {}, {}
    for r in records:
        k = r["key"]
        cell = (int(k.get("repeat", 0)), int(k["fold"]))
        series = (k["dataset"], k["model"], k["selector"])
        first = seen.setdefault(series + cell, k)
        if first is not k:  # a cell holds one run: a second would silently replace the first
            differ = [f"{f} {first.get(f)} vs {k.get(f)}" for f in ("protocol", "preset") if first.get(f) != k.get(f)]
            raise ValueError(
                f"two runs of one cell ({', '.join(map(str, series))}, repeat {cell[0]}, fold {cell[1]})"
                f"{': ' + ', '.join(differ) if differ else ''}; pass the runs of one protocol and one preset"
            )
        by.setdefault(series, {})[cell] = r["metrics"]
    out: dict = {}
    for metric, (_, higher) in METRICS.items():
        out[metric] = {}
        for model in models:
            rows, fold_values = {}, {}
            for dataset in datasets:
                cells = {}
                for s in selectors:
                    runs = by.get((dataset, model, s), {})
                    values = {c: runs[c][metric] for c in sorted(runs) if runs[c].get(metric) is not None}
                    fold_values[(dataset, s)] = values
                    finite = [v for v in values.values() if math.isfinite(v)]
                    cells[s] = {
                        "mean": float(np.mean(finite)) if finite else float("nan"),
                        "std": float(np.std(finite)) if finite else float("nan"),
                        "folds": len(finite),
                        "runs": len(runs),  # with a record, finite or not: a cell missing runs shows in the tables
                    }
                means = np.array([cells[s]["mean"] for s in selectors])
                if np.all(np.isfinite(means)):
                    # Ranks of the printed 4-decimal values; ties share the best rank, as in the paper.
                    key = -np.round(means, 4) if higher else np.round(means, 4)
                    for s, rank in zip(selectors, rankdata(key, method="min")):
                        cells[s]["rank"] = int(rank)
                rows[dataset] = cells
            ranked = [d for d in datasets if all("rank" in rows[d][s] for s in selectors)]
            average = {
                s: float(np.mean([rows[d][s]["rank"] for d in ranked])) if ranked else float("nan") for s in selectors
            }
            tests, effects, dataset_effects = {}, {}, {}
            if target in selectors:
                for s in selectors:
                    if s == target:
                        continue
                    a = [rows[d][target]["mean"] for d in ranked]
                    b = [rows[d][s]["mean"] for d in ranked]
                    per_dataset = {
                        d: paired_differences(fold_values[(d, target)], fold_values[(d, s)], higher) for d in datasets
                    }
                    diffs = np.concatenate(list(per_dataset.values()) or [np.zeros(0)])
                    tests[s] = {"datasets": wilcoxon_p(np.asarray(a) - np.asarray(b)), "folds": wilcoxon_p(diffs)}
                    effects[s] = bootstrap_effect(diffs)
                    dataset_effects[s] = {d: bootstrap_effect(v) for d, v in per_dataset.items()}
            out[metric][model] = {
                "rows": rows,
                "average_rank": average,
                "wilcoxon": tests,
                "effect": effects,
                "dataset_effect": dataset_effects,
            }
    return out


def _name(selector: str) -> str:
    return DISPLAY_NAMES.get(selector, selector)


def _effect_text(e: dict) -> str:
    if not math.isfinite(e["mean"]):
        return "–"
    return f"{interval_text(e)} ({e['cells']})"


def _dataset_effect_lines(dataset_effect: dict, title: str, model: str, datasets, target: str) -> list[str]:
    """Per data set, how much better the target did than each baseline over the runs
    they share, with the bootstrap interval: where the pooled effect comes from."""
    baselines = list(dataset_effect)
    lines = [
        f"{_name(target)} better by, per data set ({title}, {model}; 95 % bootstrap CI, paired runs):",
        "",
        "| data set | " + " | ".join(_name(s) for s in baselines) + " |",
        "|---|" + "---|" * len(baselines),
    ]
    for d in datasets:
        lines.append(f"| {d} | " + " | ".join(_effect_text(dataset_effect[s][d]) for s in baselines) + " |")
    return lines + [""]


def convergence_markdown(late: dict, datasets, models, selectors, fraction: float = 0.05) -> str:
    """One table per model: runs whose best validation epoch is in the last ``fraction``."""
    lines = []
    for model in models:
        lines += [
            f"### Convergence, {model}: runs whose best validation epoch is in the last {fraction:.0%} of epochs",
            "",
            "| data set | " + " | ".join(_name(s) for s in selectors) + " |",
            "|---|" + "---|" * len(selectors),
        ]
        for d in datasets:
            cells = [late[model][d][s] for s in selectors]
            lines.append(f"| {d} | " + " | ".join(f"{c['late']}/{c['runs']}" for c in cells) + " |")
        total = [sum(late[model][d][s]["late"] for d in datasets) for s in selectors]
        runs = [sum(late[model][d][s]["runs"] for d in datasets) for s in selectors]
        lines += ["| all | " + " | ".join(f"{a}/{b}" for a, b in zip(total, runs)) + " |", ""]
    return "\n".join(lines)


def markdown(
    summary: dict,
    datasets,
    models,
    selectors,
    metrics=PAPER_METRICS,
    target: str = "d2ace",
    late: dict | None = None,
    times: dict | None = None,
    runs: int | None = None,
) -> str:
    """Markdown tables, one per (metric, model), in the paper's layout; then the
    convergence tables when ``late`` (``paired.convergence``) is given, and the
    time-to-target tables when ``times`` (``time_to_target.time_to_target``) is.
    ``runs``: the runs a cell should hold (folds x repeats); a cell with fewer (a partial
    grid under ``--report-only``) is marked "[k of runs runs]", with a note under its table."""
    lines = []
    for metric in metrics:
        title, higher = METRICS[metric]
        for model in models:
            block = summary[metric][model]
            lines += [
                f"### {title} ({'higher' if higher else 'lower'} is better), {model}",
                "",
                "| data set | " + " | ".join(_name(s) for s in selectors) + " |",
                "|---|" + "---|" * len(selectors),
            ]
            incomplete = False
            for d in datasets:
                cells = []
                for s in selectors:
                    c = block["rows"][d][s]
                    text = "–" if not math.isfinite(c["mean"]) else f"{c['mean']:.4f}±{c['std']:.4f}"
                    text += f" ({c['rank']})" if "rank" in c else ""
                    if runs is not None and c.get("runs", runs) < runs:
                        text, incomplete = text + f" [{c['runs']} of {runs} runs]", True
                    cells.append(text)
                lines.append(f"| {d} | " + " | ".join(cells) + " |")
            lines.append(
                "| Avg(Rank) | " + " | ".join(_or_dash(block["average_rank"][s], ".2f") for s in selectors) + " |"
            )
            if block["wilcoxon"]:
                for scope, label in (("datasets", "data sets"), ("folds", "data set × repeat × fold")):
                    p = [block["wilcoxon"][s][scope] if s in block["wilcoxon"] else None for s in selectors]
                    lines.append(
                        f"| Wilcoxon p vs {_name(target)} ({label}) | "
                        + " | ".join("" if v is None else _or_dash(v, ".3g") for v in p)
                        + " |"
                    )
                effects = block.get("effect", {})
                lines.append(
                    f"| {_name(target)} better by, 95 % bootstrap CI (paired runs) | "
                    + " | ".join(_effect_text(effects[s]) if s in effects else "" for s in selectors)
                    + " |"
                )
            if incomplete:
                lines.append(
                    f"\nk of {runs} runs: an incomplete cell (a partial grid); its mean and rank are over other "
                    "folds than a complete cell's, so the row does not compare like with like"
                )
            lines.append("")
            if block.get("dataset_effect") and len(datasets) > 1:  # one set: the pooled row says it
                lines += _dataset_effect_lines(block["dataset_effect"], title, model, datasets, target)
    if late is not None:
        lines.append(convergence_markdown(late, datasets, models, selectors))
    if times is not None:
        lines.append(grid_markdown(times, datasets, models))
    return "\n".join(lines)


def write_tables(
    summary: dict,
    datasets,
    models,
    selectors,
    folder: str,
    stem: str = "comparison",
    target: str = "d2ace",
    late: dict | None = None,
    times: dict | None = None,
    budget: dict | None = None,
    runs: int | None = None,
) -> list[str]:
    """``stem``.md (the paper's three metrics, convergence, time to target), .csv and .json
    (every metric; the JSON also the time-to-target report), and with ``times``
    ``stem``_time_to_target.csv (``time_to_target_tables.CSV_HEADER``). ``budget``
    (``budget_accuracy.budget_accuracy``'s report of a budgeted grid) ends the Markdown
    with its table and goes into the JSON as ``budget_accuracy`` rows. ``runs``: as in :func:`markdown`."""
    from .budget_accuracy import budget_markdown, budget_rows

    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"{stem}.{ext}") for ext in ("md", "csv", "json")]
    with open(paths[0], "w", encoding="utf-8") as handle:
        handle.write(
            markdown(summary, datasets, models, selectors, target=target, late=late, times=times, runs=runs) + "\n"
        )
        if budget:
            handle.write("\n" + budget_markdown(budget) + "\n")
    with open(paths[1], "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["metric", "model", "dataset", "selector", "mean", "std", "folds", "rank"])
        for metric, models_block in summary.items():
            for model, block in models_block.items():
                for d, cells in block["rows"].items():
                    for s, c in cells.items():
                        writer.writerow([metric, model, d, s, c["mean"], c["std"], c["folds"], c.get("rank", "")])
    with open(paths[2], "w", encoding="utf-8") as handle:
        json.dump(
            {
                "datasets": list(datasets),
                "models": list(models),
                "selectors": list(selectors),
                "target": target,
                "summary": summary,
                "convergence": late,
                "time_to_target": times,
                "budget_accuracy": budget_rows(budget) if budget else None,
            },
            handle,
            indent=1,
            allow_nan=True,
        )
    if times is not None:
        paths.append(os.path.join(folder, f"{stem}_time_to_target.csv"))
        with open(paths[-1], "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_HEADER)
            writer.writerows(csv_rows(times))
    return paths
