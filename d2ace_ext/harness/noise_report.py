"""The label-noise table (issue 27): per noise setting, each selector against Random and
D2ACE against Hard-Imb, paired by (data set, repeat, fold), with bootstrap intervals and
Wilcoxon p.

``compare`` writes one table per setting with D2ACE against each baseline; the claim under
test (D2ACE's flip-damped hardness resists noisy labels better than Hard-Imb's loss) needs
the settings side by side, and every selector against uniform batches. Seeds, folds and
the noise itself depend only on (seed, repeat, fold), so the runs of one cell trained on
the same corrupted rows from the same weights.

    python -m d2ace_ext.harness.noise_report --results-dir DIR --datasets scene enron yeast \\
        --epochs 1000 --settings clean extra:1.0 missing:0.4 [--metric macro_auc] [--preset paper]
    python -m d2ace_ext.harness.noise_report --results-dir DIR --datasets emotions --model clif \\
        --model-opt variant=published --epochs 100 --settings clean extra:1.0
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..cli_options import options_per_name
from ..models.registry import MODELS
from .experiment import Protocol
from .paired import bootstrap_effect, interval_text, paired_differences, wilcoxon_p
from .results import ResultsStore
from .tables import METRICS

#: (selector, baseline) pairs reported: every selector against uniform batches, then the claim.
COMPARISONS = (("hard_imb", "random"), ("dihcl", "random"), ("d2ace", "random"), ("d2ace", "hard_imb"))
_NAMES = {"random": "Random", "hard_imb": "Hard-Imb", "dihcl": "DIHCL", "d2ace": "D2ACE"}


def setting_protocol(setting: str, epochs: int, folds: int, model_options: dict | None = None) -> Protocol:
    """The protocol of noise ``setting`` ("clean" or KIND:RATE) at ``epochs`` and ``folds``,
    with ``model_options`` ({model: {option: value}}, e.g. the published CLIF's variant)."""
    return Protocol(
        epochs=epochs,
        folds=folds,
        label_noise=None if setting == "clean" else setting,
        model_options=model_options or {},
    )


def cell_values(records, digest: str, selector: str, datasets, model: str, preset: str, metric: str) -> dict:
    """{(data set, repeat, fold): test ``metric``} of ``selector``'s runs under protocol ``digest``
    (D2ACE's runs of ``preset`` only)."""
    out = {}
    for record in records:
        key = record["key"]
        if (
            key["protocol"] == digest
            and key["selector"] == selector
            and key["model"] == model
            and key["dataset"] in datasets
            and (selector != "d2ace" or key["preset"] == preset)
        ):
            out[(key["dataset"], int(key.get("repeat", 0)), int(key["fold"]))] = record["metrics"][metric]
    return out


def effect_text(diffs: np.ndarray) -> str:
    """ "+0.0012 [−0.0003, +0.0027] (15), p 0.21" for paired differences (m,); "–" with fewer than 2."""
    if diffs.size < 2:
        return "–"
    effect = bootstrap_effect(diffs)
    p = wilcoxon_p(diffs)
    return f"{interval_text(effect)} ({effect['cells']}), p {p:.2g}".replace("-", "−")


def noise_table(
    records,
    settings,
    datasets,
    model: str,
    preset: str,
    metric: str,
    epochs: int,
    folds: int,
    higher: bool = True,
    model_options: dict | None = None,
) -> str:
    """Markdown: a row per (setting, data set or "all"), a column per comparison, each cell
    the mean paired difference (positive: the first selector did better) with its 95 %
    bootstrap interval, the cells paired and the Wilcoxon signed-rank p."""
    heads = [f"{_NAMES[a]} − {_NAMES[b]}" for a, b in COMPARISONS]
    lines = [f"| setting | data set | {' | '.join(heads)} |", "|---|---|" + "---|" * len(heads)]
    for setting in settings:
        digest = setting_protocol(setting, epochs, folds, model_options).digest()
        values = {
            s: cell_values(records, digest, s, datasets, model, preset, metric)
            for s in {name for pair in COMPARISONS for name in pair}
        }
        for scope in [*datasets, "all"]:

            def restricted(selector):
                return {c: v for c, v in values[selector].items() if scope == "all" or c[0] == scope}

            cells = [effect_text(paired_differences(restricted(a), restricted(b), higher)) for a, b in COMPARISONS]
            if scope != "all" and all(c == "–" for c in cells):
                continue
            lines.append(f"| {setting} | {scope} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m d2ace_ext.harness.noise_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--results-dir", required=True)
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--settings", nargs="+", default=["clean"], help='"clean" or KIND:RATE, in row order')
    parser.add_argument("--model", default="mlp")
    parser.add_argument(
        "--model-opt",
        action="append",
        metavar="KEY=VALUE",
        help="the model options of the runs, as given to compare (e.g. variant=published for the published CLIF)",
    )
    parser.add_argument("--preset", choices=["paper", "reference"], default="paper")
    parser.add_argument(
        "--metric", default="macro_auc", choices=list(METRICS), help="a test metric of the records (default macro_auc)"
    )
    parser.add_argument("--epochs", type=int, default=Protocol().epochs)
    parser.add_argument("--folds", type=int, default=Protocol().folds)
    args = parser.parse_args(argv)
    model_options = options_per_name(args.model_opt, "--model-opt", [args.model], known=list(MODELS))
    try:
        setting_digests = {
            s: setting_protocol(s, args.epochs, args.folds, model_options).digest() for s in args.settings
        }
    except ValueError as exc:
        parser.error(f"--settings: {exc}")
    store = ResultsStore(args.results_dir)
    try:
        store.require()
    except ValueError as exc:
        parser.error(f"--results-dir: {exc}")
    records = list(store.records().values())
    digests = {r["key"]["protocol"] for r in records if r["key"]["model"] == args.model}
    absent = [s for s in args.settings if setting_digests[s] not in digests]
    if len(absent) == len(args.settings):
        parser.error(
            f"no {args.model} run in {store.path} under the protocol of any setting at --epochs {args.epochs} "
            f"and --folds {args.folds} ({', '.join(absent)}); check those options (and --model-opt)"
        )
    for setting in absent:  # its rows would be all dashes: say why
        digest = setting_digests[setting]
        print(f"note: no {args.model} run of setting {setting} (protocol {digest}) in {store.path}", file=sys.stderr)
    print(
        noise_table(
            records,
            args.settings,
            args.datasets,
            args.model,
            args.preset,
            args.metric,
            args.epochs,
            args.folds,
            higher=METRICS[args.metric][1],  # a loss: lower is better, and a positive cell still means "did better"
            model_options=model_options,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
