"""Image readers on tiny fabricated sets in the official on-disk formats, the
digits-mosaic generator and the precomputed-features file."""

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision", reason="the image path needs torchvision (make installs it; TORCHVISION_SPEC)")

from d2ace_ext.datasets.images.registry import load_image_dataset  # noqa: E402
from d2ace_ext.datasets.images.voc import VOC_CLASSES  # noqa: E402

from support.image_files import make_coco, make_voc, voc_xml  # noqa: E402


def test_voc2007_labels_splits_difficult_and_decoding(tmp_path):
    make_voc(str(tmp_path))
    data = load_image_dataset("voc2007", str(tmp_path), image_size=32, scale_size=36)
    col = {n: j for j, n in enumerate(VOC_CLASSES)}
    assert data.num_labels == 20 and len(data.train) == 3 and len(data.test) == 3
    train = {(i, j) for i, j in data.train_labels.nonzero().tolist()}
    # difficult-only 'person' of 000009 counts as present for training
    assert train == {(0, col["chair"]), (1, col["car"]), (2, col["horse"]), (2, col["person"])}
    test = {(i, j) for i, j in data.test_labels.nonzero().tolist()}
    assert test == {(0, col["dog"]), (0, col["person"]), (1, col["train"]), (2, col["car"])}
    # on the test split a class present only through difficult objects is ignored by mAP
    assert data.test_ignore.nonzero().tolist() == [[1, col["train"]]]
    x, y = data.train[0]
    assert x.shape == (3, 32, 32) and y.shape == (20,)
    assert data.test[1][0].shape == (3, 32, 32)


def test_voc2007_errors_name_the_path(tmp_path):
    base = make_voc(str(tmp_path))
    with open(os.path.join(base, "Annotations", "000007.xml"), "w") as handle:
        handle.write("<annotation><object><name>car</name>")  # torn XML
    with pytest.raises(ValueError, match="000007.xml"):
        load_image_dataset("voc2007", str(tmp_path))
    with open(os.path.join(base, "Annotations", "000007.xml"), "w") as handle:
        handle.write(voc_xml([("spaceship", 0)]))
    with pytest.raises(ValueError, match="unknown class 'spaceship'"):
        load_image_dataset("voc2007", str(tmp_path))
    os.remove(os.path.join(base, "Annotations", "000007.xml"))
    with pytest.raises(FileNotFoundError, match="000007.xml"):
        load_image_dataset("voc2007", str(tmp_path))
    with open(os.path.join(base, "Annotations", "000007.xml"), "w") as handle:
        handle.write(voc_xml([("car", 0)]))
    os.remove(os.path.join(base, "JPEGImages", "000004.jpg"))
    with pytest.raises(FileNotFoundError, match="000004.jpg"):
        load_image_dataset("voc2007", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        load_image_dataset("voc2007", str(tmp_path / "elsewhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="VOC2007 not found.*empty"):
        load_image_dataset("voc2007", str(tmp_path / "empty"))


def test_coco2014_labels_empty_images_and_errors(tmp_path):
    root = tmp_path / "coco2014"
    make_coco(str(root))
    data = load_image_dataset("coco2014", str(tmp_path), image_size=32, scale_size=36)
    assert data.label_names == ["cat1", "cat2", "cat3", "cat5", "cat90"]  # category-id order
    # images without objects are kept as all-zero rows (the paper's 82,783 / 40,504)
    assert data.train_labels.tolist() == [[1, 0, 1, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]
    assert data.test_labels.tolist() == [[0, 1, 0, 1, 0], [0, 0, 0, 0, 0]]
    assert data.train[1][0].shape == (3, 32, 32)
    dropped = load_image_dataset("coco2014", str(tmp_path), drop_empty=True)  # ML-GCN's 82,081 / 40,137
    assert dropped.train_labels.tolist() == [[1, 0, 1, 0, 0], [0, 0, 0, 0, 1]]
    assert dropped.test_labels.tolist() == [[0, 1, 0, 1, 0]]
    with open(root / "annotations" / "instances_val2014.json", "w") as handle:
        handle.write('{"images": [], "annotations": [')
    with pytest.raises(ValueError, match="instances_val2014.json"):
        load_image_dataset("coco2014", str(tmp_path))
    with open(root / "annotations" / "instances_val2014.json", "w") as handle:
        json.dump(
            {
                "images": [{"id": 1, "file_name": "a.jpg"}],
                "annotations": [{"image_id": 1, "category_id": 4}],
                "categories": [{"id": 1, "name": "x"}],
            },
            handle,
        )
    with pytest.raises(ValueError, match="category_id 4"):
        load_image_dataset("coco2014", str(tmp_path))
    os.remove(root / "annotations" / "instances_val2014.json")
    with pytest.raises(FileNotFoundError, match="instances_val2014.json"):
        load_image_dataset("coco2014", str(tmp_path))


def test_data_dir_from_environment(tmp_path, monkeypatch):
    make_coco(str(tmp_path))
    monkeypatch.setenv("D2ACE_DATA_DIR", str(tmp_path))
    assert load_image_dataset("coco2014").train_labels.shape == (3, 5)
    monkeypatch.delenv("D2ACE_DATA_DIR")
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_image_dataset("coco2014")


def test_digits_mosaic_shape_cardinality_fixed_test_split():
    data = load_image_dataset("digits-mosaic", image_size=24, mosaic={"train_size": 3000, "test_size": 400})
    assert data.num_labels == 10 and len(data.train) == 3000 and len(data.test) == 400
    cardinality = float(data.test_labels.sum(1).mean())
    assert 1.5 <= cardinality <= 3.0
    counts = data.train_labels.sum(0)
    assert counts.max() / counts.min() > 3  # seeded class imbalance
    x, y = data.train.get_batch(torch.arange(5))
    assert x.shape == (5, 3, 24, 24) and torch.equal(y, data.train_labels[:5])
    assert torch.equal(data.train[3][0], x[3])  # rendering is deterministic
    other = load_image_dataset("digits-mosaic", image_size=24, mosaic={"train_size": 500, "test_size": 400})
    assert torch.equal(other.test_labels, data.test_labels)  # test split fixed by the data seed alone
    assert torch.equal(other.test.get_batch(torch.arange(4))[0], data.test.get_batch(torch.arange(4))[0])
    assert data.knn_features.shape == (3000, 24 * 24)
    with pytest.raises(ValueError, match="grid"):
        load_image_dataset("digits-mosaic", mosaic={"grid": 4})


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_precomputed_features(tmp_path, suffix):
    rng = np.random.default_rng(0)
    arrays = {
        "train_features": rng.normal(size=(6, 8)).astype(np.float32),
        "train_labels": (rng.random((6, 3)) < 0.5).astype(np.float32),
        "test_features": rng.normal(size=(4, 8)).astype(np.float32),
        "test_labels": (rng.random((4, 3)) < 0.5).astype(np.float32),
    }
    path = str(tmp_path / f"f{suffix}")
    if suffix == ".npz":
        np.savez(path, **arrays)
    else:
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
    data = load_image_dataset(path)
    assert data.kind == "features" and data.train_labels.shape == (6, 3) and len(data.test) == 4
    assert torch.allclose(data.train.get_batch(torch.tensor([1]))[0], torch.from_numpy(arrays["train_features"][1:2]))
    del arrays["test_labels"]
    np.savez(str(tmp_path / "bad.npz"), **arrays)
    with pytest.raises(ValueError, match="bad.npz.*test_labels"):
        load_image_dataset(str(tmp_path / "bad.npz"))
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_image_dataset(str(tmp_path / "nothing.pt"))
