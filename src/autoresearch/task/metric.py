"""A metric: the figure's name and its direction. The loop compares figures only through it."""

from __future__ import annotations

import math
from dataclasses import dataclass

GOALS = ("minimize", "maximize")


@dataclass(frozen=True)
class Metric:
    name: str = "val_bpb"
    goal: str = "minimize"

    def __post_init__(self) -> None:
        if self.goal not in GOALS:
            raise ValueError(f"goal must be 'minimize' or 'maximize', not {self.goal!r}")

    @property
    def sign(self) -> int:
        """+1 when lower is better, -1 when higher is: loss(x) = sign * x is lower-is-better for either goal."""
        return 1 if self.goal == "minimize" else -1

    def loss(self, value: float) -> float:
        return self.sign * value

    def better(self, a: float | None, b: float | None) -> bool:
        """Is figure `a` strictly better than `b`? A missing or non-finite `a` never is; anything beats None."""
        if a is None or not math.isfinite(a):
            return False
        if b is None or not math.isfinite(b):
            return True
        return self.loss(a) < self.loss(b)

    def gain(self, new: float, best: float) -> float:
        """How much `new` improves on `best`, positive when it is better (in the metric's own units)."""
        return self.loss(best) - self.loss(new)

    def best(self, values) -> float | None:
        finite = [v for v in values if v is not None and math.isfinite(v)]
        return min(finite, key=self.loss) if finite else None

    @property
    def direction(self) -> str:
        return "lower is better" if self.goal == "minimize" else "higher is better"

    def describe(self) -> str:
        return f"{self.name} ({self.goal}: {self.direction})"


BPB = Metric("val_bpb", "minimize")  # the GPT task's figure


def metric_of(info: dict | None) -> Metric:
    """The metric a run recorded in its info (loop/ledger.py); a run from before metrics were recorded: val_bpb."""
    m = (info or {}).get("metric") if isinstance(info, dict) else None
    if isinstance(m, dict) and isinstance(m.get("name"), str) and m.get("goal") in GOALS:
        return Metric(m["name"], m["goal"])
    return BPB
