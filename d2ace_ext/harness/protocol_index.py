"""The settings behind each protocol digest of a results folder: ``protocols.json``.

A results record names its protocol only by an 8-digit digest. The tables of one
``compare`` call know their protocol from the command line, but a report over a whole
results file (``d2ace plot``, the time-to-target tables of an evidence file) does not:
it needs the settings to label a panel by what differs between protocols (epochs,
budget) and to pair a budgeted run with the full-budget Random of the otherwise-equal
protocol. ``d2ace run`` and ``compare`` therefore record ``{digest: settings}`` beside
``results.jsonl``; ``docs/evidence/protocols.json`` holds those of the committed
evidence. A folder without the file still reports: each record is then paired with
Random of its own digest, and panels are labelled by epochs (the length of its history).
"""

from __future__ import annotations

import json
import os

from .experiment import Protocol

PROTOCOLS_FILE = "protocols.json"


def protocols_path(results: str) -> str:
    """``protocols.json`` in a results folder, or beside a results ``.jsonl`` file."""
    folder = os.path.dirname(os.path.abspath(results)) if results.endswith(".jsonl") else results
    return os.path.join(folder, PROTOCOLS_FILE)


def read_protocols(results: str) -> dict[str, dict]:
    """{digest: settings} from the folder's ``protocols.json``; {} when there is none."""
    path = protocols_path(results)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        try:
            found = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON ({error}); delete it and rerun the command to rewrite it") from None
    if not isinstance(found, dict) or not all(isinstance(v, dict) for v in found.values()):
        raise ValueError(f"{path} must map protocol digests to settings objects")
    return found


def unlisted_note(records: list[dict], protocols: dict, results: str) -> str | None:
    """A one-line note naming the records' protocol digests that ``protocols`` (read from
    ``results``' ``protocols.json``) does not list, or None when it lists them all. Those
    runs pair with Random of their own digest, so a budgeted run there is compared with
    budgeted Random, not with full-budget Random, and its budget is not in its label."""
    digests = sorted({str(r["key"].get("protocol")) for r in records} - set(protocols))
    if not digests:
        return None
    where = protocols_path(results)
    missing = f"there is no {where}" if not protocols else f"{where} does not list {', '.join(digests)}"
    return (
        f"note: {missing}: the runs of {'those protocols' if protocols else 'every protocol'} pair with Random "
        "of their own digest (a budgeted run with budgeted Random, not full-budget Random); copy the "
        "protocols.json of the runs' results folder beside the file"
    )


def remember_protocol(folder: str, protocol: Protocol) -> str:
    """Add ``protocol``'s settings under its digest to ``folder/protocols.json`` (written
    atomically; other digests kept). Returns the file's path."""
    path = protocols_path(folder)
    known = read_protocols(folder)
    digest = protocol.digest()
    if known.get(digest) == json.loads(json.dumps(protocol.to_dict(), default=str)):
        return path
    known[digest] = protocol.to_dict()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(known, handle, indent=1, sort_keys=True, default=str)
        handle.write("\n")
    os.replace(partial, path)
    return path


def protocol_of(settings: dict, digest: str) -> Protocol:
    """The Protocol of recorded ``settings``, checked against the digest it was filed under."""
    try:
        protocol = Protocol(**settings)
    except TypeError as error:
        raise ValueError(f"protocols.json entry {digest}: {error}; it was written by another version") from None
    if protocol.digest() != digest:
        raise ValueError(
            f"protocols.json entry {digest}: its settings hash to {protocol.digest()}, "
            f"not {digest}; delete the entry and rerun the command that wrote it"
        )
    return protocol


def _setting_text(name: str, value) -> str:
    if name == "epochs":
        return f"{value:,} epochs"
    if isinstance(value, dict):
        value = json.dumps(value, sort_keys=True, default=str)
    return f"{name.replace('_', ' ')} {value}"


def protocol_epochs(records: list[dict]) -> dict[str, int]:
    """{digest: epochs} of the records' protocols, read from their histories (the
    longest series of the longest run, should a run have stopped early)."""
    epochs: dict[str, int] = {}
    for record in records:
        history = record.get("history") or {}
        length = max([len(v) for v in history.values() if isinstance(v, list)], default=0)
        digest = record["key"].get("protocol")
        epochs[digest] = max(epochs.get(digest, 0), length)
    return epochs


def protocol_labels(epochs: dict[str, int], protocols: dict[str, dict] | None = None) -> dict[str, str]:
    """{digest: label} for the protocols drawn or tabled together, by what differs.
    ``epochs``: {digest: epochs} (from the records' histories); ``protocols``: {digest:
    settings} where known (``read_protocols``). The label always names the epochs, then
    every other setting that differs between the known protocols ("1,000 epochs, budget
    0.5"); a digest whose settings are unknown and whose epochs do not tell it apart
    from another is named by its digest as well."""
    protocols = protocols or {}
    defaults = Protocol().to_dict()  # a field added since an entry was written is at its default there
    known = {d: {**defaults, **protocols[d]} for d in epochs if d in protocols}
    names = sorted({name for settings in known.values() for name in settings} - {"epochs"})
    differing = [
        name
        for name in names
        if len({json.dumps(s.get(name), sort_keys=True, default=str) for s in known.values()}) > 1
    ]
    labels = {}
    for digest, length in epochs.items():
        parts = [_setting_text("epochs", length)]
        if digest in known:
            parts += [_setting_text(name, known[digest].get(name)) for name in differing]
        elif sum(1 for other in epochs.values() if other == length) > 1:
            parts.append(f"protocol {digest}")
        labels[digest] = ", ".join(parts)
    return labels
