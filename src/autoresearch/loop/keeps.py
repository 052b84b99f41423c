"""The order of a run's keeps: the chain their commits form, whatever the clocks did.

Every keep was made on the best of its moment, or rebased onto it (loop/scheduler.py), so its parent_commit is the
commit of the keep before it. Following that chain from the baseline orders the keeps; finished_at cannot (a
system clock stepped back would reorder it, and with workers a later number can be kept first). The best is the
chain's end: the branch's tip.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar


class Decided(Protocol):
    """What the order reads of an experiment's record (loop/journal.py's ExperimentRecord)."""

    number: int
    status: str | None
    parent_commit: str
    commit_sha: str | None
    finished_at: float | None


R = TypeVar("R", bound=Decided)


def keep_order(records: Iterable[R]) -> list[R]:
    """The keeps among `records` (final attempts), in the order they were decided. Keeps off the chain, which no
    journal written by the loop has, follow it in the order they finished."""
    kept = [e for e in records if e.status == "keep"]
    at = {e.commit_sha or e.parent_commit: e for e in kept}
    children: dict[str, list[R]] = {}
    for e in kept:
        if at.get(e.parent_commit) is not e:  # the baseline is kept as it was: its own parent
            children.setdefault(e.parent_commit, []).append(e)
    roots = [e for e in kept if at.get(e.parent_commit) in (None, e)]
    chain: list[R] = []
    seen: set[int] = set()
    if len(roots) == 1:
        e: R | None = roots[0]
        while e is not None and id(e) not in seen:
            chain.append(e)
            seen.add(id(e))
            nxt = children.get(e.commit_sha or e.parent_commit, [])
            e = nxt[0] if len(nxt) == 1 else None
    rest = sorted((e for e in kept if id(e) not in seen), key=lambda e: (e.finished_at or 0.0, e.number))
    return chain + rest
