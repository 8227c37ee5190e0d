"""The results file of an experiment folder: JSON Lines, one record per finished fold
run, appended and synced as each run ends, so an interrupted comparison loses at most
the runs in flight and a rerun skips what is already there.

A write cut short (a kill, a full disk) leaves a torn last line with no newline. It is
the one damage the store expects: readers pass over it silently (the run is simply
missing and reruns), and the next append first moves it to ``results.jsonl.torn`` so
the new record starts on a line of its own. Any other unreadable line is reported by
number. :func:`read_results` is the one reader of these files (``compare``, the
evidence tool and the figures all use it).

Several commands may append to one file at once (two grids sharing a results folder):
an append holds an exclusive lock on the file (``flock``, where the platform has it)
from the tail check to the sync, so one append never takes another's line, still
being written, for a torn one.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field

try:
    import fcntl
except ImportError:  # Windows: appends are not locked against each other
    fcntl = None

RESULTS_FILE = "results.jsonl"
#: Suffix of the file beside a results file that keeps the torn fragments cut from its end.
TORN_SUFFIX = ".torn"
_KEY_START = b'{"key"'  # how record_line begins every record: where a glued record starts


def key_tuple(key: dict) -> tuple:
    """The identity of one run; records written before repeats existed are repeat 0."""
    return (
        key["dataset"],
        key["model"],
        key["selector"],
        key["preset"],
        int(key["fold"]),
        key["protocol"],
        int(key.get("repeat", 0)),
    )


def record_line(record: dict) -> str:
    """One record as its JSON line (without the newline); NaN metrics stay NaN."""
    return json.dumps(record, allow_nan=True, default=float)


def _record(text: bytes) -> dict | None:
    """The record a line holds, or None: a JSON object with a ``key`` that names a run."""
    try:
        record = json.loads(text)
        key_tuple(record["key"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        return None
    return record


@dataclass
class ResultsLines:
    """What :func:`read_results` found. records: (line number, record) in file order,
    including ``salvaged`` ones; unreadable: numbers of lines that hold no record, other
    than a torn last line; salvaged: numbers of lines where a record was glued after a
    torn fragment (files appended to before appends repaired the tail) and was kept;
    torn: the torn last line (no newline, no record), or None."""

    path: str
    records: list[tuple[int, dict]] = field(default_factory=list)
    unreadable: list[int] = field(default_factory=list)
    salvaged: list[int] = field(default_factory=list)
    torn: str | None = None

    def problems(self) -> str | None:
        """One sentence naming the unreadable and salvaged lines, or None when there are none."""
        parts = []
        if self.unreadable:
            parts.append(
                f"unreadable line(s) {_numbers(self.unreadable)} (not JSON, or no run key) were skipped: "
                "their runs count as missing"
            )
        if self.salvaged:
            parts.append(f"line(s) {_numbers(self.salvaged)} began with a torn fragment; the record after it was kept")
        return f"{self.path}: " + "; ".join(parts) if parts else None


def _numbers(numbers: list[int], shown: int = 20) -> str:
    text = ", ".join(map(str, numbers[:shown]))
    return text + (f" and {len(numbers) - shown} more" if len(numbers) > shown else "")


def read_results(path: str) -> ResultsLines:
    """Every record of a results file (JSON Lines), with the lines that hold none.

    A last line without a newline that holds no record is a write cut short: returned
    as ``torn``, not counted unreadable. Blank lines are ignored. A missing file reads
    as empty."""
    found = ResultsLines(path)
    if not os.path.exists(path):
        return found
    if not os.path.isfile(path):
        raise ValueError(f"{path} is not a file: a results file is JSON Lines, one record per run")
    with open(path, "rb") as handle:
        lines = handle.read().split(b"\n")
    # split leaves b"" after a final newline; otherwise the last piece had none
    last = len(lines) - 1 if lines[-1] else None
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        record = _record(raw)
        if record is not None:
            found.records.append((number, record))
            continue
        glued = raw.rfind(_KEY_START)
        record = _record(raw[glued:]) if glued > 0 else None
        if record is not None:
            found.records.append((number, record))
            found.salvaged.append(number)
        elif number - 1 == last:
            found.torn = raw.decode("utf-8", errors="replace")
        else:
            found.unreadable.append(number)
    return found


def warn_about(lines: ResultsLines, stacklevel: int = 2) -> None:
    """A UserWarning naming the unreadable and salvaged lines of ``lines``, if any."""
    problems = lines.problems()
    if problems:
        warnings.warn(problems, UserWarning, stacklevel=stacklevel + 1)


def repair_torn_tail(path: str) -> str | None:
    """End ``path`` on a fresh line before anything is appended to it.

    A last line without its newline that holds a whole record gets the newline; any
    other unterminated tail (a write cut short) is appended to ``path + ".torn"`` and
    cut off the file. Returns the fragment moved, or None."""
    if not os.path.exists(path):
        return None
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return None
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return None
        start = _last_line_start(handle, size)
        handle.seek(start)
        tail = handle.read()
        if _record(tail) is not None:
            handle.seek(size)
            handle.write(b"\n")
            fragment = None
        else:
            with open(path + TORN_SUFFIX, "ab") as torn:  # kept, not destroyed: it may matter to someone
                torn.write(tail + b"\n")
                torn.flush()
                os.fsync(torn.fileno())
            handle.truncate(start)
            fragment = tail.decode("utf-8", errors="replace")
        handle.flush()
        os.fsync(handle.fileno())
    return fragment


def _last_line_start(handle, size: int, chunk: int = 1 << 16) -> int:
    """Offset just after the last newline of an open binary file of ``size`` bytes (0 if none)."""
    end = size
    while end > 0:
        begin = max(0, end - chunk)
        handle.seek(begin)
        block = handle.read(end - begin)
        cut = block.rfind(b"\n")
        if cut >= 0:
            return begin + cut + 1
        end = begin
    return 0


class ResultsStore:
    """``folder/results.jsonl``. For a key written more than once the last record wins."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, RESULTS_FILE)

    def require(self) -> None:
        """Raise ValueError unless the results file exists: a report over a folder
        without it would print empty tables (a mistyped folder reads as no runs)."""
        if not os.path.isfile(self.path):
            raise ValueError(f"no {self.path}; give the folder that holds the runs' results.jsonl")

    def records(self) -> dict[tuple, dict]:
        """key tuple -> record. A torn last line (a run killed mid-write) is passed over;
        other unreadable lines are passed over with a warning naming them."""
        lines = read_results(self.path)
        warn_about(lines, stacklevel=2)
        return {key_tuple(record["key"]): record for _, record in lines.records}

    def append(self, record: dict) -> None:
        """Append one record on a line of its own (after moving a torn tail aside) and sync,
        holding the file's lock against other appending processes."""
        os.makedirs(self.folder, exist_ok=True)
        line = record_line(record)
        with open(self.path, "ab") as handle:
            if fcntl is not None:  # released when the file closes, after the sync
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            fragment = repair_torn_tail(self.path)
            if fragment is not None:
                warnings.warn(
                    f"{self.path} ended in a torn line (a write cut short, {len(fragment)} characters); "
                    f"moved it to {self.path + TORN_SUFFIX} before appending",
                    UserWarning,
                    stacklevel=2,
                )
            handle.write((line + "\n").encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
