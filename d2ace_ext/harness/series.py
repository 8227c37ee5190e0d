"""How a (selector, preset) series is named, ordered, coloured and marked in every
table and figure of the harness. Name, colour and rank are the selector's own
(``display_name``, ``color``, ``display_rank`` on its class), so a selector has the
same colour and place in every figure and table.
"""

from __future__ import annotations

import math
import zlib

from ..selectors.registry import SELECTOR_CLASSES, SelectorFacts, display_name

#: Key ``preset`` of runs whose selector has no presets (every selector but D2ACE).
AGNOSTIC_PRESETS = ("-", None, "")

#: {name: colour} of the registered selectors (a live view of their ``color``: the
#: Okabe-Ito colour-blind-safe palette first; Random a neutral grey, D2ACE, the method
#: under study, vermillion).
SELECTOR_COLORS = SelectorFacts("color")
#: Colours for selectors that name none, picked by a stable hash of the name (the same
#: in every figure and every process).
_SPARE_COLORS = ("#17becf", "#bcbd22", "#7f7f7f", "#9467bd", "#2ca02c")
#: D2ACE's presets: (marker, line style); other presets and preset-less selectors get the first.
PRESET_STYLES = {"paper": ("o", "-"), "reference": ("s", "--")}


def selector_color(selector: str) -> str:
    """The selector's colour: its class's ``color``, or a stable spare one."""
    cls = SELECTOR_CLASSES.get(selector)
    if cls is not None and cls.color is not None:
        return cls.color
    return _SPARE_COLORS[zlib.crc32(str(selector).encode()) % len(_SPARE_COLORS)]


def preset_style(preset) -> tuple[str, str]:
    """(marker, line style) of a D2ACE preset; preset-less runs get the plain style."""
    return PRESET_STYLES.get(preset, ("o", "-"))


def series_name(selector: str, preset=None, with_preset: bool = True) -> str:
    """ "Hard-Imb", "D2ACE paper": the paper's spelling, the preset when the series has one."""
    name = display_name(selector)
    if with_preset and preset not in AGNOSTIC_PRESETS:
        name += f" {preset}"
    return name


def series_order(selector: str, preset=None) -> tuple:
    """Sort key: by the selector's ``display_rank`` (Random first, D2ACE last of the
    paper's selectors, paper before reference); selectors without a rank after them all,
    by name."""
    cls = SELECTOR_CLASSES.get(selector)
    rank = cls.display_rank if cls is not None and cls.display_rank is not None else math.inf
    return rank, str(selector), str(preset)
