"""Image data sets by name, as one record the image protocol trains from.

    data = load_image_dataset("voc2007", data_dir)           # or "coco2014", "digits-mosaic",
    data = load_image_dataset("features", features="f.pt")   # or a path ending .pt / .npz

The folder is ``data_dir`` or ``$D2ACE_DATA_DIR``; missing files raise FileNotFoundError
naming the path, malformed annotations ValueError naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from ..mulan_folders import DATA_DIR_ENV

IMAGE_DATASETS = ("voc2007", "coco2014", "digits-mosaic", "features")
#: Each base model's own rules for image folders, as its released code reads the data:
#: VOC2007's difficult objects (``voc.DIFFICULT_RULES``) and the transform (``files.TRANSFORMS``).
MODEL_RULES = {"mlgcn": {"difficult": "mlgcn", "transform": "mlgcn"}, "hst": {"difficult": "hst", "transform": "hst"}}
#: Without a base model of its own: ML-GCN's difficult rule (the reader's earlier default)
#: and HST's transform (the one the paper's Appendix D.2 describes).
DEFAULT_RULES = {"difficult": "mlgcn", "transform": "hst"}


def data_rules(model: str | None, difficult: str | None = None, transform: str | None = None) -> dict:
    """{"difficult", "transform"} for runs of ``model``: the given values, else the base
    model's own (``MODEL_RULES``), else ``DEFAULT_RULES``; names checked and canonical."""
    from .files import check_transform
    from .voc import difficult_rule

    own = MODEL_RULES.get(model, DEFAULT_RULES)
    return {
        "difficult": difficult_rule(difficult or own["difficult"]),
        "transform": check_transform(transform or own["transform"]),
    }


@dataclass
class ImageData:
    """train / test datasets with item i = (input, labels (q,)), their label matrices
    (n, q) and (m, q) 0/1, ``test_ignore`` (m, q) bool entries mAP skips (VOC's
    difficult-only classes), ``kind`` "image" (3, H, W) inputs or "features" vectors /
    maps, and ``knn_features`` (n, d) for K-NN selectors when the set has a cheap input
    space for them (None: the protocol computes backbone features). ``train_eval``: the
    training images under the test transform (for feature passes), or None when
    ``train`` is deterministic already. ``label_names``: the labels in column order,
    the order every file with one row per label is matched to. ``notes``: what the
    reader kept, dropped or chose (image counts, rules, transform), for a run's header."""

    name: str
    train: Dataset
    test: Dataset
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    label_names: list[str]
    kind: str = "image"
    test_ignore: torch.Tensor | None = None
    train_eval: Dataset | None = None
    knn_features: torch.Tensor | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return int(self.train_labels.shape[1])

    def describe(self) -> str:
        """One line: image counts, label order and the reader's rules."""
        shown = ", ".join(self.label_names[:3]) + (", ..." if self.num_labels > 3 else "")
        return "; ".join(
            [
                f"{self.name}: {len(self.train):,} training and {len(self.test):,} test images",
                f"{self.num_labels} labels in the order {shown}",
                *self.notes,
            ]
        )


def image_data_dir(data_dir: str | None, name: str) -> str:
    """The folder holding image set ``name``: ``data_dir``, else ``$D2ACE_DATA_DIR``."""
    folder = data_dir or os.environ.get(DATA_DIR_ENV)
    if not folder:
        raise FileNotFoundError(f"{name} needs its image folder: pass --data-dir or set {DATA_DIR_ENV}")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"data folder not found: {folder}")
    return folder


def load_image_dataset(
    name: str,
    data_dir: str | None = None,
    *,
    image_size: int = 448,
    scale_size: int = 512,
    features: str | None = None,
    difficult: str = "mlgcn",
    drop_empty: bool = False,
    transform: str = "hst",
    mosaic: dict | None = None,
    check_files_exist: bool = True,
) -> ImageData:
    """The set ``name`` (one of IMAGE_DATASETS, or a features file path). ``mosaic``:
    options of :func:`make_digits_mosaic` (its ``image_size`` defaults to ``image_size``).
    Image folders only: ``difficult`` (VOC2007's rule, ``voc.DIFFICULT_RULES``),
    ``drop_empty`` (MS-COCO: leave out images without objects), ``transform`` ("hst",
    the paper's, or "mlgcn": ``files.TRANSFORMS``)."""
    if name.endswith((".pt", ".npz")):
        name, features = "features", name
    if name == "digits-mosaic":
        from .mosaic import make_digits_mosaic

        options = {"image_size": image_size, **(mosaic or {})}
        train, test = make_digits_mosaic(**options)
        return ImageData(
            name, train, test, train.labels, test.labels, train.label_names, knn_features=train.knn_features()
        )
    if name == "features":
        if not features:
            raise FileNotFoundError("the features set needs a file: pass --features PATH (.pt or .npz)")
        from .features import load_features

        train, test = load_features(features)
        return ImageData(
            name,
            train,
            test,
            train.labels,
            test.labels,
            train.label_names,
            kind="features",
            knn_features=train.knn_features(),
        )
    if name not in ("voc2007", "coco2014"):
        raise ValueError(f"unknown image data set {name!r}; valid: {', '.join(IMAGE_DATASETS)} or a .pt/.npz path")
    from .files import ImageFiles, check_files, check_transform, image_transforms

    check_transform(transform)
    folder = image_data_dir(data_dir, name)
    if name == "voc2007":
        from .voc import difficult_rule, load_voc2007

        train_part, test_part = load_voc2007(folder, difficult)
        notes = [f"difficult-only classes: rule {difficult_rule(difficult)}"]
    else:
        from .coco import load_coco2014

        train_part, test_part = load_coco2014(folder, drop_empty)
        fate = "dropped (--drop-empty, as ML-GCN)" if drop_empty else "kept as all-zero rows (the paper's count)"
        notes = [f"images without objects {fate}: {train_part.empty:,} training, {test_part.empty:,} test"]
    if check_files_exist:
        check_files(train_part.paths, f"{name} training")
        check_files(test_part.paths, f"{name} test")
    train_tf, test_tf = image_transforms(image_size, scale_size, transform)
    return ImageData(
        name,
        ImageFiles(train_part.paths, train_part.labels, train_tf),
        ImageFiles(test_part.paths, test_part.labels, test_tf),
        train_part.labels,
        test_part.labels,
        train_part.label_names,
        test_ignore=test_part.ignore,
        train_eval=ImageFiles(train_part.paths, train_part.labels, test_tf),
        notes=[*notes, f"transform {transform}"],
    )
