"""Time to target: how much training a selector needs to reach what uniform batches reach.

For each paired run (data set, model, repeat, fold) of a selector and of Random, the
target is Random's best validation Macro-AUC minus a tolerance. Each run's time to the
target is measured when its best-so-far validation Macro-AUC first reaches the target
(the first epoch whose value does), in three measures of cost through the end of that
epoch:

* ``epochs``: epochs trained (epoch index + 1);
* ``samples``: training samples drawn (``history["samples_seen"]``; records written
  before that field existed: (epoch + 1) x ``shape["train"]``, exact for full passes);
* ``seconds``: wall seconds of training and selection (``history["elapsed_seconds"]``;
  older records: an estimate, the run's ``seconds`` x (epoch + 1) / epochs, which also
  spreads the validation passes and the final test over the epochs).

The ratio selector / Random of each measure is the pair's relative cost; "compute
saved" is 1 - ratio. Random reaches its own target by definition (the tolerance is
>= 0). A selector run that never reaches it has ratio +inf: it counts as not reaching,
never as its last epoch, so a median ratio is finite only while more than half of the
pairs reach the target. Medians come with a percentile bootstrap interval over the
pairs (``paired.bootstrap_interval``).

Budgeted runs (protocol fields ``budget`` < 1 or ``anneal`` > 0) are paired with the
full-budget Random of the otherwise-equal protocol, and runs with options for other
selectors (``--selector-opt infobatch.rescale=False``, a D2ACE ablation) with Random run
without them, since those options do not change a Random run: ``baseline_of`` maps a
protocol digest to the digests of its baselines in order of preference
(``baseline_digests``: :func:`baseline_protocol`'s, then :func:`full_budget`'s); digests
it does not name pair with Random of their own digest.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .paired import bootstrap_interval
from .protocol_index import protocol_epochs, protocol_labels
from .series import series_order

BASELINE = "random"
#: The tolerance of the headline numbers (``--target-tolerance``) and the tolerances
#: every report shows.
DEFAULT_TOLERANCE = 0.005
REPORTED_TOLERANCES = (0.005, 0.01)
MEASURES = ("epochs", "samples", "seconds")
#: Protocol fields that thin an epoch out, and their full-budget values: a budgeted
#: run's baseline is Random under the same protocol with these at full budget.
FULL_BUDGET = {"budget": 1.0, "anneal": 0.0}


def tolerances(headline: float = DEFAULT_TOLERANCE) -> tuple[float, ...]:
    """The headline tolerance first, then the other reported ones (no repeats)."""
    if not (isinstance(headline, (int, float)) and 0 <= headline < 1):
        raise ValueError(f"--target-tolerance must be in [0, 1), got {headline!r}")
    return (float(headline),) + tuple(t for t in REPORTED_TOLERANCES if t != headline)


def full_budget(protocol):
    """``protocol`` with every budget field (``FULL_BUDGET``) it has at its full-budget value."""
    names = {f.name for f in dataclasses.fields(protocol)}
    return dataclasses.replace(protocol, **{k: v for k, v in FULL_BUDGET.items() if k in names})


def baseline_protocol(protocol):
    """The protocol of ``protocol``'s Random baseline: at full budget, and without the
    options of other selectors (``selector_options`` keeps only Random's, if any)."""
    protocol = full_budget(protocol)
    options = getattr(protocol, "selector_options", None)
    if not options:
        return protocol
    return dataclasses.replace(protocol, selector_options={k: v for k, v in options.items() if k == BASELINE})


def baseline_digests(protocols: dict) -> dict[str, tuple[str, ...]]:
    """{digest: digests of its Random baselines, preferred first} for ``protocols``
    ({digest: Protocol or settings dict, as ``protocol_index.read_protocols`` gives}):
    :func:`baseline_protocol`'s, then :func:`full_budget`'s where it differs (the
    Random runs of a grid that ran Random with another selector's options)."""
    from .protocol_index import protocol_of

    out = {}
    for digest, protocol in protocols.items():
        if isinstance(protocol, dict):
            protocol = protocol_of(protocol, digest)
        out[digest] = tuple(dict.fromkeys((baseline_protocol(protocol).digest(), full_budget(protocol).digest())))
    return out


def first_reach(curve, target: float) -> int | None:
    """Index of the first value >= ``target`` in ``curve`` (k,), None when none is.
    The best-so-far curve first reaches a level exactly where the curve itself does;
    NaN (an epoch without a defined validation AUC) never reaches."""
    values = np.asarray([np.nan if v is None else v for v in curve], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        hits = np.flatnonzero(values >= target)
    return int(hits[0]) if hits.size else None


def cumulative_costs(record: dict) -> tuple[dict[str, np.ndarray], bool]:
    """({measure: cost (k,) through the end of each epoch}, seconds_estimated) of a record
    with k epochs of validation history. A measure the record cannot give is all NaN
    (no ``samples_seen`` and no ``shape.train``; no ``elapsed_seconds`` and no ``seconds``)."""
    history = record.get("history") or {}
    k = len(history.get("val_macro_auc") or [])
    epochs = np.arange(1, k + 1, dtype=np.float64)
    samples = history.get("samples_seen")
    if samples is not None and len(samples) == k:
        samples = np.asarray(samples, dtype=np.float64)
    else:
        train = (record.get("shape") or {}).get("train")
        samples = epochs * float(train) if train else np.full(k, np.nan)
    seconds = history.get("elapsed_seconds")
    estimated = not (seconds is not None and len(seconds) == k)
    if estimated:
        total = record.get("seconds")
        seconds = epochs * (float(total) / k) if total is not None and k else np.full(k, np.nan)
    else:
        seconds = np.asarray(seconds, dtype=np.float64)
    return {"epochs": epochs, "samples": samples, "seconds": seconds}, estimated


def pair_time(record: dict, random_record: dict, tolerance: float) -> dict | None:
    """Time to target of one selector run against the Random run of its cell:
    {"target", "reached", "epoch" (selector's index or None), "random_epoch",
    "cost": {measure: selector's cost, inf when unreached}, "random_cost": {measure: v},
    "ratio": {measure: cost / random_cost}, "seconds_estimated"}.
    None when Random's validation history has no finite value (no target)."""
    random_curve = np.asarray(
        [np.nan if v is None else v for v in random_record["history"]["val_macro_auc"]], dtype=np.float64
    )
    if not np.isfinite(random_curve).any():
        return None
    target = float(np.nanmax(random_curve)) - tolerance
    epoch = first_reach(record["history"]["val_macro_auc"], target)
    random_epoch = first_reach(random_curve, target)
    costs, estimated = cumulative_costs(record)
    random_costs, random_estimated = cumulative_costs(random_record)
    cost = {m: float(costs[m][epoch]) if epoch is not None else math.inf for m in MEASURES}
    random_cost = {m: float(random_costs[m][random_epoch]) for m in MEASURES}
    ratio = {m: cost[m] / random_cost[m] if random_cost[m] > 0 else math.nan for m in MEASURES}
    return {
        "target": target,
        "reached": epoch is not None,
        "epoch": epoch,
        "random_epoch": random_epoch,
        "cost": cost,
        "random_cost": random_cost,
        "ratio": ratio,
        "seconds_estimated": bool(estimated or random_estimated),
    }


def _cell(key: dict) -> tuple:
    return key["dataset"], key["model"], int(key.get("repeat", 0)), int(key["fold"])


def paired_times(records: list[dict], tolerance: float, baseline_of: dict | None = None) -> list[dict]:
    """One entry per (selector run, Random run) pair of the same (data set, model,
    repeat, fold), Random taken under ``baseline_of[protocol]`` (default: the run's own
    protocol): ``pair_time``'s fields plus the run's dataset, model, selector, preset,
    protocol, baseline_protocol, repeat and fold. ``baseline_of[protocol]`` is one digest
    or several in order of preference (the first with a Random run in the cell is taken).
    Random runs that are themselves the baseline, runs without a Random partner and runs
    without a validation history are left out."""
    baseline_of = baseline_of or {}
    randoms = {}
    for record in records:
        key = record["key"]
        if key["selector"] == BASELINE and (record.get("history") or {}).get("val_macro_auc"):
            randoms[_cell(key) + (key["protocol"],)] = record
    pairs = []
    for record in records:
        key = record["key"]
        if not (record.get("history") or {}).get("val_macro_auc"):
            continue
        candidates = baseline_of.get(key["protocol"], key["protocol"])
        candidates = (candidates,) if isinstance(candidates, str) else tuple(candidates)
        found = [(d, randoms[_cell(key) + (d,)]) for d in candidates if _cell(key) + (d,) in randoms]
        if not found:
            continue
        baseline, partner = found[0]
        if key["selector"] == BASELINE and (baseline == key["protocol"] or partner is record):
            continue
        timed = pair_time(record, partner, tolerance)
        if timed is None:
            continue
        dataset, model, repeat, fold = _cell(key)
        pairs.append(
            {
                "dataset": dataset,
                "model": model,
                "selector": key["selector"],
                "preset": key.get("preset", "-"),
                "protocol": key["protocol"],
                "baseline_protocol": baseline,
                "repeat": repeat,
                "fold": fold,
                **timed,
            }
        )
    return pairs


def summarise_pairs(pairs: list[dict]) -> dict:
    """{"pairs": m, "reached": r, "share": r / m, "seconds_estimated": bool,
    "ratio": {measure: {"median", "low", "high"}}, "saved": {measure: {"median", "low", "high"}}}
    over ``pairs`` (m,): the median ratio with its 95 % bootstrap interval, and compute
    saved = 1 - ratio (so its low bound is 1 - the ratio's high bound)."""
    m = len(pairs)
    reached = sum(p["reached"] for p in pairs)
    cell = {
        "pairs": m,
        "reached": reached,
        "share": reached / m if m else math.nan,
        "seconds_estimated": any(p["seconds_estimated"] for p in pairs),
        "ratio": {},
        "saved": {},
    }
    for measure in MEASURES:
        ratios = np.array([p["ratio"][measure] for p in pairs], dtype=np.float64)
        median = float(np.median(ratios)) if m else math.nan
        low, high = bootstrap_interval(ratios, np.median)
        cell["ratio"][measure] = {"median": median, "low": low, "high": high}
        cell["saved"][measure] = {"median": 1.0 - median, "low": 1.0 - high, "high": 1.0 - low}
    return cell


def group_pairs(pairs: list[dict], by) -> dict:
    """{by(pair): [pairs]} in first-seen order; ``by`` maps a pair to a hashable key."""
    groups: dict = {}
    for pair in pairs:
        groups.setdefault(by(pair), []).append(pair)
    return groups


def time_to_target(
    records: list[dict],
    datasets,
    models,
    selectors,
    headline: float = DEFAULT_TOLERANCE,
    baseline_of: dict | None = None,
) -> dict:
    """The time-to-target report of a comparison grid:
    {"tolerances": [t, ...], "measures": MEASURES, "baseline_of": {digest: digest or [digests]},
    "by_tolerance": {str(t): {model: {selector: {"datasets": {dataset: cell}, "all": cell}}}},
    "pairs": {str(t): [pair, ...]}}; cells as ``summarise_pairs``. ``records``: the grid's
    runs plus its baseline Random runs; selectors without any pair are left out."""
    out = {
        "tolerances": list(tolerances(headline)),
        "measures": list(MEASURES),
        "baseline_of": dict(baseline_of or {}),
        "by_tolerance": {},
        "pairs": {},
    }
    for tolerance in out["tolerances"]:
        pairs = [
            p
            for p in paired_times(records, tolerance, baseline_of)
            if p["dataset"] in datasets and p["model"] in models and p["selector"] in selectors
        ]
        groups = group_pairs(pairs, lambda p: (p["model"], p["selector"]))
        block = {}
        for model in models:
            block[model] = {}
            for selector in selectors:
                chosen = groups.get((model, selector), [])
                if not chosen:
                    continue
                cells = _by_dataset(chosen)
                cells["datasets"] = {d: cells["datasets"][d] for d in datasets if d in cells["datasets"]}
                block[model][selector] = cells
        out["by_tolerance"][str(tolerance)] = block
        out["pairs"][str(tolerance)] = pairs
    return out


def _by_dataset(pairs: list[dict]) -> dict:
    """{"datasets": {dataset: cell}, "all": cell} of one series' pairs."""
    return {
        "datasets": {d: summarise_pairs(v) for d, v in group_pairs(pairs, lambda p: p["dataset"]).items()},
        "all": summarise_pairs(pairs),
    }


def results_report(records: list[dict], tolerance: float, protocols: dict | None = None) -> dict:
    """Time to target over a whole results file, per (model, protocol) and series:
    {(model, digest): {"label": str, "datasets": [d, ...], "series": {(selector, preset):
    {"datasets": {d: cell}, "all": cell}}, "budgeted": bool}} in the records' order of
    models and protocols; "budgeted": its runs pair with another protocol's Random."""
    baseline_of = baseline_digests(protocols or {})
    labels = protocol_labels(protocol_epochs(records), protocols)
    datasets_in_order = list(dict.fromkeys(r["key"]["dataset"] for r in records))
    out = {}
    for (model, digest), chosen in group_pairs(
        paired_times(records, tolerance, baseline_of), lambda p: (p["model"], p["protocol"])
    ).items():
        series = group_pairs(chosen, lambda p: (p["selector"], p["preset"]))
        present = {p["dataset"] for p in chosen}
        out[(model, digest)] = {
            "label": labels[digest],
            "datasets": [d for d in datasets_in_order if d in present],
            "budgeted": any(p["baseline_protocol"] != digest for p in chosen),
            "series": {s: _by_dataset(series[s]) for s in sorted(series, key=lambda s: series_order(*s))},
        }
    return out
