"""The image command's options turned into an :class:`ImageProtocol` per data set and
model, and checked before anything trains (counts, ``--model-opt`` / ``--selector-opt``)."""

from __future__ import annotations

import dataclasses

from ..cli_options import options_per_name, parse_options
from .experiment import canonical_selector

#: Model options the command fills from its own flags (--backbone, --checkpoint, --embeddings).
_SET_BY_THE_COMMAND = {"backbone", "checkpoint", "embeddings"}


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
    """The :class:`ImageProtocol` of the command's options (after :func:`cpu_defaults`)."""
    from .image_protocol import ImageProtocol

    model_options = options_per_name(args.model_opt, "--model-opt", models)
    for m in models:
        base = {"backbone": args.backbone, "checkpoint": args.checkpoint, "embeddings": args.embeddings}
        model_options[m] = {**{k: v for k, v in base.items() if v is not None}, **model_options.get(m, {})}
    scale = args.scale_size or max(args.image_size, round(args.image_size * 8 / 7))
    return ImageProtocol(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        lr_step=args.lr_step,
        image_size=args.image_size,
        scale_size=scale,
        model_selection=args.model_selection,
        val_fraction=args.val_fraction,
        seed=args.seed,
        budget=args.budget,
        amp=not args.no_amp,
        mosaic=parse_options(args.mosaic_opt, "--mosaic-opt"),
        model_options=model_options,
        selector_options=options_per_name(args.selector_opt, "--selector-opt", selectors, canonical_selector),
    )


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
    inputs = run_inputs(
        dataset,
        data_dir=args.data_dir,
        features=args.features,
        difficult=rules["difficult"],
        keep_empty=not args.drop_empty,
        files=files,
        transform=rules["transform"],
    )
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
    from .image_run import model_in_features, split_rows
    from .option_checks import check_options

    chosen_models = {
        m: protocol.model_options[m] for m in models if set(protocol.model_options.get(m, {})) - _SET_BY_THE_COMMAND
    }
    chosen_selectors = {s: protocol.selector_options[s] for s in selectors if protocol.selector_options.get(s)}
    if not chosen_models and not chosen_selectors:
        return
    fit_y = data.train_labels[split_rows(data, protocol)[0]]
    in_features = model_in_features(data)

    def build_model(name):
        return make_model(name, in_features, data.num_labels, train_labels=fit_y, **model_options(protocol, name))

    def build_selector(name):
        features = None
        if needs_features(name, protocol, preset):  # the K-NN only needs rows of some width here
            features = torch.rand(fit_y.shape[0], 8, generator=torch.Generator().manual_seed(0))
        return build_image_sampler(name, fit_y, features, protocol, protocol.seed, preset, "cpu")

    check_options(chosen_models, chosen_selectors, build_model, build_selector, dataset)
