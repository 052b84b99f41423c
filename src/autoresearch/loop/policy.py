"""Keep or discard: the rule that turns measured val_bpb into a decision, with the evidence for it.

`greedy` is the original's rule: any improvement is kept. `noise` (the default) first measures how much val_bpb
moves when nothing but the seed changes (the baseline, repeated), then keeps a change only when its gain clears
that noise in a one-sided t test of the difference between two means: the standard deviation is pooled over every
group of repeated runs of the same code the run has made (the baseline's repeats, confirm runs, re-measures of
the best), with its degrees of freedom, so the test is exact for the few repeats there are and sharpens as the
night goes on. `sigmas` names the test's level as a normal tail: 2 sd is a 2.3% chance to keep a change that does
nothing. A gain that is positive but inside the margin is marginal: the change is run again with other seeds and
judged on the mean; the two looks share the level (each at half of it), so a null change is kept at most at that
rate in all. Every decision records its evidence (sd, degrees of freedom, critical value) in the journal.

The figure's direction is the task's (`sign`: +1 when lower is better, as val_bpb; -1 under `goal = "maximize"`):
every gain is `sign * (best - value)`, so the rules above read the same either way.

`could_keep` answers the question asked while a run is still evaluating: could this val_bpb still be kept? Only
then is the held-out test split worth scoring (it is recorded for every keep, never shown to an agent).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from functools import lru_cache

SIGMA_FLOOR = 1e-9  # a perfectly repeatable workspace has no noise: any real gain then clears the margin


@dataclass
class Decision:
    keep: bool
    evidence: dict = field(default_factory=dict)  # recorded in the journal with the decision
    rerun: bool = False  # marginal: measure again before deciding


class GreedyPolicy:
    """The original's rule: keep any improvement on the best val_bpb so far, however small."""

    name = "greedy"
    noise_runs = 0
    confirm_runs = 0

    def __init__(self, sign: int = 1) -> None:
        self.sign = sign  # +1: lower is better (val_bpb); -1: higher is (goal = "maximize")

    def decide(self, runs: list[float], best: float | None, best_runs: int = 1, sigma: float | None = None,
               final: bool = True, df: int | None = None) -> Decision:
        val = statistics.fmean(runs)
        if best is None:
            return Decision(True, {"rule": "greedy", "why": "first result (the baseline)", "runs": runs})
        gain = self.sign * (best - val)
        return Decision(gain > 0, {"rule": "greedy", "best": best, "val_bpb": val, "gain": gain, "runs": runs})

    def could_keep(self, runs: list[float], best: float | None) -> bool:
        """Any gain is kept."""
        return best is None or self.sign * (best - statistics.fmean(runs)) > 0


class NoisePolicy:
    """Keep a change only when its gain clears the measured noise by `sigmas` standard deviations."""

    name = "noise"

    def __init__(self, sigmas: float = 2.0, noise_runs: int = 2, confirm_runs: int = 1, sign: int = 1) -> None:
        self.sign = sign  # +1: lower is better (val_bpb); -1: higher is (goal = "maximize")
        self.sigmas = sigmas
        self.noise_runs = noise_runs  # extra baseline runs with other seeds (noise floor from 1 + noise_runs)
        self.confirm_runs = confirm_runs  # extra runs of a marginal winner

    @property
    def level(self) -> float:
        """The chance of keeping a change that does nothing, in all: the normal tail beyond `sigmas` sd."""
        return statistics.NormalDist().cdf(-self.sigmas)

    def decide(self, runs: list[float], best: float | None, best_runs: int = 1, sigma: float | None = None,
               final: bool = True, df: int | None = None) -> Decision:
        """`sigma` with `df` degrees of freedom is the pooled sd of repeats (a t test); df None: sigma is known."""
        val = statistics.fmean(runs)
        if best is None:
            return Decision(True, {"rule": "noise", "why": "the baseline", "runs": runs, "mean": val})
        s = max(sigma or 0.0, SIGMA_FLOOR)
        level = self.level / 2 if self.confirm_runs else self.level  # two looks (first run, then confirmed)
        critical = t_quantile(1 - level, df) if df else statistics.NormalDist().inv_cdf(1 - level)
        threshold = critical * s * math.sqrt(1 / len(runs) + 1 / max(best_runs, 1))
        gain = self.sign * (best - val)
        evidence = {"rule": "noise", "best": best, "best_runs": best_runs, "runs": runs, "mean": val, "gain": gain,
                    "sigma": s, "df": df, "sigmas": self.sigmas, "level": level, "critical": critical,
                    "threshold": threshold, "margin": gain / s}
        if gain > threshold:
            return Decision(True, {**evidence, "why": f"gain {gain:.4g} clears the noise margin {threshold:.4g} "
                                                      f"(t test at {level:.2%}, {df or 'known'} df)"})
        if gain > 0 and not final:
            return Decision(False, {**evidence, "why": "marginal: measuring again"}, rerun=True)
        why = "no gain" if gain <= 0 else f"gain {gain:.4g} within the noise margin {threshold:.4g}"
        return Decision(False, {**evidence, "why": why})

    def could_keep(self, runs: list[float], best: float | None) -> bool:
        """A positive gain on the best mean may be kept: outright, or after runs with other seeds confirm it."""
        return best is None or self.sign * (best - statistics.fmean(runs)) > 0


def noise_sigma(runs: list[float]) -> float:
    """Sample standard deviation of repeated runs of the same code (0 when fewer than two)."""
    return statistics.stdev(runs) if len(runs) >= 2 else 0.0


def pooled_sd(groups: list[list[float]]) -> tuple[float | None, int]:
    """The pooled within-group standard deviation of groups of repeated runs (each group the same code), and its
    degrees of freedom, sum(n_i - 1); (None, 0) without a group of two."""
    groups = [g for g in groups if len(g) >= 2]
    df = sum(len(g) - 1 for g in groups)
    if not df:
        return None, 0
    ss = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups)
    return math.sqrt(ss / df), df


@lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p > 0.5) of Student's t with df degrees of freedom: bisection on its CDF, integrated with
    Simpson's rule (no scipy for one function)."""
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def _t_cdf(x: float, df: int, steps: int = 2000) -> float:
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    pdf = [c * (1 + (x * i / steps) ** 2 / df) ** (-(df + 1) / 2) for i in range(steps + 1)]
    h = x / steps
    return 0.5 + h / 3 * (pdf[0] + pdf[-1] + 4 * sum(pdf[1:-1:2]) + 2 * sum(pdf[2:-1:2]))


POLICIES = {"greedy": GreedyPolicy, "noise": NoisePolicy}


def make_policy(name: str, sign: int = 1, **options):
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose one of: {', '.join(POLICIES)}")
    return POLICIES[name](sign=sign, **options) if name == "noise" else POLICIES[name](sign=sign)
