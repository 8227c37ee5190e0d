"""Fig. 3: validation Macro-AUC (and training loss, where recorded) against the epoch,
one figure per (data set, model), one panel per protocol and D2ACE preset, one line
per selector (mean over folds with a +-std band), each selector in its own colour
(``series.SELECTOR_COLORS``) in every figure.
"""

from __future__ import annotations

import textwrap

import numpy as np

from .plot_figure import _new_figure, _save
from .plot_records import _history_series
from .protocol_index import protocol_epochs, protocol_labels
from .series import AGNOSTIC_PRESETS, selector_color, series_name, series_order

#: The validation panels show the top of the curves, where the selectors differ and
#: the time-to-target targets lie: this much below the highest fold-mean value (the
#: early rise comes in from below), unless the curves span less.
AUC_WINDOW = 0.08
#: History series drawn as panel rows, when any record of the figure has them.
ROWS = (("val_macro_auc", "validation Macro-AUC"), ("train_loss", "training loss"))
#: Characters of a panel title per line (a 4.3-inch panel at the title's font size).
TITLE_WIDTH = 48
#: Panels per figure row; more protocols and presets wrap onto further rows.
COLUMNS = 3
#: Longer runs draw every k-th epoch (k = ceil(epochs / MAX_POINTS)), which keeps the
#: PNG small; the best-epoch marker is placed from every epoch.
MAX_POINTS = 500


def _fold_matrix(records: list[dict], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs (k,), values (folds, k)) aligned on the union of the folds' epochs.

    Folds may stop at different epochs (early stopping), so a fold's missing
    epochs are NaN rather than shifting the other folds.
    """
    series = [_history_series(r, name) for r in records]
    series = [(e, v) for e, v in series if v.size]
    if not series:
        return np.zeros(0), np.zeros((0, 0))
    epochs = np.unique(np.concatenate([e[np.isfinite(e)] for e, _ in series]))
    matrix = np.full((len(series), epochs.size), np.nan)
    for row, (e, v) in enumerate(series):
        keep = np.isfinite(e)
        matrix[row, np.searchsorted(epochs, e[keep])] = v[keep]
    return epochs, matrix


def _mean_std(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean (k,) over finite folds, and std (k,) only where >= 2 folds are finite.

    A single finite value has no spread, so its std is NaN and no band is
    drawn there (rather than a misleading zero-width band).
    """
    finite = np.isfinite(matrix)
    count = finite.sum(axis=0)
    total = np.where(finite, matrix, 0.0).sum(axis=0)
    mean = np.full(matrix.shape[1], np.nan)
    np.divide(total, count, out=mean, where=count > 0)
    deviation = np.where(finite, matrix - mean, 0.0)
    std = np.full(matrix.shape[1], np.nan)
    np.divide((deviation**2).sum(axis=0), count, out=std, where=count >= 2)
    return mean, np.sqrt(std)


def _display_name(selector: str) -> str:
    """The paper's spelling of a selector ("hard_imb" -> "Hard-Imb")."""
    return series_name(selector, with_preset=False)


def _has_series(records: list[dict], name: str) -> bool:
    return any(np.isfinite(_history_series(r, name)[1]).any() for r in records)


def convergence_panels(records: list[dict], protocols: dict | None = None) -> list[tuple[str, list[dict]]]:
    """[(title, records)] for one (data set, model): one panel per protocol and, within
    it, per D2ACE preset (the preset-less baselines drawn in each of that protocol's
    preset panels). Titles say what differs: epochs, other protocol settings where
    ``protocols`` ({digest: settings}) knows them, the preset. Ordered by epochs."""
    by_protocol: dict[str, list[dict]] = {}
    for record in records:
        by_protocol.setdefault(record["key"].get("protocol"), []).append(record)
    epochs = protocol_epochs(records)
    labels = protocol_labels(epochs, protocols)
    panels = []
    for digest in sorted(by_protocol, key=lambda d: (epochs[d], labels[d])):
        group = by_protocol[digest]
        presets = sorted({r["key"].get("preset") for r in group} - set(AGNOSTIC_PRESETS), key=str)
        if not presets:
            panels.append((labels[digest], group))
        for preset in presets:
            chosen = [r for r in group if r["key"].get("preset") in (preset, *AGNOSTIC_PRESETS)]
            panels.append((f"{labels[digest]}, D2ACE {preset} preset", chosen))
    return panels


def _draw_panel(ax, records: list[dict], name: str, zoom: bool) -> None:
    """One line per selector of the panel: fold mean, +-std band, best epoch marked."""
    by_selector: dict[str, list[dict]] = {}
    for record in records:
        by_selector.setdefault(record["key"].get("selector", "?"), []).append(record)
    tops, lows = [], []
    for selector in sorted(by_selector, key=series_order):
        group = by_selector[selector]
        epochs, matrix = _fold_matrix(group, name)
        if not (matrix.size and np.isfinite(matrix).any()):
            continue
        color = selector_color(selector)
        mean, std = _mean_std(matrix)
        step = max(1, -(-mean.size // MAX_POINTS))
        shown = slice(None, None, step)
        # D2ACE is the method under study: drawn a little heavier, as in the paper.
        ax.plot(
            epochs[shown],
            mean[shown],
            color=color,
            linewidth=2.0 if selector == "d2ace" else 1.3,
            label=f"{_display_name(selector)} ({len(group)})",
        )
        if np.isfinite(std).any():
            ax.fill_between(
                epochs[shown], (mean - std)[shown], (mean + std)[shown], color=color, alpha=0.15, linewidth=0
            )
        if name == "val_macro_auc":
            best = int(np.nanargmax(mean))  # the peak of the fold-mean curve, so the marker sits on the line
            ax.plot(
                epochs[best],
                mean[best],
                marker="s",
                markersize=6,
                color=color,
                markeredgecolor="black",
                linestyle="none",
            )
        tops.append(np.nanmax(mean))
        lows.append(np.nanmin(mean))
    if zoom and tops:
        top, low = max(tops), min(lows)
        span = max(top - low, 1e-3) if top - low < AUC_WINDOW else AUC_WINDOW
        ax.set_ylim(top - span, top + 0.08 * span)
    ax.legend(fontsize="x-small", loc="lower right")
    ax.grid(True, alpha=0.3)


def _convergence_figure(records: list[dict], title: str, out_path, protocols: dict | None = None) -> str:
    """One figure for an already-filtered list of records of one (data set, model):
    panels (``convergence_panels``) ``COLUMNS`` to a row, under each a row per history
    series present (no panel for a series no record has)."""
    panels = convergence_panels(records, protocols)
    rows = [(name, label) for name, label in ROWS if _has_series(records, name)]
    if not rows:
        raise ValueError(f"{title}: no record has a validation or training-loss history to draw")
    columns = min(COLUMNS, len(panels))
    panel_rows = -(-len(panels) // columns)
    figure, axes = _new_figure(
        panel_rows * len(rows), columns, max(5.0, 4.3 * columns), 3.1 * panel_rows * len(rows) + 0.4
    )
    for index, (panel_title, chosen) in enumerate(panels):
        for offset, (name, label) in enumerate(rows):
            ax = axes[(index // columns) * len(rows) + offset][index % columns]
            if not _has_series(chosen, name):
                # this protocol's records do not keep the series (compact evidence beside
                # raw results): no panel rather than an empty one
                ax.set_visible(False)
                continue
            _draw_panel(ax, chosen, name, zoom=name == "val_macro_auc")
            ax.set_xlabel("epoch")
            if index % columns == 0:
                ax.set_ylabel(label + (" (top of the curves)" if name == "val_macro_auc" else ""))
            if offset == 0:  # wrapped to the panel's width: long protocol labels ran into the next
                ax.set_title(textwrap.fill(panel_title, TITLE_WIDTH), fontsize="medium")
    for index in range(len(panels), panel_rows * columns):  # the last row's unused places
        for offset in range(len(rows)):
            axes[(index // columns) * len(rows) + offset][index % columns].set_visible(False)
    figure.suptitle(f"{title}: mean over folds ± std, square = best epoch, (n) = runs")
    return _save(figure, out_path)


def plot_convergence(records, dataset, model, out_path, preset=None, protocols: dict | None = None) -> str:
    """Fig. 3 for one (data set, model): validation Macro-AUC (and training loss where
    recorded) against the epoch, a panel per protocol and D2ACE preset
    (``convergence_panels``), one line per selector in its own colour: the mean over
    folds, a +-std band where at least two folds are finite, the best epoch (peak of
    the fold-mean curve) marked. ``preset`` keeps only that D2ACE preset's panels
    (the baselines are in each). Returns ``out_path``."""
    chosen = [
        r
        for r in records
        if r["key"].get("dataset") == dataset
        and r["key"].get("model") == model
        and (preset is None or r["key"].get("preset") in (preset, *AGNOSTIC_PRESETS))
    ]
    if not chosen:
        raise ValueError(f"no records for dataset={dataset!r}, model={model!r}, preset={preset!r}")
    return _convergence_figure(chosen, f"{dataset} / {model}", out_path, protocols)


def _convergence_groups(records: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """[((dataset, model), records)] sorted, one per convergence figure."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        key = record["key"]
        groups.setdefault((key.get("dataset"), key.get("model")), []).append(record)
    return sorted(groups.items(), key=lambda item: tuple(map(str, item[0])))
