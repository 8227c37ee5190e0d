"""Running the (data set, model, selector, fold) grid of a comparison: loads and cuts
each data set once, skips the runs the results file already holds, and runs the rest
in this process or in ``jobs`` worker processes, writing each record as it ends.

A run that fails does not take the others with it: every run that finishes is written,
and the failures are raised together at the end (:class:`RunFailures`)."""

from __future__ import annotations

import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..datasets.mulan import load_dataset
from .experiment import Protocol, RunKey, canonical_selector
from .fold_data import PreparedDataset
from .fold_run import run_fold
from .option_checks import check_run_options
from .results import ResultsStore, key_tuple
from .run_failures import RunFailure, RunFailures, failure_of
from .writable import require_writable


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
        return [
            RunKey.make(d, m, s, self.preset, f, protocol, r)
            for r, d, m, s, f in itertools.product(
                range(self.repeats), self.datasets, self.models, selectors, range(protocol.folds)
            )
        ]


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
    return run_fold(
        key, data, protocol, device=device, results_dir=results_dir, trace=trace, progress=progress, position=position
    )


def run_grid(
    grid: Grid,
    protocol: Protocol,
    results_dir: str,
    *,
    data_dir: str | None = None,
    device: str = "cpu",
    jobs: int = 1,
    threads: int | None = None,
    trace: str = "none",
    progress: bool = True,
    report_only: bool = False,
) -> dict:
    """Run every missing run of ``grid``; returns {key tuple: record} of the grid's runs.

    trace: "none", "first" (fold 0 of each configuration) or "all" runs write figure traces.
    report_only: run nothing; return the grid's runs already in the results file (a
    partial grid's tables: unpaired runs simply drop out of the paired statistics); raises
    ValueError if the folder holds no results file.
    Raises :class:`RunFailures` after the last run when any run raised; the records of
    all the others are written by then. Raises ValueError, without starting more runs, when
    a record cannot be appended (a full or read-only disk).
    """
    if trace not in ("none", "first", "all"):
        raise ValueError(f"trace must be 'none', 'first' or 'all', got {trace!r}")
    store = ResultsStore(results_dir)
    if report_only:  # a mistyped folder would read as no runs: tables of dashes
        store.require()
    else:  # before hours of runs: where the records (and traces) go, then every data set
        require_writable(results_dir, "results folder (--results-dir)", store.path)
    done = store.records()
    keys = grid.keys(protocol)
    todo = [k for k in keys if key_tuple(k.to_dict()) not in done]
    if report_only:
        print(f"{len(keys) - len(todo)} of {len(keys)} runs in {store.path}; reporting those, running none")
        return {key_tuple(k.to_dict()): done[key_tuple(k.to_dict())] for k in keys if k not in todo}
    wants_trace = {k: trace == "all" or (trace == "first" and k.fold == 0) for k in todo}
    if any(wants_trace.values()):
        require_writable(os.path.join(results_dir, "traces"), "trace folder (--trace)")
    for name in grid.datasets:
        if any(k.dataset == name for k in todo):
            check_run_options(grid, protocol, _prepared(name, data_dir, protocol))
    if len(todo) < len(keys):
        print(f"{len(keys) - len(todo)} of {len(keys)} runs already in {store.path}: skipped")
    failures: list[RunFailure] = []

    def finished(key: RunKey, record: dict) -> None:
        try:
            store.append(record)
        except OSError as error:  # a full or read-only disk: later records could not be written either
            failed = f"; {len(failures)} earlier run(s) had failed" if failures else ""
            raise ValueError(
                f"the record of run {key.stem()} could not be written to {store.path} "
                f"({error.strerror or error}){failed}; stopped before starting more runs: free space or fix the "
                "folder, then rerun (the runs already in the file are skipped)"
            ) from error
        done[key_tuple(record["key"])] = record
        bar.update()

    bar = tqdm(total=len(todo), desc="runs", disable=not progress or not todo, position=0, dynamic_ncols=True)
    if jobs <= 1:
        for key in todo:
            try:
                record = _run_one(key, data_dir, protocol, device, results_dir, wants_trace[key], progress, threads, 1)
            except Exception as error:  # noqa: BLE001  (reported with the others at the end)
                failures.append(failure_of(key, error))
                continue
            finished(key, record)
    else:
        context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = {
                pool.submit(
                    _run_one, key, data_dir, protocol, device, results_dir, wants_trace[key], False, threads or 1
                ): key
                for key in todo
            }
            for future in as_completed(futures):
                try:
                    record = future.result()
                except Exception as error:  # noqa: BLE001  (reported with the others at the end)
                    failures.append(failure_of(futures[future], error))
                    continue
                try:
                    finished(futures[future], record)
                except ValueError:
                    pool.shutdown(wait=False, cancel_futures=True)  # the runs in flight end; no new one starts
                    raise
    bar.close()
    if failures:
        raise RunFailures(failures, len(todo) - len(failures), store.path)
    return {key_tuple(k.to_dict()): done[key_tuple(k.to_dict())] for k in keys}
