"""Files with one row per label (word embeddings, co-occurrence counts), matched to a data
set's labels by name.

A row means nothing until its label is known, and a shape check cannot tell: ML-GCN ships
its GloVe vectors and counts for MS-COCO as bare (80, 300) and (80, 80) arrays in *its*
label order (classes sorted by name: person is row 49), while the MS-COCO reader here
numbers the labels by category id (person is 0), as HST's files do. A file in the other
order has the right shape and trains without any error, every label on another's vector.
So each file is matched to the data set's ``label_names`` (the model's ``label_names``,
which the image protocol passes) in one of three ways:

* the file names its rows (a ``label_names`` entry, below): rows are reordered to the
  data set's order; a name missing on either side, or listed twice, is refused;
* ``label_order="alphabetical"``: the rows are the data set's labels sorted by name
  (Python string order), as ML-GCN's ``*_glove_word2vec.pkl`` and ``*_adj.pkl`` are;
  ``label_order="dataset"``: the rows are in the data set's own order;
* neither: accepted only when the two orders coincide (the data set's names are sorted
  already: VOC2007's classes, the digits, an unnamed features file's columns); otherwise
  refused with a message saying how to establish the order.

A model built without ``label_names`` (direct use, no data set) takes rows as they come.

Formats. Embeddings (q, d): ``.npy``; ``.npz`` with one array, or ``embeddings`` and
``label_names``; ``.pt`` with a tensor, or a dict {"embeddings", "label_names"}; any
other name is read as a pickle (as ML-GCN ships GloVe) of an array or such a dict.
Co-occurrence counts: a dict (pickle, ``.pt`` or ``.npz``) with ``adj`` (q, q) pair counts
n_ij and ``nums`` (q,) label counts n_i, ML-GCN's layout, and optionally ``label_names``.
Pickles run code when loaded: pass only files you trust.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

LABEL_ORDERS = ("dataset", "alphabetical")


def _read(path: str, what: str):
    """The file's content: an array, or a dict of arrays / name lists."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                data = {k: archive[k] for k in archive.files}
            return next(iter(data.values())) if len(data) == 1 else data
        if path.endswith(".pt"):
            return torch.load(path, map_location="cpu", weights_only=True)
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except Exception as exc:  # a torn or foreign file: say which one
        raise ValueError(f"cannot read {what} file {path}: {exc}") from exc


def _names(data, path: str, what: str) -> list[str] | None:
    if not isinstance(data, dict) or "label_names" not in data:
        return None
    names = [str(n) for n in np.asarray(data["label_names"]).reshape(-1).tolist()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{what} file {path} lists label name(s) {', '.join(twice[:5])} more than once")
    return names


def row_order(
    file_names: list[str] | None, label_names: list[str] | None, label_order: str | None, path: str, what: str
) -> torch.Tensor:
    """index (q,) with ``rows[index]`` in the data set's label order (module notes), or a
    ValueError naming the file and how to establish its order."""
    q = len(label_names) if label_names is not None else len(file_names or [])
    if label_order is not None and label_order not in LABEL_ORDERS:
        raise ValueError(f"label_order must be one of {', '.join(LABEL_ORDERS)}, got {label_order!r}")
    if label_names is None:  # no data set to match: rows as they come
        return None
    if file_names is not None:
        missing = [n for n in label_names if n not in file_names]
        extra = [n for n in file_names if n not in set(label_names)]
        if missing or extra:
            raise ValueError(
                f"{what} file {path} names other labels than the data set: missing "
                f"{missing[:5] or 'none'}, not in the data set {extra[:5] or 'none'}"
            )
        where = {n: k for k, n in enumerate(file_names)}
        return torch.tensor([where[n] for n in label_names])
    if label_order == "alphabetical":
        where = {n: k for k, n in enumerate(sorted(label_names))}
        return torch.tensor([where[n] for n in label_names])
    if label_order == "dataset" or list(label_names) == sorted(label_names):
        return torch.arange(q)
    shown = ", ".join(label_names[:3])
    raise ValueError(
        f"{what} file {path} does not name its rows, and this data set's label order ({shown}, ...) "
        f"is not alphabetical, so the rows cannot be matched to labels: save the file with its "
        f"label_names, or pass label_order=alphabetical (ML-GCN's files) or label_order=dataset "
        f"(rows already in this data set's order)"
    )


def label_embeddings(
    path: str | None, num_labels: int, label_names: list[str] | None = None, label_order: str | None = None
) -> torch.Tensor:
    """(q, d_w) label word embeddings from ``path`` in the data set's label order, or the
    identity (q, q) when ``path`` is None: the one-hot fallback without word vectors."""
    if path is None:
        return torch.eye(num_labels)
    data = _read(path, "label embedding")
    names = _names(data, path, "label embedding")
    if isinstance(data, dict):
        if "embeddings" not in data:
            raise ValueError(f"label embedding file {path} holds a dict without 'embeddings' (keys: {sorted(data)})")
        data = data["embeddings"]
    emb = torch.as_tensor(np.asarray(data), dtype=torch.float32)
    rows = len(names) if names is not None else emb.shape[0]
    if emb.dim() != 2 or emb.shape[0] != num_labels or rows != num_labels:
        raise ValueError(
            f"label embeddings in {path} must be ({num_labels}, d), got {tuple(emb.shape)}"
            + (f" with {len(names)} label_names" if names is not None else "")
        )
    order = row_order(names, label_names, label_order, path, "label embedding")
    return emb if order is None else emb[order]


def label_count_file(
    path: str, num_labels: int, label_names: list[str] | None = None, label_order: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pair counts (q, q) float64, zero diagonal; label counts (q,) float64) from an
    ML-GCN-layout counts file, in the data set's label order."""
    data = _read(path, "label graph")
    if not isinstance(data, dict) or "adj" not in data or "nums" not in data:
        raise ValueError(
            f"label graph file {path} must hold a dict with 'adj' (q, q) pair counts and 'nums' (q,) "
            "label counts (ML-GCN's *_adj.pkl layout)"
        )
    pairs = torch.as_tensor(np.asarray(data["adj"]), dtype=torch.float64)
    nums = torch.as_tensor(np.asarray(data["nums"]), dtype=torch.float64).reshape(-1)
    names = _names(data, path, "label graph")
    if pairs.shape != (num_labels, num_labels) or nums.shape != (num_labels,) or (names and len(names) != num_labels):
        raise ValueError(
            f"label graph file {path}: 'adj' {tuple(pairs.shape)} and 'nums' {tuple(nums.shape)} must be "
            f"({num_labels}, {num_labels}) and ({num_labels},)"
        )
    if not bool(torch.isfinite(pairs).all() and (pairs >= 0).all() and (nums >= 0).all()):
        raise ValueError(f"label graph file {path}: counts must be finite and >= 0")
    order = row_order(names, label_names, label_order, path, "label graph")
    if order is not None:
        pairs, nums = pairs[order][:, order], nums[order]
    return pairs.clone().fill_diagonal_(0.0), nums
