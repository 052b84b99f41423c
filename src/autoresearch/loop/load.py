"""Load must not pick the winner.

Under a time budget a run that meets a quiet moment trains more steps than one that meets a busy one, and scores
better for it. On a shared machine that difference can be larger than the effect of a change. So every
experiment records its training speed (tokens/s, measured by the runner from the harness's loader), and before a
change is kept, its speed is compared with the speed the best was measured at. When they differ by more than
repeats of the same code differ, the best is run again now, under the load the change met, and the change is
judged against that fresh figure. The fresh measurement becomes the best's reference for the changes after it.

We re-measure rather than only flag, because a flag leaves a wrong keep on the branch, and everything after it
builds on that keep; one extra run, only for a change that would be kept, is cheaper than that. A change that
makes training faster on its own still wins, since the best re-measured at the same load is as slow as before.
Under a token budget the speed does not change what is trained, so none of this is needed (and the noise floor
shrinks to seed noise: the recommended mode on shared machines).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

TOLERANCE_FLOOR = 0.05  # relative tokens/s difference that is never treated as a load change
TOLERANCE_DEFAULT = 0.10  # when the baseline repeats did not measure the spread
SPREAD_SIGMAS = 3.0


@dataclass
class Reference:
    """What the current best scored, and how fast it trained, when it was last measured."""

    commit: str
    val_bpb: float
    runs: int  # how many runs val_bpb is the mean of
    tokens_per_second: float | None
    remeasured_at: int | None = None  # the experiment whose decision re-measured it (None: as kept)

    def to_dict(self) -> dict:
        return asdict(self)


def tolerance(repeat_speeds: list[float]) -> float:
    """Relative speed difference beyond which load, not the code, is the likely cause: SPREAD_SIGMAS coefficients
    of variation of the baseline's repeats (the same code, run several times), at least TOLERANCE_FLOOR."""
    speeds = [s for s in repeat_speeds if s]
    if len(speeds) < 2:
        return TOLERANCE_DEFAULT
    mean = statistics.fmean(speeds)
    return max(TOLERANCE_FLOOR, SPREAD_SIGMAS * statistics.stdev(speeds) / mean)


def shifted(reference_speed: float | None, speed: float | None, tol: float) -> bool:
    """Whether the two speeds differ by more than `tol`. An unknown speed on one side counts as a shift: a run
    that takes its data before the clock shows no speed, and must not skip the check that way. With both unknown
    (neither trained on the clock) there is nothing to compare."""
    if not reference_speed and not speed:
        return False
    if not reference_speed or not speed:
        return True
    return abs(speed / reference_speed - 1) > tol


def mean_speed(speeds: list[float | None]) -> float | None:
    known = [s for s in speeds if s]
    return statistics.fmean(known) if known else None
