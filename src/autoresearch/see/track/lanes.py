"""Live logging beside the loop: a lane (a thread and a bounded queue) per tracker, fed when a decision is recorded.

The ledger calls `Tracking.feed` under its lock, right after it records a decision: feed builds what the trackers
get from the journal (records.py) and queues it, and never waits. Each lane sends in its own thread, so a tracker
that is slow or down slows nothing but itself:

- a call that raises is counted; the first failure of each tracker is shown once, the count at the end;
- a call that has not returned after `timeout` seconds drops that tracker for the rest of the session (its queue
  is no longer fed: what it misses is counted and said);
- at the end, `close` waits at most `close_seconds` for the lanes to finish, then says what each tracker got.

The journal keeps everything either way, and a lane begins by catching up with what its tracker lacks (a resume
after a crash, a run started without --track), as `autoresearch track --replay` does.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from autoresearch.loop.journal import ExperimentRecord, Journal
from autoresearch.see.track import Tracker
from autoresearch.see.track.records import entry
from autoresearch.see.track.replay import Counts, catch_up, read_run, send, summary

QUEUE_SIZE = 256  # decisions a lane may fall behind by before they are dropped (a replay sends them later)
CLOSE_SECONDS = 60.0  # at the end, for the lanes to send what they hold


class Tracking:
    """The run's trackers, fed from the ledger. `say` shows a line to the user (from any thread)."""

    def __init__(self, trackers: list[Tracker], say: Callable[[str], None], *, timeout: float = 120.0,
                 close_seconds: float = CLOSE_SECONDS, queue_size: int = QUEUE_SIZE) -> None:
        lock = threading.Lock()

        def said(text: str) -> None:
            with lock:
                say(text)

        self.say = said
        self.close_seconds = close_seconds
        self.lanes = [_Lane(t, said, timeout, queue_size) for t in trackers]
        self.journal: Journal | None = None
        self.tag = ""
        self.workspace = Path()
        self._feed_failed = False

    def private_paths(self) -> list[Path]:
        return [p for lane in self.lanes for p in lane.tracker.private_paths()]

    def start(self, journal: Journal, tag: str, workspace: Path) -> None:
        """Open every tracker's research run and catch up, in the lanes; call before the loop's first decision."""
        self.journal, self.tag, self.workspace = journal, tag, workspace
        run, backlog = read_run(journal, tag, workspace)
        for lane in self.lanes:
            lane.offer(("start", run, backlog))
            lane.start()

    def feed(self, rec: ExperimentRecord) -> None:
        """The ledger's watcher: `rec` was just decided. Runs under the ledger's lock, so it only reads and queues."""
        assert self.journal is not None, "start() first"
        try:
            run = self.journal.run(self.tag)
            item = ("send", entry(run, self.journal.experiments(self.tag, done_only=True), rec))
        except Exception as e:  # noqa: BLE001 - a bug here must not stop the loop; the journal has the record
            if not self._feed_failed:
                self._feed_failed = True
                self.say(f"tracking: could not read experiment {rec.number} for the trackers ({type(e).__name__}: "
                         f"{e}); `autoresearch track --replay` sends it later")
            return
        for lane in self.lanes:
            lane.offer(item)

    def close(self) -> list[str]:
        """The research run's final state to every tracker; wait for the lanes (at most close_seconds in all);
        one line per tracker saying what it got."""
        if self.journal is None:
            return []
        run, _ = read_run(self.journal, self.tag, self.workspace)
        for lane in self.lanes:
            lane.offer(("close", run))
            lane.offer(None)
        deadline = time.monotonic() + self.close_seconds
        try:
            for lane in self.lanes:
                if not lane.dropped:  # a dropped lane is stuck in a call: nothing to wait for
                    lane.join(timeout=max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting; the journal keeps what the lanes still hold
            pass
        lines = []
        for lane in self.lanes:
            if lane.is_alive():
                lane.drop(f"still busy after {self.close_seconds:g}s at the end of the run")
            lines.append("tracking: " + summary(lane.tracker, lane.counts))
        return lines


class _Lane(threading.Thread):
    def __init__(self, tracker: Tracker, say: Callable[[str], None], timeout: float, size: int) -> None:
        super().__init__(name=f"track-{tracker.name}", daemon=True)  # a hung client never keeps the process alive
        self.tracker, self.say, self.timeout = tracker, say, timeout
        self.queue: queue.Queue = queue.Queue(maxsize=size)
        self.counts = Counts()
        self.busy_since: float | None = None
        self.dropped = ""  # why this tracker gets nothing more, once it is dropped
        self._full_said = False

    def offer(self, item) -> None:
        """Queue `item` without waiting; a lane that hangs or is full counts it as dropped."""
        sends = 0 if item is None else len(item[2]) if item[0] == "start" else int(item[0] == "send")
        self.counts.offered += sends
        busy = self.busy_since
        if not self.dropped and busy is not None and time.monotonic() - busy > self.timeout:
            self.drop(f"a call has not returned for {self.timeout:g}s")
        if self.dropped:
            self.counts.dropped += sends
            return
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.counts.dropped += sends
            if not self._full_said:
                self._full_said = True
                self.say(f"tracking: {self.tracker.name} is {self.queue.maxsize} decisions behind; later ones are "
                         f"not sent live (`autoresearch track --replay --track {self.tracker.name}` sends them)")

    def drop(self, why: str) -> None:
        if self.dropped:
            return
        self.dropped = why
        for item in list(self.queue.queue):
            if item is not None and item[0] != "close":
                self.counts.dropped += len(item[2]) if item[0] == "start" else 1
        self.say(f"tracking: {self.tracker.name} dropped for the rest of this run: {why}. The loop goes on; "
                 f"`autoresearch track --replay --track {self.tracker.name}` sends what it missed")

    def _failed(self, e: BaseException) -> None:
        self.say(f"tracking: {self.tracker.name} failed ({type(e).__name__}: {' '.join(str(e).split())[:300]}). "
                 "The loop goes on and the journal keeps everything; later failures are counted and shown at the end")

    def run(self) -> None:
        run, opened, pending = None, False, []
        while True:
            item = self.queue.get()
            if item is None or self.dropped:
                return
            self.busy_since = time.monotonic()
            try:
                kind = item[0]
                if kind == "start":
                    run, pending = item[1], list(item[2])
                elif kind == "send":
                    if opened:
                        send(self.tracker, run, item[1], self.counts, self._failed)
                    else:
                        pending.append(item[1])
                if not opened and (kind != "close" or pending):  # at the start, or again: a server back up
                    opened = catch_up(self.tracker, run, pending, self.counts, self._failed)
                    pending = [] if opened else pending
                if kind == "close" and opened:
                    try:
                        self.tracker.close(item[1])
                    except Exception as e:  # noqa: BLE001
                        if self.counts.failure(e):
                            self._failed(e)
            finally:
                self.busy_since = None
