"""Checking, before any training, that the folders a run writes to can be written.

A results folder that cannot be written used to be discovered when the first run had
trained and its record could not be appended. ``require_writable`` is called by the
tabular runner for the results folder (and the trace folder) and by the image command
for the results and checkpoint folders.
"""

from __future__ import annotations

import os
import tempfile


def require_writable(folder: str, role: str, *files: str) -> None:
    """Create ``folder`` if needed and prove a file can be created in it and each of
    ``files`` (existing files in it, e.g. ``results.jsonl``) opened for appending.

    role: what the folder is, for the message (e.g. "results folder (--results-dir)").
    Raises ValueError naming the folder, the role and the reason; writes nothing that
    stays."""
    try:
        os.makedirs(folder, exist_ok=True)
        # an actual file, not os.access: that ignores read-only mounts, ACLs and root
        with tempfile.TemporaryFile(dir=folder, prefix=".d2ace-write-check-"):
            pass
        for path in files:
            if os.path.exists(path):
                with open(path, "a", encoding="utf-8"):
                    pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        where = error.filename or folder
        raise ValueError(
            f"the {role} {folder!r} is not writable ({reason}: {where}); choose another folder or "
            "fix its permissions before any run starts"
        ) from None
