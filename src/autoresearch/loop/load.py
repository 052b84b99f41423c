"""Load must not pick the winner.

Under a time budget a run that meets a quiet moment trains more steps than one that meets a busy one, and scores
better for it. On a shared machine that difference can be larger than the effect of a change. So every
experiment records how busy the rest of the machine was while it ran: the cores everything else used
(run/load_meter.py), a signal the change does not control (its own tokens/s is not one: DEPTH or the batch size
move it as much as load does). Before a change is kept, that load is compared with the load the best was measured
under; when the change met a quieter machine by more than the baseline's repeats vary, the best is run again now
and the change is judged against that fresh figure. The other way too: a change discarded after meeting a busier
machine is judged again against the best run now. The fresh measurement becomes the best's reference for the
changes after it, and a repeat of the best's code for the pooled noise floor.

We re-measure rather than only flag, because a flag leaves a wrong keep on the branch, and everything after it
builds on that keep; one extra run, only for a change that would be kept, is cheaper than that. A change that
makes training faster on its own still wins, since the best re-measured at the same load is as slow as before.
Under a token budget the speed does not change what is trained, so none of this is needed (and the noise floor
shrinks to seed noise: the recommended mode on shared machines).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

LOAD_FLOOR = 0.25  # cores: a smaller difference in the rest of the machine's use is never treated as a load change
SPREAD_SIGMAS = 3.0


@dataclass
class Reference:
    """What the current best scored, and how fast it trained, when it was last measured."""

    commit: str
    val_bpb: float
    runs: int  # how many runs val_bpb is the mean of
    tokens_per_second: float | None
    remeasured_at: int | None = None  # the experiment whose decision re-measured it (None: as kept)
    others_cpu: float | None = None  # cores the rest of the machine used while it was measured

    def to_dict(self) -> dict:
        return asdict(self)


def load_tolerance(repeat_loads: list[float | None]) -> float:
    """Cores of difference in the rest of the machine's use beyond which load may have moved the figures:
    SPREAD_SIGMAS sd of the baseline's repeats (run side by side, under the same load), at least LOAD_FLOOR."""
    known = [x for x in repeat_loads if x is not None]
    spread = SPREAD_SIGMAS * statistics.stdev(known) if len(known) >= 2 else 0.0
    return max(LOAD_FLOOR, spread)


def load_moved(reference_load: float | None, load: float | None, tol: float) -> int:
    """+1: the change met a busier machine than the best did; -1: a quieter one; 0: the same, or unknown."""
    if reference_load is None or load is None or abs(load - reference_load) <= tol:
        return 0
    return 1 if load > reference_load else -1


def mean_known(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def mean_speed(speeds: list[float | None]) -> float | None:
    known = [s for s in speeds if s]
    return statistics.fmean(known) if known else None
