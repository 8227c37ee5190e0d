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
import gzip
import os
import xml.etree.ElementTree as ElementTree

import numpy as np

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

_NUMERIC_TYPES = ("numeric", "real", "integer")


def data_dir(path: str | None = None) -> str:
    """The MULAN data folder: ``path``, else ``$D2ACE_DATA_DIR``."""
    folder = path or os.environ.get(DATA_DIR_ENV)
    if not folder:
        raise FileNotFoundError(f"no data folder: pass one or set {DATA_DIR_ENV} (e.g. ../shared/data)")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"data folder {folder!r} does not exist (expected one folder per data set "
                                f"there, e.g. yeast/yeast.arff and yeast/yeast.xml)")
    return folder


def _open(path: str):
    return gzip.open(path, "rt", encoding="utf-8", errors="replace") if path.endswith(".gz") else open(
        path, encoding="utf-8", errors="replace")


# ----------------------------------------------------------------------------- ARFF


def _split_quoted(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside quotes; quotes removed, ``\\`` escapes resolved."""
    out, cur, quote, i = [], [], None, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = None
            else:
                cur.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch == sep:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur).strip())
    return out


def _attribute(line: str) -> tuple[str, list[str] | None]:
    """(name, nominal categories or None for numeric) of an ``@attribute`` line."""
    body = line.split(None, 1)[1].strip()
    if body[:1] in ("'", '"'):
        quote, i, name = body[0], 1, []
        while i < len(body) and body[i] != quote:
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            name.append(body[i])
            i += 1
        name, kind = "".join(name), body[i + 1:].strip()
    else:
        name, kind = (body.split(None, 1) + [""])[:2]
    if kind.startswith("{"):
        return name, [v for v in _split_quoted(kind.strip()[1:-1]) if v != ""]
    if kind and kind.split(None, 1)[0].lower() in _NUMERIC_TYPES:
        return name, None
    raise ValueError(f"attribute {name!r}: type {kind!r} is not supported (numeric or nominal only)")


def _value(text: str, nominal: list[str] | None) -> float:
    """One ARFF value (slow path; the reader converts whole columns at once)."""
    text = text.strip().strip("'\"")
    if text in ("?", ""):
        return 0.0
    if nominal is not None:
        if text in nominal:
            return float(int(text)) if sorted(nominal) == ["0", "1"] else float(nominal.index(text))
        raise ValueError(f"value {text!r} is not one of the categories {nominal[:10]}")
    return float(text)


class _Column:
    """How one attribute's text values become numbers."""

    def __init__(self, name: str, nominal: list[str] | None):
        self.name = name
        self.nominal = nominal
        self.binary = nominal is not None and sorted(nominal) == ["0", "1"]
        self.direct = nominal is None or self.binary  # float(text) gives the value
        self.lookup = None if self.direct else {c: float(i) for i, c in enumerate(nominal)}
        # what a sparse row that omits the attribute means: its first category (Weka)
        self.omitted = float(nominal[0]) if self.binary else 0.0

    def convert(self, tokens: list[str], where: str) -> np.ndarray:
        try:
            if self.direct:
                values = np.fromiter(map(float, tokens), np.float64, len(tokens))
            else:
                values = np.fromiter(map(self.lookup.__getitem__, map(str.strip, tokens)), np.float64,
                                     len(tokens))
        except (ValueError, KeyError):  # padding, quotes, '?' or a bad value: one at a time
            try:
                values = np.array([_value(t, self.nominal) for t in tokens], dtype=np.float64)
            except ValueError as err:
                raise ValueError(f"{where}: attribute {self.name!r}: {err}") from None
        if self.binary and not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(f"{where}: attribute {self.name!r} holds values other than 0/1")
        return values


def _header_and_rows(path: str, header_only: bool = False) -> tuple[list[_Column], list[str]]:
    columns: list[_Column] = []
    with _open(path) as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line[0] == "%":
                continue
            head = line[:10].lower()
            if head.startswith("@attribute"):
                try:
                    columns.append(_Column(*_attribute(line)))
                except ValueError as err:
                    raise ValueError(f"{path}: {err}") from None
            elif head.startswith("@data"):
                if header_only:
                    return columns, []
                rows = [line for line in (raw.strip() for raw in handle) if line and line[0] != "%"]
                return columns, rows
    raise ValueError(f"{path}: no @data section")


def _dense(rows: list[str], columns: list[_Column], path: str) -> np.ndarray:
    m = len(columns)
    if any("'" in row or '"' in row for row in rows):
        tokens = [t for row in rows for t in _split_quoted(row)]
    else:
        tokens = ",".join(rows).split(",")
    if len(tokens) != len(rows) * m:
        for k, row in enumerate(rows):
            if len(_split_quoted(row)) != m:
                raise ValueError(f"{path}: data row {k} has {len(_split_quoted(row))} values, "
                                 f"the header declares {m} attributes")
    out = np.empty((len(rows), m))
    if all(c.direct for c in columns):
        try:
            out[:] = np.fromiter(map(float, tokens), np.float64, len(tokens)).reshape(len(rows), m)
            bad = [j for j, c in enumerate(columns) if c.binary and not np.isin(out[:, j], (0.0, 1.0)).all()]
            if not bad:
                return out
        except ValueError:
            pass  # column by column below, which names the attribute at fault
    for j, column in enumerate(columns):
        out[:, j] = column.convert(tokens[j::m], path)
    return out


def _sparse(rows: list[str], columns: list[_Column], path: str,
            which: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, attribute, value) of the entries of the sparse rows ``rows``, which are the
    rows ``which`` of the file."""
    m = len(columns)
    bodies = []
    for row in rows:
        if not row.endswith("}"):
            raise ValueError(f"{path}: sparse row {row[:60]!r} does not end with '}}'")
        bodies.append(row[1:-1].strip())
    counts = np.array([b.count(",") + 1 if b else 0 for b in bodies], dtype=np.int64)
    joined = ",".join(b for b in bodies if b)
    quoted = "'" in joined or '"' in joined
    pairs = [] if quoted else joined.replace(",", " ").split()
    if quoted or len(pairs) != 2 * int(counts.sum()):
        items = [item for b in bodies if b for item in _split_quoted(b)]
        split = [item.split(None, 1) for item in items]
        if any(len(s) != 2 for s in split):
            raise ValueError(f"{path}: a sparse entry is not 'index value'")
        keys_text, vals = [s[0] for s in split], [s[1].strip().strip("'\"") for s in split]
    else:
        keys_text, vals = pairs[0::2], pairs[1::2]
    try:
        keys = np.fromiter(map(int, keys_text), np.int64, len(keys_text))
    except ValueError:
        raise ValueError(f"{path}: a sparse entry's index is not an integer") from None
    if keys.size and (keys.min() < 0 or keys.max() >= m):
        raise ValueError(f"{path}: sparse index {int(keys.max())} outside the {m} attributes")
    row_of = np.repeat(np.asarray(which, dtype=np.int64), counts)
    if all(c.direct for c in columns):
        values = _direct_values(vals, columns, keys, path)
    else:
        values = np.empty(len(vals))
        order = np.argsort(keys, kind="stable")
        starts = np.searchsorted(keys[order], np.arange(m + 1))
        for j in np.unique(keys):
            idx = order[starts[j]:starts[j + 1]]
            values[idx] = columns[j].convert([vals[i] for i in idx], path)
    return row_of, keys, values


def _direct_values(vals: list[str], columns: list[_Column], keys: np.ndarray, path: str) -> np.ndarray:
    try:
        values = np.fromiter(map(float, vals), np.float64, len(vals))
    except ValueError:
        values = np.array([_value(v, None) for v in vals], dtype=np.float64)
    binary = np.array([c.binary for c in columns])
    bad = binary[keys] & ~np.isin(values, (0.0, 1.0))
    if bad.any():
        name = columns[int(keys[np.argmax(bad)])].name
        raise ValueError(f"{path}: attribute {name!r} holds values other than 0/1")
    return values


class _Parsed:
    """One ARFF file's values: a block of dense rows and (row, attribute, value) entries
    of sparse rows, so that chosen columns are built without the full matrix."""

    def __init__(self, path: str):
        self.columns, rows = _header_and_rows(path)
        self.n = len(rows)
        sparse = [k for k, row in enumerate(rows) if row[0] == "{"]
        self.sparse_rows = sparse
        self.dense_rows = [k for k, row in enumerate(rows) if row[0] != "{"] if sparse else None
        dense = [rows[k] for k in self.dense_rows] if sparse else rows
        self.dense = _dense(dense, self.columns, path) if dense or not sparse else None
        self.entries = _sparse([rows[k] for k in sparse], self.columns, path, sparse) if sparse else None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def take(self, cols: list[int]) -> np.ndarray:
        """The columns ``cols`` (n, len(cols)) float64, C-contiguous."""
        if self.entries is None:
            first = cols[0] if cols else 0
            if cols == list(range(first, first + len(cols))):
                return np.ascontiguousarray(self.dense[:, first:first + len(cols)])
            return self.dense[:, cols]
        out = np.zeros((self.n, len(cols)))
        omitted = np.array([self.columns[c].omitted for c in cols])
        if omitted.any():  # a {1,0} attribute: omitted means 1
            out[np.ix_(self.sparse_rows, np.flatnonzero(omitted))] = omitted[omitted != 0]
        if self.dense_rows:
            out[self.dense_rows] = self.dense[:, cols]
        position = np.full(len(self.columns), -1, dtype=np.int64)
        position[cols] = np.arange(len(cols))
        row_of, keys, values = self.entries
        target = position[keys]
        kept = target >= 0
        out[row_of[kept], target[kept]] = values[kept]
        return out


def read_arff(path: str) -> tuple[list[str], np.ndarray]:
    """(attribute names, data (rows, attributes) float64) of one ARFF file."""
    parsed = _Parsed(path)
    return parsed.names, parsed.take(list(range(len(parsed.columns))))


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
