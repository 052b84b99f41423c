"""The rules of the `search` agent: what one move of a train.py constant may be, and how its value is written.

A rule per CAPS constant says which values it accepts, which value lies a given number of steps (levels) away in
either direction, and which (direction, level) a past change was, so the history can be read back as moves. The
invariants between constants (model width divisible by HEAD_DIM, consistent batch sizes, a schedule that fits) are
enforced only where the current best satisfies them; a move that breaks one gets a small repair of its partner
constants, or is dropped. Values go back into train.py spelled the way the line spelled them before.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from autoresearch.workspace import CONSTANT_RE

UP, DOWN = 1, -1
FROZEN = frozenset({"SEED", "COMPILE"})  # never tuned: a seed is not a hyperparameter, compile is not a result
HEAD_DIMS = (16, 32, 64, 128)
WINDOW_PATTERNS = ("L", "SLL", "SL", "SSL", "SSSL", "S")  # ordered by the share of short-window layers
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


def value_at(consts: dict[str, Any], dim: Dim) -> Any:
    name, i = dim
    return consts[name] if i is None else consts[name][i]


def with_value(consts: dict[str, Any], dim: Dim, value: Any) -> Any:
    """The whole new value of dim's constant with dim set to `value`."""
    name, i = dim
    if i is None:
        return value
    return tuple(value if j == i else x for j, x in enumerate(consts[name]))


def label(dim: Dim) -> str:
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
# Spelling values back into train.py
# ---------------------------------------------------------------------------


def spellings(source: str) -> dict[str, str]:
    out = {}
    for line in source.splitlines():
        m = CONSTANT_RE.match(line)
        if m:
            out[m["name"]] = m["value"].strip()
    return out


def _is_pow2(v: Any) -> bool:
    return _is_int(v) and v > 0 and v & (v - 1) == 0


def spell(value: Any, old: str) -> str:
    """Python source for `value`, in the style the line used before (2**k, quote character)."""
    if isinstance(value, tuple):
        items = [spell(x, "") for x in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, str):
        q = "'" if old.startswith("'") else '"'
        return f"{q}{value}{q}"
    if _is_pow2(value) and POW_RE.fullmatch(old):
        return f"2**{value.bit_length() - 1}"
    return repr(value)


def show(name: str, value: Any, code: str) -> str:
    if isinstance(RULES.get(name), Pow2Rule) and _is_pow2(value) and value >= 1024:
        return f"2**{value.bit_length() - 1}"
    return code or repr(value)
