"""Reading ARFF files: dense rows and sparse ``{index value, ...}`` rows, plain or
``.arff.gz``, numeric and nominal attributes, quoted names and values.

Numeric attributes are read as float64; nominal attributes with the categories {0, 1}
as their value, other nominal attributes as the index of the category in the declared
list (Weka's encoding), except label attributes (named by the caller), whose
categories are read by name: 0/1, no/yes or false/true, anything else refused.
Missing values ``?`` are 0, and so are the entries a sparse row omits (the first
category of a nominal attribute, as in Weka).

Refused with ``ValueError`` naming the file, the line and the attribute: an empty
value, a nan or inf, a sparse row that gives one attribute twice, an attribute
declared twice, an ``@attribute`` line without a name or type, a value outside the
declared categories. docs/inputs.md lists them.

Whole columns are converted at once; the value-by-value path only runs to name an error
or to read quoted, padded or missing values, and an error's line number is found by
reading the file again, so the one-pass read keeps no line numbers.
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
    parts = line.split(None, 1)
    if len(parts) < 2:
        raise ValueError("@attribute line without a name and type (write '@attribute <name> numeric' "
                         "or '@attribute <name> {0,1}')")
    body = parts[1].strip()
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
        if not kind.endswith("}"):
            raise ValueError(f"attribute {name!r}: category list {kind!r} does not end with '}}'")
        return name, [v for v in _split_quoted(kind[1:-1]) if v != ""]
    if kind and kind.split(None, 1)[0].lower() in _NUMERIC_TYPES:
        return name, None
    raise ValueError(f"attribute {name!r}: type {kind!r} is not supported (numeric or nominal only)")


# The names a label attribute's categories may have, read by name (case ignored): a
# {yes,no} label read by category position would be inverted (yes = 0).
_LABEL_VOCABULARIES = ({"0": 0.0, "1": 1.0}, {"no": 0.0, "yes": 1.0}, {"false": 0.0, "true": 1.0})


def _label_values(name: str, nominal: list[str]) -> dict[str, float]:
    """{category: 0.0 or 1.0} of a label attribute declared with named categories;
    ValueError unless every category is named from one of the pairs 0/1, no/yes, false/true."""
    for vocabulary in _LABEL_VOCABULARIES:
        if nominal and all(c.lower() in vocabulary for c in nominal):
            return {c: vocabulary[c.lower()] for c in nominal}
    raise ValueError(f"label attribute {name!r} is declared {{{','.join(nominal)}}}: a label's categories "
                     "must be named 0/1, no/yes or false/true; declare it {0,1}")


class _Column:
    """How one attribute's text values become numbers. ``label``: the attribute is a
    label, whose nominal categories are read by name (0/1, no/yes, false/true)."""

    def __init__(self, name: str, nominal: list[str] | None, label: bool = False):
        self.name = name
        self.nominal = nominal
        self.binary = nominal is not None and sorted(nominal) == ["0", "1"]
        self.direct = nominal is None or self.binary  # float(text) gives the value
        if self.direct:
            self.lookup = None
        elif label:
            self.lookup = _label_values(name, nominal)
        else:
            self.lookup = {c: float(i) for i, c in enumerate(nominal)}  # Weka's encoding
        # what a sparse row that omits the attribute means: its first category (Weka)
        self.omitted = float(nominal[0]) if self.binary else self.lookup[nominal[0]] if label and nominal else 0.0

    def value(self, text: str) -> float:
        """One ARFF value (slow path; the reader converts whole columns at once)."""
        text = text.strip().strip("'\"")
        if text == "":
            raise ValueError("the value is empty (write ? for a missing value)")
        if text == "?":
            return 0.0
        if self.lookup is not None:
            if text in self.lookup:
                return self.lookup[text]
        elif self.nominal is None:
            return float(text)
        elif text in self.nominal:
            return float(int(text))
        raise ValueError(f"value {text!r} is not one of the categories {self.nominal[:10]}")

    def convert(self, tokens: list[str], rows, path: str) -> np.ndarray:
        """The values of ``tokens``, which lie in the data rows ``rows`` (for errors)."""
        try:
            if self.direct:
                values = np.fromiter(map(float, tokens), np.float64, len(tokens))
            else:
                values = np.fromiter(map(self.lookup.__getitem__, map(str.strip, tokens)), np.float64,
                                     len(tokens))
        except (ValueError, KeyError):  # padding, quotes, '?' or a bad value: one at a time
            values = np.empty(len(tokens))
            for i, token in enumerate(tokens):
                try:
                    values[i] = self.value(token)
                except ValueError as err:
                    raise ValueError(f"{_where(path, rows[i])}: attribute {self.name!r}: {err}") from None
        if self.binary:
            bad = ~np.isin(values, (0.0, 1.0))
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"{_where(path, rows[i])}: attribute {self.name!r} holds {tokens[i].strip()!r}, "
                                 "not 0 or 1")
        return values


def _data_line(path: str, row: int) -> int:
    """The line number (1-based) of data row ``row`` of the file: found again only to
    name an error, so reading stays one pass."""
    with _open(path) as handle:
        in_data, seen = False, -1
        for number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line or line[0] == "%":
                continue
            if not in_data:
                in_data = line[:5].lower() == "@data"
                continue
            seen += 1
            if seen == row:
                return number
    return -1


def _where(path: str, row: int) -> str:
    return f"{path}: line {_data_line(path, int(row))}"


def _header_and_rows(path: str, header_only: bool = False,
                     labels: frozenset = frozenset()) -> tuple[list[_Column], list[str]]:
    """(columns, data rows as text). Attributes named in ``labels`` are read as labels."""
    columns: list[_Column] = []
    declared: dict[str, int] = {}
    with _open(path) as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line or line[0] == "%":
                continue
            head = line[:10].lower()
            if head.startswith("@attribute"):
                try:
                    name, nominal = _attribute(line)
                    if name in declared:
                        raise ValueError(f"attribute {name!r} is declared twice (line {declared[name]} and "
                                         f"line {number}); attribute names must be unique")
                    declared[name] = number
                    columns.append(_Column(name, nominal, name in labels))
                except ValueError as err:
                    raise ValueError(f"{path}: line {number}: {err}") from None
            elif head.startswith("@data"):
                if header_only:
                    return columns, []
                rows = [line for line in (raw.strip() for raw in handle) if line and line[0] != "%"]
                return columns, rows
    raise ValueError(f"{path}: no @data section")


def attribute_names(path: str) -> list[str]:
    """The attribute names an ARFF file declares, in order (its header alone is read)."""
    return [c.name for c in _header_and_rows(path, header_only=True)[0]]


def _dense(rows: list[str], columns: list[_Column], path: str, which: list[int] | None) -> np.ndarray:
    """(len(rows), attributes) values of the dense rows ``rows``, which are the data rows
    ``which`` of the file (None: all of them)."""
    m = len(columns)
    which = np.arange(len(rows)) if which is None else np.asarray(which)
    if any("'" in row or '"' in row for row in rows):
        tokens = [t for row in rows for t in _split_quoted(row)]
    else:
        tokens = ",".join(rows).split(",")
    if len(tokens) != len(rows) * m:
        for k, row in enumerate(rows):
            if len(_split_quoted(row)) != m:
                raise ValueError(f"{_where(path, which[k])}: data row {which[k]} has {len(_split_quoted(row))} "
                                 f"values, the header declares {m} attributes")
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
        out[:, j] = column.convert(tokens[j::m], which, path)
    return out


def _sparse(rows: list[str], columns: list[_Column], path: str,
            which: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, attribute, value) of the entries of the sparse rows ``rows``, which are the
    data rows ``which`` of the file."""
    m = len(columns)
    bodies = []
    for k, row in enumerate(rows):
        if not row.endswith("}"):
            raise ValueError(f"{_where(path, which[k])}: sparse row {row[:60]!r} does not end with '}}'")
        bodies.append(row[1:-1].strip())
    counts = np.array([b.count(",") + 1 if b else 0 for b in bodies], dtype=np.int64)
    row_of = np.repeat(np.asarray(which, dtype=np.int64), counts)
    joined = ",".join(b for b in bodies if b)
    quoted = "'" in joined or '"' in joined
    pairs = [] if quoted else joined.replace(",", " ").split()
    if quoted or len(pairs) != 2 * int(counts.sum()):
        items = [_split_quoted(b) if b else [] for b in bodies]
        counts = np.array([len(i) for i in items], dtype=np.int64)
        row_of = np.repeat(np.asarray(which, dtype=np.int64), counts)
        split = [item.split(None, 1) for row in items for item in row]
        for i, s in enumerate(split):
            if len(s) != 2:
                raise ValueError(f"{_where(path, row_of[i])}: sparse entry {' '.join(s)!r} is not 'index value'")
        keys_text, vals = [s[0] for s in split], [s[1].strip().strip("'\"") for s in split]
    else:
        keys_text, vals = pairs[0::2], pairs[1::2]
    try:
        keys = np.fromiter(map(int, keys_text), np.int64, len(keys_text))
    except ValueError:
        i = next(i for i, k in enumerate(keys_text) if not _is_int(k))
        raise ValueError(f"{_where(path, row_of[i])}: sparse index {keys_text[i]!r} is not an integer") from None
    outside = (keys < 0) | (keys >= m)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(f"{_where(path, row_of[i])}: sparse index {int(keys[i])} is outside the {m} attributes "
                         f"(0 to {m - 1})")
    _refuse_repeated_indices(row_of, keys, columns, path)
    values = None
    if all(c.direct for c in columns):
        try:
            values = np.fromiter(map(float, vals), np.float64, len(vals))
            binary = np.array([c.binary for c in columns])
            if (binary[keys] & ~np.isin(values, (0.0, 1.0))).any():
                values = None  # the column path below names the attribute and line
        except ValueError:
            values = None
    if values is None:
        values = np.empty(len(vals))
        order = np.argsort(keys, kind="stable")
        starts = np.searchsorted(keys[order], np.arange(m + 1))
        for j in np.unique(keys):
            idx = order[starts[j]:starts[j + 1]]
            values[idx] = columns[j].convert([vals[i] for i in idx], row_of[idx], path)
    return row_of, keys, values


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _refuse_repeated_indices(row_of: np.ndarray, keys: np.ndarray, columns: list[_Column], path: str) -> None:
    """ValueError naming the first row that gives one attribute twice (which value is
    meant cannot be told; keeping the last would hide it)."""
    same_row = row_of[1:] == row_of[:-1]
    if not (same_row & (keys[1:] <= keys[:-1])).any():
        return  # indices ascend within every row (Weka writes them so): none repeats
    code = row_of * len(columns) + keys
    ordered = np.sort(code)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        row, key = divmod(int(repeated.min()), len(columns))
        raise ValueError(f"{_where(path, row)}: sparse index {key} (attribute {columns[key].name!r}) is given "
                         "twice in one row; give each attribute once")


def _refuse_non_finite(values: np.ndarray, rows, attributes, columns: list[_Column], path: str) -> None:
    """ValueError naming the line and attribute of the first nan or inf in ``values``:
    either a block (rows, attributes) of dense rows, or entries (k,) that lie in data
    rows ``rows`` (k,) and attributes ``attributes`` (k,)."""
    if np.isfinite(values).all():
        return
    first = np.argwhere(~np.isfinite(values))[0]
    row, attribute = (rows[first[0]], attributes[first[-1]]) if values.ndim == 2 else (rows[first[0]],
                                                                                       attributes[first[0]])
    value = float(values[tuple(first)])
    raise ValueError(f"{_where(path, row)}: attribute {columns[attribute].name!r} is {value}: values must be "
                     "finite (write ? for a missing value, which reads as 0)")


class _Parsed:
    """One ARFF file's values: a block of dense rows and (row, attribute, value) entries
    of sparse rows, so that chosen columns are built without the full matrix. Attributes
    named in ``labels`` are read as labels (categories by name, see ``_label_values``).
    A nan or inf value is refused here, naming its line and attribute."""

    def __init__(self, path: str, labels: frozenset = frozenset()):
        self.columns, rows = _header_and_rows(path, labels=frozenset(labels))
        self.n = len(rows)
        sparse = [k for k, row in enumerate(rows) if row[0] == "{"]
        self.sparse_rows = sparse
        self.dense_rows = [k for k, row in enumerate(rows) if row[0] != "{"] if sparse else None
        dense = [rows[k] for k in self.dense_rows] if sparse else rows
        self.dense = _dense(dense, self.columns, path, self.dense_rows) if dense or not sparse else None
        self.entries = _sparse([rows[k] for k in sparse], self.columns, path, sparse) if sparse else None
        if self.dense is not None:
            _refuse_non_finite(self.dense, self.dense_rows if sparse else range(self.n),
                               range(len(self.columns)), self.columns, path)
        if self.entries is not None:
            row_of, keys, values = self.entries
            _refuse_non_finite(values, row_of, keys, self.columns, path)

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
