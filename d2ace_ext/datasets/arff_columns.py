"""How one ARFF attribute's text values become numbers (module notes of ``arff``):
numeric as float64, nominal {0, 1} as the value, other nominal features as the
category's position (Weka's encoding), label attributes by category name."""

from __future__ import annotations

import numpy as np

from .arff_refusals import where

# The names a label attribute's categories may have, read by name (case ignored): a
# {yes,no} label read by category position would be inverted (yes = 0).
LABEL_VOCABULARIES = ({"0": 0.0, "1": 1.0}, {"no": 0.0, "yes": 1.0}, {"false": 0.0, "true": 1.0})


def label_values(name: str, nominal: list[str]) -> dict[str, float]:
    """{category: 0.0 or 1.0} of a label attribute declared with named categories;
    ValueError unless every category is named from one of the pairs 0/1, no/yes, false/true."""
    for vocabulary in LABEL_VOCABULARIES:
        if nominal and all(c.lower() in vocabulary for c in nominal):
            return {c: vocabulary[c.lower()] for c in nominal}
    raise ValueError(
        f"label attribute {name!r} is declared {{{','.join(nominal)}}}: a label's categories "
        "must be named 0/1, no/yes or false/true; declare it {0,1}"
    )


class Column:
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
            self.lookup = label_values(name, nominal)
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
        """The values (len(tokens),) of ``tokens``, which lie in the data rows ``rows`` (for errors)."""
        try:
            if self.direct:
                values = np.fromiter(map(float, tokens), np.float64, len(tokens))
            else:
                values = np.fromiter(map(self.lookup.__getitem__, map(str.strip, tokens)), np.float64, len(tokens))
        except (ValueError, KeyError):  # padding, quotes, '?' or a bad value: one at a time
            values = np.empty(len(tokens))
            for i, token in enumerate(tokens):
                try:
                    values[i] = self.value(token)
                except ValueError as err:
                    raise ValueError(f"{where(path, rows[i])}: attribute {self.name!r}: {err}") from None
        if self.binary:
            bad = ~np.isin(values, (0.0, 1.0))
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(
                    f"{where(path, rows[i])}: attribute {self.name!r} holds {tokens[i].strip()!r}, not 0 or 1"
                )
        return values
