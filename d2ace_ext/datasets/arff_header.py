"""An ARFF file's header: its ``@attribute`` lines as columns, up to ``@data``."""

from __future__ import annotations

from .arff_columns import Column
from .arff_text import open_arff, split_quoted

NUMERIC_TYPES = ("numeric", "real", "integer")


def parse_attribute(line: str) -> tuple[str, list[str] | None]:
    """(name, nominal categories or None for numeric) of an ``@attribute`` line."""
    parts = line.split(None, 1)
    if len(parts) < 2:
        raise ValueError(
            "@attribute line without a name and type (write '@attribute <name> numeric' or '@attribute <name> {0,1}')"
        )
    body = parts[1].strip()
    if body[:1] in ("'", '"'):
        quote, i, name = body[0], 1, []
        while i < len(body) and body[i] != quote:
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            name.append(body[i])
            i += 1
        name, kind = "".join(name), body[i + 1 :].strip()
    else:
        name, kind = (body.split(None, 1) + [""])[:2]
    if kind.startswith("{"):
        if not kind.endswith("}"):
            raise ValueError(f"attribute {name!r}: category list {kind!r} does not end with '}}'")
        return name, [v for v in split_quoted(kind[1:-1]) if v != ""]
    if kind and kind.split(None, 1)[0].lower() in NUMERIC_TYPES:
        return name, None
    raise ValueError(f"attribute {name!r}: type {kind!r} is not supported (numeric or nominal only)")


def header_and_rows(
    path: str, header_only: bool = False, labels: frozenset = frozenset()
) -> tuple[list[Column], list[str]]:
    """(columns, data rows as text). Attributes named in ``labels`` are read as labels."""
    columns: list[Column] = []
    declared: dict[str, int] = {}
    with open_arff(path) as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line or line[0] == "%":
                continue
            head = line[:10].lower()
            if head.startswith("@attribute"):
                try:
                    name, nominal = parse_attribute(line)
                    if name in declared:
                        raise ValueError(
                            f"attribute {name!r} is declared twice (line {declared[name]} and "
                            f"line {number}); attribute names must be unique"
                        )
                    declared[name] = number
                    columns.append(Column(name, nominal, name in labels))
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
    return [c.name for c in header_and_rows(path, header_only=True)[0]]
