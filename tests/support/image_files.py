"""Tiny image sets in the official on-disk formats (VOC2007, MS-COCO 2014), written into
a test's temporary folder. Imports Pillow: import it after skipping without torchvision."""

import json
import os

import numpy as np
from PIL import Image


def jpeg(path, seed, size=(40, 30)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def voc_xml(objects):
    body = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
        f"<xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        for n, d in objects
    )
    return f"<annotation><filename>x.jpg</filename><size><width>40</width><height>30</height></size>{body}</annotation>"


VOC_SPLITS = {
    "trainval": {
        "000005": [("chair", 0), ("chair", 1)],
        "000007": [("car", 0)],
        "000009": [("horse", 0), ("person", 1)],
    },
    "test": {"000001": [("dog", 0), ("person", 0)], "000002": [("train", 1)], "000004": [("car", 0), ("car", 1)]},
}


def make_voc(root):
    base = os.path.join(root, "VOCdevkit", "VOC2007")
    for split, images in VOC_SPLITS.items():
        os.makedirs(os.path.join(base, "ImageSets", "Main"), exist_ok=True)
        with open(os.path.join(base, "ImageSets", "Main", f"{split}.txt"), "w") as handle:
            handle.write("\n".join(images) + "\n")
        for k, (image_id, objects) in enumerate(images.items()):
            jpeg(os.path.join(base, "JPEGImages", f"{image_id}.jpg"), k)
            os.makedirs(os.path.join(base, "Annotations"), exist_ok=True)
            with open(os.path.join(base, "Annotations", f"{image_id}.xml"), "w") as handle:
                handle.write(voc_xml(objects))
    return base


def make_coco(root, names=None):
    """train2014: images 10 (cats 1, 3), 11 (90), 12 (none); val2014: 20 (2, 5), 21 (none).
    ``names``: the five category names in id order (default cat1 ... cat90, which sort alike)."""
    names = names or [f"cat{i}" for i in (1, 2, 3, 5, 90)]
    categories = [{"id": i, "name": name} for i, name in zip((1, 2, 3, 5, 90), names)]
    splits = {"train2014": {10: [1, 3, 3], 11: [90], 12: []}, "val2014": {20: [2, 5], 21: []}}
    for split, images in splits.items():
        data = {"images": [], "annotations": [], "categories": categories}
        for k, (image_id, cats) in enumerate(images.items()):
            name = f"COCO_{split}_{image_id:012d}.jpg"
            jpeg(os.path.join(root, split, name), image_id)
            data["images"].append({"id": image_id, "file_name": name})
            data["annotations"] += [
                {"id": image_id * 100 + a, "image_id": image_id, "category_id": c} for a, c in enumerate(cats)
            ]
        os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as handle:
            json.dump(data, handle)
