"""Runs of a grid that raised: collected while the other runs go on, raised together at
the end, so one failing run never costs the records of the runs that finished."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from .experiment import RunKey


@dataclass(frozen=True)
class RunFailure:
    """One run that raised: its key, the error in one line, and the full traceback."""

    key: RunKey
    error: str
    traceback: str


class RunFailures(RuntimeError):
    """Some runs of a grid failed; every other run's record was written. ``failures``:
    one :class:`RunFailure` each; ``finished``: how many runs of this call finished."""

    def __init__(self, failures: list[RunFailure], finished: int, path: str) -> None:
        self.failures, self.finished, self.path = failures, finished, path
        lines = [f"  {f.key.stem()}: {f.error}" for f in failures]
        super().__init__(
            f"{len(failures)} of {len(failures) + finished} runs failed (the {finished} others are in "
            f"{path}; a rerun retries only the failed ones):\n" + "\n".join(lines)
        )


def failure_of(key: RunKey, error: BaseException) -> RunFailure:
    """The :class:`RunFailure` of ``key``'s run that raised ``error`` (in this process or a worker)."""
    text = "".join(traceback.format_exception(error))
    cause = error.__cause__  # a worker's traceback travels as the cause of the re-raised error
    if cause is not None and cause.__class__.__name__ == "_RemoteTraceback":
        text = str(cause) + text
    return RunFailure(key, f"{type(error).__name__}: {error}".splitlines()[0], text)
