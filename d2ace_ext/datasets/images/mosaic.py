"""digits-mosaic: an embedded multi-label image set built from scikit-learn's digits.

Each image is a g × g grid (default 3 × 3) of cells; a cell is blank or holds one of
the 1,797 8 × 8 handwritten digits of ``sklearn.datasets.load_digits``, upsampled to the
cell. Labels are the digits present (q = 10). Everything is drawn from ``seed``:

* occupied cells per image: 1-4 with probabilities 0.30 / 0.35 / 0.25 / 0.10, so the
  label cardinality is about 2 (VOC2007: 1.45, MS-COCO: 2.91);
* class imbalance: digit class k (in a seeded order) is drawn with probability
  ∝ ``imbalance^(-rank/9)``, the most frequent class ``imbalance`` (default 10) times
  as likely as the rarest;
* appearance: a per-cell contrast in [0.6, 1], a per-image colour tint, and fixed
  per-image Gaussian pixel noise (``pixel_noise``, std in [0, 1] units);
* label noise, training split only: with probability ``label_noise`` an image's label
  vector is corrupted once, half the time one present digit dropped, half the time one
  absent digit added. The test labels are clean.

The digit images are split once (by ``seed``) into a training pool (70 %) and a test
pool, so test mosaics show handwriting never seen in training. The test split is a
fixed function of ``seed`` and ``test_size``; runs compared on it keep ``seed`` fixed and
vary the model / sampler seed. Only the layout (n × g² digit indices) is stored; images
are rendered on the fly, a whole batch per indexing call, so tens of thousands cost
no memory.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

NUM_LABELS = 10
_CELLS_P = (0.30, 0.35, 0.25, 0.10)  # 1, 2, 3 or 4 occupied cells
_NOISE_BANK = 256  # distinct fixed noise fields, one per image modulo this


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return torch.as_tensor(digits.images / 16.0, dtype=torch.float32), torch.as_tensor(digits.target)


class DigitsMosaic(Dataset):
    """n mosaics: item i = (image (3, S, S) float32, labels (10,) float32 0/1).

    ``get_batch(index)`` renders a whole batch: index (b,) -> ((b, 3, S, S), (b, 10)).
    """

    def __init__(
        self,
        pool: torch.Tensor,
        layout: torch.Tensor,
        contrast: torch.Tensor,
        tint: torch.Tensor,
        labels: torch.Tensor,
        image_size: int,
        pixel_noise: float,
        noise_seed: int,
    ) -> None:
        n, cells = layout.shape
        self.grid = int(round(math.sqrt(cells)))
        self.cell = image_size // self.grid
        self.image_size = image_size
        # Digits upsampled to the cell once; bilinear keeps the strokes smooth.
        self.pool = (
            F.interpolate(pool.unsqueeze(1), size=(self.cell, self.cell), mode="bilinear", align_corners=False)
            .squeeze(1)
            .clamp(0, 1)
        )
        self.small_pool = pool
        self.layout, self.contrast, self.tint, self.labels = layout, contrast, tint, labels.float()
        g = torch.Generator().manual_seed(noise_seed)
        self.noise = torch.randn(_NOISE_BANK, image_size, image_size, generator=g) * pixel_noise
        self.label_names = [str(k) for k in range(NUM_LABELS)]

    def __len__(self) -> int:
        return self.layout.shape[0]

    def _render(self, pool: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
        """Grey mosaics (b, size, size) in [0, 1] from ``pool`` (m, s, s)."""
        g, s = self.grid, pool.shape[-1]
        layout = self.layout[index]
        cells = pool[layout.clamp(min=0)] * ((layout >= 0).float() * self.contrast[index]).unsqueeze(-1).unsqueeze(-1)
        grey = cells.view(-1, g, g, s, s).permute(0, 1, 3, 2, 4).reshape(-1, g * s, g * s)
        pad = size - g * s
        return F.pad(grey, (0, pad, 0, pad)) if pad else grey

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(index, dtype=torch.long)
        grey = self._render(self.pool, index, self.image_size) + self.noise[index % _NOISE_BANK]
        image = grey.unsqueeze(1) * self.tint[index].view(-1, 3, 1, 1)
        return (image - 0.1) / 0.3, self.labels[index]  # the mostly blank images to about zero mean, unit spread

    def __getitem__(self, i: int):
        x, y = self.get_batch(torch.tensor([i]))
        return x[0], y[0]

    def knn_features(self) -> torch.Tensor:
        """(n, (8g)²) noise-free grey mosaics at the digits' native 8 × 8 resolution:
        the input space a K-NN selector (D2ACE, Hard-Imb) measures neighbours in."""
        index = torch.arange(len(self))
        return torch.cat(
            [
                self._render(self.small_pool, index[i : i + 4096], 8 * self.grid).flatten(1)
                for i in range(0, len(self), 4096)
            ]
        )


def _layouts(rng: np.random.Generator, n: int, cells: int, by_class: list[np.ndarray], priors: np.ndarray):
    occupied = rng.choice(np.arange(1, len(_CELLS_P) + 1), size=n, p=_CELLS_P)
    occupied = np.minimum(occupied, cells)
    layout = np.full((n, cells), -1, dtype=np.int64)
    classes = rng.choice(NUM_LABELS, size=(n, cells), p=priors)
    for i in range(n):
        where = rng.choice(cells, size=occupied[i], replace=False)
        for c in where:
            members = by_class[classes[i, c]]
            layout[i, c] = members[rng.integers(len(members))]
    return layout


def make_digits_mosaic(
    train_size: int = 20000,
    test_size: int = 2000,
    *,
    grid: int = 3,
    image_size: int = 48,
    imbalance: float = 10.0,
    label_noise: float = 0.1,
    pixel_noise: float = 0.1,
    seed: int = 0,
) -> tuple[DigitsMosaic, DigitsMosaic]:
    """(train, test) digits-mosaic sets (see the module notes). image_size >= 8 · grid."""
    if grid not in (2, 3):
        raise ValueError(f"grid must be 2 or 3, got {grid}")
    if image_size < 8 * grid:
        raise ValueError(f"image_size must be at least {8 * grid} for a {grid}x{grid} grid, got {image_size}")
    if not (0 <= label_noise <= 1 and imbalance >= 1 and pixel_noise >= 0):
        raise ValueError("need 0 <= label_noise <= 1, imbalance >= 1, pixel_noise >= 0")
    images, digit = _digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digit))
    cut = int(0.7 * len(digit))
    order_classes = rng.permutation(NUM_LABELS)
    priors = np.empty(NUM_LABELS)
    priors[order_classes] = imbalance ** (-np.arange(NUM_LABELS) / (NUM_LABELS - 1))
    priors /= priors.sum()
    sets = []
    for part, size, noisy in ((order[:cut], train_size, True), (order[cut:], test_size, False)):
        part_rng = np.random.default_rng([seed, 1 if noisy else 2])  # test split independent of train_size
        by_class = [part[digit.numpy()[part] == k] for k in range(NUM_LABELS)]
        layout = _layouts(part_rng, size, grid * grid, by_class, priors)
        labels = np.zeros((size, NUM_LABELS), dtype=np.float32)
        rows, cols = np.nonzero(layout >= 0)
        labels[rows, digit.numpy()[layout[rows, cols]]] = 1
        if noisy and label_noise > 0:
            for i in np.nonzero(part_rng.random(size) < label_noise)[0]:
                drop = part_rng.random() < 0.5
                candidates = np.nonzero(labels[i] == (1 if drop else 0))[0]
                if len(candidates):
                    labels[i, candidates[part_rng.integers(len(candidates))]] = 0 if drop else 1
        contrast = torch.as_tensor(part_rng.uniform(0.6, 1.0, size=(size, grid * grid)), dtype=torch.float32)
        tint = torch.as_tensor(part_rng.uniform(0.5, 1.0, size=(size, 3)), dtype=torch.float32)
        sets.append(
            DigitsMosaic(
                images,
                torch.as_tensor(layout),
                contrast,
                tint,
                torch.as_tensor(labels),
                image_size,
                pixel_noise,
                seed * 2 + (0 if noisy else 1),
            )
        )
    return sets[0], sets[1]
