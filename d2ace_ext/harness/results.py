"""The results file of an experiment folder: JSON Lines, one record per finished fold
run, appended and synced as each run ends, so an interrupted comparison loses at most
the runs in flight and a rerun skips what is already there."""
from __future__ import annotations

import json
import os

RESULTS_FILE = "results.jsonl"


def key_tuple(key: dict) -> tuple:
    """The identity of one run; records written before repeats existed are repeat 0."""
    return (key["dataset"], key["model"], key["selector"], key["preset"], int(key["fold"]), key["protocol"],
            int(key.get("repeat", 0)))


def record_line(record: dict) -> str:
    """One record as its JSON line (without the newline); NaN metrics stay NaN."""
    return json.dumps(record, allow_nan=True, default=float)


class ResultsStore:
    """``folder/results.jsonl``. For a key written more than once the last record wins."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, RESULTS_FILE)

    def records(self) -> dict[tuple, dict]:
        """key tuple -> record. A torn last line (a run killed mid-write) is ignored."""
        found: dict[tuple, dict] = {}
        if not os.path.exists(self.path):
            return found
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                    found[key_tuple(record["key"])] = record
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # only a write cut short can leave such a line
        return found

    def append(self, record: dict) -> None:
        os.makedirs(self.folder, exist_ok=True)
        line = record_line(record)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
