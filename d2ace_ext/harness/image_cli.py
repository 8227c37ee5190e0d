"""``d2ace run`` / ``d2ace compare`` on image sets (voc2007, coco2014, digits-mosaic, a
features file): the image protocol over seeds instead of folds, mAP first.

    d2ace run --dataset digits-mosaic --model mlgcn --selector d2ace --backbone resnet18 \\
              --image-size 48 --epochs 6 --lr 1e-3 --seeds 1
    d2ace compare --datasets voc2007 --models mlgcn hst --selectors random dihcl ml_unc d2ace --seeds 5

``d2ace_ext.cli`` hands a command line here when its data set is an image set.
"""

from __future__ import annotations

import argparse
import time

from .experiment import DISPLAY_NAMES, canonical_selector

# This module is the command line (its docstring is the parser's description); image_options
# turns it into a protocol, image_plan runs what is missing, image_tables prints the results.
# Their names are imported here too, under which callers use them.
from .image_options import check_counts, check_image_options, cpu_defaults, protocol_for, protocol_from  # noqa: F401
from .image_plan import execute
from .image_tables import overhead, print_overheads, print_run, table, write_comparison  # noqa: F401

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
            for value in argv[i + 1 :]:
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
    parser = argparse.ArgumentParser(
        prog="d2ace", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
        g.add_argument(
            "--image-size",
            type=int,
            default=None,
            help=f"input side (default {p.image_size}, the paper's; 32 when every set is digits-mosaic)",
        )
        g.add_argument(
            "--scale-size", type=int, default=None, help="resize before cropping (default 8/7 of --image-size)"
        )
        g.add_argument("--model-selection", choices=["val", "last", "test"], default=p.model_selection)
        g.add_argument("--val-fraction", type=float, default=p.val_fraction)
        g.add_argument("--seed", type=int, default=p.seed)
        g.add_argument(
            "--budget",
            type=float,
            default=p.budget,
            metavar="RHO",
            help="each epoch trains on ceil(RHO n) images, RHO in (0, 1]; default 1, full passes",
        )
        g.add_argument(
            "--backbone",
            default=None,
            help="resnet18/34/50/101/152, or none for features "
            "(default resnet101, the paper's; resnet18 for digits-mosaic, none for features)",
        )
        g.add_argument("--checkpoint", default=None, help="ResNet weights file (never downloaded)")
        g.add_argument("--embeddings", default=None, help="label word embeddings (q, d) file; default one-hot")
        g.add_argument("--model-opt", action="append", metavar="KEY=VALUE")
        g.add_argument("--selector-opt", action="append", metavar="KEY=VALUE")
        g.add_argument(
            "--mosaic-opt",
            action="append",
            metavar="KEY=VALUE",
            help="digits-mosaic option: train_size, test_size, grid, label_noise, imbalance, pixel_noise, seed",
        )
        g.add_argument("--features", default=None, help="precomputed features file for --dataset features")
        g.add_argument(
            "--difficult",
            choices=["mlgcn", "hst", "positive", "negative", "ignore"],
            default=None,
            help="VOC2007 classes seen only as difficult objects (default: the base model's own rule; ignore = mlgcn)",
        )
        g.add_argument(
            "--transform",
            choices=["hst", "mlgcn"],
            default=None,
            help="image folders: the released crops of HST or ML-GCN (default: the base model's own)",
        )
        g.add_argument(
            "--drop-empty",
            action="store_true",
            help="MS-COCO: drop images without objects, as ML-GCN (default: keep them, the paper's count)",
        )
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
        print_run(args, records, selectors[0])
    else:
        write_comparison(args, records, datasets, models, selectors)
    print_overheads(records, selectors, wall, args.results_dir)
    return 0
