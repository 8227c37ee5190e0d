"""Compares the last two saved benchmark runs and fails on a regression.

``make bench`` saves each run as JSON under ``.benchmarks/<machine>/``; this prints,
for every benchmark present in both runs, the old and new median and the change, and
exits 1 when a threshold is crossed. Thresholds use pytest-benchmark's own syntax
(``--benchmark-compare-fail``): ``median:10%`` fails when a median grows by more than
10 %, ``min:0.001`` when a minimum grows by more than 1 ms; several may be given.

    python benchmarks/compare_runs.py [--fail median:10%] [--storage .benchmarks] [OLD.json NEW.json]

Exit status: 0 no regression, 1 a threshold crossed, 2 fewer than two saved runs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from pytest_benchmark.utils import parse_compare_fail


def last_two(storage: str) -> list[str]:
    runs = sorted(glob.glob(os.path.join(storage, "*", "*.json")), key=os.path.getmtime)
    return runs[-2:]


def load(path: str) -> dict:
    with open(path) as fh:
        return {b["fullname"]: b for b in json.load(fh)["benchmarks"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="two JSON files, old then new (default: the last two saved)")
    parser.add_argument(
        "--fail", action="append", default=[], help="a threshold such as median:10%% (repeatable); none: report only"
    )
    parser.add_argument("--storage", default=".benchmarks")
    args = parser.parse_args(argv)
    try:
        checks = [parse_compare_fail(text) for text in args.fail if text]
    except argparse.ArgumentTypeError as error:
        parser.error(f"--fail: {error} Use e.g. median:10% or min:0.001 (seconds)")
    runs = args.runs or last_two(args.storage)
    if len(runs) != 2:
        print(f"need two saved runs to compare, found {len(runs)} under {args.storage}/ (run `make bench` twice)")
        return 2
    old, new = (load(path) for path in runs)
    print(f"old: {runs[0]}\nnew: {runs[1]}")
    common = [name for name in new if name in old]
    width = max((len(name) for name in common), default=20)
    print(f"{'benchmark':<{width}} {'old median':>12} {'new median':>12} {'change':>8}")
    failures = []
    for name in common:
        before, after = old[name]["stats"], new[name]["stats"]
        change = (after["median"] / before["median"] - 1) * 100 if before["median"] else float("inf")
        failed = [msg for check in checks if (msg := check.fails(after, before))]
        mark = "  FAIL" if failed else ""
        print(
            f"{name:<{width}} {before['median'] * 1e3:>10.3f}ms {after['median'] * 1e3:>10.3f}ms {change:>+7.1f}%{mark}"
        )
        failures += [f"{name}: {msg}" for msg in failed]
    missing = len(set(old) ^ set(new))
    if missing:
        print(f"({missing} benchmark(s) in only one of the two runs, not compared)")
    if failures:
        print(f"\n{len(failures)} regression(s):\n  " + "\n  ".join(failures))
        return 1
    print(f"\nno regression ({', '.join(t for t in args.fail if t) or 'no threshold set'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
