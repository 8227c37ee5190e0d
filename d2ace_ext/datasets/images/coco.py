"""MS-COCO 2014 as a multi-label set: 80 labels, train2014 for training, val2014 for test.

On-disk layout (the official archives unpacked), under the data folder as ``coco2014/``,
``coco/`` or the folder itself::

    train2014/<file_name>   val2014/<file_name>   annotations/instances_{train,val}2014.json

An image's labels are the categories of its instance annotations (crowd ones too).
Label order: by category id (1 ... 90 with gaps -> columns 0 ... 79; person = 0), recorded
as ``label_names``. ML-GCN numbers the classes by *name* instead (person = 49 of its
``coco_adj.pkl`` and ``coco_glove_word2vec.pkl``): files with one row per label are
matched by name (``models/label_files.py``), never by position alone.

Images: all of them by default, those without any annotation as all-zero label rows:
82,783 training and 40,504 test images, the paper's count (Table 2: 123,287) and what
HST's and torchvision's readers load. ``drop_empty=True`` drops them as ML-GCN does
(82,081 and 40,137). mAP skips no class either way (every class has positives); kept
empty images are negatives of every class.
The JSON is parsed with the standard library. An image id, category id, category name
or file name listed twice is refused (ValueError naming the file and the values): the
later entry would silently overwrite the earlier one's file or add a column.
"""

from __future__ import annotations

import json
import os

import torch

from .voc import LabelledImages, find_root


def _load_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MS-COCO annotation file missing: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed MS-COCO annotation file {path}: {exc}") from exc
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise ValueError(f"malformed MS-COCO annotation file {path}: no '{key}' list")
    return data


def _refuse_repeats(values: list, what: str, why: str) -> None:
    """ValueError naming the ``what`` values listed more than once: each must be listed
    once, since it stands for ``why`` (a repeat would overwrite or add a column)."""
    seen: set = set()
    twice = list(dict.fromkeys(v for v in values if v in seen or seen.add(v)))
    if twice:
        shown = ", ".join(map(repr, twice[:10])) + (f" and {len(twice) - 10} more" if len(twice) > 10 else "")
        raise ValueError(f"{what}(s) {shown} listed more than once; each {what} must be listed once (it gives {why})")


def read_split(root: str, split: str, drop_empty: bool = False) -> LabelledImages:
    """``split`` is "train2014" or "val2014"; ``drop_empty``: leave out images without annotations."""
    path = os.path.join(root, "annotations", f"instances_{split}.json")
    data = _load_json(path)
    try:
        categories = sorted(data["categories"], key=lambda c: int(c["id"]))
        _refuse_repeats([int(c["id"]) for c in categories], "category id", "a column each")
        _refuse_repeats([str(c["name"]) for c in categories], "category name", "a distinct label name each")
        column = {int(c["id"]): j for j, c in enumerate(categories)}
        names = [str(c["name"]) for c in categories]
        _refuse_repeats([int(im["id"]) for im in data["images"]], "image id", "the labels of one file")
        images = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
        _refuse_repeats(list(images.values()), "file_name", "one image id each")
        present: dict[int, set[int]] = {}
        for ann in data["annotations"]:
            image_id, category = int(ann["image_id"]), int(ann["category_id"])
            if category not in column:
                raise ValueError(f"annotation {ann.get('id')} has unknown category_id {category}")
            if image_id not in images:
                raise ValueError(f"annotation {ann.get('id')} refers to unknown image_id {image_id}")
            present.setdefault(image_id, set()).add(column[category])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed MS-COCO annotation file {path}: {exc}") from exc
    kept = sorted(present) if drop_empty else sorted(images)
    labels = torch.zeros(len(kept), len(names))
    for i, image_id in enumerate(kept):
        for j in present.get(image_id, ()):
            labels[i, j] = 1
    paths = [os.path.join(root, split, images[image_id]) for image_id in kept]
    return LabelledImages(
        paths,
        labels,
        torch.zeros_like(labels, dtype=torch.bool),
        names,
        empty=len(images) - len(present),
        empty_dropped=drop_empty,
    )


def load_coco2014(data_dir: str, drop_empty: bool = False) -> tuple[LabelledImages, LabelledImages]:
    """(train2014, val2014) under ``data_dir``; errors name the missing or bad path."""
    root = find_root(data_dir, "annotations", ("coco2014", "coco", ""), "MS-COCO 2014")
    train, test = read_split(root, "train2014", drop_empty), read_split(root, "val2014", drop_empty)
    if train.label_names != test.label_names:
        raise ValueError(f"MS-COCO categories differ between the train2014 and val2014 files under {root}")
    return train, test
