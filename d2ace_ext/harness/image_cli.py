"""``d2ace run`` / ``d2ace compare`` on image sets (voc2007, coco2014, digits-mosaic, a
features file): the image protocol over seeds instead of folds, mAP first.

    d2ace run --dataset digits-mosaic --model mlgcn --selector d2ace --backbone resnet18 \\
              --image-size 48 --epochs 6 --lr 1e-3 --seeds 1
    d2ace compare --datasets voc2007 --models mlgcn hst --selectors random dihcl ml_unc d2ace --seeds 5

``d2ace_ext.cli`` hands a command line here when its data set is an image set.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time

import numpy as np

from ..cli_options import options_per_name, parse_options
from .experiment import DISPLAY_NAMES, RunKey, canonical_selector

IMAGE_NAMES = ("voc2007", "coco2014", "digits-mosaic", "features")


def is_image_dataset(name: str) -> bool:
    return name in IMAGE_NAMES or name.endswith((".pt", ".npz"))


def wants_images(argv: list[str]) -> bool:
    """True for ``run`` / ``compare`` command lines whose data set(s) are image sets."""
    if not argv or argv[0] not in ("run", "compare"):
        return False
    names = []
    for i, arg in enumerate(argv):
        if arg in ("--dataset", "--datasets"):
            values = []
            for value in argv[i + 1:]:
                if value.startswith("--") or (values and arg == "--dataset"):
                    break
                values.append(value)
            names += values
        elif arg.startswith(("--dataset=", "--datasets=")):
            names.append(arg.split("=", 1)[1])
    return bool(names) and all(is_image_dataset(n) for n in names)


def build_parser() -> argparse.ArgumentParser:
    from .image_protocol import ImageProtocol
    p = ImageProtocol()
    parser = argparse.ArgumentParser(prog="d2ace", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("run", "compare"):
        c = sub.add_parser(command)
        if command == "run":
            c.add_argument("--dataset", required=True)
            c.add_argument("--model", default="mlgcn", help="mlgcn or hst")
            c.add_argument("--selector", default="d2ace", help=", ".join(DISPLAY_NAMES))
        else:
            c.add_argument("--datasets", nargs="+", required=True)
            c.add_argument("--models", nargs="+", default=["mlgcn", "hst"])
            c.add_argument("--selectors", nargs="+", default=["random", "dihcl", "ml_unc", "d2ace"])
            c.add_argument("--stem", default="image_comparison", help="name of the table files")
        g = c.add_argument_group("image protocol (defaults: the paper's Appendix D)")
        g.add_argument("--seeds", type=int, default=1, help="runs per configuration (the paper: 5)")
        g.add_argument("--epochs", type=int, default=p.epochs)
        g.add_argument("--batch-size", type=int, default=p.batch_size)
        g.add_argument("--lr", type=float, default=p.lr)
        g.add_argument("--weight-decay", type=float, default=p.weight_decay)
        g.add_argument("--lr-step", type=int, default=p.lr_step, help="LR x0.1 every N epochs (0: constant)")
        g.add_argument("--image-size", type=int, default=None,
                       help=f"input side (default {p.image_size}, the paper's; 32 when every set is digits-mosaic)")
        g.add_argument("--scale-size", type=int, default=None, help="resize before cropping (default 8/7 of --image-size)")
        g.add_argument("--model-selection", choices=["val", "last", "test"], default=p.model_selection)
        g.add_argument("--val-fraction", type=float, default=p.val_fraction)
        g.add_argument("--seed", type=int, default=p.seed)
        g.add_argument("--budget", type=float, default=p.budget, metavar="RHO",
                       help="each epoch trains on ceil(RHO n) images, RHO in (0, 1]; default 1, full passes")
        g.add_argument("--backbone", default=None, help="resnet18/34/50/101/152, or none for features "
                                                        "(default resnet101, the paper's; resnet18 for digits-mosaic, none for features)")
        g.add_argument("--checkpoint", default=None, help="ResNet weights file (never downloaded)")
        g.add_argument("--embeddings", default=None, help="label word embeddings (q, d) file; default one-hot")
        g.add_argument("--model-opt", action="append", metavar="KEY=VALUE")
        g.add_argument("--selector-opt", action="append", metavar="KEY=VALUE")
        g.add_argument("--mosaic-opt", action="append", metavar="KEY=VALUE",
                       help="digits-mosaic option: train_size, test_size, grid, label_noise, imbalance, pixel_noise, seed")
        g.add_argument("--features", default=None, help="precomputed features file for --dataset features")
        g.add_argument("--difficult", choices=["mlgcn", "hst", "positive", "negative", "ignore"], default=None,
                       help="VOC2007 classes seen only as difficult objects (default: the base model's own rule; "
                            "ignore = mlgcn)")
        g.add_argument("--transform", choices=["hst", "mlgcn"], default=None,
                       help="image folders: the released crops of HST or ML-GCN (default: the base model's own)")
        g.add_argument("--drop-empty", action="store_true",
                       help="MS-COCO: drop images without objects, as ML-GCN (default: keep them, the paper's count)")
        g.add_argument("--keep-empty", action="store_true", help="MS-COCO: keep images without objects (the default)")
        e = c.add_argument_group("execution")
        e.add_argument("--preset", choices=["paper", "reference"], default="paper", help="D2ACE's preset")
        e.add_argument("--data-dir", default=None, help="image folder (default: $D2ACE_DATA_DIR)")
        e.add_argument("--results-dir", default="d2ace-image-results")
        e.add_argument("--device", default="cpu")
        e.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: 4 for image files)")
        e.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
        e.add_argument("--threads", type=int, default=None)
        e.add_argument("--no-progress", action="store_true")
    return parser


def cpu_defaults(args, datasets) -> None:
    """Fill --image-size and --backbone: the paper's 448 / ResNet-101, 32 / ResNet-18 when
    every set is the embedded mosaic (a CPU-sized run), no backbone for features files."""
    mosaic_only = all(d == "digits-mosaic" for d in datasets)
    if args.image_size is None:
        args.image_size = 32 if mosaic_only else 448
    if args.backbone is None:
        features_only = all(d == "features" or d.endswith((".pt", ".npz")) for d in datasets)
        args.backbone = "none" if features_only else "resnet18" if mosaic_only else "resnet101"


def protocol_from(args, models, selectors):
    from .image_protocol import ImageProtocol
    model_options = options_per_name(args.model_opt, "--model-opt", models)
    for m in models:
        base = {"backbone": args.backbone, "checkpoint": args.checkpoint, "embeddings": args.embeddings}
        model_options[m] = {**{k: v for k, v in base.items() if v is not None}, **model_options.get(m, {})}
    scale = args.scale_size or max(args.image_size, round(args.image_size * 8 / 7))
    return ImageProtocol(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         lr_step=args.lr_step, image_size=args.image_size, scale_size=scale,
                         model_selection=args.model_selection, val_fraction=args.val_fraction, seed=args.seed,
                         budget=args.budget,
                         amp=not args.no_amp, mosaic=parse_options(args.mosaic_opt, "--mosaic-opt"),
                         model_options=model_options,
                         selector_options=options_per_name(args.selector_opt, "--selector-opt", selectors, canonical_selector))


def protocol_for(args, protocol, dataset: str, files: dict, model: str | None = None):
    """``protocol`` with the inputs of ``model``'s runs on ``dataset`` (``image_inputs.run_inputs``):
    the features file's content hash, the image folder with its label rules and transform
    (the base model's own unless given: ``registry.data_rules``), ``files`` (the model
    files' hashes). Raises FileNotFoundError naming a missing file or folder."""
    from ..datasets.images.registry import data_rules
    from .image_inputs import run_inputs
    if args.keep_empty and args.drop_empty:
        raise ValueError("--keep-empty and --drop-empty contradict each other; pass one (keeping is the default)")
    rules = data_rules(model, args.difficult, args.transform)
    inputs = run_inputs(dataset, data_dir=args.data_dir, features=args.features, difficult=rules["difficult"],
                        keep_empty=not args.drop_empty, files=files, transform=rules["transform"])
    return dataclasses.replace(protocol, inputs=inputs)


def check_counts(args) -> None:
    """ValueError naming the option when a count is out of range (before anything runs)."""
    if args.seeds < 1:
        raise ValueError(f"--seeds must be an integer >= 1 (runs per configuration), got {args.seeds}")
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be an integer >= 0 (0: load in this process), got {args.workers}")


def check_image_options(protocol, data, dataset: str, models, selectors, preset: str) -> None:
    """One-line ValueError for a ``--model-opt`` / ``--selector-opt`` that cannot build,
    before any run on ``dataset`` trains (``option_checks.check_options`` with this
    command's builders: the model as ``run_image`` builds it, the selector on random
    features of the K-NN's width where it needs features)."""
    import torch
    from ..models import make_model
    from .image_protocol import build_image_sampler, model_options, needs_features
    from .image_run import split_rows
    from .option_checks import check_options
    chosen_models = {m: protocol.model_options[m] for m in models
                     if set(protocol.model_options.get(m, {})) - _SET_BY_THE_COMMAND}
    chosen_selectors = {s: protocol.selector_options[s] for s in selectors if protocol.selector_options.get(s)}
    if not chosen_models and not chosen_selectors:
        return
    fit_y = data.train_labels[split_rows(data, protocol)[0]]
    in_features = 3 if data.kind == "image" else int(data.train.get_batch(torch.tensor([0]))[0].shape[1])

    def build_model(name):
        return make_model(name, in_features, data.num_labels, train_labels=fit_y, **model_options(protocol, name))

    def build_selector(name):
        features = None
        if needs_features(name, protocol, preset):  # the K-NN only needs rows of some width here
            features = torch.rand(fit_y.shape[0], 8, generator=torch.Generator().manual_seed(0))
        return build_image_sampler(name, fit_y, features, protocol, protocol.seed, preset, "cpu")

    check_options(chosen_models, chosen_selectors, build_model, build_selector, dataset)


#: Model options the command fills from its own flags (--backbone, --checkpoint, --embeddings).
_SET_BY_THE_COMMAND = {"backbone", "checkpoint", "embeddings"}


def _skipped_line(dataset: str, keys, skipped, path: str, digest: str) -> str:
    """One line: which runs of ``dataset`` were skipped, where their records are and why."""
    names = [f"{k.model}/{k.selector}/seed {k.fold}" for k in skipped]
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return (f"skipped {len(skipped)} of {len(keys)} run(s) of {dataset} already in {path} under protocol {digest} "
            f"(same settings and inputs; another --results-dir or other settings train anew): {shown}")


def execute(args, datasets, models, selectors) -> list[dict]:
    """Every missing (data set, model, selector, seed) run; returns all their records.
    Everything that can be refused (counts, selectors, missing files, an unwritable
    results folder) is refused before the first run trains."""
    import torch
    from ..datasets.images.registry import data_rules, load_image_dataset
    from . import image_run
    from .image_inputs import model_files
    from .results import ResultsStore, key_tuple
    from .writable import require_writable
    check_counts(args)
    unknown = [s for s in selectors if s not in DISPLAY_NAMES]
    if unknown:
        raise SystemExit(f"unknown selector(s) {unknown}; valid: {', '.join(DISPLAY_NAMES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu_defaults(args, datasets)
    protocol = protocol_from(args, models, selectors)
    files = model_files(protocol.model_options)
    store = ResultsStore(args.results_dir)
    done = store.records()
    plans = []
    for dataset in datasets:
        for m in models:   # each base model reads image folders by its own rules (registry.data_rules)
            run_protocol = protocol_for(args, protocol, dataset, files, m)
            keys = [RunKey.make(dataset, m, s, args.preset, k, run_protocol) for s in selectors
                    for k in range(args.seeds)]
            plans.append((dataset, m, run_protocol, keys, [k for k in keys if key_tuple(k.to_dict()) not in done]))
    if any(todo for *_, todo in plans) or args.command == "compare":
        require_writable(args.results_dir, "results folder (--results-dir)", store.path)
    if any(todo for *_, todo in plans):
        require_writable(os.path.join(args.results_dir, image_run.CHECKPOINT_FOLDER), "checkpoint folder (under --results-dir)")
    records, loaded = [], {}
    for dataset, model, run_protocol, keys, todo in plans:
        skipped = [k for k in keys if k not in todo]
        if skipped:
            print(_skipped_line(dataset, keys, skipped, store.path, run_protocol.digest()))
        if todo:
            rules = data_rules(model, args.difficult, args.transform)
            # one load per data set and rules (the rules shape image folders only)
            which = (dataset, *rules.values()) if dataset in ("voc2007", "coco2014") else (dataset,)
            if which not in loaded:
                loaded[which] = load_image_dataset(
                    dataset, args.data_dir, image_size=protocol.image_size, scale_size=protocol.scale_size,
                    features=args.features, drop_empty=args.drop_empty, mosaic=protocol.mosaic, **rules)
                print(loaded[which].describe())
            data = loaded[which]
            check_image_options(run_protocol, data, dataset, [model], selectors, args.preset)
            workers = args.workers if args.workers is not None else (4 if data.kind == "image" and data.train_eval is not None else 0)
            for key in todo:
                record = image_run.run_image(key, data, run_protocol, device=args.device,
                                             results_dir=args.results_dir, workers=workers,
                                             progress=not args.no_progress)
                store.append(record)
                done[key_tuple(record["key"])] = record
        records += [done[key_tuple(k.to_dict())] for k in keys]
    return records


def overhead(records: list[dict]) -> tuple[float, float, float]:
    """(ms per training step, selection ms per step, selection as % of the rest of the step)."""
    steps = sum(r["steps"] for r in records) or 1
    loop, selection = sum(r["loop_seconds"] for r in records), sum(r["selection_seconds"] for r in records)
    return 1000 * loop / steps, 1000 * selection / steps, 100 * selection / max(1e-12, loop - selection)


def table(records: list[dict], datasets, models, selectors) -> str:
    """Markdown: mAP mean ± std over seeds per (data set, model) × selector, ranked."""
    lines = ["| data set | model | " + " | ".join(DISPLAY_NAMES[s] for s in selectors) + " |",
             "|---|---|" + "---|" * len(selectors)]
    for d in datasets:
        for m in models:
            cells = {}
            for s in selectors:
                v = [r["metrics"]["map"] for r in records if (r["key"]["dataset"], r["key"]["model"],
                                                                r["key"]["selector"]) == (d, m, s)]
                cells[s] = (float(np.mean(v)), float(np.std(v)), len(v)) if v else (math.nan, math.nan, 0)
            order = sorted(selectors, key=lambda s: -round(cells[s][0], 4) if math.isfinite(cells[s][0]) else math.inf)
            rank = {s: 1 + sum(round(cells[t][0], 4) > round(cells[s][0], 4) for t in selectors) for s in order}
            lines.append(f"| {d} | {m} | " + " | ".join(
                f"{cells[s][0]:.4f} ± {cells[s][1]:.4f} ({rank[s]})" for s in selectors) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import sys
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        if args.command == "run":
            datasets, models, selectors = [args.dataset], [args.model], [canonical_selector(args.selector)]
        else:
            datasets, models, selectors = args.datasets, args.models, [canonical_selector(s) for s in args.selectors]
        records = execute(args, datasets, models, selectors)
    except (FileNotFoundError, ValueError, ImportError, TypeError) as exc:
        print(f"d2ace {args.command}: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - started
    if args.command == "run":
        print(f"\n{args.dataset} · {args.model} · {DISPLAY_NAMES[selectors[0]]} · {args.seeds} seed(s) · "
              f"{args.epochs} epochs · {args.backbone} · protocol {records[0]['key']['protocol']}")
        for metric in ("map", "map_voc_interpolated", "macro_auc", "macro_f1", "micro_f1", "ranking_loss",
                       "one_error", "average_precision"):
            v = [r["metrics"][metric] for r in records if metric in r["metrics"]]   # older records lack newer ones
            if v:
                print(f"  {metric:<18} {np.mean(v):.4f} ± {np.std(v):.4f}")
    else:
        text = table(records, datasets, models, selectors)
        print("\nmAP (mean ± std over seeds, rank)\n\n" + text)
        os.makedirs(args.results_dir, exist_ok=True)
        with open(os.path.join(args.results_dir, f"{args.stem}.md"), "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        with open(os.path.join(args.results_dir, f"{args.stem}.json"), "w", encoding="utf-8") as handle:
            json.dump([{"key": r["key"], "metrics": r["metrics"]} for r in records], handle, indent=1, default=float)
    for s in selectors:
        step, select, share = overhead([r for r in records if r["key"]["selector"] == s])
        print(f"  {DISPLAY_NAMES[s]:<8} {step:8.1f} ms per training step, selection {select:.2f} ms ({share:.2f} %)")
    print(f"  this call {wall:.1f} s; results: {args.results_dir}/results.jsonl")
    return 0
