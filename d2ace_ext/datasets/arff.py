"""Reading ARFF files: dense rows and sparse ``{index value, ...}`` rows, plain or
``.arff.gz``, numeric and nominal attributes, quoted names and values.

Numeric attributes are read as float64; nominal attributes with the categories {0, 1}
as their value, other nominal attributes as the index of the category in the declared
list (Weka's encoding). Missing values ``?`` are 0, and so are the entries a sparse row
omits (the first category of a nominal attribute, as in Weka). A malformed file raises
``ValueError`` naming the file and, where it can, the attribute or row at fault.
Whole columns are converted at once; the value-by-value path only runs to name an error
or to read quoted, padded or missing values.
"""
from __future__ import annotations

import gzip

import numpy as np

_NUMERIC_TYPES = ("numeric", "real", "integer")


def _open(path: str):
    return gzip.open(path, "rt", encoding="utf-8", errors="replace") if path.endswith(".gz") else open(
        path, encoding="utf-8", errors="replace")


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
