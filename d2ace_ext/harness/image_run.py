"""Training and testing one (image set, model, selector, seed) run under the image protocol.

Loop: the selector's batches over the training rows through a DataLoader (workers for
image files), Adam, bf16 autocast on CUDA, the sampler fed each step's training logits,
mAP on the validation rows after every epoch, test metrics (mAP + the tabular ones) from
the selected epoch's weights. After every epoch the run is checkpointed
(``image_checkpoint``: a rerun resumes from there); the loaders draw their augmentation
from seeded streams (``image_loading``: the same images with any worker count or after
a resume); evaluation is ``image_evaluation``.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..datasets.images.registry import ImageData
from ..models import make_model
from ..models.registry import IMAGE_MODELS
from .experiment import RunKey
from .image_checkpoint import CHECKPOINT_FOLDER, RunCheckpoint, checkpoint_path  # noqa: F401
from .image_evaluation import autocast, backbone_features, metrics_on_test, predict, selection_score, split_rows  # noqa: F401
from .image_loading import eval_base, loader, prototype_pass, training_loader  # noqa: F401
from .image_protocol import ImageProtocol, build_image_sampler, model_options, needs_features
from .selection_loss import selection_objective


def model_in_features(data: ImageData) -> int:
    """The model's ``in_features``: 3 for images, else the width of the set's inputs."""
    return 3 if data.kind == "image" else int(data.train.get_batch(torch.tensor([0]))[0].shape[1])


@dataclass
class _Training:
    """What one run trains with."""

    model: torch.nn.Module
    sampler: object
    loader: torch.utils.data.DataLoader
    batches: object  # what set_epoch is called on (the sampler, or its seeded wrapper)
    optimiser: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.StepLR
    grad_clip: float | None  # ML-GCN's released engine: 10 (off by default)


def _build_training(
    key: RunKey, data: ImageData, protocol: ImageProtocol, seed: int, fit_rows: torch.Tensor, device: str, workers: int
) -> _Training:
    """Model, sampler, training loader, optimiser and LR schedule of a run, built in the
    order that fixes what they draw from the global generators."""
    fit_y = data.train_labels[fit_rows]
    # label-row files (embeddings=, graph=) are matched to the data set's label names
    names = {"label_names": list(data.label_names)} if key.model in IMAGE_MODELS else {}
    model = make_model(
        key.model,
        model_in_features(data),
        data.num_labels,
        train_labels=fit_y,
        **{**names, **model_options(protocol, key.model)},
    ).to(device)
    features = None
    if needs_features(key.selector, protocol, key.preset):
        features = (
            data.knn_features[fit_rows]
            if data.knn_features is not None
            else backbone_features(model, eval_base(data), fit_rows, device, workers)
        )
    sampler = build_image_sampler(key.selector, fit_y.to(device), features, protocol, seed, key.preset, device)
    train_loader, batches = training_loader(data, fit_rows, sampler, seed, workers, device)
    optimiser = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad],
        lr=protocol.lr,
        betas=(0.9, 0.999),
        weight_decay=protocol.weight_decay,
    )
    step = protocol.lr_step or protocol.epochs + 1
    schedule = torch.optim.lr_scheduler.StepLR(optimiser, step_size=step, gamma=0.1)
    return _Training(model, sampler, train_loader, batches, optimiser, schedule, getattr(model, "grad_clip", None))


def _train_epoch(run: _Training, device: str, amp: bool, history: dict) -> float:
    """One pass over the sampler's batches; appends the pass's loop and selection seconds
    and steps to ``history``; returns the mean training loss."""
    model, sampler = run.model, run.sampler
    model.train()
    total, seen, select_before, loop_start = 0.0, 0, sampler.overhead_seconds, time.perf_counter()
    for index, x, y in run.loader:
        if index.numel() < 2:  # BatchNorm cannot train on one image: a lone last image sits this epoch out
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits, loss = selection_objective(model, sampler, index, x, y)
        run.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if run.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
        run.optimiser.step()
        sampler.update(index, logits.detach().float(), y)
        total += float(loss.detach()) * index.numel()
        seen += index.numel()
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    history["loop_seconds"].append(time.perf_counter() - loop_start)
    history["selection_seconds"].append(sampler.overhead_seconds - select_before)
    history["steps"].append(len(sampler))
    return total / max(1, seen)


def run_image(
    key: RunKey,
    data: ImageData,
    protocol: ImageProtocol,
    *,
    device: str = "cpu",
    results_dir: str | None = None,
    workers: int = 0,
    progress: bool = True,
    stop_after: int | None = None,
    keep_checkpoint: bool = False,
) -> dict | None:
    """Train, select, test; returns the results-file record. ``key.fold`` is the seed
    index (model init and sampler seed ``protocol.seed + key.fold``). ``stop_after``: end
    after that many epochs in this call (None when stopped early; for tests of resume).
    ``keep_checkpoint``: leave the run's checkpoint for the caller to remove once the
    record is stored (the image command does, so that a failed append, e.g. a full
    disk, still finds every epoch trained); by default it is removed here."""
    started = time.perf_counter()
    seed = protocol.seed + key.fold
    torch.manual_seed(seed)
    random.seed(seed)
    fit_rows, val_rows = split_rows(data, protocol)
    run = _build_training(key, data, protocol, seed, fit_rows, device, workers)
    model, sampler = run.model, run.sampler
    history = {"epoch": [], "train_loss": [], "val_map": [], "loop_seconds": [], "selection_seconds": [], "steps": []}
    best = {"score": -np.inf, "epoch": -1, "state": None}
    first_epoch, checkpoint = 0, None
    if results_dir is not None:
        checkpoint = RunCheckpoint(results_dir, key, protocol.digest())
        resumed = checkpoint.restore(model, run.optimiser, run.schedule, sampler)
        if resumed is not None:
            first_epoch, history, best = resumed
    bar = tqdm(
        range(first_epoch, protocol.epochs),
        desc=f"{key.dataset} {key.model} {key.selector} s{key.fold}",
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
        initial=first_epoch,
        total=protocol.epochs,
    )
    for epoch in bar:
        run.batches.set_epoch(epoch)
        if hasattr(model, "start_epoch"):
            model.start_epoch(
                epoch, len(sampler), lambda: prototype_pass(model, data, fit_rows, seed, epoch, workers, device)
            )
        loss = _train_epoch(run, device, protocol.amp, history)
        run.schedule.step()
        score = selection_score(model, data, val_rows, protocol, device, workers)
        if score > best["score"]:  # never under "last": its score is nan
            best = {
                "score": score,
                "epoch": epoch,
                "state": copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()}),
            }
        history["epoch"].append(epoch)
        history["train_loss"].append(loss)
        history["val_map"].append(score)
        bar.set_postfix(map=f"{score:.4f}", loss=f"{loss:.4f}")
        if checkpoint is not None:
            checkpoint.save(epoch, model, run.optimiser, run.schedule, sampler, history, best, device)
        if stop_after is not None and epoch + 1 - first_epoch >= stop_after and epoch + 1 < protocol.epochs:
            bar.close()
            return None
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    else:
        best["epoch"] = protocol.epochs - 1
    metrics = metrics_on_test(model, data, device, workers, protocol.amp)
    loop, selection = sum(history["loop_seconds"]), sum(history["selection_seconds"])
    record = {
        "key": key.to_dict(),
        "metrics": metrics,
        "best_epoch": best["epoch"],
        "best_val_map": None if not np.isfinite(best["score"]) else best["score"],
        "seconds": time.perf_counter() - started,
        "selection_seconds": selection,
        "loop_seconds": loop,
        "steps": int(sum(history["steps"])),
        "shape": {
            "train": int(fit_rows.numel()),
            "val": int(val_rows.numel()),
            "test": len(data.test),
            "q": data.num_labels,
        },
        "history": history,
        "inputs": protocol.inputs,
        "label_names": list(data.label_names),
    }
    if checkpoint is not None and not keep_checkpoint:
        checkpoint.remove()
    return record
