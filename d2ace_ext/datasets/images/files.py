"""Image files on disk: the paper's transforms and a dataset of (path, labels) pairs.

The paper's image pre-processing (Appendix D.2, following Chen et al. 2024): resize to
512 × 512 (bicubic), crop a region whose sides are drawn from {512, 448, 384, 320, 256},
resize the crop to 448 × 448, flip horizontally with probability 0.5, normalise with
the ImageNet mean and std. Test images: resize to 448 × 448 and normalise. Both sizes
are options, so a CPU run can use e.g. 64 / 56.

Images are decoded with Pillow through torchvision (``torchvision.datasets.folder.pil_loader``).
"""
from __future__ import annotations

import os
import random

import torch
from torch.utils.data import Dataset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The crop sides of the paper as fractions of the 512 scale: 512, 448, 384, 320, 256.
CROP_SCALES = (1.0, 0.875, 0.75, 0.625, 0.5)


def require_torchvision(what: str):
    """torchvision, or an ImportError that says what needs it and how to install it."""
    try:
        import torchvision
    except ImportError as exc:  # pragma: no cover - exercised only without torchvision
        raise ImportError(f"{what} needs torchvision (pip install torchvision, matching your torch; "
                          f"`make` installs it with TORCHVISION_SPEC)") from exc
    return torchvision


class MultiScaleCrop:
    """Crop a random region whose width and height are each one of ``scales`` × the
    shorter side (the two picks at most ``max_distort`` list steps apart, so crops stay
    near-square), at a uniformly random position, then resize it to ``size`` × ``size``.
    Works on PIL images. (The reading of "regions with sizes selected from 512 ... 256":
    the multi-scale crop of the TSN / ML-GCN code bases, with free placement.)"""

    def __init__(self, size: int, scales=CROP_SCALES, max_distort: int = 1) -> None:
        self.size, self.scales, self.max_distort = size, tuple(scales), max_distort

    def __call__(self, image):
        from torchvision.transforms import functional as TF
        width, height = image.size
        base = min(width, height)
        sides = [max(1, int(base * s)) for s in self.scales]
        pairs = [(w, h) for i, w in enumerate(sides) for j, h in enumerate(sides) if abs(i - j) <= self.max_distort]
        crop_w, crop_h = random.choice(pairs)
        left = random.randint(0, width - crop_w)
        top = random.randint(0, height - crop_h)
        image = image.crop((left, top, left + crop_w, top + crop_h))
        return TF.resize(image, [self.size, self.size], interpolation=TF.InterpolationMode.BICUBIC)


def image_transforms(image_size: int = 448, scale_size: int = 512):
    """(train transform, test transform): PIL image -> float tensor (3, image_size, image_size)."""
    tv = require_torchvision("the image transforms")
    T = tv.transforms
    bicubic = T.InterpolationMode.BICUBIC
    normalise = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = T.Compose([T.Resize((scale_size, scale_size), interpolation=bicubic), MultiScaleCrop(image_size),
                       T.RandomHorizontalFlip(0.5), T.ToTensor(), normalise])
    test = T.Compose([T.Resize((image_size, image_size), interpolation=bicubic), T.ToTensor(), normalise])
    return train, test


def check_files(paths: list[str], what: str) -> None:
    """FileNotFoundError naming the first missing image (and how many are missing)."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} {what} image file(s) missing, e.g. {missing[0]}")


class ImageFiles(Dataset):
    """Item i = (image i transformed (3, H, W), labels i (q,) float32 0/1).

    paths: n image files; labels: (n, q) 0/1. ``transform`` maps a PIL image to a tensor.
    A file that cannot be decoded raises an error naming it.
    """

    def __init__(self, paths: list[str], labels: torch.Tensor, transform) -> None:
        if len(paths) != labels.shape[0]:
            raise ValueError(f"{len(paths)} paths but {labels.shape[0]} label rows")
        self.paths, self.labels, self.transform = list(paths), labels.float(), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from torchvision.datasets.folder import pil_loader
        path = self.paths[i]
        try:
            image = pil_loader(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"image file missing: {path}") from None
        except OSError as exc:  # Pillow's UnidentifiedImageError and truncated files are OSErrors
            raise ValueError(f"cannot decode image {path}: {exc}") from exc
        return self.transform(image), self.labels[i]
