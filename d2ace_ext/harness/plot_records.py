"""Reading an experiment's results folder for the figures: ``results.jsonl`` records,
their history series, and the ``.npz`` traces of the selector's state they reference.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .results import RESULTS_FILE, read_results, warn_about


def _results_path(results_dir) -> Path:
    """Accept the folder or the ``results.jsonl`` file itself."""
    path = Path(results_dir)
    return path if path.suffix == ".jsonl" else path / RESULTS_FILE


def _key_id(key: dict) -> str:
    # Canonical text so that the same key written with another field order still matches.
    return json.dumps(key, sort_keys=True, default=str)


def load_records(results_dir) -> list[dict]:
    """Read ``results.jsonl``; when a key repeats (a rerun) the last line wins.

    Records keep the position of the key's first appearance. Read by the results
    store's own reader (:func:`~d2ace_ext.harness.results.read_results`): blank lines
    and a torn last line (a run being written) are passed over; other unreadable lines
    are skipped with a warning naming them.

    Raises FileNotFoundError naming the expected ``results.jsonl`` when it is missing.
    """
    path = _results_path(results_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no results: expected {path}")
    lines = read_results(str(path))
    warn_about(lines, stacklevel=3)
    records: dict[str, dict] = {}
    for _, record in lines.records:
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
