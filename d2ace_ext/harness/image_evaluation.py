"""Evaluation under the image protocol: the held-out validation rows, eval-mode
predictions, the mAP that picks the epoch, the test metrics, and the backbone features
the K-NN selectors read."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..datasets.images.registry import ImageData
from ..metrics import evaluate, voc_interpolated_map
from .image_loading import eval_base, loader
from .image_protocol import ImageProtocol, mean_average_precision


def autocast(device: str, amp: bool):
    """bf16 autocast on CUDA when ``amp``, else a context that turns autocast off."""
    enabled = amp and str(device).startswith("cuda")
    if enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict(
    model, base: Dataset, rows: torch.Tensor, device: str, workers: int = 0, amp: bool = True, batch_size: int = 64
) -> torch.Tensor:
    """Eval-mode probabilities (m, q) on the CPU for ``base[rows]``."""
    model.eval()
    parts = []
    for _, x, _ in loader(base, rows, batch_size=batch_size, workers=workers, device=device):
        with autocast(device, amp):
            parts.append(torch.sigmoid(model(x.to(device, non_blocking=True)).float()).cpu())
    return torch.cat(parts)


@torch.no_grad()
def backbone_features(model, base: Dataset, rows: torch.Tensor, device: str, workers: int = 0) -> torch.Tensor:
    """(n, C) average-pooled backbone features of the initial model: the input space of
    the K-NN selectors for image files (ImageNet semantics when a checkpoint is loaded)."""
    model.eval()
    parts = [
        model.backbone(x.to(device)).float().mean((2, 3)).cpu()
        for _, x, _ in loader(base, rows, batch_size=64, workers=workers, device=device)
    ]
    return torch.cat(parts)


def split_rows(data: ImageData, protocol: ImageProtocol) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, validation rows): a seeded ``val_fraction`` held out under
    model_selection "val", else every row trains and none validates."""
    n = data.train_labels.shape[0]
    if protocol.model_selection != "val":
        return torch.arange(n), torch.arange(0)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(protocol.seed + 7919))
    cut = max(1, int(round(n * protocol.val_fraction)))
    return order[cut:].sort().values, order[:cut].sort().values


def selection_score(
    model, data: ImageData, val_rows: torch.Tensor, protocol: ImageProtocol, device: str, workers: int
) -> float:
    """The mAP that picks the epoch: on the validation rows (test transform) under
    model_selection "val", on the test split under "test", nan under "last"."""
    if protocol.model_selection == "val":
        base, rows, labels, ignore = eval_base(data), val_rows, data.train_labels[val_rows], None
    elif protocol.model_selection == "test":
        base, rows, labels, ignore = data.test, torch.arange(len(data.test)), data.test_labels, data.test_ignore
    else:
        return float("nan")
    return mean_average_precision(labels, predict(model, base, rows, device, workers, protocol.amp), ignore)


def metrics_on_test(model, data: ImageData, device: str, workers: int, amp: bool) -> dict:
    """{metric: value} on the test split: ``map`` (ignored entries left out),
    ``map_voc_interpolated`` and every tabular metric."""
    probs = predict(model, data.test, torch.arange(len(data.test)), device, workers, amp)
    return {
        "map": mean_average_precision(data.test_labels, probs, data.test_ignore),
        "map_voc_interpolated": voc_interpolated_map(data.test_labels, probs, data.test_ignore),
        **evaluate(data.test_labels, probs),
    }
