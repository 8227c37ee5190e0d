"""PNG figures from an experiment's results folder (the paper's Figs. 1, 2, 3, A5, A6).

The harness writes ``results.jsonl`` (one JSON object per completed
(dataset, model, selector, fold) run; a repeated key means a rerun and the
last line wins) and optional ``.npz`` traces of the selector's state. This
module turns them into figures:

* :func:`plot_convergence` - Fig. 3: validation Macro-AUC and training loss
  against the epoch, a panel per protocol and D2ACE preset, one line per selector
  in its own colour, mean over folds with a +-std band.
* :func:`plot_compute_saved` - compute saved to reach Random's best validation
  Macro-AUC minus a tolerance, per data set and selector, with intervals.
* :func:`plot_probability_deciles` - Fig. 1 / A5: what kind of instances
  (outliers, high/medium/low loss) fill each decile of the sampling
  distribution.
* :func:`plot_label_weights` - Fig. 2 / A6: the validation AUC of two labels
  and the label weights the selector gave them, across epochs.
* :func:`plot_results` - every figure a folder supports.

The figures live in sibling modules (``plot_records``, ``plot_figure``,
``plot_convergence``, ``plot_time_to_target``, ``plot_deciles``,
``plot_label_weights``); this module is
their public entry point and re-exports their names.

Only ``matplotlib.figure.Figure`` with an explicit Agg canvas is used, so
nothing here touches pyplot's global state or the user's chosen backend, and
matplotlib is imported lazily (it is not a dependency of the package).
"""

from __future__ import annotations

from pathlib import Path

# Every name this module defined before the split stays importable from it.
from .plot_convergence import (  # noqa: F401
    _convergence_figure,
    _convergence_groups,
    _display_name,
    _fold_matrix,
    _has_series,
    _mean_std,
    convergence_panels,
    plot_convergence,
)
from .plot_deciles import (  # noqa: F401
    _GROUP_COLORS,
    GROUPS,
    _nearest_snapshots,
    decile_groups,
    default_snapshot_epochs,
    loss_tiers,
    plot_probability_deciles,
)
from .plot_figure import DPI, _empty_note, _integer_locator, _new_figure, _safe, _save, _trace_title  # noqa: F401
from .plot_label_weights import (  # noqa: F401
    _WEIGHT_SERIES,
    _default_labels,
    _draw_label_panel,
    _final_auc,
    _resolve_labels,
    plot_label_weights,
)
from .plot_records import (  # noqa: F401
    RESULTS_FILE,
    _as_float,
    _history_series,
    _key_id,
    _results_path,
    _supports_deciles,
    _supports_label_weights,
    _trace_files,
    load_records,
    load_trace,
)
from .plot_time_to_target import NoPairs, plot_compute_saved  # noqa: F401
from .protocol_index import read_protocols
from .series import AGNOSTIC_PRESETS, SELECTOR_COLORS  # noqa: F401
from .time_to_target import BASELINE, DEFAULT_TOLERANCE, baseline_digests, tolerances

__all__ = [
    "GROUPS",
    "load_records",
    "load_trace",
    "decile_groups",
    "loss_tiers",
    "plot_convergence",
    "plot_compute_saved",
    "plot_probability_deciles",
    "plot_label_weights",
    "plot_results",
]


def plot_results(
    results_dir, out_dir, tolerance: float | None = None, protocols_shown: list[str] | None = None
) -> list[str]:
    """Write every figure the results folder supports; returns the written PNG paths.

    ``results_dir``: a folder or ``results.jsonl`` file, or a list of them (the records
    joined, a key in a later one replacing the earlier; their ``protocols.json`` merged),
    so that budgeted runs kept in one evidence file meet the full-budget Random runs of
    another. ``protocols_shown``: protocol digests to draw (with the Random runs of their
    baselines, which time to target pairs them with); None draws every protocol.

    * ``convergence__{dataset}__{model}.png`` per (dataset, model) with a validation
      or training-loss history: a panel per protocol and D2ACE preset
      (:func:`convergence_panels`), baselines in each preset's panel;
    * ``compute_saved.png`` when any selector run has a Random partner (time to
      Random's best validation Macro-AUC minus ``tolerance``, default
      ``time_to_target.DEFAULT_TOLERANCE``);
    * ``deciles__{trace stem}.png`` per trace with probability snapshots;
    * ``label_weights__{trace stem}.png`` per trace with per-label AUC.

    Raises FileNotFoundError naming the expected ``results.jsonl`` when the
    folder has none, or when it holds no records; ValueError for a bad tolerance or a
    ``protocols.json`` entry that does not hash to its digest.
    """
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    tolerances(tolerance)  # a bad tolerance is refused by name, never taken for "nothing to pair"
    paths = [_results_path(p) for p in ([results_dir] if isinstance(results_dir, (str, Path)) else results_dir)]
    joined, protocols = {}, {}
    for path in paths:
        joined.update((_key_id(r["key"]), r) for r in load_records(path))
        protocols.update(read_protocols(str(path)))
    records = list(joined.values())
    if not records:
        raise FileNotFoundError(f"no results: {', '.join(map(str, paths))} hold no records")
    if protocols_shown is not None:
        records = shown_protocols(records, protocols_shown, protocols)
    out_dir = Path(out_dir)
    written = []

    for (dataset, model), group in _convergence_groups(records):
        if not any(_has_series(group, name) for name in ("val_macro_auc", "train_loss")):
            continue  # nothing to draw: no figure rather than an empty one
        name = f"convergence__{_safe(dataset)}__{_safe(model)}.png"
        written.append(_convergence_figure(group, f"{dataset} / {model}", out_dir / name, protocols))
    if any(_has_series([r], "val_macro_auc") and r["key"].get("selector") != BASELINE for r in records):
        try:
            written.append(plot_compute_saved(records, out_dir / "compute_saved.png", tolerance, protocols))
        except NoPairs:
            pass  # no selector run has a Random partner: nothing to compare (a bad protocols.json still raises)

    for trace_path in [t for path in paths for t in _trace_files(path.parent, records)]:
        trace = load_trace(trace_path)
        stem = trace_path.stem
        if _supports_deciles(trace):
            written.append(plot_probability_deciles(trace_path, out_dir / f"deciles__{stem}.png"))
        if _supports_label_weights(trace):
            written.append(plot_label_weights(trace_path, out_dir / f"label_weights__{stem}.png"))
    return written


def shown_protocols(records: list[dict], digests: list[str], protocols: dict) -> list[dict]:
    """The records of protocols ``digests`` and, on the same data sets and models, the
    Random records of their baseline protocols (``time_to_target.baseline_digests``: a
    budgeted run's partner is the full-budget Random). ValueError naming a digest no
    record carries."""
    present = {r["key"].get("protocol") for r in records}
    unknown = [d for d in digests if d not in present]
    if unknown:
        raise ValueError(
            f"protocols: no record carries {', '.join(unknown)}; the results hold {', '.join(sorted(map(str, present)))}"
        )
    # A digest missing from protocols.json has no known baseline: only its own runs are drawn.
    known = {d: protocols[d] for d in digests if d in protocols}
    baselines = {b for found in baseline_digests(known).values() for b in found}
    shown = [r for r in records if r["key"].get("protocol") in digests]
    cells = {(r["key"].get("dataset"), r["key"].get("model")) for r in shown}
    partners = [
        r
        for r in records
        if r["key"].get("protocol") in baselines
        and r["key"].get("protocol") not in digests
        and r["key"].get("selector") == BASELINE
        and (r["key"].get("dataset"), r["key"].get("model")) in cells
    ]
    return shown + partners
