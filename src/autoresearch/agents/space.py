"""The search space of the `search` agent: which CAPS constants of train.py it tunes, over which values, and the
invariants between them. What a sampler (Optuna) cannot know lives here, declared once per constant.

Ranges are relative to the train.py a study starts from (a learning rate of 0.04 is searched in 0.01..0.16), so
the space fits every profile, from a laptop to an H100. Values are rounded the way a person would write them,
and go back into train.py spelled as the line spelled them before (2**19 stays a power, quotes stay quotes).

The invariants are projections, not rejections: a sampled setting is mapped to the nearest one train.py can run
(heads that divide the model's width, a micro-batch that divides the batch, a schedule that fits the budget),
and each holds only where the train.py it applies to satisfies it too. DEVICE_BATCH_SIZE is no dimension: with
TOTAL_BATCH_SIZE fixed it changes speed and memory, not the math, so it stays at the best train.py's value (the
most memory known to fit), lowered where a smaller batch needs it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from autoresearch.workspace import CONSTANT_RE

FROZEN = frozenset({"SEED", "COMPILE", "DEVICE_BATCH_SIZE"})  # a seed is no hyperparameter, nor is compiling
WINDOW_PATTERNS = ("L", "SL", "SSL", "SSSL")  # S = short window, L = full context
POW_RE = re.compile(r"2\s*\*\*\s*\d+")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _sig(x: float, digits: int = 2) -> float:
    return float(f"{x:.{digits}g}")


# ---------------------------------------------------------------------------
# Knobs: one kind of constant, its range around the starting value, and how a sampled value is written
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Log:
    """A positive float searched on a log scale, `factor` either way (learning rates)."""

    factor: float = 4.0
    lo: float = 1e-5
    hi: float = 10.0

    def distribution(self, v: Any) -> BaseDistribution | None:
        if not isinstance(v, float) or v <= 0:
            return None
        return FloatDistribution(max(self.lo, min(v, v / self.factor)), min(self.hi, max(v, v * self.factor)),
                                 log=True)

    def value(self, p: float) -> float:
        return _sig(p)


@dataclass(frozen=True)
class Linear:
    """A float in a fixed interval, widened to hold the starting value (fractions of the schedule)."""

    lo: float
    hi: float
    decimals: int = 2

    def distribution(self, v: Any) -> BaseDistribution | None:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return None
        return FloatDistribution(min(self.lo, float(v)), max(self.hi, float(v)))

    def value(self, p: float) -> float:
        return round(p, self.decimals)


@dataclass(frozen=True)
class Beta:
    """An Adam beta: 1 - beta is what matters, so it keeps two significant digits (0.95, 0.995)."""

    lo: float
    hi: float

    def distribution(self, v: Any) -> BaseDistribution | None:
        if not isinstance(v, float) or not 0 < v < 1:
            return None
        return FloatDistribution(min(self.lo, v), max(self.hi, v))

    def value(self, p: float) -> float:
        return round(1 - _sig(1 - p), 6)


@dataclass(frozen=True)
class Ints:
    """An integer from half to twice the starting value, on multiples of `step` where the start is one."""

    step: int = 1
    log: bool = False

    def distribution(self, v: Any) -> BaseDistribution | None:
        if not _is_int(v) or v < 1:
            return None
        step = self.step if v % self.step == 0 and not self.log else 1
        lo = max(step, v // 2 // step * step)
        if self.log:
            return IntDistribution(lo, max(v * 2, lo + 1), log=True)
        return IntDistribution(lo, lo + (max(v * 2, lo + step) - lo) // step * step, step=step)

    def value(self, p: int) -> int:
        return int(p)


@dataclass(frozen=True)
class Pow2:
    """Powers of two (times the starting value) from `down` halvings to `up` doublings (batch and head sizes)."""

    down: int
    up: int

    def distribution(self, v: Any) -> BaseDistribution | None:
        if not _is_int(v) or v < 1:
            return None
        return CategoricalDistribution([v * 2**k if k >= 0 else v // 2**-k for k in range(-self.down, self.up + 1)
                                        if k >= 0 or v % 2**-k == 0])

    def value(self, p: int) -> int:
        return int(p)


@dataclass(frozen=True)
class Choice:
    options: tuple[Any, ...]

    def distribution(self, v: Any) -> BaseDistribution | None:
        if not isinstance(v, type(self.options[0])):
            return None
        return CategoricalDistribution(list(dict.fromkeys([*self.options, v])))

    def value(self, p: Any) -> Any:
        return p


Knob = Log | Linear | Beta | Ints | Pow2 | Choice
LR = Log(4.0)
KNOBS: dict[str, Knob | tuple[Knob, ...]] = {
    "DEPTH": Ints(),
    "ASPECT_RATIO": Ints(step=16),
    "HEAD_DIM": Pow2(1, 1),
    "WINDOW_PATTERN": Choice(WINDOW_PATTERNS),
    "TOTAL_BATCH_SIZE": Pow2(3, 2),
    "EMBEDDING_LR": LR,
    "UNEMBEDDING_LR": LR,
    "MATRIX_LR": LR,
    "SCALAR_LR": LR,
    "WEIGHT_DECAY": Linear(0.0, 0.5),
    "ADAM_BETAS": (Beta(0.6, 0.95), Beta(0.9, 0.995)),  # one knob per element
    "WARMUP_RATIO": Linear(0.0, 0.2),
    "WARMDOWN_RATIO": Linear(0.0, 0.8),
    "FINAL_LR_FRAC": Linear(0.0, 0.2),
}
# How much a constant tends to matter for a short run, as a prior share of the first proposals, which change a few
# constants at a time (steps per budget and learning rates first); 1 for the rest.
IMPORTANCE = {"TOTAL_BATCH_SIZE": 3.0, "MATRIX_LR": 3.0, "EMBEDDING_LR": 2.0, "UNEMBEDDING_LR": 2.0, "DEPTH": 2.0,
              "WARMDOWN_RATIO": 2.0, "ASPECT_RATIO": 1.5, "ADAM_BETAS[0]": 0.5, "ADAM_BETAS[1]": 0.5}
GENERIC_FLOAT, GENERIC_INT = Log(4.0, lo=0.0, hi=math.inf), Ints(log=True)  # numbers the table does not know


def _knob(name: str, v: Any) -> Knob | tuple[Knob, ...] | None:
    name = name.rpartition(":")[2]  # another editable file's constant, `model.py:DEPTH`, is known by its name
    if name in FROZEN:
        return None
    if name in KNOBS:
        return KNOBS[name]
    if isinstance(v, float) and v > 0:
        return GENERIC_FLOAT
    if _is_int(v) and v >= 2:
        return GENERIC_INT
    return None


# ---------------------------------------------------------------------------
# The space: a distribution per dimension (a constant, or one element of a tuple constant)
# ---------------------------------------------------------------------------


def _dims(consts: dict[str, Any]) -> dict[str, tuple[str, int | None, Knob]]:
    """Dimension name -> (constant, element index or None, knob), in source order."""
    out = {}
    for name, v in consts.items():
        knob = _knob(name, v)
        if isinstance(knob, tuple):
            if isinstance(v, tuple) and len(v) == len(knob):
                out.update({f"{name}[{i}]": (name, i, k) for i, k in enumerate(knob)})
        elif knob is not None:
            out[name] = (name, None, knob)
    return out


def _get(consts: dict[str, Any], name: str, i: int | None) -> Any:
    v = consts.get(name)
    return v if i is None else (v[i] if isinstance(v, tuple) and i < len(v) else None)


class Space:
    """The distributions of a study, fixed when it starts (from its first train.py) and stored with it."""

    def __init__(self, distributions: dict[str, BaseDistribution]) -> None:
        self.distributions = distributions

    @classmethod
    def around(cls, consts: dict[str, Any]) -> Space:
        out = {}
        for dim, (name, i, knob) in _dims(consts).items():
            d = knob.distribution(_get(consts, name, i))
            if d is not None:
                out[dim] = d
        return cls(out)

    def inside(self, dim: str, v: Any) -> bool:
        d = self.distributions[dim]
        if isinstance(d, CategoricalDistribution):
            return v in d.choices
        return isinstance(v, (int, float)) and not isinstance(v, bool) and d.low <= v <= d.high

    def to_json(self) -> str:
        return json.dumps({k: distribution_to_json(d) for k, d in self.distributions.items()})

    @classmethod
    def from_json(cls, text: str) -> Space:
        return cls({k: json_to_distribution(d) for k, d in json.loads(text).items()})

    def params(self, consts: dict[str, Any]) -> dict[str, Any] | None:
        """A train.py's constants as a point of the space, or None where one is missing; Optuna refuses a point
        outside the ranges (ValueError)."""
        out = {}
        for dim in self.distributions:
            name, i = _split(dim)
            v = _get(consts, name, i)
            if v is None:
                return None
            out[dim] = v
        return out

    def constants(self, params: dict[str, Any], best: dict[str, Any], seq_len: int | None) -> dict[str, Any] | None:
        """The constants to write into the best train.py for a sampled point, projected onto what it can run;
        None where no projection exists."""
        new = dict(best)
        for dim, p in params.items():
            name, i = _split(dim)
            knob = _knob(name, _get(best, name, i))
            if knob is None or name not in best:
                continue  # the best train.py lost this constant since the study began
            if isinstance(knob, tuple):
                if not isinstance(best[name], tuple) or i is None or i >= len(best[name]):
                    continue
                new[name] = tuple(knob[i].value(p) if j == i else x for j, x in enumerate(new[name]))
            else:
                new[name] = knob.value(p)
        return project(new, best, seq_len)


def _split(dim: str) -> tuple[str, int | None]:
    if dim.endswith("]"):
        name, _, i = dim[:-1].partition("[")
        return name, int(i)
    return dim, None


# ---------------------------------------------------------------------------
# Invariants between constants, each kept where the best train.py keeps it
# ---------------------------------------------------------------------------


def _width_ok(v: dict[str, Any]) -> bool:
    d, a, h = v.get("DEPTH"), v.get("ASPECT_RATIO"), v.get("HEAD_DIM")
    return not (_is_int(d) and _is_int(a) and _is_int(h)) or (h > 0 and d * a >= h and d * a % h == 0)


def _batch_unit(v: dict[str, Any], seq_len: int | None) -> int | None:
    """What TOTAL_BATCH_SIZE // DEVICE_BATCH_SIZE must be a multiple of: the tokens of a row, or where those are not
    known, the ratio the best ran with (a multiple of them). None: the best keeps no such invariant."""
    t, b = v.get("TOTAL_BATCH_SIZE"), v.get("DEVICE_BATCH_SIZE")
    if not (_is_int(t) and _is_int(b)) or b < 1 or t % b:
        return None
    unit = seq_len or t // b
    return unit if (t // b) % unit == 0 else None


def _schedule_ok(v: dict[str, Any]) -> bool:
    up, down = v.get("WARMUP_RATIO"), v.get("WARMDOWN_RATIO")
    return not (isinstance(up, (int, float)) and isinstance(down, (int, float))) or up + down <= 1 + 1e-9


def project(new: dict[str, Any], best: dict[str, Any], seq_len: int | None) -> dict[str, Any] | None:
    new = dict(new)
    if _width_ok(best) and not _width_ok(new):  # the nearest head size that divides the width, smaller first
        width, h = new["DEPTH"] * new["ASPECT_RATIO"], new["HEAD_DIM"]
        heads = [x for x in range(1, width + 1) if width % x == 0]
        heads = [x for x in heads if _is_pow2(x) and x >= 8] or heads  # sizes attention kernels like
        new["HEAD_DIM"] = min(heads, key=lambda x: (abs(math.log2(x / h)), x > h))
    unit = _batch_unit(best, seq_len)
    if unit is not None:
        t = new["TOTAL_BATCH_SIZE"]
        if t < unit or t % unit:
            return None
        rows = t // unit
        new["DEVICE_BATCH_SIZE"] = max(b for b in range(1, min(rows, best["DEVICE_BATCH_SIZE"]) + 1) if rows % b == 0)
    if _schedule_ok(best) and not _schedule_ok(new):  # keep the warmup asked for, end the warmdown at the end
        new["WARMDOWN_RATIO"] = round(1.0 - new["WARMUP_RATIO"], 6)
    return new


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
    """A value for the one-line description: large batch sizes as powers of two."""
    if name.endswith("BATCH_SIZE") and _is_pow2(value) and value >= 1024:
        return f"2**{value.bit_length() - 1}"
    return code or repr(value)
