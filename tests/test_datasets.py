"""Reading the data sets: the real sets of the shared folder against its README table, the
ARFF/.mat format cases on small files written here, and the errors."""

import os
import re

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from d2ace_ext.datasets.mulan import available_datasets, load_dataset, load_mulan, read_arff

from support.mulan_files import HEADER, write_set

# The README table of the shared folder: n, d, q, label cardinality.
README = {
    "cal500": (502, 68, 174, 26.04),
    "birds": (645, 260, 19, 1.01),
    "enron": (1702, 1001, 53, 3.38),
    "scene": (2407, 294, 6, 1.07),
    "yeast": (2417, 103, 14, 4.24),
    "Corel5k": (5000, 499, 374, 3.52),
    "bibtex": (7395, 1836, 159, 2.40),
    "rcv1subset1": (6000, 944, 101, 2.88),  # the .mat, the paper's d = 944
    "rcv1subset1-arff": (6000, 500, 101, 2.88),  # the gzipped ARFF of the same folder
    "rcv1subset2": (6000, 500, 101, 2.63),
    "rcv1subset3": (6000, 500, 101, 2.61),
    "yahoo-Arts1": (7484, 500, 26, 1.65),
    "yahoo-Business1": (11214, 500, 30, 1.60),
    "emotions": (593, 72, 6, 1.87),
    "medical": (978, 1449, 45, 1.25),
    "genbase": (662, 1185, 27, 1.25),  # 1186 attributes less the `protein` ID
    "flags": (194, 19, 7, 3.39),
}


def need(data_dir, name):
    folder = os.path.join(data_dir, name.replace("-arff", ""))
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} absent from the data folder")


@pytest.mark.parametrize("name", sorted(README, key=str.lower))
def test_real_sets_match_the_readme_table(data_dir, name):
    need(data_dir, name)
    x, y, names = load_dataset(name, data_dir)
    n, d, q, cardinality = README[name]
    assert (x.shape[0], x.shape[1], y.shape[1]) == (n, d, q)
    assert x.dtype == np.float64 and y.dtype == np.int64 and x.flags.c_contiguous
    assert set(np.unique(y).tolist()) <= {0, 1}
    assert np.isfinite(x).all()
    assert len(names) == q and len(set(names)) == q
    assert float(y.sum(1).mean()) == pytest.approx(cardinality, abs=0.006)


def test_rcv1subset1_mat_has_the_arff_labels(data_dir):
    need(data_dir, "rcv1subset1")
    x, y, names = load_dataset("rcv1subset1", data_dir)
    x_arff, y_arff, names_arff = load_dataset("rcv1subset1-arff", data_dir)
    assert np.array_equal(y, y_arff) and names == names_arff
    assert set(np.unique(x).tolist()) == {0.0, 1.0}  # binary word features


def test_nominal_features_and_dropped_id(data_dir):
    need(data_dir, "birds")
    x, _, names = load_dataset("birds", data_dir)
    location = x[:, 259]  # `location` {2,10,1,7,...}: the category's index in that list
    assert set(np.unique(location).tolist()) <= set(range(12)) and location.max() > 1
    assert names[0] == "Brown Creeper" and "Swainson's Thrush" in names
    need(data_dir, "genbase")
    x, _, _ = load_dataset("genbase", data_dir)
    assert set(np.unique(x).tolist()) == {0.0, 1.0}  # YES/NO, no protein ID index left


def test_available_sets_and_load_mulan(data_dir):
    names = available_datasets(data_dir)
    present = [n for n in README if os.path.isdir(os.path.join(data_dir, n.replace("-arff", "")))]
    assert set(present) <= set(names)
    assert names == sorted(names, key=str.lower)
    x, y = load_mulan("emotions", data_dir)
    x2, y2, _ = load_dataset("emotions", data_dir)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


# ----------------------------------------------------------------------------- small files


def test_dense_sparse_gz_nominal_and_missing_values(tmp_path):
    rows = ["1.5,red,3,1,0", "-2,'dark blue',?,0,1", "", "% skipped", "{0 4,1 green,4 1}", "{}"]
    write_set(tmp_path, "tiny", HEADER, rows)
    write_set(tmp_path, "tinygz", HEADER, rows, gz=True)
    for name in ("tiny", "tinygz"):
        x, y, names = load_dataset(name, str(tmp_path))
        np.testing.assert_array_equal(x, [[1.5, 0, 3], [-2, 1, 0], [4, 2, 0], [0, 0, 0]])
        # a sparse row omitting a nominal attribute means its first category: 1 for {1,0}
        np.testing.assert_array_equal(y, [[1, 0], [0, 1], [0, 1], [0, 1]])
        assert names == ["L1", "label two"]
    attributes, data = read_arff(str(tmp_path / "tiny" / "tiny.arff"))
    assert attributes[0] == "it's numeric" and data.shape == (4, 5)


def test_train_test_pair_is_joined_and_labels_found_by_name(tmp_path):
    folder = write_set(tmp_path, "pair", HEADER, ["1,red,1,1,1"], arff_name="pair-train.arff")
    (folder / "pair-test.arff").write_text(HEADER + "2,green,2,0,0\n3,red,3,1,0\n")
    x, y, _ = load_dataset("pair", str(tmp_path))
    assert x[:, 0].tolist() == [1, 2, 3] and y.tolist() == [[1, 1], [0, 0], [1, 0]]
    # labels listed in the XML but not last: taken by name, in the file's order
    write_set(tmp_path, "inner", HEADER, ["1,red,5,1,0"], labels=("label two", "it's numeric"))
    x, y, names = load_dataset("inner", str(tmp_path))
    assert names == ["it's numeric", "label two"] and x.tolist() == [[0, 5, 1]] and y.tolist() == [[1, 0]]


def test_mat_files_are_oriented_densified_and_made_0_1(tmp_path):
    rng = np.random.default_rng(0)
    data = (rng.random((7, 5)) < 0.5).astype(float)
    target = (rng.random((7, 3)) < 0.5).astype(int)
    (tmp_path / "m").mkdir()
    scipy.io.savemat(tmp_path / "m" / "m.mat", {"data": scipy.sparse.csc_matrix(data.T), "target": 2 * target.T - 1})
    x, y, names = load_dataset("m", str(tmp_path))
    np.testing.assert_array_equal(x, data)
    np.testing.assert_array_equal(y, target)
    assert names == ["label0", "label1", "label2"]


def test_malformed_arff_raises_value_error(tmp_path):
    write_set(tmp_path, "short", HEADER, ["1,red,1,1"])
    with pytest.raises(ValueError, match="row 0 has 4 values"):
        load_dataset("short", str(tmp_path))
    write_set(tmp_path, "badlabel", HEADER, ["1,red,1,2,0"])
    with pytest.raises(ValueError, match="'L1'"):
        load_dataset("badlabel", str(tmp_path))
    write_set(tmp_path, "badcat", HEADER, ["1,blue,1,1,0"])
    with pytest.raises(ValueError, match="colour"):
        load_dataset("badcat", str(tmp_path))


# ----------------------------------------------------------------------------- errors


def test_unknown_set_names_the_path_and_lists_the_available_sets(tmp_path):
    write_set(tmp_path, "tiny", HEADER, ["1,red,1,1,0"])
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nothere"))) as err:
        load_dataset("nothere", str(tmp_path))
    assert "available sets" in str(err.value) and "tiny" in str(err.value) and ".xml" in str(err.value)
    assert available_datasets(str(tmp_path)) == ["tiny"]


def test_missing_files_name_the_folder_and_the_expected_files(tmp_path):
    (tmp_path / "yeast").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "yeast"))) as err:
        load_dataset("yeast", str(tmp_path))
    assert "yeast.arff" in str(err.value) and "yeast.xml" in str(err.value)
    (tmp_path / "rcv1subset1").mkdir()
    with pytest.raises(FileNotFoundError, match="rcv1subset1_top944.mat"):
        load_dataset("rcv1subset1", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "absent"))):
        load_dataset("yeast", str(tmp_path / "absent"))
