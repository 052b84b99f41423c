"""Three-way merges of train.py: git's merge of lines, and a merge by name for changes that only set constants.

git merge-file conflicts wherever two changes touch the same or adjacent lines. train.py keeps its
hyperparameters as CAPS constants on adjacent lines under one banner, so two changes of two different constants
(what the `search` agent makes) conflict in git though not in meaning. A change that only sets constants is
applied by name instead: each constant it sets goes from its old value to its new one, where the other side still
holds the old value (or already the new one). The scheduler merges a result onto a newer best so; ablate takes a
kept change out of the best so.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from autoresearch import vcs
from autoresearch.workspace import CONSTANT_RE, Code, set_constants

CONFLICT_START, CONFLICT_MIDDLE, CONFLICT_END = "<<<<<<<", "=======", ">>>>>>>"


@dataclass
class Merge:
    text: str | None  # the merge; None when the two changes conflict
    lines: list[tuple[int, int]] = field(default_factory=list)  # where not: the lines of `ours` in conflict
    clashes: dict[str, str] = field(default_factory=dict)  # or the constants `ours` set otherwise: its values


def merge(base: str, ours: str, theirs: str) -> Merge:
    """`ours` with the change from `base` to `theirs` applied too."""
    text, conflicts = vcs.merge_file(base, ours, theirs)
    if conflicts == 0:
        return Merge(text)
    change = constant_change(base, theirs)
    if change is not None:
        merged, clashes = apply_by_name(ours, change)
        return Merge(merged) if not clashes else Merge(None, clashes=clashes)
    return Merge(None, lines=conflict_lines(text) if conflicts > 0 else [])


def constant_change(before: str, after: str) -> dict[str, tuple[str, str]] | None:
    """{name: (old value, new value)} as written in the source, when `after` differs from `before` only in the
    values of top-level CAPS constants (their comments aside); None when anything else changed."""
    a, b = before.splitlines(), after.splitlines()
    if len(a) != len(b):
        return None
    change: dict[str, tuple[str, str]] = {}
    for x, y in zip(a, b):
        if x == y:
            continue
        mx, my = CONSTANT_RE.match(x), CONSTANT_RE.match(y)
        if not (mx and my and mx["name"] == my["name"]) or mx["name"] in change:
            return None
        if not same_value(mx["value"], my["value"]):
            change[mx["name"]] = (mx["value"], my["value"])
    return change or None


def constant_values(source: str) -> dict[str, list[str]]:
    """Each top-level constant's value as written, once per line that sets it."""
    out: dict[str, list[str]] = {}
    for line in source.splitlines():
        if m := CONSTANT_RE.match(line):
            out.setdefault(m["name"], []).append(m["value"])
    return out


def apply_by_name(ours: str, change: dict[str, tuple[str, str]]) -> tuple[str, dict[str, str]]:
    """`ours` with each constant of `change` set from its old value to its new one. Returns the text and the
    clashes: {name: the value `ours` has} where it holds neither the old value nor the new (or sets the name on
    more or fewer lines than one)."""
    values = constant_values(ours)
    clashes: dict[str, str] = {}
    to_set: dict[str, Code] = {}
    for name, (old, new) in change.items():
        mine = values.get(name, [])
        if len(mine) != 1:
            clashes[name] = "missing" if not mine else "set on several lines"
        elif same_value(mine[0], old):
            to_set[name] = Code(new)
        elif not same_value(mine[0], new):
            clashes[name] = mine[0]
    return (set_constants(ours, to_set) if to_set else ours), clashes


def same_value(a: str, b: str) -> bool:
    """Two constants' values as written: equal as Python literals (0.50 is 0.5), else as text."""
    try:
        return ast.literal_eval(a) == ast.literal_eval(b)
    except (ValueError, SyntaxError):
        return a.strip() == b.strip()


def conflict_lines(marked: str) -> list[tuple[int, int]]:
    """The lines of `ours` (1-based, first and last) in each conflict of git merge-file's output."""
    out: list[tuple[int, int]] = []
    line, start, side = 0, 0, ""
    for text in marked.splitlines():
        if text.startswith(CONFLICT_START):
            side, start = "ours", line + 1
        elif text.startswith(CONFLICT_MIDDLE) and side == "ours":
            side = "theirs"
            out.append((start, max(start, line)))
        elif text.startswith(CONFLICT_END) and side:
            side = ""
        elif side != "theirs":
            line += 1
    return out


def spans(lines: list[tuple[int, int]]) -> str:
    """conflict_lines() for people: "line 8", "lines 8-9, 12"."""
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in lines]
    if not parts:
        return "lines"
    return ("line " if len(parts) == 1 and "-" not in parts[0] else "lines ") + ", ".join(parts)


def merge_files(base: dict[str, str], ours: dict[str, str], theirs: dict[str, str]) -> dict[str, str] | None:
    """merge() of each of a task's other editable files (path -> text): `ours` with `theirs`' changes from `base`
    applied too; None when a file's two changes conflict. A file one side lacks is empty there."""
    out = dict(ours)
    for name in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(name, ""), ours.get(name, ""), theirs.get(name, "")
        if t == b or t == o:  # theirs leaves it, or both changed it alike
            continue
        text = t if o == b else merge(b, o, t).text
        if text is None:
            return None
        out[name] = text
    return out
