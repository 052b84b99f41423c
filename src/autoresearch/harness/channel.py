"""The harness's line to whoever launched the run: JSON events on a pipe the launcher opened.

The runner passes the write end of a pipe and names its descriptor in $AUTORESEARCH_CHANNEL_FD; the harness takes
the number out of the environment at import (so train.py does not find it in os.environ) and writes one JSON
object per line: the training meter's marks (meter.py), `eval_start`, `violation` (a rule of the harness was
broken), `ask_test` (a question, see below), `result` (the official figures). The runner timestamps each event
with its own clock, so durations such as "training time" are measured outside train.py. Without a channel
(train.py run by hand) events go nowhere.

Questions go the other way too: the runner passes the read end of a second pipe ($AUTORESEARCH_ANSWER_FD, taken
out of the environment the same way) and writes one JSON line in answer to each question. The runner records its
own answers, so whatever train.py does with this pipe, it cannot make the runner accept less than it asked for.
"""

from __future__ import annotations

import json
import os
import select

CHANNEL_ENV = "AUTORESEARCH_CHANNEL_FD"
ANSWER_ENV = "AUTORESEARCH_ANSWER_FD"
ANSWER_TIMEOUT = 60.0  # seconds to wait for the runner's answer; no answer means the default

_fd: int | None = None
_answer_fd: int | None = None
_sent: set[str] = set()


def connect(fd: int | None, answer_fd: int | None = None) -> None:
    global _fd, _answer_fd
    _fd = fd
    _answer_fd = answer_fd
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


def ask(event: str, timeout: float | None = None, **data) -> dict | None:
    """Send a question and wait for the runner's one-line answer. None without a runner that answers (run by hand,
    or no answer in `timeout` seconds, or the runner went away): the caller falls back to its default."""
    if _fd is None or _answer_fd is None:
        return None
    timeout = ANSWER_TIMEOUT if timeout is None else timeout
    send(event, **data)
    line = b""
    try:
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([_answer_fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(_answer_fd, 1)  # byte by byte: never swallow the start of a later answer
            if not chunk:
                return None
            line += chunk
        answer = json.loads(line)
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


def _from_environment() -> None:
    values = [os.environ.pop(name, None) for name in (CHANNEL_ENV, ANSWER_ENV)]
    try:
        fd, answer_fd = (int(v) if v else None for v in values)
    except ValueError:
        return
    if fd is not None:
        connect(fd, answer_fd)


_from_environment()
