"""Time-to-target tables (``time_to_target``) as Markdown and CSV: those of one
``compare`` grid, and, over a whole results file, one table per (model, protocol):

    python -m d2ace_ext.harness.time_to_target_tables RESULTS.jsonl [--target-tolerance 0.005]

(``protocols.json`` beside the file, when there is one, pairs budgeted runs with the
full-budget Random and labels the protocols; see ``protocol_index``.)
"""

from __future__ import annotations

import argparse
import math
import sys

from .plot_records import load_records
from .protocol_index import read_protocols, unlisted_note
from .series import series_name
from .time_to_target import DEFAULT_TOLERANCE, MEASURES, results_report, tolerances

#: What the command prints when no table can be made.
NO_PAIRS = (
    "no selector run here has a Random run with a validation history on the same data set, model, "
    "repeat and fold (and protocol, or its full-budget one) to pair with"
)

CSV_HEADER = [
    "tolerance",
    "model",
    "dataset",
    "selector",
    "measure",
    "median_ratio",
    "low",
    "high",
    "saved",
    "saved_low",
    "saved_high",
    "pairs",
    "reached",
    "seconds_estimated",
]


def _number(value: float, spec: str = ".2f") -> str:
    if math.isnan(value):
        return "–"
    return "∞" if value == math.inf else ("−∞" if value == -math.inf else format(value, spec))


def ratio_text(cell: dict, measure: str = "samples", with_reached: bool = True) -> str:
    """ "0.81 [0.74, 0.90] 5/5": median ratio to Random [95 % bootstrap CI], pairs reaching / pairs."""
    if not cell["pairs"]:
        return "–"
    stats = cell["ratio"][measure]
    text = "not reached" if stats["median"] == math.inf else _number(stats["median"])
    if math.isfinite(stats["low"]):  # an interval [∞, ∞] says no more than "not reached"
        text += f" [{_number(stats['low'])}, {_number(stats['high'])}]"
    return text + (f" {cell['reached']}/{cell['pairs']}" if with_reached else "")


def saved_text(cell: dict, measure: str = "samples") -> str:
    """ "19 % [10 %, 26 %]": compute saved = 1 − ratio, with the interval."""
    stats = cell["saved"][measure]
    if not cell["pairs"] or math.isnan(stats["median"]):
        return "–"
    if stats["median"] == -math.inf:
        return "not reached"

    def percent(value):
        return "−∞" if value == -math.inf else f"{value * 100:+.0f} %".replace("-", "−")

    text = percent(stats["median"])
    if not math.isnan(stats["low"]):
        text += f" [{percent(stats['low'])}, {percent(stats['high'])}]"
    return text


def footnote(estimated: bool) -> str:
    """What the numbers of the time-to-target tables mean."""
    text = (
        "Target: Random's best validation Macro-AUC minus the tolerance in the heading, in the same (data set, "
        "repeat, fold); a run's "
        "time is where its best-so-far validation Macro-AUC first reaches it. Ratio: the selector's sample passes "
        "(training samples drawn) to the target over Random's, median over the pairs with a 95 % bootstrap "
        "interval; then pairs reaching / pairs. A run that never reaches the target has ratio ∞ (it is not counted "
        "at its last epoch), so a median is finite only while more than half of the pairs reach it. "
        "Compute saved = 1 − ratio. Wall seconds: training + selection."
    )
    if estimated:
        text += (
            " (est.): records without `history.elapsed_seconds`, where wall seconds to an epoch are estimated "
            "as the run's `seconds` × (epoch + 1) / epochs (which includes the validation passes)."
        )
    return text


def _summary_rows(cells: list[dict], names: list[str], budgeted: bool) -> list[str]:
    """The pooled rows under a table: compute saved, and the other measures' ratios."""
    rows = ["| compute saved (sample passes), all | " + " | ".join(saved_text(c) for c in cells) + " |"]
    if budgeted:  # under a budget an epoch is not a full pass: epochs and samples differ
        rows.append(
            "| epochs, ratio to Random, all | " + " | ".join(ratio_text(c, "epochs", False) for c in cells) + " |"
        )
    estimated = any(c["seconds_estimated"] for c in cells)
    rows.append(
        f"| wall seconds, ratio to Random, all{' (est.)' if estimated else ''} | "
        + " | ".join(ratio_text(c, "seconds", False) for c in cells)
        + " |"
    )
    return rows


def grid_markdown(report: dict, datasets, models, baseline_note: str = "") -> str:
    """The time-to-target section of a comparison's Markdown (``time_to_target``'s report)."""
    lines, estimated = [], False
    for tolerance in report["tolerances"]:
        block = report["by_tolerance"][str(tolerance)]
        pairs = report["pairs"][str(tolerance)]
        budgeted = any(p["protocol"] != p["baseline_protocol"] for p in pairs)
        for model in models:
            selectors = list(block.get(model, {}))
            if not selectors:
                continue
            names = [series_name(s) for s in selectors]
            lines += [
                f"### Time to target, {model}: sample passes to Random's best validation Macro-AUC − "
                f"{tolerance:g}, ratio to Random{baseline_note}",
                "",
                "| data set | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names),
            ]
            for d in datasets:
                cells = [block[model][s]["datasets"].get(d) for s in selectors]
                if any(cells):
                    lines.append(f"| {d} | " + " | ".join(ratio_text(c) if c else "–" for c in cells) + " |")
            cells = [block[model][s]["all"] for s in selectors]
            lines.append("| all | " + " | ".join(ratio_text(c) for c in cells) + " |")
            lines += _summary_rows(cells, names, budgeted)
            lines.append("")
            estimated = estimated or any(c["seconds_estimated"] for c in cells)
    return "\n".join(lines + [footnote(estimated), ""] if lines else lines)


def csv_rows(report: dict) -> list[list]:
    """Rows under ``CSV_HEADER``: per tolerance, model, data set (and "all"), selector, measure."""
    rows = []
    for tolerance in report["tolerances"]:
        for model, selectors in report["by_tolerance"][str(tolerance)].items():
            for selector, block in selectors.items():
                for dataset, cell in [*block["datasets"].items(), ("all", block["all"])]:
                    for measure in MEASURES:
                        r, s = cell["ratio"][measure], cell["saved"][measure]
                        rows.append(
                            [
                                tolerance,
                                model,
                                dataset,
                                selector,
                                measure,
                                r["median"],
                                r["low"],
                                r["high"],
                                s["median"],
                                s["low"],
                                s["high"],
                                cell["pairs"],
                                cell["reached"],
                                measure == "seconds" and cell["seconds_estimated"],
                            ]
                        )
    return rows


def results_markdown(records: list[dict], headline: float = DEFAULT_TOLERANCE, protocols: dict | None = None) -> str:
    """One table per (tolerance, model, protocol) over a whole results file."""
    lines, estimated = [], False
    for tolerance in tolerances(headline):
        for (model, digest), panel in results_report(records, tolerance, protocols).items():
            keys = list(panel["series"])
            names = [series_name(*k) for k in keys]
            lines += [
                f"### {model}, {panel['label']} (protocol {digest}): sample passes to Random's best validation "
                f"Macro-AUC − {tolerance:g}, ratio to Random",
                "",
                "| data set | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names),
            ]
            for d in panel["datasets"]:
                cells = [panel["series"][k]["datasets"].get(d) for k in keys]
                lines.append(f"| {d} | " + " | ".join(ratio_text(c) if c else "–" for c in cells) + " |")
            cells = [panel["series"][k]["all"] for k in keys]
            lines.append("| all | " + " | ".join(ratio_text(c) for c in cells) + " |")
            lines += _summary_rows(cells, names, panel["budgeted"])
            lines.append("")
            estimated = estimated or any(c["seconds_estimated"] for c in cells)
    return "\n".join(lines + [footnote(estimated), ""] if lines else lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="time-to-target tables of a results file, per model and protocol")
    parser.add_argument("results", help="a results.jsonl (or compact evidence) file or its folder")
    parser.add_argument(
        "--target-tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="headline tolerance below Random's best validation Macro-AUC (0.01 is reported too)",
    )
    args = parser.parse_args(argv)
    try:
        records = load_records(args.results)
        protocols = read_protocols(args.results)
        text = results_markdown(records, args.target_tolerance, protocols)
    except (FileNotFoundError, ValueError) as error:  # no results file, a bad protocols.json or tolerance
        parser.error(str(error))
    note = unlisted_note(records, protocols, args.results)
    if note:
        print(note, file=sys.stderr)
    print(text or NO_PAIRS)


if __name__ == "__main__":
    main()
