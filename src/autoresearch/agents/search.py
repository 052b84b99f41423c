"""The built-in `search` agent: no model, no network; it tunes train.py's CAPS constants around the best so far.

Each proposal moves one constant of the current best train.py (sometimes two) by a step its rule allows; the rules,
the invariants between constants and the repairs that keep them live in `search_rules`. This module reads the
history, ranks the candidate moves and draws one. The agent is stateless: which directions helped or hurt, and
which settings were already tried, it reads from the history on every call, so a resumed run continues where it
stopped. Its choices come from an RNG seeded by (seed, experiment number), so a run is reproducible.

How a move is chosen: every (constant, direction, step size) gets a ring, its distance from the preferred move of
that constant (a small step either way when nothing is known; the other direction after a move hurt; the same
direction with a larger step after a move helped). Untried candidates of the innermost ring form the pool, a
weighted draw picks one, and now and then a second one from another constant joins it. When every setting within
reach has been tried the rings widen; when nothing at all is left, the search is exhausted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from autoresearch.agents.base import AgentError, Context, Proposal, Usage
from autoresearch.agents.search_rules import (
    DOWN,
    UP,
    Checks,
    Dim,
    Rule,
    label,
    make_checks,
    repair,
    show,
    spell,
    spellings,
    tunable,
    valid,
    value_at,
    with_value,
)
from autoresearch.workspace import Code, read_constants, set_constants

PAIR_PROBABILITY = 0.2  # how often a proposal moves two constants at once
BAD = {"discard": "discarded", "crash": "crashed", "rejected": "was rejected"}


# ---------------------------------------------------------------------------
# What the history teaches: tried settings, and per dimension the outcome of its latest move
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    number: int
    direction: int
    level: int
    good: bool
    status: str
    alone: bool  # the only constant that attempt changed (a crash is blamed on it alone then)


@lru_cache(maxsize=1024)  # parsing is the cost of a call; sources repeat across calls
def _parse(source: str) -> tuple[tuple[str, Any], ...]:
    return tuple(read_constants(source).items())


def constants(source: str) -> dict[str, Any]:
    return dict(_parse(source))


def setting_key(consts: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in consts.items()))


def _diff_base(consts: dict[str, Any], diff: str) -> dict[str, Any] | None:
    """The best train.py an entry was compared against, rebuilt from the `-` lines of its diff."""
    old = read_constants("\n".join(line[1:] for line in diff.splitlines()
                                   if line.startswith("-") and not line.startswith("---")))
    return {**consts, **old} if old else None


def _moves_between(base: dict[str, Any], new: dict[str, Any]) -> list[tuple[Dim, int, int]]:
    out = []
    for dim, rule in tunable(base).items():
        name, i = dim
        if name not in new or (i is not None and (not isinstance(new[name], tuple)
                                                  or len(new[name]) != len(base[name]))):
            continue
        old_v, new_v = value_at(base, dim), value_at(new, dim)
        moved = rule.classify(old_v, new_v) if old_v != new_v else None
        if moved:
            out.append((dim, *moved))
    return out


def learn(ctx: Context, cur: dict[str, Any]) -> tuple[set, dict[Dim, list[Event]], list[dict[str, Any]]]:
    """Tried setting keys, the events per dimension (oldest first), and the configurations that ran."""
    tried = {setting_key(cur)}
    events: dict[Dim, list[Event]] = {}
    ran: list[dict[str, Any]] = []
    history = sorted(ctx.history, key=lambda e: e.number)
    any_keep = any(e.status == "keep" and e.train_py for e in history)
    base: dict[str, Any] | None = None if any_keep else cur  # before the first keep, the best was the start
    attempts = [(e.number, e.status, e.train_py, e.diff, None) for e in history]
    if ctx.failure is not None:  # the attempt at this experiment that just broke, relative to the current best
        attempts.append((ctx.experiment, ctx.failure.status or "crash", ctx.failure.train_py, "", cur))
    for number, status, source, diff, ref in attempts:
        if not source:
            continue
        consts = constants(source)
        tried.add(setting_key(consts))
        if status in ("keep", "discard"):
            ran.append(consts)
        ref = ref or (base if base is not None else _diff_base(consts, diff))
        if ref is not None:
            moves = _moves_between(ref, consts)
            for dim, direction, level in moves:
                events.setdefault(dim, []).append(Event(number, direction, level, status == "keep", status,
                                                        alone=len(moves) == 1))
        if status == "keep":
            base = consts
    return tried, events, ran


# ---------------------------------------------------------------------------
# Candidates, rings, and the draw
# ---------------------------------------------------------------------------


@dataclass
class Candidate:
    changes: dict[str, Any]
    dims: tuple[Dim, ...]
    ring: int
    weight: float
    reason: str  # why this move, for the rationale
    action: str  # the move in a few words ("raising MATRIX_LR")


@dataclass(frozen=True)
class Preference:
    """What a dimension's past moves suggest: the next direction and step, and directions to stay away from."""

    direction: int | None  # None: no preference, a small step either way
    level: int
    factor: float  # on the dimension's prior weight
    mode: str  # fresh | momentum | overshoot | reverse
    avoid: frozenset[int]  # directions whose latest move crashed (e.g. out of memory)


def preference(evs: list[Event], rule: Rule) -> Preference:
    latest = {e.direction: e for e in evs}  # the most recent event per direction
    avoid = frozenset(d for d, e in latest.items() if e.status == "crash" and e.alone)
    if not evs:
        return Preference(None, 1, 1.0, "fresh", avoid)
    last = evs[-1]
    if last.good:  # the same direction again, a step larger
        return Preference(last.direction, min(rule.levels, last.level + 1), 3.0, "momentum", avoid)
    if len(evs) >= 2 and evs[-2].good and evs[-2].direction == last.direction and last.level > 1 \
            and last.status != "crash":  # a bigger step overshot: in between
        return Preference(last.direction, last.level - 1, 2.0, "overshoot", avoid)
    both_bad = len(evs) >= 2 and not evs[-2].good and evs[-2].direction == -last.direction
    direction = -last.direction if -last.direction not in avoid else None
    return Preference(direction, 1, 0.5 if both_bad else 1.0, "reverse", avoid)


def ring_of(pref: Preference, direction: int, level: int) -> int:
    """Distance of a move from the preferred one; the search takes the nearest untried ring."""
    if direction in pref.avoid:
        return level + 1
    if pref.direction is None:
        return level - 1
    if direction == pref.direction:
        return abs(level - pref.level)
    return level


def _reason(dim: Dim, rule: Rule, direction: int, evs: list[Event], pref: Preference, ring: int) -> str:
    def verb(d: int) -> str:
        return rule.words[0 if d == UP else 1].format(label(dim))

    if not evs:
        if ring == 0:
            return f"{verb(direction)}, which has not been explored yet"
        return f"{verb(direction)} by a wider step, since the nearer settings have all been tried"
    last = evs[-1]
    outcome = "kept" if last.good else BAD.get(last.status, last.status)
    if pref.mode == "overshoot":
        seen = (f"{verb(last.direction)} helped (#{evs[-2].number} kept) "
                f"but a bigger step did not (#{last.number} {outcome})")
    elif last.good:
        seen = f"{verb(last.direction)} helped last time (#{last.number} kept)"
    else:
        seen = f"{verb(last.direction)} did not help last time (#{last.number} {outcome})"
    if ring == 0 and direction == pref.direction:
        plan = {"momentum": "so pushing further that way", "overshoot": "so trying a smaller step that way",
                "reverse": "so trying the other way"}[pref.mode]
        return f"{seen}, {plan}"
    if ring == 0:  # no preferred direction: the other one crashed
        crash = next(e for e in reversed(evs) if e.direction == -direction)
        return f"{seen}, and {verb(-direction)} crashed (#{crash.number}), so {verb(direction)} once more"
    if direction == last.direction:
        return f"{seen}, but the moves nearer to the plan are used up, so trying that way again"
    return f"{seen}; now {verb(direction)}, as the nearer settings have all been tried"


def candidates(cur: dict[str, Any], dims: dict[Dim, Rule], events: dict[Dim, list[Event]],
               checks: Checks) -> list[Candidate]:
    out = []
    for dim, rule in dims.items():
        evs = events.get(dim, [])
        pref = preference(evs, rule)
        for direction in (UP, DOWN):
            for level in range(1, rule.levels + 1):
                value = rule.step(value_at(cur, dim), direction, level)
                if value is None:
                    continue
                changes = repair(cur, {dim[0]: with_value(cur, dim, value)}, checks)
                if changes is None:
                    continue
                ring = ring_of(pref, direction, level)
                reason = _reason(dim, rule, direction, evs, pref, ring)
                partners = [k for k in changes if k != dim[0]]
                if partners:
                    reason += f", with {' and '.join(partners)} adjusted to keep the shapes consistent"
                action = rule.words[0 if direction == UP else 1].format(label(dim))
                out.append(Candidate(changes, (dim,), ring, rule.weight * pref.factor, reason, action))
    return out


def _best_source(ctx: Context) -> str:
    """The train.py to move from: the best, also when asked to fix a failure (the loop then shows the failed one)."""
    if ctx.failure is not None and ctx.train_py == ctx.failure.train_py:
        kept = [e for e in sorted(ctx.history, key=lambda e: e.number) if e.status == "keep" and e.train_py]
        if kept:
            return kept[-1].train_py
    return ctx.train_py


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


class SearchAgent:
    """Hyperparameter search over the CAPS constants of the best train.py; deterministic given (ctx, seed)."""

    name = "search"
    can_fix = False  # a crashed setting is recorded as tried and bad; the next experiment simply moves on

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def propose(self, ctx: Context) -> Proposal:
        source = _best_source(ctx)
        cur = constants(source)
        dims = tunable(cur)
        if not dims:
            raise AgentError("train.py has no tunable CAPS constants (top-level `NAME = literal` lines such as "
                             "`MATRIX_LR = 0.04`), so the search agent has nothing to change; restore them or use "
                             "an LLM agent", fatal=True)
        tried, events, ran = learn(ctx, cur)
        tried |= {setting_key(constants(f.train_py)) for f in ctx.in_flight if f.train_py}  # never twice at once
        checks = make_checks(cur, ran, ctx.max_seq_len)
        rng = random.Random(f"autoresearch-search:{self.seed}:{ctx.experiment}")

        def key(changes: dict[str, Any]) -> tuple:
            return setting_key({**cur, **changes})

        every = candidates(cur, dims, events, checks)
        fresh: dict[tuple, Candidate] = {}
        for c in sorted(every, key=lambda c: c.ring):  # stable: the nearest ring wins a duplicate setting
            k = key(c.changes)
            if k not in tried and k not in fresh:
                fresh[k] = c
        chosen: list[Candidate] = []
        exhausted = False
        if fresh:
            inner = min(c.ring for c in fresh.values())
            pool = [c for c in fresh.values() if c.ring == inner]
            first = rng.choices(pool, weights=[c.weight for c in pool])[0]
            chosen = [first]
            if rng.random() < PAIR_PROBABILITY:
                others = [c for c in pool if not set(c.changes) & set(first.changes)
                          and valid({**cur, **first.changes, **c.changes}, checks)
                          and key({**first.changes, **c.changes}) not in tried]
                if others:
                    chosen.append(rng.choices(others, weights=[c.weight for c in others])[0])
        else:  # every single move was tried: combine two
            pairs = [(a.ring + b.ring, a, b) for i, a in enumerate(every) for b in every[i + 1:]
                     if a.dims[0][0] != b.dims[0][0] and not set(a.changes) & set(b.changes)
                     and valid({**cur, **a.changes, **b.changes}, checks)
                     and key({**a.changes, **b.changes}) not in tried]
            if pairs:
                inner = min(p[0] for p in pairs)
                pool = [p for p in pairs if p[0] == inner]
                _, a, b = rng.choices(pool, weights=[p[1].weight * p[2].weight for p in pool])[0]
                chosen = [a, b]
                exhausted = True
        if not chosen:
            raise AgentError(f"search space exhausted: every setting of the {len(dims)} tunable constant(s) within "
                             f"reach of the best train.py has been tried ({len(tried)} in all); use an LLM agent "
                             "to change the code, or start from another train.py", fatal=True)

        changes = {k: v for c in chosen for k, v in c.changes.items()}
        spelled = spellings(source)
        code = {name: Code(spell(value, spelled.get(name, ""))) for name, value in changes.items()}
        train_py = set_constants(source, code)
        order = [name for name in cur if name in changes]  # source order
        description = ", ".join(f"{name} {show(name, cur[name], spelled.get(name, ''))} -> "
                                f"{show(name, changes[name], code[name])}" for name in order)
        if len(chosen) == 1:
            rationale = _sentence(chosen[0].reason)
        elif exhausted:
            rationale = _sentence("every single move within reach has been tried, so two at once: "
                                  f"{chosen[0].action} and {chosen[1].action}")
        else:
            rationale = _sentence(f"two moves at once: {chosen[0].reason}; and {chosen[1].reason}")
        return Proposal(train_py=train_py, description=description, rationale=rationale, usage=Usage())
