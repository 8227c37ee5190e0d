"""How a (selector, preset) series is named, ordered, coloured and marked in every
table and figure of the harness: one mapping for each, so a selector has the same
colour in every figure.
"""
from __future__ import annotations

import zlib

from .experiment import DISPLAY_NAMES

#: Key ``preset`` of runs whose selector has no presets (every selector but D2ACE).
AGNOSTIC_PRESETS = ("-", None, "")

#: One colour per selector (the Okabe-Ito colour-blind-safe palette first; Random a
#: neutral grey, D2ACE, the method under study, vermillion).
SELECTOR_COLORS = {
    "random": "#555555", "d2ace": "#d55e00", "hard_imb": "#0072b2", "dihcl": "#009e73",
    "ml_unc": "#cc79a7", "infobatch": "#e69f00", "balance": "#56b4e9", "active": "#8c564b",
    "recent": "#999933",
}
#: Colours for selectors the mapping does not name, picked by a stable hash of the name
#: (the same in every figure and every process).
_SPARE_COLORS = ("#17becf", "#bcbd22", "#7f7f7f", "#9467bd", "#2ca02c")
#: D2ACE's presets: (marker, line style); other presets and preset-less selectors get the first.
PRESET_STYLES = {"paper": ("o", "-"), "reference": ("s", "--")}
_ORDER = ("random", "ml_unc", "hard_imb", "dihcl", "infobatch", "balance", "active", "recent", "d2ace")


def selector_color(selector: str) -> str:
    """The selector's colour: ``SELECTOR_COLORS`` or a stable spare one."""
    if selector in SELECTOR_COLORS:
        return SELECTOR_COLORS[selector]
    return _SPARE_COLORS[zlib.crc32(str(selector).encode()) % len(_SPARE_COLORS)]


def preset_style(preset) -> tuple[str, str]:
    """(marker, line style) of a D2ACE preset; preset-less runs get the plain style."""
    return PRESET_STYLES.get(preset, ("o", "-"))


def series_name(selector: str, preset=None, with_preset: bool = True) -> str:
    """"Hard-Imb", "D2ACE paper": the paper's spelling, the preset when the series has one."""
    name = DISPLAY_NAMES.get(selector, selector)
    if with_preset and preset not in AGNOSTIC_PRESETS:
        name += f" {preset}"
    return name


def series_order(selector: str, preset=None) -> tuple:
    """Sort key: Random first, D2ACE last (paper before reference), others between."""
    rank = _ORDER.index(selector) if selector in _ORDER else len(_ORDER) - 0.5
    return rank, str(selector), str(preset)
