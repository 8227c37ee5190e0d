"""Image files on disk: the base models' released transforms and a dataset of (path, labels) pairs.

Two training transforms, named after the code base that ships them (``transform=``):

* ``"hst"`` (HCP-MLR-PL ``utils/dataloader.py``; the paper's Appendix D.2, "following
  Chen et al. 2024"): resize to ``scale_size`` × ``scale_size`` (bicubic), crop a random
  *square* whose side is one of {1, 0.875, 0.75, 0.625, 0.5} × ``scale_size`` (512, 448,
  384, 320, 256 at the paper's 512) at a uniformly random position, resize it to
  ``image_size`` × ``image_size`` (bicubic), flip with probability 0.5. Test: resize to
  ``image_size`` × ``image_size`` (bicubic).
* ``"mlgcn"`` (ML-GCN ``util.py`` ``MultiScaleCrop`` as ``engine.py`` calls it): on the
  image as loaded, crop width and height each one of {1, 0.875, 0.75, 0.66, 0.5} × the
  shorter side (the two picks at most ``max_distort = 2`` list steps apart, so crops
  need not be square; a side within 3 px of ``image_size`` snaps to it), placed at one
  of 13 fixed offsets (corners, centre, edge centres, quarter points), resized to
  ``image_size`` × ``image_size`` (bilinear), flip with probability 0.5. Test: resize to
  ``image_size`` × ``image_size`` (bilinear); ``scale_size`` is not used.

Both normalise with the ImageNet mean and std. Every random draw comes from Python's
``random`` or torch's CPU generator, which the image protocol seeds per image.
Images are decoded with Pillow through torchvision (``torchvision.datasets.folder.pil_loader``).
"""

from __future__ import annotations

import os
import random

import torch
from torch.utils.data import Dataset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: HST's crop sides as fractions of the scale size: 512, 448, 384, 320, 256 of 512.
HST_CROP_SCALES = (1.0, 0.875, 0.75, 0.625, 0.5)
#: ML-GCN's crop sides as fractions of the image's shorter side (its engine.py).
MLGCN_CROP_SCALES = (1.0, 0.875, 0.75, 0.66, 0.5)
#: The training / test transforms by name: the base model whose release defines them.
TRANSFORMS = ("hst", "mlgcn")


def require_torchvision(what: str):
    """torchvision, or an ImportError that says what needs it and how to install it."""
    try:
        import torchvision
    except ImportError as exc:  # pragma: no cover - exercised only without torchvision
        raise ImportError(
            f"{what} needs torchvision (pip install torchvision, matching your torch; "
            f"`make` installs it with TORCHVISION_SPEC)"
        ) from exc
    return torchvision


def check_transform(name: str) -> str:
    """``name`` if it is one of TRANSFORMS, else ValueError listing them."""
    if name not in TRANSFORMS:
        raise ValueError(
            f"unknown image transform {name!r}; valid: {', '.join(TRANSFORMS)} "
            "(the base model whose released code defines it)"
        )
    return name


class MultiScaleCrop:
    """ML-GCN's multi-scale crop of a PIL image, resized to ``size`` × ``size`` (bilinear).

    Width and height are each one of ``scales`` × the shorter side, their two list
    positions at most ``max_distort`` apart; a side within 3 px of ``size`` becomes
    ``size``; the crop sits at one of the 13 offsets of :meth:`offsets`."""

    def __init__(self, size: int, scales=MLGCN_CROP_SCALES, max_distort: int = 2) -> None:
        self.size, self.scales, self.max_distort = size, tuple(scales), max_distort

    def sizes(self, width: int, height: int) -> list[tuple[int, int]]:
        """Every (crop width, crop height) the crop may draw for a width × height image."""
        sides = [int(min(width, height) * s) for s in self.scales]
        sides = [self.size if abs(s - self.size) < 3 else s for s in sides]
        return [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= self.max_distort]

    @staticmethod
    def offsets(width: int, height: int, crop_w: int, crop_h: int) -> list[tuple[int, int]]:
        """The 13 fixed (left, top) positions: corners, centre, edge centres, quarter points."""
        w, h = (width - crop_w) // 4, (height - crop_h) // 4
        return [
            (0, 0),
            (4 * w, 0),
            (0, 4 * h),
            (4 * w, 4 * h),
            (2 * w, 2 * h),
            (0, 2 * h),
            (4 * w, 2 * h),
            (2 * w, 4 * h),
            (2 * w, 0),
            (w, h),
            (3 * w, h),
            (w, 3 * h),
            (3 * w, 3 * h),
        ]

    def sample(self, width: int, height: int) -> tuple[int, int, int, int]:
        """One (left, top, crop width, crop height), drawn with Python's ``random``."""
        crop_w, crop_h = random.choice(self.sizes(width, height))
        left, top = random.choice(self.offsets(width, height, crop_w, crop_h))
        return left, top, crop_w, crop_h

    def __call__(self, image):
        from torchvision.transforms import functional as TF

        left, top, crop_w, crop_h = self.sample(*image.size)
        image = image.crop((left, top, left + crop_w, top + crop_h))
        return TF.resize(image, [self.size, self.size], interpolation=TF.InterpolationMode.BILINEAR)


def hst_crop(scale_size: int):
    """HST's crop of a ``scale_size`` square: a random square of one of the HST_CROP_SCALES
    sides (torchvision RandomChoice of RandomCrop), uniformly placed."""
    T = require_torchvision("the image transforms").transforms
    return T.RandomChoice([T.RandomCrop(max(1, round(scale_size * s))) for s in HST_CROP_SCALES])


def image_transforms(image_size: int = 448, scale_size: int = 512, kind: str = "hst"):
    """(train transform, test transform) named ``kind`` (module notes): PIL image ->
    float tensor (3, image_size, image_size)."""
    T = require_torchvision("the image transforms").transforms
    normalise = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if check_transform(kind) == "hst":
        bicubic = T.InterpolationMode.BICUBIC
        train = T.Compose(
            [
                T.Resize((scale_size, scale_size), interpolation=bicubic),
                hst_crop(scale_size),
                T.Resize((image_size, image_size), interpolation=bicubic),
                T.RandomHorizontalFlip(0.5),
                T.ToTensor(),
                normalise,
            ]
        )
        test = T.Compose([T.Resize((image_size, image_size), interpolation=bicubic), T.ToTensor(), normalise])
    else:
        bilinear = T.InterpolationMode.BILINEAR
        train = T.Compose([MultiScaleCrop(image_size), T.RandomHorizontalFlip(0.5), T.ToTensor(), normalise])
        test = T.Compose([T.Resize((image_size, image_size), interpolation=bilinear), T.ToTensor(), normalise])
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
