"""Training and testing one fold of one (data set, model, selector) configuration.

The loop is the paper's (Appendix D.2): Adam, linear LR warm-up over the first
``lr_warmup_epochs`` epochs' steps, batches from the selector's sampler through a
standard DataLoader, the sampler fed each step's training-mode logits, validation
Macro-AUC after every epoch, test metrics from the best-validation weights.

Under an epoch budget the warm-up keeps its share of the run: it spans
``lr_warmup_epochs / epochs`` of the steps the budget plans for the whole run (exactly
``lr_warmup_epochs`` epochs' steps without annealing, and today's count at budget 1).
Each epoch's history also records ``samples_seen`` (training samples yielded so far)
and ``elapsed_seconds`` (wall seconds of training and selection so far, without the
validation passes and tracing), the cost axes of a time-to-target comparison.
"""

from __future__ import annotations

import copy
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..factory import PaperSchedule, make_run_sampler
from ..metrics import evaluate, mean_auc, per_label_auc
from ..models import make_model
from .experiment import Protocol, RunKey
from .fold_data import FoldData
from .selection_loss import selection_objective
from .trace import RunTrace

#: The paper's tabular schedule (Appendix D): 100 epochs, a selector warm-up of 10; the
#: other epoch counts (D2ACE's t_start / t_end) are the selector's own, at 100 epochs.
TABULAR_SCHEDULE = PaperSchedule(epochs=100, values={"warmup_epochs": 10})


class TensorBatches(Dataset):
    """(index, x, y) of a whole batch in one indexing op (DataLoader's ``__getitems__``
    path), instead of b per-item calls and a collate."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        return i, self.x[i], self.y[i]

    def __getitems__(self, indices: list[int]):
        index = torch.as_tensor(indices, dtype=torch.long)
        return index, self.x[index], self.y[index]


def whole_batch(batch):
    return batch


def build_sampler(key: RunKey, data: FoldData, protocol: Protocol, seed: int, device):
    """The selector's batch sampler over the fold's training part, its epoch counts
    (warm-up, pressure, p_beta epochs: its ``schedule_fields``) scaled from the paper's
    100 epochs to ``protocol.epochs``, then ``protocol.selector_options`` over them."""
    return make_run_sampler(
        key.selector,
        data.train_y.to(device),
        protocol.batch_size,
        data.train_x.to(device),
        seed=seed,
        epochs=protocol.epochs,
        schedule=TABULAR_SCHEDULE,
        preset=key.preset,
        options=protocol.selector_options.get(key.selector),
        device=device,
        budget=protocol.budget,
        anneal=protocol.anneal,
    )


def warmup_steps(sampler, protocol: Protocol) -> int:
    """Steps of the linear LR warm-up: the share lr_warmup_epochs / epochs of the run's
    planned steps, rounded (= lr_warmup_epochs × ceil(n / b) at budget 1)."""
    total = sampler.planned_batches(protocol.epochs)
    return (protocol.lr_warmup_epochs * total + protocol.epochs // 2) // protocol.epochs


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, device, chunk: int = 4096) -> torch.Tensor:
    """Eval-mode probabilities (m, q) on the CPU for inputs x (m, d)."""
    model.eval()
    parts = [torch.sigmoid(model(x[i : i + chunk].to(device))).cpu() for i in range(0, x.shape[0], chunk)]
    return torch.cat(parts) if parts else torch.zeros(0)


@torch.no_grad()
def instance_losses(model, x: torch.Tensor, y: torch.Tensor, device) -> torch.Tensor:
    """Each row's mean BCE over labels (m,), eval mode."""
    probs = predict(model, x, device).double().clamp(1e-12, 1 - 1e-12)
    return F.binary_cross_entropy(probs, y.double(), reduction="none").mean(1)


def _train_epoch(
    model, loader: DataLoader, sampler, optimiser, schedule, device, importance_weights
) -> tuple[float, int]:
    """One pass over the sampler's batches, the LR schedule stepped per batch:
    (sum over batches of loss × batch size, samples seen)."""
    model.train()
    total, seen = 0.0, 0
    for index, x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits, loss = selection_objective(model, sampler, index, x, y, importance_weights)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        sampler.update(index, logits.detach(), y)
        total += float(loss.detach()) * index.numel()
        seen += index.numel()
    return total, seen


def trace_file(key: RunKey) -> str:
    """``traces/<run>__<protocol digest>.npz``, relative to the results folder: runs of
    other protocols in the same folder never overwrite each other's trace (a record
    references its file by this path)."""
    return os.path.join("traces", f"{key.stem()}__{key.protocol}.npz")


def _save_trace(tracer: RunTrace, key: RunKey, results_dir: str) -> str:
    """Writes the trace to :func:`trace_file`; returns that path relative to ``results_dir``."""
    relative = trace_file(key)
    os.makedirs(os.path.join(results_dir, "traces"), exist_ok=True)
    tracer.save(os.path.join(results_dir, relative))
    return relative


def run_fold(
    key: RunKey,
    data: FoldData,
    protocol: Protocol,
    *,
    device: str = "cpu",
    results_dir: str | None = None,
    trace: bool = False,
    progress: bool = True,
    position: int = 0,
) -> dict:
    """Train, validate every epoch, test; returns the results-file record of this run.
    With ``trace`` the figures' snapshots go to ``results_dir``/:func:`trace_file`."""
    started = time.perf_counter()
    seed = protocol.run_seed(key.repeat, key.fold)
    torch.manual_seed(seed)  # the same fold gets the same initial weights under every selector
    n, q = data.train_y.shape
    model = make_model(
        key.model, data.train_x.shape[1], q, train_labels=data.train_y, **protocol.model_options.get(key.model, {})
    ).to(device)
    sampler = build_sampler(key, data, protocol, seed, device)
    loader = DataLoader(TensorBatches(data.train_x, data.train_y), batch_sampler=sampler, collate_fn=whole_batch)
    optimiser = torch.optim.Adam(
        model.parameters(), lr=protocol.lr, betas=(0.9, 0.999), weight_decay=protocol.weight_decay
    )
    warm_steps = warmup_steps(sampler, protocol)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warm_steps) if warm_steps else 1.0
    )
    if trace and results_dir is None:
        raise ValueError("trace=True needs results_dir, where the trace file is written")
    tracer = RunTrace(key.selector, data.train_x, data.train_y, data.label_names, protocol.epochs) if trace else None
    history = {"epoch": [], "train_loss": [], "val_macro_auc": [], "lr": [], "samples_seen": [], "elapsed_seconds": []}
    samples_seen, elapsed = 0, 0.0
    best_auc, best_epoch, best_state = -np.inf, -1, None
    bar = tqdm(
        range(protocol.epochs),
        desc=f"{key.dataset} {key.model} {key.selector} f{key.fold}",
        disable=not progress,
        leave=False,
        position=position,
        dynamic_ncols=True,
    )
    for epoch in bar:
        sampler.set_epoch(epoch)
        selection_before = sampler.overhead_seconds
        if tracer is not None and epoch in tracer.snapshot_epochs:
            tracer.snapshot(epoch, sampler.probabilities, instance_losses(model, data.train_x, data.train_y, device))
        # the trace's probabilities may have prepared the epoch: that selection time counts, its loss pass not
        elapsed += sampler.overhead_seconds - selection_before
        loop_started, lr = time.perf_counter(), optimiser.param_groups[0]["lr"]
        total, seen = _train_epoch(model, loader, sampler, optimiser, schedule, device, protocol.importance_weights)
        elapsed += time.perf_counter() - loop_started
        samples_seen += seen
        label_auc = per_label_auc(data.val_y, predict(model, data.val_x, device))
        val_auc = mean_auc(label_auc)
        for field, value in (
            ("epoch", epoch),
            ("train_loss", total / max(1, seen)),
            ("val_macro_auc", val_auc),
            ("lr", lr),
            ("samples_seen", samples_seen),
            ("elapsed_seconds", elapsed),
        ):
            history[field].append(value)
        if protocol.model_selection == "best" and val_auc > best_auc:
            best_auc, best_epoch = val_auc, epoch
            best_state = copy.deepcopy(model.state_dict())
        if tracer is not None:
            tracer.epoch_end(epoch, label_auc, getattr(sampler.selector, "last_report", None))
        bar.set_postfix(val_auc=f"{val_auc:.4f}")
    if best_state is not None:
        model.load_state_dict(best_state)
    else:  # "last", or no epoch had a defined validation AUC
        best_epoch, best_auc = protocol.epochs - 1, history["val_macro_auc"][-1]
    metrics = evaluate(data.test_y, predict(model, data.test_x, device))
    trace_path = _save_trace(tracer, key, results_dir) if tracer is not None else None
    return {
        "key": key.to_dict(),
        "metrics": metrics,
        "best_epoch": best_epoch,
        "best_val_macro_auc": best_auc,
        "seconds": time.perf_counter() - started,
        "selection_seconds": sampler.overhead_seconds,
        "shape": {
            "train": n,
            "val": int(data.val_y.shape[0]),
            "test": int(data.test_y.shape[0]),
            "d": int(data.train_x.shape[1]),
            "q": q,
        },
        "history": history,
        "trace": trace_path,
    }
