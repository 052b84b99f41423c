"""The one small interface a backend implements (the package's __init__ says how the `run` command picks one).

A backend has slots (one per worker: a device, or a place on a cluster) and runs one experiment per slot at a
time. `run` blocks (the scheduler calls it from the slot's own thread) and never raises for a failed run: every
outcome is a RunResult, `lost` when the machine running it went away and `interrupted` when cancel() stopped it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from autoresearch.run.result import Experiment, Progress, RunResult


class BackendError(Exception):
    """A backend cannot start with these options (no such GPU, no Ray cluster); the message says how to fix it."""


@dataclass(frozen=True)
class Slot:
    index: int  # the worker's number, 1-based
    device: str  # what it runs on, for people: "cuda:0", "cpu", "mps", "ray"
    env: tuple[tuple[str, str], ...] = ()  # extra environment of its experiments (CUDA_VISIBLE_DEVICES, threads)
    sharing: int = 1  # how many slots share this one's device (CPU workers, --per-device 2)

    @property
    def label(self) -> str:
        return f"w{self.index} {self.device}" + (f" (1 of {self.sharing})" if self.sharing > 1 else "")


@runtime_checkable
class Backend(Protocol):
    name: str

    def slots(self) -> list[Slot]: ...

    def run(self, exp: Experiment, slot: Slot, on_line: Callable[[str], None] | None = None,
            on_progress: Callable[[Progress], None] | None = None) -> RunResult: ...

    def cancel(self) -> None:
        """Stop every run in flight now (Ctrl-C, SIGTERM): their run() calls return `interrupted` promptly, and
        none of their processes is left."""

    def close(self) -> None: ...


def join_workers(threads: Iterable[threading.Thread], stop: Callable[[], None], grace: float = 60.0) -> None:
    """Wait for the slots' threads. Ctrl-C or SIGTERM arrive in the main thread, here: then `stop` (cancel every
    run, so none trains on after we return), give the threads `grace` seconds in all (an agent's call in flight is
    not waited for), and re-raise."""
    threads = list(threads)
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
    except BaseException:
        stop()
        deadline = time.monotonic() + grace
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        raise
