"""The orchestrator's side of the sandbox: process trees from /proc (Linux), and protecting the orchestrator.

protect_orchestrator() (non-dumpable: its environ with API keys stays unreadable), enable_subreaper(),
descendants(pid), kill_descendants(), tree_rss_mb(pid). autoresearch.run.sandbox re-exports them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import time
from collections.abc import Iterable

LINUX = sys.platform.startswith("linux")
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 4, 36


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                  ctypes.c_ulong(0)) == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def protect_orchestrator() -> bool:
    """Make the calling process non-dumpable (Linux), so its experiments cannot read its /proc/<pid>/environ
    (API keys), maps or memory, nor ptrace it, even though they run as the same user. Children get dumpable again
    when they exec. Side effect: no core dumps of the orchestrator."""
    if not LINUX:
        return False
    try:
        _prctl(PR_SET_DUMPABLE, 0)
        return True
    except OSError:
        return False


def enable_subreaper() -> bool:
    """Make the calling process adopt orphans of its descendants (Linux), so a `setsid` escapee stays findable."""
    if not LINUX:
        return False
    try:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        return True
    except OSError:
        return False


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (ppid, state, start time in clock ticks) for every process /proc shows."""
    table = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                rest = f.read().rsplit(b")", 1)[1].split()  # after "pid (comm)": state ppid ... starttime
        except (OSError, IndexError):
            continue
        table[int(name)] = (int(rest[1]), rest[0].decode(), int(rest[19]))
    return table


def descendants(pid: int, table: dict[int, tuple[int, str, int]] | None = None) -> list[int]:
    """Children, grandchildren ... of `pid` (not `pid` itself), breadth first. Empty where /proc is missing."""
    table = _proc_table() if table is None else table
    children: dict[int, list[int]] = {}
    for child, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(child)
    out, frontier = [], [pid]
    while frontier:
        nxt = [c for p in frontier for c in children.get(p, ())]
        out += nxt
        frontier = nxt
    return out


def tree_rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of `pid` and all its descendants, in MiB; 0.0 where /proc is missing (non-Linux).

    Pages shared between processes (forked workers, the same libraries) are counted once per process.
    """
    total_kb = 0
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        total_kb += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue
    return total_kb / 1024


def kill_descendants(root_pid: int | None = None, spare: Iterable[int] = ()) -> list[int]:
    """SIGKILL every descendant of `root_pid` (default: the caller); returns the pids hit.

    Never hits the caller or its ancestors. `spare` pids are left alone with their whole subtrees (experiments
    still in flight, a git subprocess). Descendants are stopped (SIGSTOP) until the tree holds still, so nothing
    forks away while it is being killed, then killed; killed zombies that are the caller's children are reaped.
    A subprocess.Popen child must be spared or already waited for, or its Popen would lose the exit status.
    """
    if not LINUX:
        return []
    me = os.getpid()
    root = me if root_pid is None else root_pid
    stopped: dict[int, int] = {}  # pid -> start time (guards against pid reuse)
    for _ in range(50):
        table = _proc_table()
        protected = {me, *_ancestors(me, table)}
        for s in spare:
            protected |= {s, *descendants(s, table)}
        fresh = [p for p in descendants(root, table)
                 if p not in protected and p not in stopped and table[p][1] not in "ZX"]
        if not fresh:
            break
        for p in fresh:
            if _signal(p, table[p][2], signal.SIGSTOP):
                stopped[p] = table[p][2]
    hit = [p for p, start in stopped.items() if _signal(p, start, signal.SIGKILL)]
    _reap(hit)
    return hit


def _ancestors(pid: int, table: dict[int, tuple[int, str, int]]) -> list[int]:
    out = []
    while pid in table and table[pid][0] not in (0, pid):
        pid = table[pid][0]
        out.append(pid)
    return out


def _signal(pid: int, start: int, sig: int) -> bool:
    """Signal `pid` only if it is still the process that started at `start` (a pidfd pins it between check and kill)."""
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return _signal_racy(pid, start, sig)
    try:
        if _start_time(pid) != start:
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _signal_racy(pid: int, start: int, sig: int) -> bool:
    try:
        if _start_time(pid) != start:
            return False
        os.kill(pid, sig)
        return True
    except OSError:
        return False


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _reap(pids: list[int], timeout: float = 2.0) -> None:
    pending, deadline = set(pids), time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for p in list(pending):
            try:
                done, _ = os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pending.discard(p)  # not our child: its own parent (or init) reaps it
                continue
            if done:
                pending.discard(p)
        if pending:
            time.sleep(0.01)


