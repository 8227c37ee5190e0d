"""An ARFF file's data rows as numbers: dense rows as one block, sparse
``{index value, ...}`` rows as (row, attribute, value) entries.

Whole columns are converted at once; the value-by-value path (``Column.value``) only
runs to name an error or to read quoted, padded or missing values.
"""

from __future__ import annotations

import numpy as np

from .arff_columns import Column
from .arff_refusals import refuse_repeated_indices, where
from .arff_text import split_quoted


def dense_values(rows: list[str], columns: list[Column], path: str, which: list[int] | None) -> np.ndarray:
    """(len(rows), attributes) values of the dense rows ``rows``, which are the data rows
    ``which`` of the file (None: all of them)."""
    m = len(columns)
    which = np.arange(len(rows)) if which is None else np.asarray(which)
    if any("'" in row or '"' in row for row in rows):
        tokens = [t for row in rows for t in split_quoted(row)]
    else:
        tokens = ",".join(rows).split(",")
    if len(tokens) != len(rows) * m:
        for k, row in enumerate(rows):
            if len(split_quoted(row)) != m:
                raise ValueError(
                    f"{where(path, which[k])}: data row {which[k]} has {len(split_quoted(row))} "
                    f"values, the header declares {m} attributes"
                )
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


def sparse_entries(
    rows: list[str], columns: list[Column], path: str, which: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row (k,), attribute (k,), value (k,)) of the entries of the sparse rows ``rows``,
    which are the data rows ``which`` of the file."""
    m = len(columns)
    bodies = []
    for k, row in enumerate(rows):
        if not row.endswith("}"):
            raise ValueError(f"{where(path, which[k])}: sparse row {row[:60]!r} does not end with '}}'")
        bodies.append(row[1:-1].strip())
    counts = np.array([b.count(",") + 1 if b else 0 for b in bodies], dtype=np.int64)
    row_of = np.repeat(np.asarray(which, dtype=np.int64), counts)
    joined = ",".join(b for b in bodies if b)
    quoted = "'" in joined or '"' in joined
    pairs = [] if quoted else joined.replace(",", " ").split()
    if quoted or len(pairs) != 2 * int(counts.sum()):
        items = [split_quoted(b) if b else [] for b in bodies]
        counts = np.array([len(i) for i in items], dtype=np.int64)
        row_of = np.repeat(np.asarray(which, dtype=np.int64), counts)
        split = [item.split(None, 1) for row in items for item in row]
        for i, s in enumerate(split):
            if len(s) != 2:
                raise ValueError(f"{where(path, row_of[i])}: sparse entry {' '.join(s)!r} is not 'index value'")
        keys_text, vals = [s[0] for s in split], [s[1].strip().strip("'\"") for s in split]
    else:
        keys_text, vals = pairs[0::2], pairs[1::2]
    try:
        keys = np.fromiter(map(int, keys_text), np.int64, len(keys_text))
    except ValueError:
        i = next(i for i, k in enumerate(keys_text) if not _is_int(k))
        raise ValueError(f"{where(path, row_of[i])}: sparse index {keys_text[i]!r} is not an integer") from None
    outside = (keys < 0) | (keys >= m)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(
            f"{where(path, row_of[i])}: sparse index {int(keys[i])} is outside the {m} attributes (0 to {m - 1})"
        )
    refuse_repeated_indices(row_of, keys, columns, path)
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
            idx = order[starts[j] : starts[j + 1]]
            values[idx] = columns[j].convert([vals[i] for i in idx], row_of[idx], path)
    return row_of, keys, values


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
