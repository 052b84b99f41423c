"""The built-in `search` agent: no model, no network; it tunes train.py's CAPS constants around the best so far.

Each proposal moves one constant of the current best train.py (sometimes two) by a step its rule allows. Rules
keep types and sensible ranges; repairs keep the model width divisible by HEAD_DIM and the batch sizes consistent.
The agent is stateless: which directions helped or hurt, and which settings were already tried, it reads from the
history on every call, so a resumed run continues where it stopped. Its choices come from an RNG seeded by
(seed, experiment number), so a run is reproducible.

How a move is chosen: every (constant, direction, step size) gets a ring, its distance from the preferred move of
that constant (a small step either way when nothing is known; the other direction after a move hurt; the same
direction with a larger step after a move helped). Untried candidates of the innermost ring form the pool, a
weighted draw picks one, and now and then a second one from another constant joins it. When every setting within
reach has been tried the rings widen; when nothing at all is left, the search is exhausted.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from autoresearch.agents.base import AgentError, Context, Proposal, Usage
from autoresearch.workspace import CONSTANT_RE, Code, read_constants, set_constants

UP, DOWN = 1, -1
PAIR_PROBABILITY = 0.2  # how often a proposal moves two constants at once
FROZEN = frozenset({"SEED", "COMPILE"})  # never tuned: a seed is not a hyperparameter, compile is not a result
HEAD_DIMS = (16, 32, 64, 128)
WINDOW_PATTERNS = ("L", "SLL", "SL", "SSL", "SSSL", "S")  # ordered by the share of short-window layers
BAD = {"discard": "discarded", "crash": "crashed", "rejected": "was rejected"}
POW_RE = re.compile(r"2\s*\*\*\s*\d+")

Dim = tuple[str, int | None]  # a constant, or one element of a tuple constant


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def _nearest(sizes: tuple[float, ...], size: float) -> int:
    """The level (1-based) whose step size is closest to `size`."""
    return 1 + min(range(len(sizes)), key=lambda i: abs(sizes[i] - size))


# ---------------------------------------------------------------------------
# Rules: how one constant may move (direction UP/DOWN, level 1 = the smallest step)
# ---------------------------------------------------------------------------


class Rule:
    levels = 4
    words = ("raising {}", "lowering {}")

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight  # prior share of the proposals this constant gets

    def accepts(self, v: Any) -> bool:
        raise NotImplementedError

    def step(self, v: Any, direction: int, level: int) -> Any | None:
        """The value `level` steps away in `direction`, or None where the rule allows no such move."""
        raise NotImplementedError

    def classify(self, old: Any, new: Any) -> tuple[int, int] | None:
        """(direction, level) of the move old -> new, for learning from the history."""
        raise NotImplementedError


class LogRule(Rule):
    """Multiplicative moves (learning rates, unknown numbers); ints stay ints, floats keep 3 significant digits."""

    UPS = (1.4, 2.0, 2.8, 4.0, 8.0)
    DOWNS = (0.7, 0.5, 0.35, 0.25, 0.125)
    levels = 5

    def __init__(self, lo: float | None = None, hi: float | None = None, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.lo, self.hi = lo, hi

    def accepts(self, v: Any) -> bool:
        return _is_num(v) and v != 0 and (self.lo is None or v > 0)

    def step(self, v: Any, direction: int, level: int) -> Any | None:
        new = v * (self.UPS if direction == UP else self.DOWNS)[level - 1]
        new = round(new) if _is_int(v) else _sig(new)
        if self.lo is not None:
            new = max(new, math.ceil(self.lo) if _is_int(v) else self.lo)
        if self.hi is not None:
            new = min(new, math.floor(self.hi) if _is_int(v) else self.hi)
        if new == 0 or (new > 0) != (v > 0) or (abs(new) - abs(v)) * direction <= 0:
            return None
        return new

    def classify(self, old: Any, new: Any) -> tuple[int, int] | None:
        if not (self.accepts(old) and self.accepts(new)) or (old > 0) != (new > 0) or old == new:
            return None
        r = math.log(abs(new) / abs(old))
        direction = UP if r > 0 else DOWN
        sizes = tuple(abs(math.log(f)) for f in (self.UPS if direction == UP else self.DOWNS))
        return direction, _nearest(sizes, abs(r))


class LinearRule(Rule):
    """Additive moves inside [lo, hi] (ratios, weight decay); floats only."""

    def __init__(self, lo: float, hi: float, steps: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5),
                 weight: float = 1.0) -> None:
        super().__init__(weight)
        self.lo, self.hi, self.steps = lo, hi, steps
        self.levels = len(steps)

    def accepts(self, v: Any) -> bool:
        return isinstance(v, float)

    def step(self, v: Any, direction: int, level: int) -> Any | None:
        new = min(self.hi, max(self.lo, _sig(round(v + direction * self.steps[level - 1], 9))))
        return new if (new - v) * direction > 0 else None

    def classify(self, old: Any, new: Any) -> tuple[int, int] | None:
        if not (self.accepts(old) and self.accepts(new)) or old == new:
            return None
        return (UP if new > old else DOWN), _nearest(self.steps, abs(new - old))


class Pow2Rule(Rule):
    """Powers of two inside [lo, hi] (batch sizes); a value that is not one snaps to the next in the direction."""

    def __init__(self, lo: int, hi: int, levels: int = 3, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.lo, self.hi, self.levels = lo, hi, levels

    def accepts(self, v: Any) -> bool:
        return _is_int(v) and v > 0

    def step(self, v: Any, direction: int, level: int) -> Any | None:
        e = math.log2(v)
        base = math.floor(e) if direction == UP else math.ceil(e)
        new = min(self.hi, max(self.lo, 2 ** max(0, base + direction * level)))
        return new if (new - v) * direction > 0 else None

    def classify(self, old: Any, new: Any) -> tuple[int, int] | None:
        if not (self.accepts(old) and self.accepts(new)) or old == new:
            return None
        r = math.log2(new / old)
        return (UP if r > 0 else DOWN), min(self.levels, max(1, round(abs(r))))


class IntStepRule(Rule):
    """Integer steps inside [lo, hi], values kept on multiples of `quantum` (depth, aspect ratio)."""

    def __init__(self, lo: int, hi: int, steps: tuple[int, ...], quantum: int = 1, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.lo, self.hi, self.steps, self.quantum = lo, hi, steps, quantum
        self.levels = len(steps)

    def accepts(self, v: Any) -> bool:
        return _is_int(v) and v > 0

    def step(self, v: Any, direction: int, level: int) -> Any | None:
        new = v + direction * self.steps[level - 1]
        new = self.quantum * round(new / self.quantum)
        new = min(self.hi, max(self.lo, new))
        return new if (new - v) * direction > 0 else None

    def classify(self, old: Any, new: Any) -> tuple[int, int] | None:
        if not (self.accepts(old) and self.accepts(new)) or old == new:
            return None
        return (UP if new > old else DOWN), _nearest(self.steps, abs(new - old))


class ChoiceRule(Rule):
    """One of an ordered set of values (head size, window pattern); a value outside the set joins the order."""

    def __init__(self, options: tuple[Any, ...], key: Any = None, words: tuple[str, str] | None = None,
                 weight: float = 1.0) -> None:
        super().__init__(weight)
        self.options, self.key = options, key
        self.levels = len(options)
        if words:
            self.words = words

    def accepts(self, v: Any) -> bool:
        return type(v) is type(self.options[0])

    def _order(self, *values: Any) -> list[Any]:
        return sorted(set(self.options) | set(values), key=self.key)

    def step(self, v: Any, direction: int, level: int) -> Any | None:
        order = self._order(v)
        j = order.index(v) + direction * level
        return order[j] if 0 <= j < len(order) else None

    def classify(self, old: Any, new: Any) -> tuple[int, int] | None:
        if not (self.accepts(old) and self.accepts(new)) or old == new:
            return None
        order = self._order(old, new)
        d = order.index(new) - order.index(old)
        return (UP if d > 0 else DOWN), abs(d)


class BetaRule(Rule):
    """An Adam beta in [0.5, 0.999], moved multiplicatively in 1 - beta (0.95 -> 0.975 or 0.9)."""

    SHRINK = (2.0, 4.0, 8.0)  # level -> factor on 1 - beta
    levels = 3

    def accepts(self, v: Any) -> bool:
        return isinstance(v, float) and 0 < v < 1

    def step(self, v: Any, direction: int, level: int) -> Any | None:
        f = self.SHRINK[level - 1]
        gap = _sig((1 - v) / f if direction == UP else (1 - v) * f, 2)
        new = min(0.999, max(0.5, round(1 - gap, 6)))
        return new if (new - v) * direction > 0 else None

    def classify(self, old: Any, new: Any) -> tuple[int, int] | None:
        if not (self.accepts(old) and self.accepts(new)) or old == new:
            return None
        r = abs(math.log2((1 - old) / (1 - new)))
        return (UP if new > old else DOWN), min(self.levels, max(1, round(r)))


@dataclass(frozen=True)
class TupleRule:
    element: Rule  # each element of the tuple is its own dimension


LR = dict(lo=1e-5, hi=10.0)
RULES: dict[str, Rule | TupleRule] = {
    "EMBEDDING_LR": LogRule(**LR),
    "UNEMBEDDING_LR": LogRule(**LR),
    "MATRIX_LR": LogRule(**LR),
    "SCALAR_LR": LogRule(**LR, weight=0.6),
    "WEIGHT_DECAY": LinearRule(0.0, 1.0, weight=0.7),
    "WARMUP_RATIO": LinearRule(0.0, 1.0, weight=0.7),
    "WARMDOWN_RATIO": LinearRule(0.0, 1.0, weight=0.8),
    "FINAL_LR_FRAC": LinearRule(0.0, 1.0, weight=0.5),
    "ADAM_BETAS": TupleRule(BetaRule(weight=0.4)),
    "DEPTH": IntStepRule(1, 48, (1, 2, 3, 4)),
    "ASPECT_RATIO": IntStepRule(16, 512, (16, 32, 48, 64), quantum=16, weight=0.7),
    "HEAD_DIM": ChoiceRule(HEAD_DIMS, weight=0.5),
    "WINDOW_PATTERN": ChoiceRule(WINDOW_PATTERNS, key=lambda p: (p.count("S") / max(1, len(p)), len(p), p),
                                 words=("making {} more local", "making {} less local"), weight=0.5),
    "TOTAL_BATCH_SIZE": Pow2Rule(2**8, 2**24),
    "DEVICE_BATCH_SIZE": Pow2Rule(1, 2**10, weight=0.5),
}
GENERIC = LogRule(weight=0.5)  # unknown numeric constants


def tunable(consts: dict[str, Any]) -> dict[Dim, Rule]:
    """The dimensions the search may move, in source order, with their rules."""
    out: dict[Dim, Rule] = {}
    for name, v in consts.items():
        if name in FROZEN:
            continue
        rule = RULES.get(name)
        if isinstance(rule, TupleRule):
            if isinstance(v, tuple):
                out.update({(name, i): rule.element for i, x in enumerate(v) if rule.element.accepts(x)})
        elif rule is not None and rule.accepts(v):
            out[(name, None)] = rule
        elif _is_num(v) and GENERIC.accepts(v):  # unknown number, or a known one spelled with another type
            out[(name, None)] = GENERIC
    return out


def _get(consts: dict[str, Any], dim: Dim) -> Any:
    name, i = dim
    return consts[name] if i is None else consts[name][i]


def _put(consts: dict[str, Any], dim: Dim, value: Any) -> Any:
    """The whole new value of dim's constant with dim set to `value`."""
    name, i = dim
    if i is None:
        return value
    return tuple(value if j == i else x for j, x in enumerate(consts[name]))


def _label(dim: Dim) -> str:
    return dim[0] if dim[1] is None else f"{dim[0]}[{dim[1]}]"


# ---------------------------------------------------------------------------
# Invariants between constants, and the repairs that keep a move valid
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Checks:
    """The invariants to enforce (each only where the current best satisfies it) and the batch unit."""

    width: bool
    batch: bool
    schedule: bool
    seq_len: int | None  # tokens per row, where known
    unit: int  # else: TOTAL_BATCH_SIZE // DEVICE_BATCH_SIZE must stay a multiple of this


def _width_ok(v: dict[str, Any]) -> bool:
    d, a, h = v.get("DEPTH"), v.get("ASPECT_RATIO"), v.get("HEAD_DIM")
    if not (_is_int(d) and _is_int(a) and _is_int(h)):
        return True
    return h > 0 and d * a >= h and (d * a) % h == 0


def _batch_ok(v: dict[str, Any], seq_len: int | None, unit: int) -> bool:
    t, b = v.get("TOTAL_BATCH_SIZE"), v.get("DEVICE_BATCH_SIZE")
    if not (_is_int(t) and _is_int(b)):
        return True
    if seq_len:
        return b > 0 and t % (b * seq_len) == 0
    return b > 0 and t % b == 0 and (t // b) % unit == 0


def _schedule_ok(v: dict[str, Any]) -> bool:
    up, down = v.get("WARMUP_RATIO"), v.get("WARMDOWN_RATIO")
    return not (_is_num(up) and _is_num(down)) or up + down <= 1 + 1e-9


def make_checks(cur: dict[str, Any], ran: list[dict[str, Any]], seq_len: int | None) -> Checks:
    """Without the sequence length, every configuration that ran shows it divides TOTAL // DEVICE: keep their gcd."""
    unit = 0
    for c in [cur, *ran]:
        t, b = c.get("TOTAL_BATCH_SIZE"), c.get("DEVICE_BATCH_SIZE")
        if _is_int(t) and _is_int(b) and b > 0 and t % b == 0:
            unit = math.gcd(unit, t // b)
    unit = unit or 1
    return Checks(_width_ok(cur), _batch_ok(cur, seq_len, unit), _schedule_ok(cur), seq_len, unit)


def valid(v: dict[str, Any], checks: Checks) -> bool:
    return ((not checks.width or _width_ok(v)) and (not checks.batch or _batch_ok(v, checks.seq_len, checks.unit))
            and (not checks.schedule or _schedule_ok(v)))


def repair(cur: dict[str, Any], changes: dict[str, Any], checks: Checks) -> dict[str, Any] | None:
    """`changes` plus the partner changes that restore the invariants, or None where no small repair exists."""
    changes = dict(changes)
    new = {**cur, **changes}
    if checks.width and not _width_ok(new):
        d, a, h = new["DEPTH"], new["ASPECT_RATIO"], new["HEAD_DIM"]
        if "HEAD_DIM" not in changes:  # keep the width that was asked for, split it into other heads
            heads = [x for x in sorted(set(HEAD_DIMS) | {h}) if (d * a) % x == 0 and x <= d * a]
            if heads:
                changes["HEAD_DIM"] = min(heads, key=lambda x: (abs(math.log2(x / h)), -x))
        new = {**cur, **changes}
        if not _width_ok(new) and "ASPECT_RATIO" not in changes:  # else change the width as little as possible
            h = new["HEAD_DIM"]
            ratios = [x for x in range(16, 513, 16) if (d * x) % h == 0 and d * x >= h]
            if ratios:
                changes["ASPECT_RATIO"] = min(ratios, key=lambda x: (abs(math.log2(x / a)), -x))
        new = {**cur, **changes}
    if (checks.batch and not _batch_ok(new, checks.seq_len, checks.unit) and "TOTAL_BATCH_SIZE" in changes
            and "DEVICE_BATCH_SIZE" not in changes):  # a smaller micro-batch does the same math
        b = new["DEVICE_BATCH_SIZE"]
        while b > 1 and not _batch_ok({**new, "DEVICE_BATCH_SIZE": b}, checks.seq_len, checks.unit):
            b //= 2
        changes["DEVICE_BATCH_SIZE"] = b
        new = {**cur, **changes}
    changes = {k: v for k, v in changes.items() if cur.get(k) != v or type(cur.get(k)) is not type(v)}
    return changes if changes and valid(new, checks) else None


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
        old_v, new_v = _get(base, dim), _get(new, dim)
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
        return rule.words[0 if d == UP else 1].format(_label(dim))

    if not evs:
        if ring == 0:
            return f"{verb(direction)}, which has not been explored yet"
        return f"{verb(direction)} by a wider step, since the nearer settings have all been tried"
    last = evs[-1]
    outcome = "kept" if last.good else BAD.get(last.status, last.status)
    if pref.mode == "overshoot":
        seen = f"{verb(last.direction)} helped (#{evs[-2].number} kept) but a bigger step did not (#{last.number} {outcome})"
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
                value = rule.step(_get(cur, dim), direction, level)
                if value is None:
                    continue
                changes = repair(cur, {dim[0]: _put(cur, dim, value)}, checks)
                if changes is None:
                    continue
                ring = ring_of(pref, direction, level)
                reason = _reason(dim, rule, direction, evs, pref, ring)
                partners = [k for k in changes if k != dim[0]]
                if partners:
                    reason += f", with {' and '.join(partners)} adjusted to keep the shapes consistent"
                action = rule.words[0 if direction == UP else 1].format(_label(dim))
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
        spelled = _spellings(source)
        code = {name: Code(_code(value, spelled.get(name, ""))) for name, value in changes.items()}
        train_py = set_constants(source, code)
        order = [name for name in cur if name in changes]  # source order
        description = ", ".join(f"{name} {_show(name, cur[name], spelled.get(name, ''))} -> "
                                f"{_show(name, changes[name], code[name])}" for name in order)
        if len(chosen) == 1:
            rationale = _sentence(chosen[0].reason)
        elif exhausted:
            rationale = _sentence("every single move within reach has been tried, so two at once: "
                                  f"{chosen[0].action} and {chosen[1].action}")
        else:
            rationale = _sentence(f"two moves at once: {chosen[0].reason}; and {chosen[1].reason}")
        return Proposal(train_py=train_py, description=description, rationale=rationale, usage=Usage())


# ---------------------------------------------------------------------------
# Spelling values back into train.py
# ---------------------------------------------------------------------------


def _spellings(source: str) -> dict[str, str]:
    out = {}
    for line in source.splitlines():
        m = CONSTANT_RE.match(line)
        if m:
            out[m["name"]] = m["value"].strip()
    return out


def _is_pow2(v: Any) -> bool:
    return _is_int(v) and v > 0 and v & (v - 1) == 0


def _code(value: Any, old: str) -> str:
    """Python source for `value`, in the style the line used before (2**k, quote character)."""
    if isinstance(value, tuple):
        items = [_code(x, "") for x in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, str):
        q = "'" if old.startswith("'") else '"'
        return f"{q}{value}{q}"
    if _is_pow2(value) and POW_RE.fullmatch(old):
        return f"2**{value.bit_length() - 1}"
    return repr(value)


def _show(name: str, value: Any, code: str) -> str:
    if isinstance(RULES.get(name), Pow2Rule) and _is_pow2(value) and value >= 1024:
        return f"2**{value.bit_length() - 1}"
    return code or repr(value)
