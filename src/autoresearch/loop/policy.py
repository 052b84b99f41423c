"""Keep or discard: the rule that turns measured val_bpb into a decision, with the evidence for it.

`greedy` is the original's rule: any improvement is kept. `noise` (the default) first measures how much val_bpb
moves when nothing but the seed changes (the baseline, repeated), then keeps a change only when its gain clears
that noise by a margin: K standard deviations of the difference between two means, sigma * sqrt(1/n + 1/m) for
n runs of the change and m of the best. A gain that is positive but inside the margin is marginal: the change is
run again with other seeds and judged on the mean. Every decision records its evidence in the journal.

`could_keep` answers the question asked while a run is still evaluating: could this val_bpb still be kept? Only
then is the held-out test split worth scoring (it is recorded for every keep, never shown to an agent).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

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

    def decide(self, runs: list[float], best: float | None, best_runs: int = 1, sigma: float | None = None,
               final: bool = True) -> Decision:
        val = statistics.fmean(runs)
        if best is None:
            return Decision(True, {"rule": "greedy", "why": "first result (the baseline)", "runs": runs})
        gain = best - val
        return Decision(gain > 0, {"rule": "greedy", "best": best, "val_bpb": val, "gain": gain, "runs": runs})

    def could_keep(self, runs: list[float], best: float | None) -> bool:
        """Any gain is kept."""
        return best is None or statistics.fmean(runs) < best


class NoisePolicy:
    """Keep a change only when its gain clears the measured noise by `sigmas` standard deviations."""

    name = "noise"

    def __init__(self, sigmas: float = 2.0, noise_runs: int = 2, confirm_runs: int = 1) -> None:
        self.sigmas = sigmas
        self.noise_runs = noise_runs  # extra baseline runs with other seeds (noise floor from 1 + noise_runs)
        self.confirm_runs = confirm_runs  # extra runs of a marginal winner

    def decide(self, runs: list[float], best: float | None, best_runs: int = 1, sigma: float | None = None,
               final: bool = True) -> Decision:
        val = statistics.fmean(runs)
        if best is None:
            return Decision(True, {"rule": "noise", "why": "the baseline", "runs": runs, "mean": val})
        s = max(sigma or 0.0, SIGMA_FLOOR)
        threshold = self.sigmas * s * math.sqrt(1 / len(runs) + 1 / max(best_runs, 1))
        gain = best - val
        evidence = {"rule": "noise", "best": best, "best_runs": best_runs, "runs": runs, "mean": val, "gain": gain,
                    "sigma": s, "sigmas": self.sigmas, "threshold": threshold, "margin": gain / s}
        if gain > threshold:
            return Decision(True, {**evidence, "why": f"gain {gain:.4g} clears {self.sigmas:g} sd ({threshold:.4g})"})
        if gain > 0 and not final:
            return Decision(False, {**evidence, "why": "marginal: measuring again"}, rerun=True)
        why = "no gain" if gain <= 0 else f"gain {gain:.4g} within the noise margin {threshold:.4g}"
        return Decision(False, {**evidence, "why": why})

    def could_keep(self, runs: list[float], best: float | None) -> bool:
        """A positive gain on the best mean may be kept: outright, or after runs with other seeds confirm it."""
        return best is None or statistics.fmean(runs) < best


def noise_sigma(runs: list[float]) -> float:
    """Sample standard deviation of repeated runs of the same code (0 when fewer than two)."""
    return statistics.stdev(runs) if len(runs) >= 2 else 0.0


POLICIES = {"greedy": GreedyPolicy, "noise": NoisePolicy}


def make_policy(name: str, **options):
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose one of: {', '.join(POLICIES)}")
    return POLICIES[name](**options) if name == "noise" else POLICIES[name]()
