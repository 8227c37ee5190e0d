"""Reading a MATLAB v5 ``.mat`` set (module notes of ``mulan``): ``data`` and ``target``
as matrices, label names from the folder's ARFF header where its XML lists them."""

from __future__ import annotations

import numpy as np

from .arff import attribute_names
from .mulan_folders import arff_files, xml_file
from .mulan_labels import label_names


def load_mat(path: str, base: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features (n, d) float64, labels (n, q) int64 0/1, label names) of the ``.mat``
    file ``path`` in set folder ``base``."""
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
    if not np.isfinite(features).all():
        row, column = np.argwhere(~np.isfinite(features))[0]
        raise ValueError(
            f"{path}: 'data' row {row}, column {column} is {float(features[row, column])}: features must be finite"
        )
    q = labels.shape[1]
    names = [f"label{j}" for j in range(q)]
    # rcv1subset1: the folder's ARFF holds the same label columns (checked: equal arrays),
    # so their names are the last q attributes of its header, if the XML lists them.
    try:
        arffs = arff_files(base)
        xml = xml_file(base, arffs[0]) if arffs else None
        header = attribute_names(arffs[0]) if xml else []
        if len(header) > q and set(header[-q:]) == set(label_names(xml)):
            names = header[-q:]
    except ValueError:  # names are a courtesy: a wrong ARFF or XML beside the .mat leaves label<j>
        pass
    return features, labels, names
