"""Saving and checked loading of per-instance state tensors: the one implementation
that the visit state and every selector use, so the same fault raises the same error.

A saved state holds its tensors by name; a row-sharded one also says whose rows they
are (a :class:`~d2ace_ext.row_shard.RowShard` as a dict; None or absent: every row).
Loading takes one saved state, or every rank's of a sharded one (a list): from those it
assembles exactly the rows the loading owner holds, so a run resumes under another
number of ranks, or unsharded from a sharded run and back. Everything is checked before
anything is assigned:

- a part that is not a dict: TypeError; a missing tensor: KeyError;
- a tensor of the wrong shape or dtype, or holding values its name does not allow
  (:data:`RULES`; any other floating-point tensor must be finite): ValueError naming it;
- parts that do not make up the owner's rows (another rank's shard alone, an
  incomplete set of ranks, another n): ValueError saying what to pass instead.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .row_shard import RowShard

#: What each named state tensor may hold, as (test, description): probabilities and flip
#: EMAs in [0, 1] (NaN fails every comparison), counts >= 0, epochs >= -1 (never
#: visited), losses and loss-based scores >= 0 or +inf (a saturated wrong prediction's
#: BCE). Floating-point tensors not named here must be finite; integer ones are free.
RULES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], str]] = {
    "window": (lambda t: (t >= 0) & (t <= 1), "probabilities in [0, 1]"),
    "flip_average": (lambda t: (t >= 0) & (t <= 1), "values in [0, 1]"),
    "flip_base": (lambda t: (t >= 0) & (t <= 1), "values in [0, 1]"),
    "pushes": (lambda t: t >= 0, "counts >= 0"),
    "count": (lambda t: t >= 0, "counts >= 0"),
    "last_epoch": (lambda t: t >= -1, "epochs >= -1"),
    "loss": (lambda t: t >= 0, "losses >= 0 (+inf allowed)"),
    "score": (lambda t: t >= 0, "losses >= 0 (+inf allowed)"),
    "previous": (lambda t: t >= 0, "losses or probabilities >= 0 (+inf allowed)"),
}
_FINITE = (lambda t: torch.isfinite(t), "finite values")

Part = tuple[dict, "RowShard | None"]


def with_later_defaults(saved, config, later: Sequence[str]):
    """A saved config (a dict, else returned as is) with the fields added since it was
    saved (``later``) set to their defaults in ``config``'s class, the value every run
    had before they existed; a saved value wins."""
    if not isinstance(saved, dict) or not later:
        return saved
    defaults = type(config)().to_dict()
    return {**{name: defaults[name] for name in later}, **saved}


def config_difference(saved, mine: dict) -> str:
    """The fields in which a saved config (a dict, else anything) differs from ``mine``
    (a config's ``to_dict()``), as "name saved X, here Y; ..." for a refusal's message."""
    if not isinstance(saved, dict):
        return f"saved {saved!r}"
    names = [name for name in mine if saved.get(name, "(absent)") != mine[name]]
    names += sorted(set(saved) - set(mine))
    return "; ".join(
        f"{name} saved {saved.get(name, '(absent)')!r}, here {mine.get(name, '(absent)')!r}" for name in names
    )


def saved_tensors(owner, names: Sequence[str]) -> dict:
    """{name: a copy of ``owner.<name>``} for the named tensors."""
    return {name: getattr(owner, name).clone() for name in names}


def saved_shard(state: dict, what: str) -> RowShard | None:
    """The shard a saved state's ``"shard"`` entry describes (None when absent)."""
    return RowShard.from_saved(state.get("shard"), f"{what} 'shard'")


def as_parts(saved, what: str) -> list[dict]:
    """One saved state, or a non-empty list/tuple of every rank's: a list of dicts."""
    parts = list(saved) if isinstance(saved, (list, tuple)) else [saved]
    if not parts:
        raise ValueError(f"{what}: got an empty list of saved states")
    for part in parts:
        if not isinstance(part, dict):
            raise TypeError(f"{what} must be a dict (or a list of every rank's), got {type(part).__name__}")
    return parts


def load_rows(owner, names: Sequence[str], parts: Sequence[Part], shard: RowShard | None, what: str) -> None:
    """Check the named tensors of ``parts`` (each (tensors dict, its RowShard or None for
    every row)), assemble the rows ``owner`` holds under ``shard`` (None: every row of
    its tensors), check their values, then copy them into ``owner.<name>``."""
    mine = shard if shard is not None else RowShard.whole(getattr(owner, names[0]).shape[0])
    parts = [(tensors, RowShard.whole(mine.n) if part_shard is None else part_shard) for tensors, part_shard in parts]
    for tensors, part_shard in parts:
        _check_part(owner, names, tensors, part_shard, what)
    rows = _assemble(owner, names, parts, mine, what)
    for name in names:
        test, rule = RULES.get(name, _FINITE if rows[name].is_floating_point() else (None, ""))
        if test is not None and not bool(test(rows[name]).all()):
            raise ValueError(f"{what} {name!r} must hold {rule}; the saved state is corrupt")
    for name in names:
        getattr(owner, name).copy_(rows[name])


def _check_part(owner, names, tensors: dict, part_shard: RowShard, what: str) -> None:
    for name in names:
        if name not in tensors:
            raise KeyError(f"{what} is missing {name!r}")
        mine, theirs = getattr(owner, name), tensors[name]
        if not isinstance(theirs, torch.Tensor):
            raise ValueError(f"{what} {name!r} must be a tensor, got {type(theirs).__name__}")
        expected = (part_shard.size, *mine.shape[1:])
        if tuple(theirs.shape) != expected or theirs.dtype != mine.dtype:
            raise ValueError(
                f"{what} {name!r} has shape {tuple(theirs.shape)} and dtype {theirs.dtype}, "
                f"expected {expected} and {mine.dtype}"
            )


def _assemble(owner, names, parts: list, mine: RowShard, what: str) -> dict:
    """{name: the rows ``mine`` holds} from the parts (checked to fit their shards)."""
    if len(parts) == 1 and parts[0][1] == mine:
        return {name: parts[0][0][name] for name in names}
    shards = [part_shard for _, part_shard in parts]
    first = shards[0]
    complete = all(s.n == mine.n and s.world == first.world and s.layout == first.layout for s in shards) and sorted(
        s.rank for s in shards
    ) == list(range(first.world))
    if not complete:
        if len(parts) == 1:
            n_note = f" of n = {first.n}" if first.n != mine.n else ""
            raise ValueError(
                f"{what} holds {first.describe()}{n_note}; this one holds {mine.describe()} of n = "
                f"{mine.n}: to re-shard, pass every rank's saved state to load_state_dict, as a list"
            )
        found = ", ".join(f"rank {s.rank} of {s.world} (n = {s.n}, {s.layout})" for s in shards)
        raise ValueError(
            f"{what}: the saved states must be every rank's of one run (ranks 0..R-1 of the same "
            f"world size, n = {mine.n} and layout), got {found}"
        )
    rows = {}
    for name in names:
        like = getattr(owner, name)
        out = torch.empty((mine.size, *like.shape[1:]), dtype=like.dtype, device=like.device)
        for tensors, part_shard in parts:
            held = part_shard.rows()
            take = mine.owner(held) == mine.rank
            out[mine.local(held[take]).to(like.device)] = tensors[name][take.to(tensors[name].device)].to(like.device)
        rows[name] = out
    return rows
