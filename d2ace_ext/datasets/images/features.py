"""Precomputed backbone features: heads trained on frozen ResNet features.

One file, ``.pt`` (``torch.save`` of a dict) or ``.npz`` (``numpy.savez``), with

    train_features (n, d) or (n, C, h, w)   train_labels (n, q) 0/1
    test_features  (m, d) or (m, C, h, w)   test_labels  (m, q) 0/1
    label_names    (q,) strings, optional (without them: "label00", "label01", ... in
                   column order, zero-padded so that the names sort in that order)

Pooled vectors (n, d) suit ML-GCN; HST attends over a map, so it takes (n, C, h, w)
(on pooled vectors its attention sees a single position). Errors name the file and key:
missing keys, shapes that do not fit, labels other than 0/1, nan or inf features, train
and test features of different widths, and ``label_names`` of the wrong length are
refused when the file is loaded, before any training.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

KEYS = ("train_features", "train_labels", "test_features", "test_labels")


class TensorImages(Dataset):
    """In-memory inputs x (n, ...) and labels y (n, q); ``get_batch`` indexes a whole batch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, label_names: list[str]) -> None:
        self.x, self.labels, self.label_names = x, y.float(), label_names

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        return self.x[i], self.labels[i]

    def get_batch(self, index: torch.Tensor):
        index = torch.as_tensor(index, dtype=torch.long)
        return self.x[index], self.labels[index]

    def knn_features(self) -> torch.Tensor:
        """The features themselves, pooled to (n, C) when they are maps."""
        return self.x.flatten(2).mean(2) if self.x.dim() == 4 else self.x


def load_features(path: str) -> tuple[TensorImages, TensorImages]:
    """(train, test) from a ``.pt`` / ``.npz`` features file (see the module notes)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"features file missing: {path}")
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                data = {k: archive[k] for k in archive.files}
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: say which one
        raise ValueError(f"cannot read features file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"features file {path} must hold a dict with keys {', '.join(KEYS)}")
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise ValueError(f"features file {path} lacks key(s) {', '.join(missing)}")
    t = {k: torch.as_tensor(np.asarray(data[k]) if not isinstance(data[k], torch.Tensor) else data[k]) for k in KEYS}
    q = t["train_labels"].shape[-1]
    for part in ("train", "test"):
        x, y = t[f"{part}_features"], t[f"{part}_labels"]
        if x.dim() not in (2, 4) or y.dim() != 2 or x.shape[0] != y.shape[0] or y.shape[1] != q:
            raise ValueError(
                f"features file {path}: {part}_features {tuple(x.shape)} and {part}_labels "
                f"{tuple(y.shape)} must be (n, d) or (n, C, h, w) and (n, {q})"
            )
        if not bool(((y == 0) | (y == 1)).all()):
            raise ValueError(f"features file {path}: {part}_labels must hold only 0 and 1")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            row = int((~torch.isfinite(x.flatten(1)).all(1)).nonzero()[0])
            raise ValueError(
                f"features file {path}: {part}_features row {row} holds nan or inf; features must be finite"
            )
    # A head is built for the training width; test inputs of another width fail only at
    # the test pass, after every epoch has trained.
    widths = {part: tuple(t[f"{part}_features"].shape[1:]) for part in ("train", "test")}
    if widths["train"] != widths["test"]:
        raise ValueError(
            f"features file {path}: train_features rows have shape {widths['train']} but test_features "
            f"rows {widths['test']}; both splits must come from the same backbone and pooling"
        )
    width = len(str(q - 1))
    names = (
        [str(s) for s in data["label_names"]] if "label_names" in data else [f"label{j:0{width}d}" for j in range(q)]
    )
    if len(names) != q:
        raise ValueError(f"features file {path}: label_names has {len(names)} names for {q} label columns")
    return (
        TensorImages(t["train_features"].float(), t["train_labels"], names),
        TensorImages(t["test_features"].float(), t["test_labels"], names),
    )
