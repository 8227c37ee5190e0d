"""PASCAL VOC2007 as a multi-label set: 20 labels, the official trainval / test split.

On-disk layout (the devkit's), found under the data folder as ``VOCdevkit/VOC2007/``,
``VOC2007/`` or the folder itself::

    JPEGImages/<id>.jpg   Annotations/<id>.xml   ImageSets/Main/trainval.txt, test.txt

An image's labels are the classes of the ``<object>`` elements of its XML file. A class
seen only through ``difficult`` objects is treated by one of these named rules
(``difficult=``; the image protocol's default is the base model's own):

* ``"mlgcn"`` (ML-GCN: its per-class lists mark such a class 0, its engine turns 0 into 1
  for training and its AP meter skips 0 at test): present for training; on the test
  split *ignored* by mAP and counted present by the other metrics. ``"ignore"`` is an
  older name of this rule.
* ``"hst"`` (HCP-MLR-PL ``datasets/voc2007.py`` skips every difficult object): absent,
  for training and test alike, so the class is a negative everywhere.
* ``"positive"`` / ``"negative"``: present for training; present / absent on the test split.

Refused (ValueError naming the split list): an image id listed twice in one list, and
an id listed in both trainval and test. A UTF-8 byte-order mark at the start of a list
is dropped rather than read as part of the first id.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

import torch

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
#: rule name -> (present for training?, test-side treatment: "ignore", "positive" or "negative")
DIFFICULT_RULES = {
    "mlgcn": (True, "ignore"),
    "hst": (False, "negative"),
    "positive": (True, "positive"),
    "negative": (True, "negative"),
}
_RULE_ALIASES = {"ignore": "mlgcn"}  # the rule's name before it was named after its code base


@dataclass
class LabelledImages:
    """One split: image paths (n), labels (n, q) float32 0/1, ``ignore`` (n, q) bool
    (entries mAP skips; all False where the set has no such entries), the label names in
    column order, and how many listed images had no label (``empty``: kept as all-zero
    rows unless ``empty_dropped``)."""

    paths: list[str]
    labels: torch.Tensor
    ignore: torch.Tensor
    label_names: list[str]
    empty: int = 0
    empty_dropped: bool = False


def find_root(data_dir: str, marker: str, candidates: tuple[str, ...], name: str) -> str:
    """The first of ``data_dir/<candidate>`` that holds ``marker``; else FileNotFoundError
    listing every path tried."""
    tried = []
    for sub in candidates:
        root = os.path.join(data_dir, sub) if sub else data_dir
        if os.path.exists(os.path.join(root, marker)):
            return root
        tried.append(os.path.join(root, marker))
    raise FileNotFoundError(f"{name} not found: none of {', '.join(tried)} exists")


def _read_ids(path: str) -> list[str]:
    """The image ids of a split list, one per line (the first word; a UTF-8 BOM, which
    some editors write, is dropped). An id listed twice raises ValueError naming its lines."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VOC2007 split list missing: {path}")
    with open(path, encoding="utf-8-sig") as handle:
        listed = [(number, line.split()[0]) for number, line in enumerate(handle, 1) if line.strip()]
    if not listed:
        raise ValueError(f"VOC2007 split list is empty: {path}")
    first: dict[str, int] = {}
    for number, image_id in listed:
        if image_id in first:
            raise ValueError(
                f"VOC2007 split list {path}: image id {image_id} is listed twice (lines "
                f"{first[image_id]} and {number}); list each image once"
            )
        first[image_id] = number
    return [image_id for _, image_id in listed]


def read_annotation(path: str) -> tuple[set[str], set[str]]:
    """(classes with a non-difficult object, classes with only difficult objects) of one XML."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VOC2007 annotation missing: {path}")
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        raise ValueError(f"malformed VOC2007 annotation {path}: {exc}") from exc
    clear, hard = set(), set()
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise ValueError(f"malformed VOC2007 annotation {path}: unknown class {name!r}")
        difficult = (obj.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise ValueError(f"malformed VOC2007 annotation {path}: difficult={difficult!r} (expected 0 or 1)")
        (hard if difficult == "1" else clear).add(name)
    return clear, hard - clear


def difficult_rule(name: str) -> str:
    """The canonical name of difficult-object rule ``name`` (module notes); ValueError
    listing the valid names otherwise."""
    name = _RULE_ALIASES.get(name, name)
    if name not in DIFFICULT_RULES:
        raise ValueError(f"difficult must be one of {', '.join([*DIFFICULT_RULES, *_RULE_ALIASES])}, got {name!r}")
    return name


def read_split(root: str, split: str, difficult: str = "mlgcn", train: bool = False) -> LabelledImages:
    """One official split ("trainval" or "test") of the VOC2007 folder ``root``; ``train``
    says which side of the ``difficult`` rule applies."""
    train_present, test_side = DIFFICULT_RULES[difficult_rule(difficult)]
    ids = _read_ids(os.path.join(root, "ImageSets", "Main", f"{split}.txt"))
    index = {name: j for j, name in enumerate(VOC_CLASSES)}
    labels = torch.zeros(len(ids), len(VOC_CLASSES))
    ignore = torch.zeros(len(ids), len(VOC_CLASSES), dtype=torch.bool)
    for i, image_id in enumerate(ids):
        clear, hard_only = read_annotation(os.path.join(root, "Annotations", f"{image_id}.xml"))
        for name in clear:
            labels[i, index[name]] = 1
        for name in hard_only:
            if train_present if train else test_side != "negative":
                labels[i, index[name]] = 1
            if not train and test_side == "ignore":
                ignore[i, index[name]] = True
    paths = [os.path.join(root, "JPEGImages", f"{image_id}.jpg") for image_id in ids]
    return LabelledImages(paths, labels, ignore, list(VOC_CLASSES))


def load_voc2007(data_dir: str, difficult: str = "mlgcn") -> tuple[LabelledImages, LabelledImages]:
    """(trainval, test) of VOC2007 under ``data_dir``; errors name the missing or bad path."""
    difficult_rule(difficult)  # an unknown rule is refused before any file is read
    root = find_root(data_dir, "Annotations", ("VOCdevkit/VOC2007", "VOC2007", ""), "VOC2007")
    lists = [os.path.join(root, "ImageSets", "Main", f"{split}.txt") for split in ("trainval", "test")]
    both = sorted(set(_read_ids(lists[0])) & set(_read_ids(lists[1])))
    if both:  # an image trained on and then tested on would inflate the test mAP
        shown = ", ".join(both[:10]) + (f" and {len(both) - 10} more" if len(both) > 10 else "")
        raise ValueError(
            f"VOC2007 image id(s) {shown} are listed in both {lists[0]} and {lists[1]}; "
            "the training and test splits must not share images"
        )
    return read_split(root, "trainval", difficult, train=True), read_split(root, "test", difficult)
