"""The image demo: ML-GCN on a ResNet-18 trained on the embedded digits-mosaic set with
Random and with D2ACE batches, side by side: mAP (headline), Macro-AUC, Macro-F1, and
what selection costs per training step.

    python -m d2ace_ext.image_demo                # about 3-10 minutes on a shared 2-core CPU
    python -m d2ace_ext.image_demo --model hst --epochs 10 --device cuda

Nothing is downloaded: the backbone starts from random weights (pass --checkpoint for
ImageNet weights saved on another machine) and the images are composed from
scikit-learn's digits.
"""

from __future__ import annotations

import argparse
import time

import torch

from .datasets.images.registry import load_image_dataset
from .harness.experiment import RunKey
from .harness.image_cli import overhead
from .harness.image_protocol import ImageProtocol
from .harness.image_run import run_image
from .selectors.registry import display_name

SELECTORS = ("random", "d2ace")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mlgcn", choices=["mlgcn", "hst"])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--checkpoint", default=None, help="ResNet weights file (never downloaded)")
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--grid", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="higher than the paper's 1e-5: random-init backbone")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    mosaic = {"train_size": args.train_size, "test_size": args.test_size, "grid": args.grid}
    model_options = {"backbone": args.backbone, **({"checkpoint": args.checkpoint} if args.checkpoint else {})}
    if args.model == "mlgcn":
        model_options["hidden"] = 256  # the paper's 1024 is sized for 2048-wide ResNet-101 features
    protocol = ImageProtocol(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=1e-4,
        image_size=args.image_size,
        scale_size=args.image_size,
        seed=args.seed,
        mosaic=mosaic,
        model_options={args.model: model_options},
    )
    data = load_image_dataset("digits-mosaic", image_size=args.image_size, mosaic=mosaic)
    print(
        f"digits-mosaic: train {len(data.train)} (10 % held out for epoch selection), test {len(data.test)}, "
        f"q = {data.num_labels}, {args.image_size}x{args.image_size} px, label cardinality "
        f"{float(data.train_labels.sum(1).mean()):.2f}; {args.model} on {args.backbone}, {args.epochs} epochs"
    )
    rows = []
    for name in SELECTORS:
        title = display_name(name)
        started = time.perf_counter()
        key = RunKey.make("digits-mosaic", args.model, name, "paper", 0, protocol)
        record = run_image(key, data, protocol, device=args.device, progress=not args.no_progress)
        rows.append((title, record, time.perf_counter() - started))
    print(
        f"\n{'selector':<8} {'mAP':>7} {'Macro-AUC':>9} {'Macro-F1':>8} {'ms/step':>8} {'select ms/step':>14} "
        f"{'select %':>8} {'run s':>6}"
    )
    for title, record, seconds in rows:
        m = record["metrics"]
        step, select, share = overhead([record])
        print(
            f"{title:<8} {m['map']:>7.4f} {m['macro_auc']:>9.4f} {m['macro_f1']:>8.4f} {step:>8.1f} "
            f"{select:>14.2f} {share:>7.2f}% {seconds:>6.0f}"
        )
    print(
        "(ms/step: the whole training step with data and selection; select %: the sampler's own time "
        "as a share of the rest of the step. One seed: a smoke run, not an accuracy benchmark.)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
