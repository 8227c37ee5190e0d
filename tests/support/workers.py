"""Runs a worker script of this package in a process of its own (the multi-process tests)."""

import os
import subprocess
import sys

from .paths import ROOT, TESTS


def run_worker(name: str, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m support.<name> ARGS...`` with this checkout's d2ace_ext and tests/ first on
    the path (not an installed copy); fails the test with the worker's stderr on a non-zero exit."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, TESTS] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    run = subprocess.run(
        [sys.executable, "-m", f"support.{name}", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run
