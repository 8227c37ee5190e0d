"""Fig. 2 / A6: the validation AUC of chosen labels and the label weights the
selector gave them, across epochs.
"""

from __future__ import annotations

import numpy as np

from .plot_figure import _integer_locator, _new_figure, _save, _trace_title
from .plot_records import _supports_label_weights, load_trace


def _final_auc(label_auc: np.ndarray) -> np.ndarray:
    """(q,) last finite validation AUC of each label, NaN for a label never finite."""
    finite = np.isfinite(label_auc)
    final = np.full(label_auc.shape[1], np.nan)
    has = finite.any(axis=0)
    last_row = label_auc.shape[0] - 1 - np.argmax(finite[::-1], axis=0)
    final[has] = label_auc[last_row[has], np.flatnonzero(has)]
    return final


def _default_labels(label_auc: np.ndarray) -> list[int]:
    """The labels with the highest and the lowest final AUC among finite ones (one if they coincide)."""
    final = _final_auc(label_auc)
    if not np.isfinite(final).any():
        return list(range(min(2, label_auc.shape[1])))  # nothing to rank by: the first labels
    chosen = [int(np.nanargmax(final)), int(np.nanargmin(final))]
    return chosen[:1] if chosen[0] == chosen[1] else chosen


def _resolve_labels(labels, names: np.ndarray) -> list[int]:
    """Label indices from names or indices (negative indices count from the end)."""
    resolved = []
    for label in labels:
        if isinstance(label, (int, np.integer)):
            if not -len(names) <= label < len(names):
                raise ValueError(f"label index {label} out of range for {len(names)} labels")
            resolved.append(int(label) % len(names))
        else:
            matches = np.flatnonzero(names == str(label))
            if matches.size == 0:
                raise ValueError(f"unknown label name {label!r}")
            resolved.append(int(matches[0]))
    return resolved


_WEIGHT_SERIES = (
    ("label_weights_u", "v_U (uncertainty)", "C1", "-"),
    ("label_weights_h", "v_H (hardness)", "C3", "-"),
    ("label_weights", "selector label weight", "C2", "--"),
)


def _draw_label_panel(ax, trace: dict, label: int) -> list:
    """AUC of one label on the left axis, its label weights on a twin right axis.

    A weight series that is all NaN for this label (another selector, or
    D2ACE weights not recorded) is left out rather than drawn as an empty
    line. Returns the panel's line handles for the shared legend.
    """
    x = np.asarray(trace["label_epochs"], dtype=np.float64)
    auc = trace["label_auc"][:, label]
    handles = ax.plot(x, auc, color="black", linewidth=1.8, label="validation AUC")
    ax.set(xlabel="epoch", ylabel="validation AUC")
    ax.xaxis.set_major_locator(_integer_locator())
    ax.grid(True, alpha=0.3)

    weights = [
        (trace[f][:, label], name, color, style)
        for f, name, color, style in _WEIGHT_SERIES
        if np.isfinite(trace[f][:, label]).any()
    ]
    if weights:
        twin = ax.twinx()
        for values, name, color, style in weights:
            handles += twin.plot(x, values, color=color, linestyle=style, label=name)
        twin.set_ylabel("label weight")
    else:
        ax.text(0.02, 0.02, "no label weights recorded", transform=ax.transAxes, color="0.4", fontsize="small")

    final = _final_auc(trace["label_auc"][:, [label]])[0]
    suffix = f" (final AUC {final:.3f})" if np.isfinite(final) else " (AUC undefined)"
    ax.set_title(f"{trace['label_names'][label]}{suffix}")
    return handles


def plot_label_weights(trace_path, out_path, labels=None, title=None) -> str:
    """Fig. 2 / A6: per chosen label, its validation AUC and label weights across epochs.

    Default labels: those with the highest and the lowest final validation
    AUC (last finite value) among labels with a finite AUC, so the figure
    contrasts a well-learned with a poorly learned label; one panel when q = 1
    or they coincide. ``labels`` may give label names or indices instead.
    Each panel puts the AUC on the left axis and v_U, v_H (D2ACE, Eqs. 6-7)
    and the selector's own label weight (Balance, Hard-Imb) on a twin right
    axis, skipping series that are all NaN. Returns ``out_path``.
    """
    trace = load_trace(trace_path)
    if not _supports_label_weights(trace):
        raise ValueError(f"{trace_path}: the trace holds no per-label validation AUC")
    names = trace["label_names"]
    chosen = _default_labels(trace["label_auc"]) if labels is None else _resolve_labels(list(labels), names)
    if not chosen:
        raise ValueError("no labels to plot")

    figure, axes = _new_figure(1, len(chosen), 5.5 * len(chosen), 4.0)
    legend = {}
    for ax, label in zip(axes[0], chosen):
        for handle in _draw_label_panel(ax, trace, label):
            legend.setdefault(handle.get_label(), handle)
    # One legend below the panels: inside, it would hide the curves (the twin axis draws on top).
    figure.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=len(legend), fontsize="small")
    figure.suptitle(_trace_title(trace_path, title))
    return _save(figure, out_path)
