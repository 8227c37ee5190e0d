"""Where an ARFF error lies, and the refusals that look at a whole file's values at once
(a sparse row giving one attribute twice, a nan or inf). docs/inputs.md lists every refusal.

The one-pass read keeps no line numbers: an error's line is found by reading the file
again (``data_line``), which only an error pays for.
"""

from __future__ import annotations

import numpy as np

from .arff_text import open_arff


def data_line(path: str, row: int) -> int:
    """The line number (1-based) of data row ``row`` of the file: found again only to
    name an error, so reading stays one pass."""
    with open_arff(path) as handle:
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


def where(path: str, row: int) -> str:
    """``<path>: line <n>`` of data row ``row``, the start of an error message."""
    return f"{path}: line {data_line(path, int(row))}"


def refuse_repeated_indices(row_of: np.ndarray, keys: np.ndarray, columns: list, path: str) -> None:
    """ValueError naming the first row that gives one attribute twice (which value is
    meant cannot be told; keeping the last would hide it). ``row_of`` (k,) and ``keys``
    (k,) are the data row and attribute of each sparse entry, ``columns`` the attributes."""
    same_row = row_of[1:] == row_of[:-1]
    if not (same_row & (keys[1:] <= keys[:-1])).any():
        return  # indices ascend within every row (Weka writes them so): none repeats
    code = row_of * len(columns) + keys
    ordered = np.sort(code)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        row, key = divmod(int(repeated.min()), len(columns))
        raise ValueError(
            f"{where(path, row)}: sparse index {key} (attribute {columns[key].name!r}) is given "
            "twice in one row; give each attribute once"
        )


def refuse_non_finite(values: np.ndarray, rows, attributes, columns: list, path: str) -> None:
    """ValueError naming the line and attribute of the first nan or inf in ``values``:
    either a block (rows, attributes) of dense rows, or entries (k,) that lie in data
    rows ``rows`` (k,) and attributes ``attributes`` (k,)."""
    if np.isfinite(values).all():
        return
    first = np.argwhere(~np.isfinite(values))[0]
    row, attribute = (
        (rows[first[0]], attributes[first[-1]]) if values.ndim == 2 else (rows[first[0]], attributes[first[0]])
    )
    value = float(values[tuple(first)])
    raise ValueError(
        f"{where(path, row)}: attribute {columns[attribute].name!r} is {value}: values must be "
        "finite (write ? for a missing value, which reads as 0)"
    )
