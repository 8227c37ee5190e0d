"""Reading the multi-label benchmark sets of the shared data folder.

Formats
-------
* MULAN: an ARFF file (dense rows or sparse ``{index value, ...}`` rows, plain or
  ``.arff.gz``) plus an XML file listing the label attributes, which are the LAST q
  attributes, returned in the file's order (the XML may list them in another order);
  labels the XML lists elsewhere than last are taken by name. A ``<x>-train.arff`` /
  ``<x>-test.arff`` pair is joined (train rows first).
* MATLAB v5 ``.mat`` with variables ``data`` (instances x features) and ``target``
  (instances x labels); stored the other way round (features x instances) they are
  transposed, sparse matrices are densified and -1/1 targets become 0/1. Label names
  come from the folder's ARFF header when its XML lists q labels, else ``label<j>``.

Set names
---------
A set is named by its folder in the data folder (``yeast``, ``Corel5k``, ...). A folder
that holds a ``.mat`` file is read from it: ``rcv1subset1`` gives the 6000 x 944 x 101
matrices of ``rcv1subset1_top944.mat`` (the paper's d = 944; its labels equal the ARFF's,
row for row) and raises ``FileNotFoundError`` if that file is missing rather than fall
back to other features. The same folder's gzipped ARFF (d = 500) is read under the name
``rcv1subset1-arff``: the suffix ``-arff`` reads the ARFF files of the folder named
before it.

Encoding
--------
Numeric attributes are read as float64; nominal attributes with the categories
{0, 1} as their value; other nominal attributes as the index of the category in the
declared list (Weka's encoding): birds' ``location`` {2,10,1,...} gives 0..11, flags'
``landmass`` {1..6} gives 0..5, genbase's {YES, NO} gives YES = 0, NO = 1. Missing
values ``?`` are 0, and so are the entries a sparse row omits (the first category of a
nominal attribute, as in Weka: 1 for an attribute declared ``{1,0}``). Attributes that
are identifiers, not features, are dropped (genbase's ``protein``, ``DROPPED_FEATURES``).

The data folder comes from an argument or the ``D2ACE_DATA_DIR`` environment variable;
a missing folder or file raises ``FileNotFoundError`` naming the path and what was
expected there.
"""
from __future__ import annotations

import glob
import os
import xml.etree.ElementTree as ElementTree

import numpy as np

# read_arff is imported from here by callers that predate the arff module.
from .arff import _header_and_rows, _Parsed, read_arff  # noqa: F401

DATA_DIR_ENV = "D2ACE_DATA_DIR"

# Name suffix that reads a folder's ARFF files even where it holds a .mat file.
ARFF_SUFFIX = "-arff"

# The files of the sets in the shared folder's README, named in error messages.
EXPECTED_FILES = {
    "cal500": ("cal500.arff", "cal500.xml"),
    "birds": ("birds-train.arff", "birds-test.arff", "birds.xml"),
    "enron": ("enron.arff", "enron.xml"),
    "scene": ("scene-train.arff", "scene-test.arff", "scene.xml"),
    "yeast": ("yeast.arff", "yeast.xml"),
    "Corel5k": ("Corel5k-sparse.arff", "Corel5k.xml"),
    "bibtex": ("bibtex.arff", "bibtex.xml"),
    "rcv1subset1": ("rcv1subset1_top944.mat",),
    "rcv1subset1-arff": ("rcv1subset1500.orig.arff.gz", "rcv1subset1500.xml"),
    "rcv1subset2": ("rcv1subset2500.orig.arff.gz", "rcv1subset2500.xml"),
    "rcv1subset3": ("rcv1subset3500.orig.arff.gz", "rcv1subset3500.xml"),
    "yahoo-Arts1": ("Arts1500.orig.arff.gz", "Arts1500.xml"),
    "yahoo-Business1": ("Business1500.orig.arff.gz", "Business1500.xml"),
    "emotions": ("emotions.arff", "emotions.xml"),
    "medical": ("medical.arff", "medical.xml"),
    "genbase": ("genbase.arff", "genbase.xml"),
    "flags": ("flags.arff", "flags.xml"),
}

# Attributes that are identifiers, not features: dropped by load_dataset (by folder).
DROPPED_FEATURES = {"genbase": ("protein",)}


def data_dir(path: str | None = None) -> str:
    """The MULAN data folder: ``path``, else ``$D2ACE_DATA_DIR``."""
    folder = path or os.environ.get(DATA_DIR_ENV)
    if not folder:
        raise FileNotFoundError(f"no data folder: pass one or set {DATA_DIR_ENV} (e.g. ../shared/data)")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"data folder {folder!r} does not exist (expected one folder per data set "
                                f"there, e.g. yeast/yeast.arff and yeast/yeast.xml)")
    return folder


def label_names(xml_path: str) -> list[str]:
    """Label names listed in a MULAN XML file."""
    root = ElementTree.parse(xml_path).getroot()
    return [el.attrib["name"] for el in root.iter() if el.tag.endswith("label") and "name" in el.attrib]


# ----------------------------------------------------------------------------- sets


def _expected(name: str) -> str:
    files = EXPECTED_FILES.get(name)
    if files:
        return ", ".join(files)
    return "<file>.arff (or .arff.gz, or a <file>-train.arff/<file>-test.arff pair) and <file>.xml, " \
           "or a .mat file with 'data' and 'target'"


def _arff_files(base: str) -> list[str]:
    pair = [sorted(glob.glob(os.path.join(base, f"*-{part}.arff"))) or
            sorted(glob.glob(os.path.join(base, f"*-{part}.arff.gz"))) for part in ("train", "test")]
    if len(pair[0]) == 1 and len(pair[1]) == 1:
        return pair[0] + pair[1]
    single = sorted(glob.glob(os.path.join(base, "*.arff"))) or sorted(glob.glob(os.path.join(base, "*.arff.gz")))
    return single[:1]


def _mat_files(base: str) -> list[str]:
    return sorted(glob.glob(os.path.join(base, "*.mat")))


def available_datasets(folder: str | None = None) -> list[str]:
    """Names ``load_dataset`` reads in the data folder: each sub-folder holding a ``.mat``
    file or an ARFF file with its XML label list; a folder with both also gives
    ``<folder>-arff`` for its ARFF version (e.g. ``rcv1subset1-arff``)."""
    root = data_dir(folder)
    names = []
    for entry in sorted(os.listdir(root), key=str.lower):
        base = os.path.join(root, entry)
        if not os.path.isdir(base):
            continue
        has_arff = bool(_arff_files(base)) and bool(glob.glob(os.path.join(base, "*.xml")))
        needs_mat = any(f.endswith(".mat") for f in EXPECTED_FILES.get(entry, ()))
        if needs_mat and not _mat_files(base):  # rcv1subset1 without its .mat: ARFF name only
            names += [entry + ARFF_SUFFIX] if has_arff else []
        elif _mat_files(base):
            names.append(entry)
            if has_arff:
                names.append(entry + ARFF_SUFFIX)
        elif has_arff:
            names.append(entry)
    return names


def _resolve(name: str, root: str) -> tuple[str, str, bool]:
    """(folder name, folder path, ARFF forced) of set ``name``."""
    base = os.path.join(root, name)
    if os.path.isdir(base):
        return name, base, False
    if name.endswith(ARFF_SUFFIX) and os.path.isdir(os.path.join(root, name[:-len(ARFF_SUFFIX)])):
        stem = name[:-len(ARFF_SUFFIX)]
        return stem, os.path.join(root, stem), True
    available = available_datasets(root)
    raise FileNotFoundError(
        f"no folder {base!r} for data set {name!r} (expected there: {_expected(name)}); "
        f"available sets in {root!r}: {', '.join(available) if available else 'none'}")


def _load_mat(path: str, base: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import scipy.io
    import scipy.sparse

    contents = scipy.io.loadmat(path)
    if "data" not in contents or "target" not in contents:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise ValueError(f"{path}: expected variables 'data' and 'target', found {found}")
    x, y = contents["data"], contents["target"]
    x = x.toarray() if scipy.sparse.issparse(x) else np.asarray(x)
    y = y.toarray() if scipy.sparse.issparse(y) else np.asarray(y)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"{path}: 'data' {x.shape} and 'target' {y.shape} must be matrices")
    if x.shape[0] != y.shape[0]:
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"{path}: 'data' {x.shape} and 'target' {y.shape} share no instance axis")
        x, y = x.T, y.T  # stored features x instances
    y = np.where(y == -1, 0, y) if np.isin(y, (-1, 1)).all() else y
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{path}: 'target' holds values other than 0/1")
    features = np.ascontiguousarray(x, dtype=np.float64)
    labels = np.ascontiguousarray(y, dtype=np.int64)
    q = labels.shape[1]
    names = [f"label{j}" for j in range(q)]
    # rcv1subset1: the folder's ARFF holds the same label columns (checked: equal arrays),
    # so their names are the last q attributes of its header, if the XML lists them.
    arffs, xmls = _arff_files(base), glob.glob(os.path.join(base, "*.xml"))
    if arffs and len(xmls) == 1:
        header = [c.name for c in _header_and_rows(arffs[0], header_only=True)[0]]
        if len(header) > q and set(header[-q:]) == set(label_names(xmls[0])):
            names = header[-q:]
    return features, labels, names


def _load_arff(name: str, base: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    files = _arff_files(base)
    xmls = sorted(glob.glob(os.path.join(base, "*.xml")))
    if not files or not xmls:
        missing = "ARFF file" if not files else "XML label list"
        raise FileNotFoundError(f"{base!r} holds no {missing}: expected {_expected(name)} there "
                                f"(found: {', '.join(sorted(os.listdir(base))) or 'nothing'})")
    if len(xmls) > 1:  # the XML named like the ARFF file
        stem = os.path.basename(files[0]).split(".")[0].split("-")[0]
        xmls = [x for x in xmls if os.path.basename(x).startswith(stem)] or xmls
    labels_listed = label_names(xmls[0])
    q = len(labels_listed)
    parts = [_Parsed(path) for path in files]
    names = parts[0].names
    for path, part in zip(files[1:], parts[1:]):
        if part.names != names:
            raise ValueError(f"{path}: attributes differ from those of {files[0]}")
    if q == 0 or q >= len(names):
        raise ValueError(f"{xmls[0]}: lists {q} labels for {len(names)} attributes")
    position = {n: j for j, n in enumerate(names)}
    # The last q attributes, in the file's order (the XML may list them in another order,
    # as enron's and yeast's do); listed labels found elsewhere are taken by name.
    label_cols = list(range(len(names) - q, len(names)))
    if set(names[-q:]) != set(labels_listed) and all(n in position for n in labels_listed):
        label_cols = sorted(position[n] for n in labels_listed)
    dropped = set(DROPPED_FEATURES.get(os.path.basename(base), ()))
    taken = set(label_cols)
    feature_cols = [j for j, n in enumerate(names) if j not in taken and n not in dropped]
    if len(parts) == 1:
        features, label_block = parts[0].take(feature_cols), parts[0].take(label_cols)
    else:
        features = np.vstack([part.take(feature_cols) for part in parts])
        label_block = np.vstack([part.take(label_cols) for part in parts])
    if not np.isin(label_block, (0.0, 1.0)).all():
        raise ValueError(f"{files[0]}: label attributes hold values other than 0/1")
    return features, label_block.astype(np.int64), [names[j] for j in label_cols]


def load_dataset(name: str, folder: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features (n, d) float64, labels (n, q) int64 0/1, label names) of set ``name``.

    ``name`` is a folder of the data folder (``folder``, else ``$D2ACE_DATA_DIR``); see
    the module notes for the formats, ``rcv1subset1`` (.mat, d = 944) against
    ``rcv1subset1-arff`` (d = 500) and the encoding. A missing folder or file raises
    ``FileNotFoundError`` naming the path and the files expected; an unknown name lists
    the available sets.
    """
    root = data_dir(folder)
    _, base, force_arff = _resolve(name, root)
    mats = [] if force_arff else _mat_files(base)
    wanted = [f for f in EXPECTED_FILES.get(name, ()) if f.endswith(".mat")]
    if wanted and not force_arff:  # rcv1subset1: the .mat or nothing, never the 500-feature ARFF
        path = os.path.join(base, wanted[0])
        if not os.path.isfile(path):
            other = f"; its ARFF version (other features) is {name + ARFF_SUFFIX!r}" if _arff_files(base) else ""
            raise FileNotFoundError(f"no file {path!r}: data set {name!r} is read from {wanted[0]} "
                                    f"(variables 'data' and 'target'){other}")
        mats = [path]
    if mats:
        return _load_mat(mats[0], base)
    return _load_arff(name, base)


def load_mulan(name: str, folder: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, d) float64, labels (n, q) int64) of set ``name``: ``load_dataset``
    without the label names (so ``rcv1subset1`` is the .mat set with d = 944, and
    genbase has d = 1185 without its ``protein`` ID)."""
    features, labels, _ = load_dataset(name, folder)
    return features, labels
