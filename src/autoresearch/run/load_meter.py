"""How busy the rest of the machine was while a run ran: a load signal the change itself does not control.

The run's own speed (tokens/s) is no such signal: DEPTH or the batch size move it as much as a busy machine does.
What the change cannot move is the CPU time everything else on the machine took: the machine's busy CPU seconds
(psutil.cpu_times) less the run's own process tree and its scorer, per wall second, in cores. Other workers'
runs count as load here, as they should: they share the machine with this run.

A sampler thread reads both once a second while the run lives; the figure spans the first sample to the last, so
each process is read while it still exists (a reaped process has no CPU times left to read) and keeps its last
reading after it exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import psutil

SAMPLE_SECONDS = 1.0


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot, all cores together."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def tree_cpu_seconds(pids: Iterable[int], seen: dict[int, float]) -> float:
    """CPU seconds used by these processes and all their descendants: each process's last reading is kept in
    `seen`, so one that has exited since still counts what it used."""
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            try:
                c = p.cpu_times()
            except psutil.Error:
                continue
            seen[p.pid] = max(seen.get(p.pid, 0.0), c.user + c.system)
    return sum(seen.values())


class LoadMeter:
    """Samples, while a run lives, the CPU the rest of the machine used. `pids()` names the run's own processes."""

    def __init__(self, pids: Callable[[], list[int]], every: float = SAMPLE_SECONDS) -> None:
        self.pids, self.every = pids, every
        self.first: tuple[float, float, float] | None = None  # (time, machine busy, own tree)
        self.last: tuple[float, float, float] | None = None
        self._seen: dict[int, float] = {}  # pid -> its CPU seconds when last read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-meter", daemon=True)

    def start(self) -> LoadMeter:
        self._thread.start()
        return self

    def sample(self) -> None:
        point = (time.monotonic(), machine_busy_seconds(), tree_cpu_seconds(self.pids(), self._seen))
        if self.first is None:
            self.first = point
        self.last = point

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.every):
                return

    def stop(self) -> float | None:
        """The rest of the machine's average CPU use over the samples, in cores; None with under two samples."""
        self._stop.set()
        self._thread.join(timeout=5)
        return others_cores(self.first, self.last)


def others_cores(first, last) -> float | None:
    if first is None or last is None or last[0] - first[0] < 0.5:
        return None
    busy, own = last[1] - first[1], last[2] - first[2]
    return max(0.0, (busy - own) / (last[0] - first[0]))
