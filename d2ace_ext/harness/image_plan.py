"""Which (data set, model, selector, seed) runs an image command still needs, refusing
what can be refused before the first one trains, then running them in turn."""

from __future__ import annotations

import os
from typing import NamedTuple

from .experiment import DISPLAY_NAMES, RunKey
from .image_options import check_counts, check_image_options, cpu_defaults, protocol_for, protocol_from


class RunPlan(NamedTuple):
    """The runs of one data set and base model: all of them (``keys``), those without a
    record yet (``todo``), under ``protocol`` (with this data set's inputs)."""

    dataset: str
    model: str
    protocol: object
    keys: list
    todo: list


def _skipped_line(dataset: str, keys, skipped, path: str, digest: str) -> str:
    """One line: which runs of ``dataset`` were skipped, where their records are and why."""
    names = [f"{k.model}/{k.selector}/seed {k.fold}" for k in skipped]
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return (
        f"skipped {len(skipped)} of {len(keys)} run(s) of {dataset} already in {path} under protocol {digest} "
        f"(same settings and inputs; another --results-dir or other settings train anew): {shown}"
    )


def plan_runs(args, protocol, files: dict, datasets, models, selectors, done: dict) -> list[RunPlan]:
    """One :class:`RunPlan` per (data set, model); ``done``: the records already stored,
    by ``key_tuple``. Each base model reads image folders by its own rules
    (``registry.data_rules``), so the protocol's inputs are per model."""
    from .results import key_tuple

    plans = []
    for dataset in datasets:
        for m in models:
            run_protocol = protocol_for(args, protocol, dataset, files, m)
            keys = [
                RunKey.make(dataset, m, s, args.preset, k, run_protocol) for s in selectors for k in range(args.seeds)
            ]
            todo = [k for k in keys if key_tuple(k.to_dict()) not in done]
            plans.append(RunPlan(dataset, m, run_protocol, keys, todo))
    return plans


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
    plans = plan_runs(args, protocol, files, datasets, models, selectors, done)
    if any(plan.todo for plan in plans) or args.command == "compare":
        require_writable(args.results_dir, "results folder (--results-dir)", store.path)
    if any(plan.todo for plan in plans):
        require_writable(
            os.path.join(args.results_dir, image_run.CHECKPOINT_FOLDER), "checkpoint folder (under --results-dir)"
        )
    records, loaded = [], {}
    for dataset, model, run_protocol, keys, todo in plans:
        skipped = [k for k in keys if k not in todo]
        if skipped:
            print(_skipped_line(dataset, keys, skipped, store.path, run_protocol.digest()))
            for key in skipped:  # a kill between the append and the removal left it: the record is stored
                try:
                    image_run.RunCheckpoint(args.results_dir, key, run_protocol.digest()).remove()
                except OSError:  # a read-only folder being reported on: the file only costs disk space
                    pass
        if todo:
            rules = data_rules(model, args.difficult, args.transform)
            # one load per data set and rules (the rules shape image folders only)
            which = (dataset, *rules.values()) if dataset in ("voc2007", "coco2014") else (dataset,)
            if which not in loaded:
                loaded[which] = load_image_dataset(
                    dataset,
                    args.data_dir,
                    image_size=protocol.image_size,
                    scale_size=protocol.scale_size,
                    features=args.features,
                    drop_empty=args.drop_empty,
                    mosaic=protocol.mosaic,
                    **rules,
                )
                print(loaded[which].describe())
            data = loaded[which]
            check_image_options(run_protocol, data, dataset, [model], selectors, args.preset)
            image_files = data.kind == "image" and data.train_eval is not None
            workers = args.workers if args.workers is not None else (4 if image_files else 0)
            for key in todo:
                record = image_run.run_image(
                    key,
                    data,
                    run_protocol,
                    device=args.device,
                    results_dir=args.results_dir,
                    workers=workers,
                    progress=not args.no_progress,
                    keep_checkpoint=True,
                )
                store.append(record)
                # only now: a record that could not be stored reruns from the final checkpoint
                image_run.RunCheckpoint(args.results_dir, key, run_protocol.digest()).remove()
                done[key_tuple(record["key"])] = record
        records += [done[key_tuple(k.to_dict())] for k in keys]
    return records
