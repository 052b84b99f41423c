"""How busy the machine was while a run ran: a load signal the change itself does not control.

The run's own speed (tokens/s) is no such signal: DEPTH or the batch size move it as much as a busy machine does.
Neither is the CPU time the rest of the machine took alone: on a saturated machine the others can only use what
the run leaves them, so a burner beside a run that wants every core hardly moves it (bench/RESULTS.md).

The signal the loop compares is `wait`: the time the run's own threads spent runnable but not running (waiting for
a core: Linux's /proc/PID/task/TID/schedstat, second field), per CPU second they ran. Whoever takes the cores, a
burner, another worker's run, another user, the run's threads wait for them, and a change that makes the model
deeper or the batch larger changes how long the run computes, not how long each CPU second waits for a core
(bench/load_signal.py measures both). Beside it, for the record: the rest of the machine's CPU use in cores, the
machine's CPU pressure (/proc/pressure/cpu "some": the share of wall time anything waited) and the run's own CPU
share of wall time per core.

A sampler thread reads them once a second while the run lives; each figure spans the first sample to the last of
timed training (where, under a time budget, load changes what is trained; the whole run when it never got there), so
each process and thread is read while it still exists (a reaped one has nothing left to read) and keeps its last
reading after it exits. Where /proc gives no schedstat (not Linux), `wait` is None and the loop does not re-measure.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import psutil

SAMPLE_SECONDS = 1.0
MIN_SPAN = 0.5  # seconds between the first and last sample below which nothing is said
MIN_CPU = 0.2  # CPU seconds of the run below which its wait per CPU second means nothing


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot, all cores together."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def pressure_some_seconds() -> float | None:
    """Seconds since boot during which some task waited for a CPU (/proc/pressure/cpu); None without PSI."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some"):
                    return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return None
    return None


def thread_waits(pid: int) -> dict[int, float] | None:
    """Seconds each thread of `pid` has spent runnable but not running; None when /proc has no schedstat."""
    out: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return out


@dataclass
class Point:
    """One sample: cumulative counters at a moment."""

    at: float  # time.monotonic()
    busy: float  # the machine's busy CPU seconds
    own: float  # the run's process tree's CPU seconds
    wait: float | None  # the tree's threads' runnable-not-running seconds
    pressure: float | None  # the machine's CPU "some" stall seconds


@dataclass
class LoadReading:
    """What the meter saw over a run. `wait` is the load signal; the rest is recorded beside it."""

    wait: float | None  # seconds the run's threads waited for a core, per CPU second they ran
    others_cpu: float | None  # cores the rest of the machine used, on average
    pressure: float | None  # share of wall time some task on the machine waited for a core
    own_share: float | None  # the run's CPU seconds per wall second per core of the machine
    seconds: float  # the span measured

    def to_dict(self) -> dict:
        return asdict(self)


class Tree:
    """The run's processes and threads, with each one's last reading kept after it is gone."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self.cpu: dict[int, float] = {}  # pid -> CPU seconds when last read
        self.waits: dict[tuple[int, int], float] = {}  # (pid, tid) -> wait seconds when last read
        self.schedstat = True

    def read(self) -> tuple[float, float | None]:
        for proc in self._procs(self.pids()):
            try:
                c = proc.cpu_times()
            except psutil.Error:
                continue
            self.cpu[proc.pid] = max(self.cpu.get(proc.pid, 0.0), c.user + c.system)
            waits = thread_waits(proc.pid) if self.schedstat else None
            if waits is None:
                self.schedstat = self.schedstat and os.path.exists(f"/proc/{proc.pid}")  # gone, or no /proc
                continue
            for tid, w in waits.items():
                self.waits[(proc.pid, tid)] = max(self.waits.get((proc.pid, tid), 0.0), w)
        return sum(self.cpu.values()), (sum(self.waits.values()) if self.schedstat else None)

    @staticmethod
    def _procs(pids: Iterable[int]) -> list[psutil.Process]:
        out = []
        for pid in pids:
            try:
                root = psutil.Process(pid)
                out += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        return out


class LoadMeter:
    """Samples, while a run lives, how busy the machine was. `pids()` names the run's own processes; `timed()`
    says whether timed training is under way (the figures span it where there were two samples in it)."""

    def __init__(self, pids: Callable[[], list[int]], timed: Callable[[], bool] = lambda: False,
                 every: float = SAMPLE_SECONDS) -> None:
        self.tree, self.timed, self.every = Tree(pids), timed, every
        self.first: Point | None = None  # the whole run
        self.last: Point | None = None
        self.timed_first: Point | None = None  # timed training
        self.timed_last: Point | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-meter", daemon=True)

    def start(self) -> LoadMeter:
        self._thread.start()
        return self

    def sample(self) -> None:
        own, wait = self.tree.read()
        point = Point(time.monotonic(), machine_busy_seconds(), own, wait, pressure_some_seconds())
        if self.first is None:
            self.first = point
        self.last = point
        if self.timed():
            if self.timed_first is None:
                self.timed_first = point
            self.timed_last = point

    def _run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a meter that cannot read says nothing; the run goes on
                pass
            if self._stop.wait(self.every):
                return

    def stop(self) -> LoadReading | None:
        """What the samples saw, or None with under two of them."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
        cores = psutil.cpu_count() or 1
        return reading(self.timed_first, self.timed_last, cores) or reading(self.first, self.last, cores)


def reading(first: Point | None, last: Point | None, cores: int) -> LoadReading | None:
    if first is None or last is None or last.at - first.at < MIN_SPAN:
        return None
    span = last.at - first.at
    own = last.own - first.own
    wait = None
    if first.wait is not None and last.wait is not None and own >= MIN_CPU:
        wait = max(0.0, last.wait - first.wait) / own
    pressure = None
    if first.pressure is not None and last.pressure is not None:
        pressure = min(1.0, max(0.0, (last.pressure - first.pressure) / span))
    return LoadReading(wait=wait, others_cpu=max(0.0, (last.busy - first.busy - own) / span), pressure=pressure,
                       own_share=own / span / cores, seconds=span)
