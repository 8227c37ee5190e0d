"""The ablation table: D2ACE against its Figure 5 variants, paired by (data set, repeat, fold).

A variant is a selector option (``--selector-opt d2ace.ablation=NAME``), so its runs carry
their own protocol digest and ``compare`` cannot pair them with the full method's. This
reads the full method's and each variant's runs from one results file (seeds and folds
do not depend on selector options, so the runs of one cell trained on the same rows from
the same weights) and writes ``compare``'s tables with the variants in the baselines'
place: "D2ACE better by" is then what the removed component contributes.

    python -m d2ace_ext.harness.ablation_report --results-dir DIR --datasets scene enron \\
        --epochs 1000 [--label-noise extra:1.0] [--preset paper] [--ablations no_correlation ...]
"""

from __future__ import annotations

import argparse
import dataclasses

from ..config import ABLATIONS
from .experiment import Protocol
from .paired import convergence
from .results import ResultsStore
from .tables import markdown, summarise, write_tables


def with_ablation(protocol: Protocol, name: str) -> Protocol:
    """``protocol`` with D2ACE's selector option ``ablation=name`` added (the variant's runs)."""
    options = {**protocol.selector_options, "d2ace": {**protocol.selector_options.get("d2ace", {}), "ablation": name}}
    return dataclasses.replace(protocol, selector_options=options)


def _cell(key: dict) -> tuple:
    return key["dataset"], int(key.get("repeat", 0)), int(key["fold"])


def ablation_records(records, protocol: Protocol, datasets, model: str, preset: str, ablations) -> list[dict]:
    """The full method's D2ACE runs under ``protocol`` and each variant's, the latter
    relabelled with the variant's name as their selector. records: results-file records.

    The full method's runs are kept only in the (data set, repeat, fold) cells where some
    variant ran: the full method often has more repeats than its variants (the noise grid's),
    and its column's mean and rank must describe the folds the variants are compared on."""
    wanted = {protocol.digest(): "d2ace"}
    wanted.update({with_ablation(protocol, name).digest(): name for name in ablations})
    out = []
    for record in records:
        key = record["key"]
        label = wanted.get(key["protocol"])
        if (
            label is not None
            and key["selector"] == "d2ace"
            and key["preset"] == preset
            and key["model"] == model
            and key["dataset"] in datasets
        ):
            out.append({**record, "key": {**key, "selector": label}})
    variant_cells = {_cell(r["key"]) for r in out if r["key"]["selector"] != "d2ace"}
    return [r for r in out if r["key"]["selector"] != "d2ace" or _cell(r["key"]) in variant_cells]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m d2ace_ext.harness.ablation_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--results-dir", required=True)
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--preset", choices=["paper", "reference"], default="paper")
    parser.add_argument("--ablations", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    parser.add_argument("--epochs", type=int, default=Protocol().epochs)
    parser.add_argument("--folds", type=int, default=Protocol().folds)
    parser.add_argument("--label-noise", default=None, metavar="KIND:RATE")
    parser.add_argument("--stem", default=None, help="table files (default: ablation_<preset>_<noise or clean>)")
    args = parser.parse_args(argv)
    try:
        protocol = Protocol(epochs=args.epochs, folds=args.folds, label_noise=args.label_noise)
    except ValueError as exc:
        parser.error(str(exc))
    store = ResultsStore(args.results_dir)
    try:
        store.require()
    except ValueError as exc:
        parser.error(f"--results-dir: {exc}")
    records = ablation_records(
        store.records().values(),
        protocol,
        args.datasets,
        args.model,
        args.preset,
        args.ablations,
    )
    if not records:
        parser.error(
            f"no D2ACE run ({args.preset} preset, {args.model}) with a variant's run on the same fold of "
            f"{', '.join(args.datasets)} under protocol {protocol.digest()} or its variants in {store.path}; "
            "check --epochs, --folds and --label-noise"
        )
    selectors = ["d2ace", *args.ablations]
    summary = summarise(records, args.datasets, [args.model], selectors)
    late = convergence(records, args.datasets, [args.model], selectors)
    print(markdown(summary, args.datasets, [args.model], selectors, late=late))
    stem = args.stem or f"ablation_{args.preset}_{(protocol.label_noise or 'clean').replace(':', '')}"
    paths = write_tables(summary, args.datasets, [args.model], selectors, args.results_dir, stem=stem, late=late)
    print(f"{len(records)} runs (full method: protocol {protocol.digest()}); written: " + ", ".join(paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
