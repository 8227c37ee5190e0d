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

The parts: ``arff_text`` (opening, splitting quoted lists), ``arff_header`` (the
``@attribute`` lines), ``arff_columns`` (how one attribute's text becomes numbers),
``arff_rows`` (dense and sparse data rows, whole columns at once), ``arff_refusals``
(an error's line, found by reading the file again, and the whole-file refusals); this
module puts them together.
"""

from __future__ import annotations

import numpy as np

from .arff_header import attribute_names, header_and_rows
from .arff_refusals import refuse_non_finite
from .arff_rows import dense_values, sparse_entries

__all__ = ["attribute_names", "read_arff"]


class _Parsed:
    """One ARFF file's values: a block of dense rows and (row, attribute, value) entries
    of sparse rows, so that chosen columns are built without the full matrix. Attributes
    named in ``labels`` are read as labels (categories by name, see
    ``arff_columns.label_values``). A nan or inf value is refused here, naming its line
    and attribute."""

    def __init__(self, path: str, labels: frozenset = frozenset()):
        self.columns, rows = header_and_rows(path, labels=frozenset(labels))
        self.n = len(rows)
        sparse = [k for k, row in enumerate(rows) if row[0] == "{"]
        self.sparse_rows = sparse
        self.dense_rows = [k for k, row in enumerate(rows) if row[0] != "{"] if sparse else None
        dense = [rows[k] for k in self.dense_rows] if sparse else rows
        self.dense = dense_values(dense, self.columns, path, self.dense_rows) if dense or not sparse else None
        self.entries = sparse_entries([rows[k] for k in sparse], self.columns, path, sparse) if sparse else None
        if self.dense is not None:
            refuse_non_finite(
                self.dense, self.dense_rows if sparse else range(self.n), range(len(self.columns)), self.columns, path
            )
        if self.entries is not None:
            row_of, keys, values = self.entries
            refuse_non_finite(values, row_of, keys, self.columns, path)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def take(self, cols: list[int]) -> np.ndarray:
        """The columns ``cols`` (n, len(cols)) float64, C-contiguous."""
        if self.entries is None:
            first = cols[0] if cols else 0
            if cols == list(range(first, first + len(cols))):
                return np.ascontiguousarray(self.dense[:, first : first + len(cols)])
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
