"""Load must not pick the winner.

Under a time budget a run that meets a quiet moment trains more steps than one that meets a busy one, and scores
better for it. On a shared machine that difference can be larger than the effect of a change. So every
experiment records the load it met, with a signal the change does not control (its own tokens/s is not one:
DEPTH or the batch size move it as much as load does): how long its threads waited for a core per CPU second they
ran (run/load_meter.py). As a stretch, 1 + wait, it is the factor by which waiting slowed a run that always has
work for its threads. Before a change is decided, its stretch is compared with the stretch the best was measured
under; where they differ by more than the baseline's repeats do, in the direction that could have decided it (a
keep on a quieter machine, or, under the noise policy, a discard on a busier one), the change is judged against
the best's figures at the load it met. The best keeps every figure it was measured at, with its load: its kept
runs and each re-measure. Those measured at a comparable load are pooled (their mean, with their count, is the
reference); where there is none, the best is run again now, once, and that run joins its figures. So each change
costs at most one extra run, and the best is re-run only for a load it was never measured at.

We re-measure rather than only flag, because a flag leaves a wrong keep on the branch, and everything after it
builds on that keep; one extra run, only where the load could have made the decision, is cheaper than that. A change that
makes training faster on its own still wins, since the best re-measured at the same load is as slow as before.
Under a token budget the speed does not change what is trained, so none of this is needed (and the noise floor
shrinks to seed noise: the recommended mode on shared machines).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, replace

STRETCH_FLOOR = 0.10  # a relative difference of stretches below this is never treated as a load change
SPREAD_SIGMAS = 3.0


@dataclass
class Figure:
    """One measurement of the best's code: its val_bpb and the load it met (its wait per CPU second)."""

    val_bpb: float
    load: float | None
    at: int | None = None  # the experiment whose decision measured it (None: one of the runs it was kept on)


@dataclass
class Reference:
    """What the current best scored, and under what load, as compared with a change: the pooled mean of its
    figures at one load (`runs` of them), with every figure it has."""

    commit: str
    val_bpb: float
    runs: int  # how many runs val_bpb is the mean of
    tokens_per_second: float | None
    remeasured_at: int | None = None  # the experiment whose decision last ran it again (None: as kept)
    load: float | None = None  # the mean load of the figures pooled in val_bpb
    figures: list = field(default_factory=list)  # every Figure of the best, as dicts

    def to_dict(self) -> dict:
        return asdict(self)

    def all_figures(self) -> list[Figure]:
        return [Figure(**f) for f in self.figures]

    def at_load(self, here: float | None, tol: float) -> Reference | None:
        """The best's figures measured at a load comparable to `here`, pooled; None where it has none."""
        near = [f for f in self.all_figures() if f.load is not None and not moved(f.load, here, tol)]
        if not near:
            return None
        return replace(self, val_bpb=statistics.fmean(f.val_bpb for f in near), runs=len(near),
                       load=statistics.fmean(f.load for f in near))

    def with_figure(self, figure: Figure, tol: float, tps: float | None) -> Reference:
        """The best after one more measurement: the figure joins the others, and the reference becomes the pool
        at its load."""
        grown = replace(self, figures=[*self.figures, asdict(figure)], remeasured_at=figure.at,
                        tokens_per_second=tps)
        pooled = grown.at_load(figure.load, tol)
        return pooled if pooled is not None else replace(grown, val_bpb=figure.val_bpb, runs=1, load=figure.load)


def stretch(wait: float) -> float:
    """The factor by which waiting for a core slowed a run: wall seconds per CPU second, for busy threads."""
    return 1.0 + wait


def load_tolerance(repeat_loads: list[float | None]) -> float:
    """The relative difference of stretches beyond which load may have moved the figures: SPREAD_SIGMAS
    coefficients of variation of the baseline's repeats (the same code, run side by side), at least
    STRETCH_FLOOR."""
    known = [stretch(x) for x in repeat_loads if x is not None]
    if len(known) < 2:
        return STRETCH_FLOOR
    return max(STRETCH_FLOOR, SPREAD_SIGMAS * statistics.stdev(known) / statistics.fmean(known))


UNKNOWN = 2  # one side's load is unknown: checked before a keep, as a quieter machine would be


def moved(reference_load: float | None, load: float | None, tol: float) -> int:
    """+1: `load` is a busier machine than `reference_load`; -1: a quieter one; 0: the same, or both unknown;
    UNKNOWN: one side unknown (a run that never had work for its threads must not skip the check that way)."""
    if reference_load is None and load is None:
        return 0
    if reference_load is None or load is None:
        return UNKNOWN
    ratio = stretch(load) / stretch(reference_load)
    if abs(ratio - 1) <= tol:
        return 0
    return 1 if ratio > 1 else -1


def mean_known(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def mean_speed(speeds: list[float | None]) -> float | None:
    known = [s for s in speeds if s]
    return statistics.fmean(known) if known else None
