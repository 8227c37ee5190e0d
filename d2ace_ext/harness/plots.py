"""PNG figures from an experiment's results folder (the paper's Figs. 1, 2, 3, A5, A6).

The harness writes ``results.jsonl`` (one JSON object per completed
(dataset, model, selector, fold) run; a repeated key means a rerun and the
last line wins) and optional ``.npz`` traces of the selector's state. This
module turns them into figures:

* :func:`plot_convergence` - Fig. 3: validation Macro-AUC and training loss
  against the epoch, one line per selector, mean over folds with a +-std band.
* :func:`plot_probability_deciles` - Fig. 1 / A5: what kind of instances
  (outliers, high/medium/low loss) fill each decile of the sampling
  distribution.
* :func:`plot_label_weights` - Fig. 2 / A6: the validation AUC of two labels
  and the label weights the selector gave them, across epochs.
* :func:`plot_results` - every figure a folder supports.

Only ``matplotlib.figure.Figure`` with an explicit Agg canvas is used, so
nothing here touches pyplot's global state or the user's chosen backend, and
matplotlib is imported lazily (it is not a dependency of the package).
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np

__all__ = [
    "GROUPS",
    "load_records",
    "load_trace",
    "decile_groups",
    "loss_tiers",
    "plot_convergence",
    "plot_probability_deciles",
    "plot_label_weights",
    "plot_results",
]

RESULTS_FILE = "results.jsonl"
DPI = 110

#: Column order of :func:`decile_groups` and the stacking order of the bars.
GROUPS = ("outlier", "high loss", "medium loss", "low loss")
_GROUP_COLORS = ("#d62728", "#ff7f0e", "#1f77b4", "#2ca02c")


# --------------------------------------------------------------------------- records

def _results_path(results_dir) -> Path:
    """Accept the folder or the ``results.jsonl`` file itself."""
    path = Path(results_dir)
    return path if path.suffix == ".jsonl" else path / RESULTS_FILE


def _key_id(key: dict) -> str:
    # Canonical text so that the same key written with another field order still matches.
    return json.dumps(key, sort_keys=True, default=str)


def load_records(results_dir) -> list[dict]:
    """Read ``results.jsonl``; when a key repeats (a rerun) the last line wins.

    Records keep the position of the key's first appearance. Blank lines are
    ignored; a line that is not valid JSON is skipped with a warning, because
    the harness may be appending to the file while it is read (a torn last line).

    Raises FileNotFoundError naming the expected ``results.jsonl`` when it is missing.
    """
    path = _results_path(results_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no results: expected {path}")
    records: dict[str, dict] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)  # json reads NaN / Infinity as floats
            except json.JSONDecodeError as error:
                warnings.warn(f"{path}:{number}: skipping unreadable line ({error})", stacklevel=2)
                continue
            if not isinstance(record, dict) or not isinstance(record.get("key"), dict):
                warnings.warn(f"{path}:{number}: skipping a line without a 'key' object", stacklevel=2)
                continue
            records[_key_id(record["key"])] = record
    return list(records.values())


def _as_float(values) -> np.ndarray:
    """(k,) float64; JSON nulls become NaN."""
    if values is None:
        return np.zeros(0)
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def _history_series(record: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs (k,), values (k,)) of one history series; empty when absent."""
    history = record.get("history") or {}
    values = _as_float(history.get(name))
    epochs = _as_float(history.get("epoch"))
    if epochs.size != values.size:
        # No (or inconsistent) epoch column: assume one entry per epoch from 0.
        epochs = np.arange(values.size, dtype=np.float64)
    return epochs, values


# --------------------------------------------------------------------------- traces

def load_trace(trace_path) -> dict:
    """Load a trace ``.npz`` into a plain dict, filling optional fields.

    Shapes: ``epochs`` (E,), ``probabilities`` / ``instance_loss`` (E, n),
    ``outlier`` (n,), ``label_epochs`` (T,), ``label_auc`` /
    ``label_weights_u`` / ``label_weights_h`` / ``label_weights`` (T, q),
    ``label_names`` (q,) str. Missing weight fields become all-NaN (T, q)
    arrays and missing names become ``"label i"``, so the plotting code has
    one shape to deal with.
    """
    with np.load(trace_path, allow_pickle=False) as data:
        trace = {name: data[name] for name in data.files}
    if "probabilities" in trace:
        trace["probabilities"] = np.atleast_2d(np.asarray(trace["probabilities"], dtype=np.float64))
        E, n = trace["probabilities"].shape
        trace.setdefault("epochs", np.arange(E))
        trace.setdefault("instance_loss", np.full((E, n), np.nan))
        trace.setdefault("outlier", np.zeros(n, dtype=bool))
    if "label_auc" in trace:
        auc = np.asarray(trace["label_auc"], dtype=np.float64)
        if auc.ndim == 1:  # a single epoch or a single label saved flat: make it (T, q)
            auc = auc[:, None] if "label_epochs" in trace and len(trace["label_epochs"]) == auc.size else auc[None, :]
        trace["label_auc"] = auc
        T, q = auc.shape
        trace.setdefault("label_epochs", np.arange(T))
        for name in ("label_weights_u", "label_weights_h", "label_weights"):
            weights = np.asarray(trace.get(name, np.full((T, q), np.nan)), dtype=np.float64)
            trace[name] = weights.reshape(T, q)
        trace.setdefault("label_names", np.asarray([f"label {j}" for j in range(q)]))
        trace["label_names"] = np.asarray([str(s) for s in np.atleast_1d(trace["label_names"])])
    return trace


def _supports_deciles(trace: dict) -> bool:
    return "probabilities" in trace and trace["probabilities"].size > 0


def _supports_label_weights(trace: dict) -> bool:
    return "label_auc" in trace and trace["label_auc"].size > 0


# --------------------------------------------------------------------------- figure helpers

def _new_figure(nrows: int, ncols: int, width: float, height: float):
    """(Figure, axes (nrows, ncols)) on an explicit Agg canvas, not pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    return figure, axes


def _save(figure, out_path) -> str:
    out_path = os.fspath(out_path)
    parent = os.path.dirname(out_path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    figure.savefig(out_path, dpi=DPI, format="png")
    return out_path


def _safe(text) -> str:
    """A file-name-safe rendering of a key field (no path separators)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)) or "none"


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _empty_note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


# --------------------------------------------------------------------------- Fig. 3

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


# --------------------------------------------------------------------------- Fig. 1 / A5

def loss_tiers(instance_loss) -> np.ndarray:
    """(m,) int tier of each loss: 0 high, 1 medium, 2 low, by tertiles of these losses.

    Thresholds are the 1/3 and 2/3 quantiles (linear interpolation) of the
    finite losses: ``low`` is ``loss <= q1/3``, ``high`` is ``loss > q2/3``,
    the rest ``medium``. Thresholds (not ranks) keep equal losses in one tier;
    with distinct losses the tiers have sizes within one of m/3. A non-finite
    loss counts as high (a diverged prediction is as hard as it gets).
    """
    loss = np.asarray(instance_loss, dtype=np.float64).ravel()
    tiers = np.zeros(loss.size, dtype=np.int64)  # non-finite -> high
    finite = np.isfinite(loss)
    if finite.any():
        low_cut, high_cut = np.quantile(loss[finite], [1 / 3, 2 / 3])
        tiers[finite] = np.where(loss[finite] <= low_cut, 2, np.where(loss[finite] > high_cut, 0, 1))
    return tiers


def decile_groups(probabilities, instance_loss, outlier) -> np.ndarray:
    """(10, 4) int counts of instance groups per sampling-probability decile.

    probabilities (n,), instance_loss (n,), outlier (n,) bool, all for one epoch.

    Rows: deciles of the instances sorted by *descending* probability (row 0
    holds the most likely instances; ties keep index order). The n instances
    are split as evenly as possible (``np.array_split``: the first n % 10
    deciles get one more), so n < 10 leaves the last deciles empty.

    Columns follow :data:`GROUPS`: ``outlier`` (the outlier flag, whatever
    the loss), then ``high`` / ``medium`` / ``low loss``, the tertiles of
    instance_loss computed over the *non-outlier* instances only
    (:func:`loss_tiers`), so the three loss tiers are equally sized among the
    instances they describe and outliers do not shift the cut points.
    Each row sums to the decile's size; the whole array sums to n.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    loss = np.asarray(instance_loss, dtype=np.float64).ravel()
    outlier = np.asarray(outlier, dtype=bool).ravel()
    n = probabilities.size
    if loss.size != n or outlier.size != n:
        raise ValueError(f"shapes differ: probabilities {n}, instance_loss {loss.size}, outlier {outlier.size}")

    group = np.zeros(n, dtype=np.int64)  # column of each instance in GROUPS
    inliers = ~outlier
    group[inliers] = 1 + loss_tiers(loss[inliers])

    # NaN probabilities sort last (least likely) rather than anywhere.
    key = np.where(np.isnan(probabilities), -np.inf, probabilities)
    order = np.argsort(-key, kind="stable")
    counts = np.zeros((10, len(GROUPS)), dtype=np.int64)
    for row, members in enumerate(np.array_split(order, 10)):
        counts[row] = np.bincount(group[members], minlength=len(GROUPS))
    return counts


def default_snapshot_epochs(trace: dict) -> list[int]:
    """[first snapshot epoch with non-uniform probabilities (else the first), last one]."""
    snapshot_epochs = np.asarray(trace["epochs"]).ravel()
    probabilities = np.asarray(trace["probabilities"], dtype=np.float64)
    spread = np.nanmax(probabilities, axis=1) - np.nanmin(probabilities, axis=1)
    selective = np.flatnonzero(spread > 1e-12 * np.nanmax(probabilities, axis=1))
    first = snapshot_epochs[selective[0]] if selective.size else snapshot_epochs[0]
    return [int(first), int(snapshot_epochs[-1])]


def _nearest_snapshots(snapshot_epochs: np.ndarray, wanted) -> list[int]:
    """Row indices of the snapshots closest to the wanted epochs (duplicates dropped)."""
    rows = []
    for epoch in wanted:
        row = int(np.argmin(np.abs(snapshot_epochs.astype(np.float64) - float(epoch))))
        if row not in rows:
            rows.append(row)
    return rows


def _trace_title(trace_path, title):
    return title if title is not None else Path(trace_path).stem


def plot_probability_deciles(trace_path, out_path, epochs=None, title=None) -> str:
    """Fig. 1 / A5: stacked bars of instance groups per sampling-probability decile.

    One panel per chosen snapshot: by default the first snapshot whose
    probabilities are not uniform (the first selection epoch after warm-up; deciles
    of a uniform draw would only reflect index order) and the last snapshot (one
    panel when they coincide). ``epochs`` picks
    snapshots by epoch number; an epoch that was not snapshotted maps to the
    nearest snapshot, and the panel title shows the snapshot actually used.

    Grouping (see :func:`decile_groups`): instances are sorted by descending
    sampling probability and cut into 10 deciles (decile 1 = most likely to
    be sampled); each bar stacks ``outlier`` (LocalOutlierFactor flag),
    then, for the non-outliers, ``high`` / ``medium`` / ``low loss`` tiers by
    tertiles of that epoch's per-instance loss. Returns ``out_path``.
    """
    trace = load_trace(trace_path)
    if not _supports_deciles(trace):
        raise ValueError(f"{trace_path}: the trace holds no sampling-probability snapshots")
    snapshot_epochs = np.asarray(trace["epochs"]).ravel()
    wanted = default_snapshot_epochs(trace) if epochs is None else list(np.atleast_1d(epochs))
    rows = _nearest_snapshots(snapshot_epochs, wanted)

    figure, axes = _new_figure(1, len(rows), 5.0 * len(rows), 4.0)
    positions = np.arange(1, 11)
    for ax, row in zip(axes[0], rows):
        counts = decile_groups(trace["probabilities"][row], trace["instance_loss"][row], trace["outlier"])
        bottom = np.zeros(10)
        for column, (name, color) in enumerate(zip(GROUPS, _GROUP_COLORS)):
            ax.bar(positions, counts[:, column], bottom=bottom, color=color, label=name, width=0.8)
            bottom += counts[:, column]
        ax.set_xticks(positions)
        ax.yaxis.set_major_locator(_integer_locator())  # counts: no fractional ticks when n is tiny
        ax.set(xlabel="decile (descending sampling probability)", ylabel="instances",
               title=f"epoch {int(snapshot_epochs[row])}")
    # One legend outside the panels: the bars fill each panel to the top.
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    figure.suptitle(_trace_title(trace_path, title))
    return _save(figure, out_path)


# --------------------------------------------------------------------------- Fig. 2 / A6

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

    weights = [(trace[f][:, label], name, color, style) for f, name, color, style in _WEIGHT_SERIES
               if np.isfinite(trace[f][:, label]).any()]
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


# --------------------------------------------------------------------------- everything

def _trace_files(results_dir: Path, records: list[dict]) -> list[Path]:
    """Existing trace files referenced by the (last-wins) records, in record order, once each."""
    seen, paths = set(), []
    for record in records:
        relative = record.get("trace")
        if not relative:
            continue
        path = results_dir / relative  # an absolute path stays absolute
        if path in seen:
            continue
        seen.add(path)
        if path.is_file():
            paths.append(path)
        else:
            warnings.warn(f"trace {path} referenced by {record['key']} is missing; skipped", stacklevel=3)
    return paths


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


def plot_results(results_dir, out_dir) -> list[str]:
    """Write every figure the results folder supports; returns the written PNG paths.

    * ``convergence__{dataset}__{model}__{preset}.png`` per (dataset, model, preset),
      baselines (preset "-") included in each preset's figure (see
      :func:`_convergence_groups`);
    * ``deciles__{trace stem}.png`` per trace with probability snapshots;
    * ``label_weights__{trace stem}.png`` per trace with per-label AUC.

    Raises FileNotFoundError naming the expected ``results.jsonl`` when the
    folder has none, or when it holds no records.
    """
    path = _results_path(results_dir)
    records = load_records(path)
    if not records:
        raise FileNotFoundError(f"no results: {path} holds no records")
    folder = path.parent
    out_dir = Path(out_dir)
    written = []

    for (dataset, model, preset), group in _convergence_groups(records):
        name = f"convergence__{_safe(dataset)}__{_safe(model)}__{_safe(preset)}.png"
        written.append(_convergence_figure(group, f"{dataset} / {model} / {preset}", out_dir / name))

    for trace_path in _trace_files(folder, records):
        trace = load_trace(trace_path)
        stem = trace_path.stem
        if _supports_deciles(trace):
            written.append(plot_probability_deciles(trace_path, out_dir / f"deciles__{stem}.png"))
        if _supports_label_weights(trace):
            written.append(plot_label_weights(trace_path, out_dir / f"label_weights__{stem}.png"))
    return written
