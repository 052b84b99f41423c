"""The harness's line to whoever launched the run: JSON events on a pipe the launcher opened.

The runner passes the write end of a pipe and names its descriptor in $AUTORESEARCH_CHANNEL_FD; the harness takes
the number out of the environment at import (so train.py does not find it in os.environ) and writes one JSON
object per line: the training meter's marks (meter.py), `eval_start`, `eval_done` (the process's own memory
figures) and `violation` (a rule of the harness was broken). The runner timestamps each event with its own
clock. Nothing sent here decides an official figure: those are the scorer's (run/scorer.py), which train.py's
process cannot reach but through evaluate_bpb. Without a channel (train.py run by hand) events go nowhere.
"""

from __future__ import annotations

import json
import os

CHANNEL_ENV = "AUTORESEARCH_CHANNEL_FD"

_fd: int | None = None
_sent: set[str] = set()


def connect(fd: int | None) -> None:
    global _fd
    _fd = fd
    _sent.clear()


def send(event: str, once: bool = False, **data) -> None:
    if _fd is None or (once and event in _sent):
        return
    _sent.add(event)
    line = json.dumps({"event": event, **data}, allow_nan=True) + "\n"
    try:
        os.write(_fd, line.encode())
    except OSError:
        pass  # the launcher went away; the run's result is lost either way


def sent(event: str) -> bool:
    """Whether `event` went out already (the loader refuses training batches once evaluation has started)."""
    return event in _sent


def _from_environment() -> None:
    value = os.environ.pop(CHANNEL_ENV, None)
    try:
        fd = int(value) if value else None
    except ValueError:
        return
    if fd is not None:
        connect(fd)


_from_environment()
