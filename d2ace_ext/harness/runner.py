"""Running the (data set, model, selector, fold) grid of a comparison: loads and cuts
each data set once, skips the runs the results file already holds, and runs the rest
in this process or in ``jobs`` worker processes, writing each record as it ends."""
from __future__ import annotations

import itertools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..datasets.mulan import load_dataset
from .experiment import Protocol, RunKey, canonical_selector
from .fold_data import PreparedDataset
from .fold_run import run_fold
from .results import ResultsStore, key_tuple


@dataclass(frozen=True)
class Grid:
    """What a comparison covers. ``preset``: D2ACE's preset; ``repeats``: how many times the
    k-fold protocol runs, each under its own fold and model seeds (repeat r: seed + 1000 r)."""

    datasets: tuple[str, ...]
    models: tuple[str, ...]
    selectors: tuple[str, ...]
    preset: str = "paper"
    repeats: int = 1

    def keys(self, protocol: Protocol) -> list[RunKey]:
        """Repeat-major, so an interrupted grid has whole repeats done before the next starts."""
        if not isinstance(self.repeats, int) or self.repeats < 1:
            raise ValueError(f"repeats must be an integer >= 1, got {self.repeats!r}")
        selectors = [canonical_selector(s) for s in self.selectors]
        return [RunKey.make(d, m, s, self.preset, f, protocol, r)
                for r, d, m, s, f in itertools.product(range(self.repeats), self.datasets, self.models, selectors,
                                                       range(protocol.folds))]


_WORKER_DATA: dict = {}


def _prepared(name: str, data_dir: str | None, protocol: Protocol) -> PreparedDataset:
    cached = _WORKER_DATA.get((name, data_dir, protocol.digest()))
    if cached is None:
        features, labels, names = load_dataset(name, data_dir)
        cached = PreparedDataset(name, features, labels, names, protocol)
        _WORKER_DATA[(name, data_dir, protocol.digest())] = cached
    return cached


def _run_one(key: RunKey, data_dir, protocol, device, results_dir, trace, progress, threads, position=0) -> dict:
    if threads:
        torch.set_num_threads(threads)
    data = _prepared(key.dataset, data_dir, protocol).fold(key.fold, key.repeat)
    return run_fold(key, data, protocol, device=device, results_dir=results_dir, trace=trace,
                    progress=progress, position=position)


def run_grid(grid: Grid, protocol: Protocol, results_dir: str, *, data_dir: str | None = None, device: str = "cpu",
             jobs: int = 1, threads: int | None = None, trace: str = "none", progress: bool = True,
             report_only: bool = False) -> dict:
    """Run every missing run of ``grid``; returns {key tuple: record} of the grid's runs.

    trace: "none", "first" (fold 0 of each configuration) or "all" runs write figure traces.
    report_only: run nothing; return the grid's runs already in the results file (a
    partial grid's tables: unpaired runs simply drop out of the paired statistics).
    """
    if trace not in ("none", "first", "all"):
        raise ValueError(f"trace must be 'none', 'first' or 'all', got {trace!r}")
    store = ResultsStore(results_dir)
    done = store.records()
    keys = grid.keys(protocol)
    todo = [k for k in keys if key_tuple(k.to_dict()) not in done]
    if report_only:
        print(f"{len(keys) - len(todo)} of {len(keys)} runs in {store.path}; reporting those, running none")
        return {key_tuple(k.to_dict()): done[key_tuple(k.to_dict())] for k in keys if k not in todo}
    for name in grid.datasets:  # fail fast on a missing set, before hours of runs
        if any(k.dataset == name for k in todo):
            _prepared(name, data_dir, protocol)
    if len(todo) < len(keys):
        print(f"{len(keys) - len(todo)} of {len(keys)} runs already in {store.path}: skipped")
    wants_trace = {k: trace == "all" or (trace == "first" and k.fold == 0) for k in todo}
    bar = tqdm(total=len(todo), desc="runs", disable=not progress or not todo, position=0, dynamic_ncols=True)
    if jobs <= 1:
        for key in todo:
            record = _run_one(key, data_dir, protocol, device, results_dir, wants_trace[key], progress, threads, 1)
            store.append(record)
            done[key_tuple(record["key"])] = record
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = [pool.submit(_run_one, key, data_dir, protocol, device, results_dir, wants_trace[key],
                                   False, threads or 1) for key in todo]
            for future in as_completed(futures):
                record = future.result()
                store.append(record)
                done[key_tuple(record["key"])] = record
                bar.update()
    bar.close()
    return {key_tuple(k.to_dict()): done[key_tuple(k.to_dict())] for k in keys}
