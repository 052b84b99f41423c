"""The time budget of a task's script, in one line each: `budget.start()` where training starts, `budget.over()`
in the training loop.

    from autoresearch.harness import budget
    budget.start()              # start-up before this is not charged
    while not budget.over():    # True once AUTORESEARCH_TIME_BUDGET seconds have passed since start()
        ...

Outside autoresearch (no AUTORESEARCH_TIME_BUDGET), or under a fixed-work task, over() is never True, so the script
still runs by hand. The runner clocks from outside as well: start() tells it (on the descriptor in
AUTORESEARCH_BUDGET_FD) when training starts, and a script that runs past the budget and a grace is stopped as a
timeout. Nothing here decides a figure.
"""

from __future__ import annotations

import os
import time

BUDGET_ENV = "AUTORESEARCH_TIME_BUDGET"
BUDGET_FD_ENV = "AUTORESEARCH_BUDGET_FD"
_started: float | None = None


def seconds() -> float | None:
    """The budget in seconds, or None when there is none."""
    try:
        value = float(os.environ.get(BUDGET_ENV, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def start() -> None:
    """Training starts now: the budget is clocked from here (a second call does not move the start)."""
    global _started
    if _started is not None:
        return
    _started = time.monotonic()
    fd = os.environ.get(BUDGET_FD_ENV)
    if fd and fd.isdigit():
        try:
            os.write(int(fd), b"start\n")
            os.close(int(fd))
        except OSError:
            pass


def elapsed() -> float:
    """Seconds since start() (start() is called now if it was not)."""
    start()
    assert _started is not None
    return time.monotonic() - _started


def over() -> bool:
    """True once the budget has run out; never without a budget."""
    budget = seconds()
    return budget is not None and elapsed() >= budget
