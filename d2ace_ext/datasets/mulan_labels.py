"""Which attributes of a MULAN ARFF file are labels: the names its XML file lists,
matched to the ARFF's attributes by name (never by position)."""

from __future__ import annotations

import difflib
import xml.etree.ElementTree as ElementTree


def label_names(xml_path: str) -> list[str]:
    """Label names listed in a MULAN XML file, in its order. A malformed file or a label
    listed twice raises ValueError naming the file."""
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as err:
        raise ValueError(
            f"{xml_path}: malformed XML ({err}); a MULAN label file reads "
            '<labels xmlns="http://mulan.sourceforge.net/labels"><label name="..."/>...</labels>'
        ) from None
    names = [el.attrib["name"] for el in root.iter() if el.tag.endswith("label") and "name" in el.attrib]
    seen: set[str] = set()
    twice = [n for n in names if n in seen or seen.add(n)]
    if twice:
        raise ValueError(
            f"{xml_path}: label(s) {', '.join(map(repr, dict.fromkeys(twice)))} listed twice; list each label once"
        )
    return names


def label_columns(names: list[str], listed: list[str], arff: str, xml: str) -> list[int]:
    """Positions of the labels ``listed`` in the XML file ``xml`` among the attributes
    ``names`` of ``arff``, in the file's order (the XML may list them in another order,
    as enron's and yeast's do). A listed label that is no attribute is refused: taking
    other columns instead would swap labels and features without a word."""
    position = {n: j for j, n in enumerate(names)}
    missing = [n for n in listed if n not in position]
    if missing:
        hints = [
            f"{n!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(n, names, 1, 0.6)) else repr(n)
            for n in missing[:5]
        ]
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(
            f"{xml}: label(s) {', '.join(hints)}{more} are not attributes of {arff}; correct the "
            "names (they are case-sensitive) or use the XML file of this ARFF file"
        )
    if not listed or len(listed) >= len(names):
        raise ValueError(f"{xml}: lists {len(listed)} labels for the {len(names)} attributes of {arff}")
    return sorted(position[n] for n in listed)
