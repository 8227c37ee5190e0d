"""Fig. 3: validation Macro-AUC and training loss against the epoch, one line per
selector, mean over folds with a +-std band; and the grouping of records into figures.
"""
from __future__ import annotations

import numpy as np

from .plot_figure import _empty_note, _new_figure, _save
from .plot_records import _history_series


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
    np.divide((deviation ** 2).sum(axis=0), count, out=std, where=count >= 2)
    return mean, np.sqrt(std)


#: Key ``preset`` of runs whose selector has no presets (the harness writes "-" for
#: every selector but D2ACE); such runs belong in every preset's figure.
AGNOSTIC_PRESETS = ("-", None, "")


def _display_name(selector: str) -> str:
    """The paper's spelling of a selector ("hard_imb" -> "Hard-Imb") when the harness knows it."""
    try:  # soft dependency: the harness module is optional for plotting
        from .experiment import DISPLAY_NAMES
    except Exception:
        DISPLAY_NAMES = {}
    return DISPLAY_NAMES.get(selector, selector)


def _line_labels(records: list[dict]) -> dict[tuple, str]:
    """Legend label per line id (selector, preset, protocol).

    Only the fields that vary inside the figure are shown: the preset when
    several non-agnostic presets are drawn, the protocol digest when several
    protocols are (they should not be compared silently).
    """
    ids = {_line_id(r) for r in records}
    several_presets = len({p for _, p, _ in ids if p not in AGNOSTIC_PRESETS}) > 1
    several_protocols = len({proto for _, _, proto in ids}) > 1
    labels = {}
    for selector, preset, protocol in ids:
        label = _display_name(str(selector))
        if several_presets and preset not in AGNOSTIC_PRESETS:
            label += f" [{preset}]"
        if several_protocols:
            label += f" {{{protocol}}}"
        labels[(selector, preset, protocol)] = label
    return labels


def _line_id(record: dict) -> tuple:
    key = record["key"]
    return key.get("selector", "?"), key.get("preset"), key.get("protocol")


def _draw_mean_band(ax, epochs, matrix, color, label, linewidth):
    mean, std = _mean_std(matrix)
    ax.plot(epochs, mean, color=color, label=label, linewidth=linewidth)
    if np.isfinite(std).any():
        ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.18, linewidth=0)
    return mean


def _convergence_figure(records: list[dict], title: str, out_path) -> str:
    """Draw Fig. 3 for an already-filtered list of records (one line per selector[/preset])."""
    labels = _line_labels(records)
    lines: dict[str, list[dict]] = {}
    for record in records:
        lines.setdefault(labels[_line_id(record)], []).append(record)

    figure, axes = _new_figure(1, 2, 12.0, 4.4)
    auc_ax, loss_ax = axes[0]
    colors = [f"C{i % 10}" for i in range(len(lines))]
    drawn_auc = drawn_loss = False
    for (label, group), color in zip(sorted(lines.items()), colors):
        # D2ACE is the method under study: draw it a little heavier, as in the paper.
        width = 2.2 if label.lower().startswith("d2ace") else 1.4
        epochs, matrix = _fold_matrix(group, "val_macro_auc")
        if matrix.size and np.isfinite(matrix).any():
            mean = _draw_mean_band(auc_ax, epochs, matrix, color, f"{label} (n={len(group)})", width)
            best = int(np.nanargmax(mean))
            # The best epoch is the peak of the fold-mean curve, so the marker sits on the line.
            auc_ax.plot(epochs[best], mean[best], marker="s", markersize=7, color=color,
                        markeredgecolor="black", linestyle="none")
            drawn_auc = True
        epochs, matrix = _fold_matrix(group, "train_loss")
        if matrix.size and np.isfinite(matrix).any():
            _draw_mean_band(loss_ax, epochs, matrix, color, label, width)
            drawn_loss = True

    auc_ax.set(xlabel="epoch", ylabel="validation Macro-AUC", title="validation Macro-AUC (square: best epoch)")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    if drawn_auc:
        auc_ax.legend(fontsize="small")
    else:
        _empty_note(auc_ax, "no validation Macro-AUC recorded")
    if not drawn_loss:
        _empty_note(loss_ax, "no training loss recorded")
    for ax in (auc_ax, loss_ax):
        ax.grid(True, alpha=0.3)
    figure.suptitle(title)
    return _save(figure, out_path)


def plot_convergence(records, dataset, model, out_path, preset=None) -> str:
    """Fig. 3: validation Macro-AUC (left) and training loss (right) against the epoch.

    One line per selector: the mean over folds, a shaded +-std band where at
    least two folds have a finite value, and the best epoch (peak of the
    fold-mean validation curve) marked with a square. ``preset`` picks
    D2ACE's preset; runs of preset-less selectors (key preset "-") are always
    drawn, since they are the baselines of every preset. ``preset=None``
    keeps every preset, each (selector, preset) its own line. NaN entries in
    a history are gaps in the line. Returns ``out_path``.
    """
    chosen = [
        r for r in records
        if r["key"].get("dataset") == dataset and r["key"].get("model") == model
        and (preset is None or r["key"].get("preset") in (preset, *AGNOSTIC_PRESETS))
    ]
    if not chosen:
        raise ValueError(f"no records for dataset={dataset!r}, model={model!r}, preset={preset!r}")
    title = f"{dataset} / {model}" + (f" / {preset}" if preset is not None else "")
    return _convergence_figure(chosen, title, out_path)


def _convergence_groups(records: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """[((dataset, model, preset), records)] sorted, one per convergence figure.

    Baseline runs carry the agnostic preset "-": they join the figure of each
    D2ACE preset run on the same (dataset, model), so every figure compares
    D2ACE with its baselines. A (dataset, model) without any preset run gets
    one figure under its own (agnostic) preset.
    """
    by_pair: dict[tuple, list[dict]] = {}
    for record in records:
        key = record["key"]
        by_pair.setdefault((key.get("dataset"), key.get("model")), []).append(record)
    groups = []
    for (dataset, model), pair in by_pair.items():
        presets = {r["key"].get("preset") for r in pair}
        named = sorted((p for p in presets if p not in AGNOSTIC_PRESETS), key=str)
        if not named:
            groups.append(((dataset, model, pair[0]["key"].get("preset")), pair))
        for preset in named:
            chosen = [r for r in pair if r["key"].get("preset") in (preset, *AGNOSTIC_PRESETS)]
            groups.append(((dataset, model, preset), chosen))
    return sorted(groups, key=lambda item: tuple(map(str, item[0])))
