"""Shared figure plumbing: Agg-canvas figures, PNG saving and small axis helpers.

Only ``matplotlib.figure.Figure`` with an explicit Agg canvas is used, so nothing
here touches pyplot's global state or the user's chosen backend; matplotlib is
imported lazily (it is not a dependency of the package).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DPI = 110


def _new_figure(nrows: int, ncols: int, width: float, height: float):
    """(Figure, axes (nrows, ncols)) on an explicit Agg canvas, not pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    return figure, axes


def _save(figure, out_path) -> str:
    """Write the figure as a PNG of at most 256 colours (an adaptive palette: line
    figures look the same and weigh a third or less, small enough to commit)."""
    import io

    from PIL import Image  # matplotlib's own dependency

    out_path = os.fspath(out_path)
    parent = os.path.dirname(out_path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=DPI, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256).save(out_path, format="PNG", optimize=True)
    return out_path


def _safe(text) -> str:
    """A file-name-safe rendering of a key field (no path separators)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)) or "none"


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _empty_note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _trace_title(trace_path, title):
    return title if title is not None else Path(trace_path).stem
