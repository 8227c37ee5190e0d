"""The D2ACE authors' published selection code (iunanyou/D2ACE ``main.py``), loaded at
run time from a checkout the user gives; none of it is part of this project.

``main.py`` is not imported: its top level parses arguments, loads data and trains, and
it imports packages this project does not need. It is parsed with :mod:`ast` instead,
and only these parts of its own text are compiled, into a fresh namespace:

- the functions its training loop calls after every batch (:data:`PER_BATCH`) and the
  module-level functions they or the scoring call (``calculate_probabilities``);
- the module-level imports those bind (numpy, torch, deque), one name at a time;
- the end-of-epoch scoring, which is inline in ``training()``: the statements after the
  :data:`SCORING_START` comment up to the first one that assigns :data:`SCORING_RESULT`
  (the probabilities written back to the loader), within one block, run later with the
  names of :data:`SCORING_INPUTS` supplied by the caller.

Anything the extracted code reads that is none of these is an error naming it, so a
changed published file fails with a message rather than timing something else.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import os
from dataclasses import dataclass
from types import CodeType

#: per-batch bookkeeping, in the training loop's call order, with the leading parameters
#: the benchmark passes positionally (loss history, prediction history, flip EMA, E)
PER_BATCH = {
    "update_L": ("L", "loss_matrix", "ids"),
    "update_H": ("H", "y_pred", "ids"),
    "update_ema_flip": ("ema_flip", "H", "ids", "label_dim"),
    "update_E": ("H", "E", "ids", "label_dim"),
}
#: the scoring block runs from the statement after this comment ...
SCORING_START = "construct loss / hard matrices"
#: ... to the first statement after it assigning this attribute, inclusive
SCORING_RESULT = ("custom_dataloader", "sample_probabilities")
#: the training() locals the scoring block reads, which the caller must supply
SCORING_INPUTS = frozenset(
    {"ins_dim", "label_dim", "L", "ema_flip", "custom_dataloader", "train_subset", "nbrs_idx", "epoch", "num_epochs"}
)


class PublishedCodeError(ValueError):
    """main.py does not have the shape this loader expects (a changed published file)."""


@dataclass
class PublishedCode:
    """The extracted parts of one main.py.

    functions: name -> the published function (the :data:`PER_BATCH` ones and their
    helpers); scoring: the compiled scoring statements; scoring_lines: their first and
    last line in main.py."""

    path: str
    functions: dict
    namespace: dict
    scoring: CodeType
    scoring_lines: tuple[int, int]

    def run_scoring(self, inputs: dict) -> dict:
        """Run the scoring statements once on ``inputs`` (the :data:`SCORING_INPUTS`);
        returns the namespace they ran in (``custom_dataloader.sample_probabilities``
        holds their result)."""
        missing = SCORING_INPUTS - inputs.keys()
        if missing:
            raise ValueError(f"run_scoring needs {sorted(missing)}")
        scope = {**self.namespace, **inputs}
        exec(self.scoring, scope)
        return scope


def main_py(src: str | None) -> str | None:
    """``src``/main.py when ``src`` is a directory holding it, else None."""
    if not src:
        return None
    path = os.path.join(src, "main.py")
    return path if os.path.isfile(path) else None


def load(path: str) -> PublishedCode:
    """Extract and compile the published per-batch functions and scoring from ``path``
    (a main.py); raises :class:`PublishedCodeError` naming what is missing."""
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise PublishedCodeError(f"{path}: not parseable Python ({exc})") from exc
    defs = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    absent = [name for name in PER_BATCH if name not in defs]
    if absent:
        raise PublishedCodeError(f"{path}: no module-level function {', '.join(absent)} (the per-batch bookkeeping)")
    block, lines = _scoring_block(tree, source, path)
    imports = _module_imports(tree)
    kept = _functions_needed(defs, list(PER_BATCH), block)
    needed = _free_names([defs[name] for name in kept]) | (_free_names(block) - SCORING_INPUTS)
    unresolved = needed - imports.keys() - set(kept)
    if unresolved:
        raise PublishedCodeError(
            f"{path}: the extracted code reads {sorted(unresolved)}, which no module-level import "
            f"or function of main.py provides (nor the scoring inputs {sorted(SCORING_INPUTS)})"
        )
    body = [imports[name] for name in sorted(needed & imports.keys())] + [defs[name] for name in kept]
    namespace = {"__name__": "d2ace_published_main", "__file__": path}
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), namespace)
    functions = {name: namespace[name] for name in kept}
    for name, leading in PER_BATCH.items():
        params = tuple(inspect.signature(functions[name]).parameters)[: len(leading)]
        if params != leading:
            raise PublishedCodeError(
                f"{path}: {name} takes ({', '.join(params)}, ...); the benchmark calls it as "
                f"({', '.join(leading)}, ...), the training loop's call"
            )
    scoring = compile(ast.Module(body=block, type_ignores=[]), path, "exec")
    return PublishedCode(path, functions, namespace, scoring, lines)


def _anchor_line(source: str, anchor: str, path: str) -> int:
    found = [k for k, line in enumerate(source.splitlines(), start=1) if anchor in line]
    if len(found) != 1:
        where = "not found" if not found else f"found {len(found)} times (lines {found})"
        raise PublishedCodeError(f"{path}: the scoring anchor {anchor!r} was {where}; it must occur once")
    return found[0]


def _assigns_result(stmt: ast.stmt) -> bool:
    owner, attr = SCORING_RESULT
    targets = stmt.targets if isinstance(stmt, ast.Assign) else []
    return any(
        isinstance(t, ast.Attribute) and t.attr == attr and isinstance(t.value, ast.Name) and t.value.id == owner
        for t in targets
    )


def _scoring_block(tree: ast.Module, source: str, path: str) -> tuple[list, tuple[int, int]]:
    """The statements after the SCORING_START line up to the first one assigning
    SCORING_RESULT, all in that statement's block; (statements, (first line, last line))."""
    start = _anchor_line(source, SCORING_START, path)
    ends = [s for s in ast.walk(tree) if isinstance(s, ast.stmt) and s.lineno > start and _assigns_result(s)]
    if not ends:
        raise PublishedCodeError(f"{path}: no assignment to {'.'.join(SCORING_RESULT)} after line {start}")
    end = min(ends, key=lambda s: s.lineno)
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            stmts = getattr(node, name, None)
            if not isinstance(stmts, list) or not any(s is end for s in stmts):
                continue
            block = [s for s in stmts if start < s.lineno <= end.lineno]
            straddles = [s for s in stmts if s.lineno <= start < s.end_lineno]
            if straddles or block[0].lineno > start + 1 and _code_between(source, start, block[0].lineno):
                raise PublishedCodeError(
                    f"{path}: the scoring anchor (line {start}) and the assignment to "
                    f"{'.'.join(SCORING_RESULT)} (line {end.lineno}) are not in one block"
                )
            return block, (block[0].lineno, block[-1].end_lineno)
    raise AssertionError("unreachable: every statement lies in a statement list")


def _code_between(source: str, start: int, stop: int) -> bool:
    """Whether lines start+1 .. stop-1 hold anything but blanks and comments."""
    lines = source.splitlines()[start : stop - 1]
    return any(line.strip() and not line.strip().startswith("#") for line in lines)


def _module_imports(tree: ast.Module) -> dict:
    """name -> a one-name import statement binding it, for every module-level import
    (``from x import *`` is skipped: what it binds is unknown without importing x)."""
    bound = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                bound[name] = ast.copy_location(ast.Import(names=[alias]), node)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    one = ast.ImportFrom(module=node.module, names=[alias], level=node.level)
                    bound[alias.asname or alias.name] = ast.copy_location(one, node)
    return bound


def _functions_needed(defs: dict, roots: list, block: list) -> list:
    """The module-level functions the roots and the block call, transitively, in a
    stable order (roots first)."""
    kept, pending = [], list(roots) + sorted(_free_names(block) & defs.keys())
    while pending:
        name = pending.pop(0)
        if name in kept:
            continue
        kept.append(name)
        pending += sorted(_free_names([defs[name]]) & defs.keys())
    return kept


def _free_names(nodes: list) -> set:
    """Names the nodes read and never bind (parameters, assignments, loop targets,
    nested definitions), builtins left out."""
    loaded, bound = set(), set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                (loaded if isinstance(sub.ctx, ast.Load) else bound).add(sub.id)
            elif isinstance(sub, ast.arg):
                bound.add(sub.arg)
            elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(sub.name)
    return loaded - bound - set(dir(builtins))
