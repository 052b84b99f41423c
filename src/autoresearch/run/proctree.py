"""The orchestrator's side of the sandbox: process trees (psutil, so Linux and macOS), and protecting the orchestrator.

protect_orchestrator() (non-dumpable: its environ with API keys stays unreadable), enable_subreaper() (both Linux
only: prctl has no macOS counterpart), descendants(pid), kill_descendants(), tree_rss_mb(pid), group_members(pgid).
autoresearch.run.sandbox re-exports them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Iterable

import psutil

LINUX = sys.platform.startswith("linux")
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 4, 36
REAP_SECONDS = 2.0  # for killed children of ours to become reapable
GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


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


def descendants(pid: int) -> list[int]:
    """Children, grandchildren ... of `pid` (not `pid` itself), zombies included. Empty if `pid` is gone."""
    return [p.pid for p in _children(pid)]


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and all its descendants, in MiB; 0.0 if `pid` is gone.

    Pages shared between processes (forked workers, the same libraries) are counted once per process.
    """
    try:
        procs = [psutil.Process(pid), *_children(pid)]
    except psutil.Error:
        return 0.0
    return rss_mb(procs)


def rss_mb(procs: Iterable[psutil.Process]) -> float:
    """Resident memory of `procs` together, in MiB; a process that is gone or hidden counts 0."""
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def group_members(pgid: int) -> list[psutil.Process]:
    """The live (not zombie) processes of process group `pgid`. psutil knows no process groups: ask the kernel."""
    members = []
    for pid in psutil.pids():  # not process_iter(): its cache can hold an earlier owner of a reused pid
        try:
            if os.getpgid(pid) == pgid and (p := psutil.Process(pid)).status() not in GONE:
                members.append(p)
        except (OSError, psutil.Error):
            continue  # gone meanwhile
    return members


def kill_descendants(root_pid: int | None = None, spare: Iterable[int] = ()) -> list[int]:
    """SIGKILL every descendant of `root_pid` (default: the caller); returns the pids hit.

    Never hits the caller or its ancestors. `spare` pids are left alone with their whole subtrees (experiments
    still in flight, a git subprocess). Descendants are stopped (SIGSTOP) until the tree holds still, so nothing
    forks away while it is being killed, then killed; killed zombies that are the caller's children are reaped.
    A subprocess.Popen child must be spared or already waited for, or its Popen would lose the exit status.
    """
    me = psutil.Process()
    root = me.pid if root_pid is None else root_pid
    spare = list(spare)
    stopped: dict[int, psutil.Process] = {}  # a Process remembers its start time: a reused pid is not it
    for _ in range(50):
        fresh = [p for p in _children(root) if p.pid not in stopped]
        # The spared subtrees are read after the root's: whatever a spared process forked before the root's tree
        # was read is then in its subtree, so it is never taken for a stray.
        protected = {me.pid, *_ancestors(me)}
        for s in spare:
            protected |= {s, *descendants(s)}
        fresh = [p for p in fresh if p.pid not in protected and _live(p)]
        if not fresh:
            break
        for p in fresh:
            if _signal(p, signal.SIGSTOP):
                stopped[p.pid] = p
    hit = [pid for pid, p in stopped.items() if _signal(p, signal.SIGKILL)]
    # Only our own children: waiting on another's zombie would last until its parent reaps it.
    psutil.wait_procs([stopped[pid] for pid in hit if _ppid(stopped[pid]) == me.pid], timeout=REAP_SECONDS)
    return hit


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _ancestors(proc: psutil.Process) -> list[int]:
    try:
        return [p.pid for p in proc.parents()]
    except psutil.Error:
        return []


def _ppid(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.Error:
        return None


def _live(proc: psutil.Process) -> bool:
    try:
        return proc.status() not in GONE
    except psutil.Error:
        return False


def _signal(proc: psutil.Process, sig: int) -> bool:
    """Signal `proc` only if its pid still names it. psutil checks the start time and then signals, which leaves a
    window for the pid to be reused; a pidfd (Linux) pins the process from before the check to the signal."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (OSError, AttributeError):
        try:
            proc.send_signal(sig)
            return True
        except psutil.Error:
            return False
    try:
        if not proc.is_running():
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
