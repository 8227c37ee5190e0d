"""The text of an ARFF file: opening it (plain or ``.arff.gz``) and splitting a
comma list outside quotes. Shared by the header, the data rows and the error locator."""

from __future__ import annotations

import gzip


def open_arff(path: str):
    """A UTF-8 text handle on ``path`` (undecodable bytes replaced), gunzipped when it
    ends in ``.gz``."""
    return (
        gzip.open(path, "rt", encoding="utf-8", errors="replace")
        if path.endswith(".gz")
        else open(path, encoding="utf-8", errors="replace")
    )


def split_quoted(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside quotes; quotes removed, ``\\`` escapes resolved."""
    out, cur, quote, i = [], [], None, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = None
            else:
                cur.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch == sep:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur).strip())
    return out
