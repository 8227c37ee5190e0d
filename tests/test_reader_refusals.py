"""What the readers refuse or repair: a catalogue, one test per case. Each test builds
the smallest input that used to load wrongly without a word (or fail with an error
naming nothing) and checks the reader now reads it right or refuses it with one line
that names the file and what is wrong.
docs/inputs.md lists the same cases for users."""

import json
import os
import re

import numpy as np
import pytest
import scipy.io
import torch

from d2ace_ext.datasets.images.coco import load_coco2014
from d2ace_ext.datasets.images.features import load_features
from d2ace_ext.datasets.images.voc import VOC_CLASSES, load_voc2007
from d2ace_ext.datasets.mulan import load_dataset, read_arff

from support.mulan_files import HEADER, write_set

# HEADER's attributes: 'it\'s numeric' numeric, colour {red,'dark blue',green},
# count INTEGER, L1 {0,1}, 'label two' {1,0}; the XML of write_set lists L1 and 'label two'.


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# -- MULAN label names -------------------------------------------------------------------


def test_mulan_label_missing_from_the_arff_is_refused_not_taken_from_the_last_columns(tmp_path):
    # `l2` for `label two`: the reader used to take the last two attributes instead
    folder = write_set(tmp_path, "typo", HEADER, ["1,red,3,1,0"], labels=("L1", "l2"))
    with pytest.raises(ValueError) as err:
        load_dataset("typo", str(tmp_path))
    message = one_line(err)
    assert "'l2'" in message and str(folder / "typo.xml") in message and str(folder / "typo.arff") in message


def test_mulan_wrong_xml_is_refused(tmp_path):
    folder = write_set(tmp_path, "wrongxml", HEADER, ["1,red,3,1,0"], labels=("happy", "sad"))
    with pytest.raises(ValueError, match=re.escape(str(folder / "wrongxml.xml"))) as err:
        load_dataset("wrongxml", str(tmp_path))
    assert "'happy'" in one_line(err) and "'sad'" in str(err.value)


def test_mulan_label_listed_twice_is_refused_not_read_as_a_duplicate_column(tmp_path):
    folder = write_set(tmp_path, "twice", HEADER, ["1,red,3,1,0"], labels=("L1", "L1"))
    with pytest.raises(ValueError, match="'L1'.*twice|twice.*'L1'") as err:
        load_dataset("twice", str(tmp_path))
    assert str(folder / "twice.xml") in one_line(err)


def test_arff_attribute_named_twice_is_refused(tmp_path):
    header = HEADER.replace("@attribute count INTEGER", "@attribute colour INTEGER")
    folder = write_set(tmp_path, "samename", header, ["1,red,3,1,0"])
    with pytest.raises(ValueError, match="'colour'.*line 4.*line 5") as err:
        load_dataset("samename", str(tmp_path))
    assert str(folder / "samename.arff") in one_line(err)


# -- COCO and VOC image lists ------------------------------------------------------------


def coco_folder(root, images, categories, annotations):
    """``annotations/instances_train2014.json`` as given under ``root``, and a valid
    one-image ``instances_val2014.json``; returns the train file's path."""
    os.makedirs(root / "annotations")
    val = {
        "images": [{"id": 900, "file_name": "v.jpg"}],
        "categories": categories,
        "annotations": [{"id": 9, "image_id": 900, "category_id": categories[0]["id"]}],
    }
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(val))
    path = root / "annotations" / "instances_train2014.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


CATEGORIES = [{"id": 1, "name": "car"}, {"id": 2, "name": "truck"}]


def test_coco_duplicate_image_id_is_refused_not_given_the_later_file_name(tmp_path):
    images = [{"id": 7, "file_name": "a.jpg"}, {"id": 8, "file_name": "b.jpg"}, {"id": 7, "file_name": "c.jpg"}]
    annotations = [{"id": 1, "image_id": 7, "category_id": 1}, {"id": 2, "image_id": 8, "category_id": 2}]
    path = coco_folder(tmp_path, images, CATEGORIES, annotations)
    with pytest.raises(ValueError, match=re.escape(str(path))) as err:
        load_coco2014(str(tmp_path))
    assert "image id" in one_line(err) and "7" in str(err.value)


def test_coco_duplicate_category_id_is_refused_not_read_as_an_extra_column(tmp_path):
    categories = CATEGORIES + [{"id": 1, "name": "van"}]
    path = coco_folder(
        tmp_path, [{"id": 7, "file_name": "a.jpg"}], categories, [{"id": 1, "image_id": 7, "category_id": 1}]
    )
    with pytest.raises(ValueError, match=re.escape(str(path))) as err:
        load_coco2014(str(tmp_path))
    assert "category id" in one_line(err) and "1" in str(err.value)


def test_coco_file_named_by_two_image_ids_is_refused(tmp_path):
    images = [{"id": 7, "file_name": "a.jpg"}, {"id": 8, "file_name": "a.jpg"}]
    annotations = [{"id": 1, "image_id": 7, "category_id": 1}, {"id": 2, "image_id": 8, "category_id": 2}]
    path = coco_folder(tmp_path, images, CATEGORIES, annotations)
    with pytest.raises(ValueError, match=re.escape(str(path))) as err:
        load_coco2014(str(tmp_path))
    assert "a.jpg" in one_line(err)


def test_coco_category_named_twice_is_refused(tmp_path):
    categories = [{"id": 1, "name": "car"}, {"id": 3, "name": "car"}]
    path = coco_folder(
        tmp_path, [{"id": 7, "file_name": "a.jpg"}], categories, [{"id": 1, "image_id": 7, "category_id": 3}]
    )
    with pytest.raises(ValueError, match=re.escape(str(path))) as err:
        load_coco2014(str(tmp_path))
    assert "'car'" in one_line(err)


def voc_folder(root, splits):
    """ImageSets/Main/<split>.txt (text as given) and an annotation per id."""
    base = root / "VOC2007"
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "Annotations").mkdir()
    for split, text in splits.items():
        (base / "ImageSets" / "Main" / f"{split}.txt").write_bytes(text.encode("utf-8"))
        for image_id in text.replace("\ufeff", "").split():
            (base / "Annotations" / f"{image_id}.xml").write_text(
                "<annotation><object><name>car</name><difficult>0</difficult></object></annotation>"
            )
    return base


def test_voc_id_listed_twice_is_refused(tmp_path):
    base = voc_folder(tmp_path, {"trainval": "000005\n000007\n000005\n", "test": "000001\n"})
    with pytest.raises(ValueError, match=re.escape(str(base / "ImageSets" / "Main" / "trainval.txt"))) as err:
        load_voc2007(str(tmp_path))
    assert "000005" in one_line(err) and "lines 1 and 3" in str(err.value)


def test_voc_id_in_both_trainval_and_test_is_refused(tmp_path):
    voc_folder(tmp_path, {"trainval": "000005\n000007\n", "test": "000001\n000007\n"})
    with pytest.raises(ValueError, match="000007") as err:
        load_voc2007(str(tmp_path))
    assert "trainval.txt" in one_line(err) and "test.txt" in str(err.value)


def test_voc_split_list_with_a_utf8_bom_is_read(tmp_path):
    voc_folder(tmp_path, {"trainval": "\ufeff000005\n000007\n", "test": "\ufeff000001\n"})
    train, test = load_voc2007(str(tmp_path))
    assert [os.path.basename(p) for p in train.paths] == ["000005.jpg", "000007.jpg"]
    assert [os.path.basename(p) for p in test.paths] == ["000001.jpg"]
    assert train.labels[:, VOC_CLASSES.index("car")].tolist() == [1, 1]


# -- ARFF --------------------------------------------------------------------------------


def test_arff_empty_field_is_refused_not_read_as_zero(tmp_path):
    folder = write_set(tmp_path, "empty", HEADER, ["1,red,3,1,0", "2,green,,0,1"])
    with pytest.raises(ValueError, match="line 10.*'count'.*empty|'count'.*line 10.*empty") as err:
        load_dataset("empty", str(tmp_path))
    assert str(folder / "empty.arff") in one_line(err) and "?" in str(err.value)


def test_arff_empty_label_field_is_refused(tmp_path):
    write_set(tmp_path, "emptylabel", HEADER, ["1,red,3,,0"])
    with pytest.raises(ValueError, match="line 9.*'L1'.*empty|'L1'.*line 9.*empty"):
        load_dataset("emptylabel", str(tmp_path))


def test_arff_repeated_sparse_index_is_refused_not_last_value_kept(tmp_path):
    folder = write_set(tmp_path, "repeat", HEADER, ["{0 1,3 1}", "{0 2,3 1,0 5}"])
    with pytest.raises(ValueError, match="line 10.*index 0") as err:
        load_dataset("repeat", str(tmp_path))
    assert str(folder / "repeat.arff") in one_line(err)


def test_two_train_files_in_one_folder_are_refused_not_test_file_alone(tmp_path):
    folder = write_set(tmp_path, "pairs", HEADER, ["1,red,1,1,1"], arff_name="a-train.arff")
    (folder / "b-train.arff").write_text(HEADER + "2,red,1,1,1\n")
    (folder / "a-test.arff").write_text(HEADER + "3,green,2,0,0\n")
    with pytest.raises(ValueError, match=re.escape(str(folder))) as err:
        load_dataset("pairs", str(tmp_path))
    assert "a-train.arff" in one_line(err) and "b-train.arff" in str(err.value)


def test_train_file_without_its_test_file_is_refused(tmp_path):
    folder = write_set(tmp_path, "half", HEADER, ["1,red,1,1,1"], arff_name="half-train.arff")
    with pytest.raises(ValueError, match="half-train.arff.*half-test.arff") as err:
        load_dataset("half", str(tmp_path))
    assert str(folder) in one_line(err)


def test_train_and_test_files_of_different_sets_are_refused(tmp_path):
    folder = write_set(tmp_path, "mixed", HEADER, ["1,red,1,1,1"], arff_name="a-train.arff")
    (folder / "b-test.arff").write_text(HEADER + "3,green,2,0,0\n")
    with pytest.raises(ValueError, match="a-train.arff.*b-test.arff") as err:
        load_dataset("mixed", str(tmp_path))
    assert str(folder) in one_line(err)


def test_several_arff_files_without_a_pair_are_refused(tmp_path):
    folder = write_set(tmp_path, "many", HEADER, ["1,red,1,1,1"], arff_name="many.arff")
    (folder / "other.arff").write_text(HEADER + "2,red,1,1,1\n")
    with pytest.raises(ValueError, match="many.arff.*other.arff") as err:
        load_dataset("many", str(tmp_path))
    assert str(folder) in one_line(err)


LABELS_BY_NAME = HEADER.replace("@attribute L1 {0,1}", "@attribute L1 {yes,no}").replace(
    "@attribute 'label two' {1,0}", "@attribute 'label two' {TRUE, False}"
)


def test_label_declared_yes_no_or_true_false_is_read_by_name_not_by_position(tmp_path):
    rows = ["1,red,3,yes,False", "2,green,4,no,TRUE", "{0 5,3 no}"]
    write_set(tmp_path, "named", LABELS_BY_NAME, rows)
    x, y, names = load_dataset("named", str(tmp_path))
    # a sparse row that omits a label means its first category, as in Weka: yes / TRUE
    assert y.tolist() == [[1, 0], [0, 1], [0, 1]] and names == ["L1", "label two"]
    assert x.tolist() == [[1, 0, 3], [2, 2, 4], [5, 0, 0]]


def test_label_declared_with_one_named_category_is_read_by_name(tmp_path):
    header = HEADER.replace("@attribute L1 {0,1}", "@attribute L1 {1}")
    write_set(tmp_path, "single", header, ["1,red,3,1,0"])
    assert load_dataset("single", str(tmp_path))[1].tolist() == [[1, 0]]


@pytest.mark.parametrize("categories, value", [("{1,0,2}", "1"), ("{a,b}", "a"), ("{yes,0}", "yes")])
def test_label_with_categories_other_than_two_named_values_is_refused(tmp_path, categories, value):
    header = HEADER.replace("@attribute L1 {0,1}", f"@attribute L1 {categories}")
    folder = write_set(tmp_path, "odd", header, [f"1,red,3,{value},0"])
    with pytest.raises(ValueError, match=re.escape(str(folder / "odd.arff"))) as err:
        load_dataset("odd", str(tmp_path))
    assert "'L1'" in one_line(err) and "{0,1}" in str(err.value)


@pytest.mark.parametrize(
    "row, line, name",
    [("nan,red,3,1,0", 9, "it's numeric"), ("1,red,inf,1,0", 9, "count"), ("{2 -Infinity,3 1}", 9, "count")],
)
def test_arff_nan_or_inf_feature_is_refused_at_load(tmp_path, row, line, name):
    folder = write_set(tmp_path, "nonfinite", HEADER, [row])
    with pytest.raises(ValueError, match=re.escape(f"line {line}")) as err:
        load_dataset("nonfinite", str(tmp_path))
    assert str(folder / "nonfinite.arff") in one_line(err) and repr(name) in str(err.value)
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        read_arff(str(folder / "nonfinite.arff"))


def test_mat_nan_feature_is_refused_at_load(tmp_path):
    data = np.ones((4, 3))
    data[2, 1] = np.nan
    (tmp_path / "m").mkdir()
    scipy.io.savemat(tmp_path / "m" / "m.mat", {"data": data, "target": np.eye(4, 2)})
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "m" / "m.mat"))) as err:
        load_dataset("m", str(tmp_path))
    assert "column 1" in one_line(err) and "row 2" in str(err.value)


# -- clear reader errors -----------------------------------------------------------------


def test_bare_attribute_line_names_the_file_and_line(tmp_path):
    header = HEADER.replace("@attribute count INTEGER", "@attribute")
    folder = write_set(tmp_path, "bare", header, ["1,red,3,1,0"])
    with pytest.raises(ValueError, match="line 5") as err:
        load_dataset("bare", str(tmp_path))
    assert str(folder / "bare.arff") in one_line(err)


def test_malformed_mulan_xml_names_the_file(tmp_path):
    folder = write_set(tmp_path, "badxml", HEADER, ["1,red,3,1,0"])
    (folder / "badxml.xml").write_text('<labels><label name="L1"></label>')  # torn
    with pytest.raises(ValueError, match=re.escape(str(folder / "badxml.xml"))) as err:
        load_dataset("badxml", str(tmp_path))
    assert "line" in one_line(err)


def _features_file(tmp_path, **changes):
    rng = np.random.default_rng(0)
    arrays = {
        "train_features": rng.normal(size=(6, 8)).astype(np.float32),
        "train_labels": (rng.random((6, 3)) < 0.5).astype(np.float32),
        "test_features": rng.normal(size=(4, 8)).astype(np.float32),
        "test_labels": (rng.random((4, 3)) < 0.5).astype(np.float32),
        **changes,
    }
    path = str(tmp_path / "f.npz")
    np.savez(path, **arrays)
    return path


def test_features_file_whose_train_and_test_widths_differ_is_refused_at_load(tmp_path):
    path = _features_file(tmp_path, test_features=np.zeros((4, 7), np.float32))
    with pytest.raises(ValueError, match=re.escape(path)) as err:
        load_features(path)
    assert "(8,)" in one_line(err) and "(7,)" in str(err.value)


def test_features_file_with_nan_features_is_refused_at_load(tmp_path):
    train = np.zeros((6, 8), np.float32)
    train[3, 5] = np.nan
    path = _features_file(tmp_path, train_features=train)
    with pytest.raises(ValueError, match=re.escape(path)) as err:
        load_features(path)
    assert "train_features" in one_line(err) and "row 3" in str(err.value)


def test_features_file_with_the_wrong_number_of_label_names_is_refused(tmp_path):
    path = _features_file(tmp_path, label_names=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=re.escape(path)) as err:
        load_features(path)
    assert "label_names" in one_line(err)


def test_features_files_still_load(tmp_path):
    path = _features_file(tmp_path)
    train, test = load_features(path)
    assert train.x.shape == (6, 8) and test.x.shape == (4, 8) and train.label_names == ["label0", "label1", "label2"]
    assert torch.equal(train.labels, torch.as_tensor(np.load(path)["train_labels"]))
