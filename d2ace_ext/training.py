"""A plain training loop around a selection sampler, used by the demo."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from .datasets.indexed import IndexedDataset
from .harness.selection_loss import loss_weights
from .metrics import evaluate
from .sampler import SelectionBatchSampler


@dataclass
class RunResult:
    metrics: dict
    epochs: int
    seconds: float
    selection_seconds_per_epoch: float


def train(
    model: torch.nn.Module,
    sampler: SelectionBatchSampler,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    epochs: int,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    device: str = "cpu",
    label: str = "",
    progress: bool = True,
) -> RunResult:
    """Train ``model`` with batches from ``sampler`` and evaluate on the test split.

    train_x (n, d), train_y (n, q) 0/1; the sampler records every step's logits. The
    loss is the mean BCE, weighted where the selector's method weights it (InfoBatch's
    1/(1 - r), Balance's mask: :func:`~d2ace_ext.harness.selection_loss.loss_weights`);
    the progress bar shows it per sample trained on (fewer than n under a budget).
    """
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loader = DataLoader(IndexedDataset(TensorDataset(train_x, train_y)), batch_sampler=sampler)
    started = time.perf_counter()
    bar = tqdm(range(epochs), desc=label or "train", disable=not progress, leave=True)
    for epoch in bar:
        sampler.set_epoch(epoch)
        model.train()
        total, seen = 0.0, 0
        for index, x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            weights = loss_weights(sampler, index, y, importance_weights=False)
            loss = F.binary_cross_entropy_with_logits(logits, y, weight=weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            sampler.update(index, logits.detach().to(sampler.selector.device), y.to(sampler.selector.device))
            total += loss.item() * len(index)
            seen += len(index)
        bar.set_postfix(loss=f"{total / max(1, seen):.4f}")
    seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(test_x.to(device))).cpu()
    return RunResult(evaluate(test_y, probs), epochs, seconds, sampler.overhead_seconds / epochs)
