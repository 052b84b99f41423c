"""Whether a run the journal records as running still has a process: kill -9 or a power cut leave no word in the
journal, so the last session's process is asked. The one reading of it, for the studies (which refuse to start
beside a running run) and for everything that shows a run."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import replace

import psutil

from autoresearch.loop.journal import RunRecord, SessionRecord


def as_seen(run: RunRecord, sessions: list[SessionRecord]) -> RunRecord:
    """The run, stopped if the process of its last session is gone: kill -9 or a power cut leave no word in the
    journal, and a run that nobody runs must not be shown as running."""
    if run.state != "running" or not sessions or _alive(sessions[-1]):
        return run
    return replace(run, state="stopped", stop_reason="its process ended without a word (killed, or the machine went "
                   f"down); resume with `autoresearch run --resume --tag {run.tag}`")


def _alive(session: SessionRecord) -> bool:
    if session.ended_at is not None:
        return False
    if session.host and session.host != socket.gethostname():
        return True  # another machine's process (a shared disk): we cannot tell
    try:
        os.kill(session.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    started = _process_start(session.pid)
    return started is None or started <= session.started_at + 2.0  # the pid may since belong to a younger process


def _process_start(pid: int) -> float | None:
    """When a process started, in epoch seconds; inf for a zombie (it is gone), None where that cannot be read."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return math.inf
        return proc.create_time()
    except psutil.Error:
        return None
