"""The ``d2ace`` command: the paper's protocol on real MULAN data.

    d2ace run --dataset yeast --model clif --selector d2ace [--preset paper] [--folds 5] [--epochs 100]
    d2ace compare --datasets yeast scene --models mlp clif --selectors random ml_unc hard_imb d2ace
    d2ace plot --results-dir d2ace-results
    d2ace run --dataset digits-mosaic --model mlgcn --backbone resnet18 ...   (image sets: harness/image_cli.py)

Every finished fold is appended to ``<results-dir>/results.jsonl``; a rerun skips the
runs already there, so an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from .cli_options import options_per_name
from .harness.experiment import DISPLAY_NAMES, Protocol, canonical_selector, with_published_variants
from .harness.time_to_target import DEFAULT_TOLERANCE
from .selectors.registry import has_presets

DEFAULT_RESULTS = "d2ace-results"


def _label_noise(text: str) -> str:
    """--label-noise's value in its canonical spelling; argparse reports a bad one."""
    from .datasets.label_noise import LabelNoise

    try:
        return LabelNoise.parse(text, "the value").spec()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _protocol_arguments(parser: argparse.ArgumentParser) -> None:
    p = Protocol()
    group = parser.add_argument_group("protocol (defaults: the paper's Appendix D.2)")
    group.add_argument("--folds", type=int, default=p.folds)
    group.add_argument(
        "--epochs",
        type=int,
        nargs="+",
        default=[p.epochs],
        help="training length; several values run a sweep (compare writes <stem>_e<N> tables)",
    )
    group.add_argument("--batch-size", type=int, default=p.batch_size)
    group.add_argument("--lr", type=float, default=p.lr)
    group.add_argument("--weight-decay", type=float, default=p.weight_decay)
    group.add_argument("--lr-warmup-epochs", type=int, default=p.lr_warmup_epochs)
    group.add_argument("--val-fraction", type=float, default=p.val_fraction)
    group.add_argument("--seed", type=int, default=p.seed)
    group.add_argument(
        "--preprocessing",
        choices=["reference", "leak_free"],
        default=p.preprocessing,
        help="reference: filters and scaler on the whole set (published code); leak_free: fitted on each training fold",
    )
    group.add_argument(
        "--min-positives",
        type=int,
        default=p.min_positives,
        help="keep labels with at least this many positives (21 = drop 20 or fewer)",
    )
    group.add_argument(
        "--feature-fraction",
        type=float,
        default=None,
        help="fraction of features kept by column sum (default: the published one)",
    )
    group.add_argument(
        "--model-selection",
        choices=["best", "last"],
        default=p.model_selection,
        help="best: deep copy at the best validation Macro-AUC; last: the published "
        "code's effective behaviour (its shallow copy tests the last epoch)",
    )
    group.add_argument(
        "--importance-weights",
        action="store_true",
        help="weight losses by 1/(n P_i) (Appendix C); off in the published code",
    )
    group.add_argument(
        "--folds-from",
        choices=["stratified", "published"],
        default=p.folds_from,
        help="published: the authors' split exactly (scikit-multilearn folds from NumPy seed, "
        "random_split validation, one model seed for every fold)",
    )
    group.add_argument(
        "--budget",
        type=float,
        default=p.budget,
        metavar="RHO",
        help="each epoch trains on ceil(RHO n) samples, RHO in (0, 1], for every selector "
        "(Random: a uniform subset); default 1, full passes",
    )
    group.add_argument(
        "--anneal",
        type=float,
        default=p.anneal,
        metavar="DELTA",
        help="the last ceil(DELTA epochs) epochs are full passes again (InfoBatch-style); default 0",
    )
    group.add_argument(
        "--label-noise",
        type=_label_noise,
        default=None,
        metavar="KIND:RATE",
        help="corrupt the training and validation labels of each fold (never the test labels): "
        "missing:R drops each positive with probability R, extra:R adds round(R x positives) "
        "irrelevant labels per instance, flip:R flips class-conditionally keeping label counts",
    )
    group.add_argument(
        "--model-opt",
        action="append",
        metavar="KEY=VALUE",
        help="model option (MODEL.KEY=VALUE when several models run), repeatable",
    )
    group.add_argument(
        "--selector-opt",
        action="append",
        metavar="KEY=VALUE",
        help="selector option (for --selector, or SELECTOR.KEY=VALUE in compare), repeatable",
    )
    run = parser.add_argument_group("execution")
    run.add_argument(
        "--preset",
        choices=["paper", "reference"],
        default="paper",
        help="D2ACE's preset; reference also builds CLIF, DELA and PACA as the published code "
        "does (variant=published) unless --model-opt names a variant",
    )
    run.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run the k-fold protocol this many times, repeat r under seeds seed + 1000 r",
    )
    run.add_argument("--data-dir", default=None, help="MULAN data folder (default: $D2ACE_DATA_DIR)")
    run.add_argument("--results-dir", default=DEFAULT_RESULTS)
    run.add_argument("--device", default="cpu", help="cpu or cuda")
    run.add_argument("--jobs", type=int, default=1, help="worker processes (runs in parallel)")
    run.add_argument("--threads", type=int, default=None, help="torch threads per run")
    run.add_argument(
        "--trace",
        choices=["none", "first", "all"],
        default="none",
        help="write figure traces for no run, fold 0 of each configuration, or every run",
    )
    run.add_argument("--no-progress", action="store_true")
    run.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: tables from the runs of this grid already in the results folder",
    )


def _protocol(args, models: list[str], selectors: list[str]) -> Protocol:
    from .models.registry import MODELS

    model_options = options_per_name(args.model_opt, "--model-opt", models, known=list(MODELS))
    selector_options = options_per_name(
        args.selector_opt, "--selector-opt", selectors, canonical_selector, known=list(DISPLAY_NAMES)
    )
    if args.preset == "reference":
        model_options = with_published_variants(models, model_options)
    return Protocol(
        folds=args.folds,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        lr_warmup_epochs=args.lr_warmup_epochs,
        val_fraction=args.val_fraction,
        seed=args.seed,
        preprocessing=args.preprocessing,
        min_positives=args.min_positives,
        feature_fraction=args.feature_fraction,
        model_selection=args.model_selection,
        importance_weights=args.importance_weights,
        folds_from=args.folds_from,
        budget=args.budget,
        anneal=args.anneal,
        label_noise=args.label_noise,
        model_options=model_options,
        selector_options=selector_options,
    )


def _execute(args, datasets, models, selectors):
    from .harness.runner import Grid, run_grid
    from .harness.tables import summarise, write_tables

    selectors = [canonical_selector(s) for s in selectors]
    unknown = [s for s in selectors if s not in DISPLAY_NAMES]
    if unknown:
        raise SystemExit(f"unknown selector(s) {unknown}; valid: {', '.join(DISPLAY_NAMES)}")
    protocol = _protocol(args, list(models), selectors)
    grid = Grid(tuple(datasets), tuple(models), tuple(selectors), args.preset, args.repeats)
    started = time.perf_counter()
    results = run_grid(
        grid,
        protocol,
        args.results_dir,
        data_dir=args.data_dir,
        device=args.device,
        jobs=args.jobs,
        threads=args.threads,
        trace=args.trace,
        progress=not args.no_progress,
        report_only=args.report_only,
    )
    wall = time.perf_counter() - started
    if not args.report_only:  # the runs have written the folder: file the settings behind the digest
        from .harness.protocol_index import remember_protocol

        try:
            remember_protocol(args.results_dir, protocol)
        except (OSError, ValueError) as exc:  # the runs are saved; only the figures' labels and pairing lose it
            print(f"warning: protocol settings not recorded: {exc}", file=sys.stderr)
    records = list(results.values())
    summary = summarise(records, datasets, models, selectors)
    return protocol, records, summary, wall, write_tables


def _budget_note(protocol: Protocol) -> str:
    if protocol.budget >= 1:
        return ""
    anneal = f", last {protocol.anneal:g} full" if protocol.anneal > 0 else ""
    return f" · budget {protocol.budget:g}{anneal}"


def _noise_note(protocol: Protocol) -> str:
    """' · label noise KIND:RATE' for a noisy protocol, '' for clean labels."""
    return f" · label noise {protocol.label_noise}" if protocol.label_noise else ""


def cmd_run(args) -> int:
    protocol, records, summary, wall, _ = _execute(args, [args.dataset], [args.model], [args.selector])
    selector = canonical_selector(args.selector)
    print(
        f"\n{args.dataset} · {args.model} · {DISPLAY_NAMES[selector]}"
        f"{' (' + args.preset + ')' if has_presets(selector) else ''} · {protocol.folds} folds · "
        f"{protocol.epochs} epochs{_budget_note(protocol)}{_noise_note(protocol)} · protocol {protocol.digest()}"
    )
    from .harness.tables import METRICS

    for metric, (title, higher) in METRICS.items():
        values = [r["metrics"][metric] for r in records if metric in r["metrics"]]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if finite:
            print(f"  {title:<18} {np.mean(finite):.4f} ± {np.std(finite):.4f}   ({'↑' if higher else '↓'})")
    from .harness.paired import late_best

    print(f"  best validation epoch in the last 5 % of epochs: {sum(map(late_best, records))}/{len(records)} runs")
    run_seconds = sum(r["seconds"] for r in records)
    selection = sum(r["selection_seconds"] for r in records)
    print(f"  training time {run_seconds:.1f} s over the folds (selection {selection:.2f} s); this call {wall:.1f} s")
    print(f"  results: {args.results_dir}/results.jsonl")
    return 0


def _time_to_target(args, protocol: Protocol, records: list[dict], selectors: list[str]) -> tuple[dict, list[dict]]:
    """The grid's time-to-target report, and the records it paired (the grid's and the
    Random runs it read): a budgeted grid's runs, or a grid's with options for other
    selectors, pair with Random of the protocol without them (``baseline_protocol``),
    read from the results folder, else with Random of the full-budget protocol."""
    from .harness.results import ResultsStore, key_tuple
    from .harness.runner import Grid
    from .harness.time_to_target import BASELINE, baseline_protocol, full_budget, time_to_target

    baseline = baseline_protocol(protocol)
    if baseline.digest() != protocol.digest() or BASELINE not in selectors:  # Random's runs are not in the grid
        done = ResultsStore(args.results_dir).records()
        keys = Grid(tuple(args.datasets), tuple(args.models), (BASELINE,), args.preset, args.repeats).keys(baseline)
        found = [done[key_tuple(k.to_dict())] for k in keys if key_tuple(k.to_dict()) in done]
        own = BASELINE in selectors and full_budget(protocol).digest() == protocol.digest()
        hint = (
            ""
            if found
            else (
                "; pairing with this grid's own Random runs instead"
                if own
                else "; run this compare without the budget options and with --selectors random to pair with them"
            )
        )
        print(
            f"time to target: {len(found)} of {len(keys)} full-budget Random runs (protocol {baseline.digest()}) "
            f"in {args.results_dir}{hint}"
        )
        records = records + found
    times = time_to_target(
        records,
        args.datasets,
        args.models,
        selectors,
        args.target_tolerance,
        {protocol.digest(): (baseline.digest(), full_budget(protocol).digest())},
    )
    return times, records


def _budget_accuracy(protocol: Protocol, records: list[dict]) -> dict:
    """A budgeted grid's test Macro-AUC against the full-budget Random of the same folds
    (``harness.budget_accuracy``'s report); {} at full budget or without those Random runs."""
    from .harness.budget_accuracy import budget_accuracy
    from .harness.time_to_target import baseline_protocol, full_budget

    if protocol.budget >= 1.0:
        return {}
    protocols = {p.digest(): p.to_dict() for p in (protocol, baseline_protocol(protocol), full_budget(protocol))}
    return budget_accuracy(records, protocols)


def cmd_compare(args) -> int:
    from .harness.time_to_target import tolerances

    tolerances(args.target_tolerance)  # a bad tolerance fails before any run
    protocol, records, summary, wall, write_tables = _execute(args, args.datasets, args.models, args.selectors)
    selectors = [canonical_selector(s) for s in args.selectors]
    from .harness.paired import convergence
    from .harness.tables import markdown

    late = convergence(records, args.datasets, args.models, selectors)
    times, paired = _time_to_target(args, protocol, records, selectors)
    budget = _budget_accuracy(protocol, paired)  # what the budget cost, where it has one
    runs = protocol.folds * args.repeats  # per cell: fewer is a partial grid (--report-only)
    print("\n" + markdown(summary, args.datasets, args.models, selectors, late=late, times=times, runs=runs))
    if budget:
        from .harness.budget_accuracy import budget_markdown

        print(budget_markdown(budget) + "\n")
    paths = write_tables(
        summary,
        args.datasets,
        args.models,
        selectors,
        args.results_dir,
        stem=args.stem,
        late=late,
        times=times,
        budget=budget,
        runs=runs,
    )
    run_seconds = sum(r["seconds"] for r in records)
    print(
        f"{len(records)} runs, {run_seconds / 60:.1f} min of training in total; this call {wall / 60:.1f} min "
        f"(protocol {protocol.digest()}{_budget_note(protocol)}{_noise_note(protocol)})"
    )
    print("written: " + ", ".join(paths))
    return 0


def cmd_plot(args) -> int:
    from .harness.plots import plot_results

    out = args.out or f"{args.results_dir[0]}/figures"  # --results-dir is a list (nargs="+")
    paths = plot_results(args.results_dir, out, args.target_tolerance, args.protocols)
    for path in paths:
        print(path)
    if not paths:  # an empty output would read as success
        print(
            f"d2ace plot: nothing to draw from {', '.join(args.results_dir)}: no record has a validation or "
            "training-loss history, and none references a trace",
            file=sys.stderr,
        )
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="d2ace", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one configuration over the folds")
    run.add_argument("--dataset", required=True)
    run.add_argument("--model", default="mlp", help="mlp, clif, dela or paca")
    run.add_argument("--selector", default="d2ace", help=", ".join(DISPLAY_NAMES))
    _protocol_arguments(run)
    run.set_defaults(func=cmd_run)
    compare = sub.add_parser("compare", help="the paper's table layout over data sets × models × selectors")
    compare.add_argument("--datasets", nargs="+", required=True)
    compare.add_argument("--models", nargs="+", default=["clif"])
    compare.add_argument("--selectors", nargs="+", default=["random", "ml_unc", "hard_imb", "d2ace"])
    compare.add_argument("--stem", default="comparison", help="name of the table files")
    compare.add_argument(
        "--target-tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="time to target: epochs, sample passes and seconds until a selector's best validation "
        "Macro-AUC reaches Random's best minus this (0.01 is reported too)",
    )
    _protocol_arguments(compare)
    compare.set_defaults(func=cmd_compare)
    plot = sub.add_parser("plot", help="PNG figures from a results folder")
    plot.add_argument(
        "--results-dir",
        nargs="+",
        default=[DEFAULT_RESULTS],
        help="results folders or results.jsonl files, joined (e.g. a budget grid's file and the one "
        "holding its full-budget Random runs)",
    )
    plot.add_argument("--out", default=None, help="figure folder (default: <first results-dir>/figures)")
    plot.add_argument(
        "--protocols",
        nargs="+",
        default=None,
        metavar="DIGEST",
        help="draw only these protocols (with the Random runs each is paired with)",
    )
    plot.add_argument(
        "--target-tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="compute_saved.png: sample passes to Random's best validation Macro-AUC minus this",
    )
    plot.set_defaults(func=cmd_plot)
    return parser


def _sweep(args) -> int:
    """Run the command once per --epochs value (each its own protocol digest, so a sweep
    resumes like any grid); more than one value suffixes the table stem with _e<N>."""
    epochs = getattr(args, "epochs", None)
    if not isinstance(epochs, list):
        return args.func(args)
    from .harness.run_failures import RunFailures

    code, failed = 0, []
    for value in epochs:
        one = argparse.Namespace(**{**vars(args), "epochs": value})
        if len(epochs) > 1 and hasattr(one, "stem"):
            one.stem = f"{args.stem}_e{value}"
        try:
            code = one.func(one) or code
        except RunFailures as failures:  # the other lengths still run; all failures are reported at the end
            failed.append(failures)
    if failed:
        raise RunFailures([f for e in failed for f in e.failures], sum(e.finished for e in failed), failed[0].path)
    return code


def main(argv=None) -> int:
    from .harness.image_cli import wants_images

    if wants_images(sys.argv[1:] if argv is None else list(argv)):  # image sets: their own protocol and options
        from .harness.image_cli import main as image_main

        return image_main(argv)
    from .harness.run_failures import RunFailures

    args = build_parser().parse_args(argv)
    try:
        return _sweep(args)
    except RunFailures as failures:
        for failure in failures.failures:
            print(f"--- {failure.key.stem()} ---\n{failure.traceback}", file=sys.stderr)
        print(f"d2ace {args.command}: {failures}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"d2ace {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
