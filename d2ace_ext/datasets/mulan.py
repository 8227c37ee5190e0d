"""Reading the multi-label benchmark sets of the shared data folder.

Formats
-------
* MULAN: an ARFF file (dense rows or sparse ``{index value, ...}`` rows, plain or
  ``.arff.gz``) plus an XML file listing the label attributes by name (in the shared
  sets, the LAST q attributes), returned in the file's order (the XML may list them in
  another order). A listed name that is no attribute of the ARFF, or a name listed
  twice, is refused: labels are never guessed by position. A ``<x>-train.arff`` /
  ``<x>-test.arff`` pair is joined (train rows first); a folder whose ARFF files leave
  the choice open (two train files, a train file without its test file, two ARFF
  files) is refused. docs/inputs.md lists every refusal.
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
nominal attribute, as in Weka: 1 for an attribute declared ``{1,0}``). Label attributes
are read by category name, not position: ``{0,1}`` in any order, ``{no,yes}`` and
``{false,true}`` (any case) give 0/1; other categories are refused. Attributes that
are identifiers, not features, are dropped (genbase's ``protein``, ``DROPPED_FEATURES``).
nan and inf features are refused (ARFF and .mat), naming the file and column.

The data folder comes from an argument or the ``D2ACE_DATA_DIR`` environment variable;
a missing folder or file raises ``FileNotFoundError`` naming the path and what was
expected there.
"""

from __future__ import annotations

import os

import numpy as np

# read_arff is imported from here by callers that predate the arff module.
from .arff import _Parsed, attribute_names, read_arff  # noqa: F401
from .mulan_folders import (  # noqa: F401
    ARFF_SUFFIX,
    DATA_DIR_ENV,
    EXPECTED_FILES,
    arff_files,
    available_datasets,
    data_dir,
    expected_files,
    has_arff,
    mat_files,
    resolve,
    xml_file,
)
from .mulan_labels import label_columns, label_names
from .mulan_mat import load_mat

# Attributes that are identifiers, not features: dropped by load_dataset (by folder).
DROPPED_FEATURES = {"genbase": ("protein",)}


def _load_arff(name: str, base: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features (n, d) float64, labels (n, q) int64 0/1, label names) of the ARFF
    file(s) and XML label list of set folder ``base`` (a train / test pair joined)."""
    files = arff_files(base)
    xml = xml_file(base, files[0]) if files else None
    if not files or not xml:
        missing = "ARFF file" if not files else "XML label list"
        raise FileNotFoundError(
            f"{base!r} holds no {missing}: expected {expected_files(name)} there "
            f"(found: {', '.join(sorted(os.listdir(base))) or 'nothing'})"
        )
    labels_listed = label_names(xml)
    parts = [_Parsed(path, labels=frozenset(labels_listed)) for path in files]
    names = parts[0].names
    for path, part in zip(files[1:], parts[1:]):
        if part.names != names:
            raise ValueError(f"{path}: attributes differ from those of {files[0]}")
    label_cols = label_columns(names, labels_listed, files[0], xml)
    dropped = set(DROPPED_FEATURES.get(os.path.basename(base), ()))
    taken = set(label_cols)
    feature_cols = [j for j, n in enumerate(names) if j not in taken and n not in dropped]
    label_blocks = [part.take(label_cols) for part in parts]
    for path, block in zip(files, label_blocks):  # a numeric label attribute can hold anything
        outside = ~np.isin(block, (0.0, 1.0))
        if outside.any():
            column = label_cols[int(np.argmax(outside.any(0)))]
            raise ValueError(f"{path}: label attribute {names[column]!r} holds values other than 0/1")
    if len(parts) == 1:
        features, label_block = parts[0].take(feature_cols), label_blocks[0]
    else:
        features = np.vstack([part.take(feature_cols) for part in parts])
        label_block = np.vstack(label_blocks)
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
    _, base, force_arff = resolve(name, root)
    mats = [] if force_arff else mat_files(base)
    wanted = [f for f in EXPECTED_FILES.get(name, ()) if f.endswith(".mat")]
    if wanted and not force_arff:  # rcv1subset1: the .mat or nothing, never the 500-feature ARFF
        path = os.path.join(base, wanted[0])
        if not os.path.isfile(path):
            other = f"; its ARFF version (other features) is {name + ARFF_SUFFIX!r}" if has_arff(base) else ""
            raise FileNotFoundError(
                f"no file {path!r}: data set {name!r} is read from {wanted[0]} (variables 'data' and 'target'){other}"
            )
        mats = [path]
    if mats:
        return load_mat(mats[0], base)
    return _load_arff(name, base)


def load_mulan(name: str, folder: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, d) float64, labels (n, q) int64) of set ``name``: ``load_dataset``
    without the label names (so ``rcv1subset1`` is the .mat set with d = 944, and
    genbase has d = 1185 without its ``protein`` ID)."""
    features, labels, _ = load_dataset(name, folder)
    return features, labels
