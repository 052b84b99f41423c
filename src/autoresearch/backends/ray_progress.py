"""Ray experiments in flight, seen from the orchestrator: what train.py prints on a node, streamed back as it runs.

The node's task forwards its experiment's output lines in batches (every STREAM_SECONDS) to one
`ray.util.queue.Queue` per orchestrator: an actor that needs no CPU, placed on the orchestrator's node, so a node
that dies does not take it along. The orchestrator's pump thread hands each batch to the run it belongs to: the
lines are appended to the run's local run.log, which `status`, the live view and the dashboard read as they read a
local run's, and passed to its on_line / on_progress. The task's last batch says it is the last: when the task
returns, its run takes what is still on the way (at most DRAIN_SECONDS), then the log the task ships
(backends/ray.py) replaces the streamed copy.

Streaming is best effort on both sides and never holds a run up: a batch that cannot be put (the queue full, or
gone with its node) is dropped and counted, and a run that prints more than STREAM_CAP streams only its progress
lines after that. The result and the whole log still come back with the task.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from autoresearch.run.result import Progress, parse_progress

STREAM_SECONDS = 0.5  # a node sends what its run printed this often
QUEUE_BATCHES = 1000  # batches the queue holds for a pump that fell behind
PUT_SECONDS = 2.0  # for one batch to enter a full queue; then it is dropped
STREAM_CAP = 4 * 1024 * 1024  # bytes of lines one run streams; past it, progress lines only
DRAIN_SECONDS = 5.0  # after a run returned, for its last streamed lines (the summary block) to be taken
RESTARTED = "--- (ray) the run started again on {node}: its node went away ---"


class Channel:
    """The orchestrator's end: one queue and one pump per Ray connection, shared by every RayBackend of it."""

    _lock = threading.Lock()
    _current: Channel | None = None

    @classmethod
    def get(cls) -> Channel:
        import ray

        job = ray.get_runtime_context().get_job_id()
        with cls._lock:
            if cls._current is None or cls._current.job != job:  # first use, or a new ray.init() since
                cls._current = cls(job)
            return cls._current

    def __init__(self, job: str) -> None:
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)
        self.job = job
        self.queue = Queue(maxsize=QUEUE_BATCHES, actor_options={"num_cpus": 0, "scheduling_strategy": here,
                                                                  "max_restarts": -1})
        self.sinks: dict[str, Sink] = {}
        self._sinks_lock = threading.Lock()
        threading.Thread(target=self._pump, name="ray-progress", daemon=True).start()

    def open(self, run_dir: Path, on_line: Callable[[str], None] | None,
             on_progress: Callable[[Progress], None] | None) -> Sink:
        sink = Sink(self, uuid.uuid4().hex, run_dir / "run.log", on_line, on_progress)
        with self._sinks_lock:
            self.sinks[sink.key] = sink
        return sink

    def close(self, sink: Sink) -> None:
        with self._sinks_lock:
            self.sinks.pop(sink.key, None)

    def _pump(self) -> None:
        import ray
        from ray.util.queue import Empty

        while True:
            try:
                batches = [self.queue.get(timeout=1.0)]
                batches += self.queue.get_nowait_batch(max(0, min(self.queue.size(), QUEUE_BATCHES)))
            except Empty:
                continue
            except Exception:  # noqa: BLE001 - the actor restarting, or Ray shut down: then this pump ends
                if not ray.is_initialized() or Channel._current is not self:
                    return
                time.sleep(1.0)
                continue
            for key, node, lines, last in batches:
                with self._sinks_lock:
                    sink = self.sinks.get(key)
                if sink is not None:  # None: its run has returned already
                    sink.take(node, lines, last)


class Sink:
    """One run's end of the channel: its local run.log and its callbacks."""

    def __init__(self, channel: Channel, key: str, log: Path, on_line, on_progress) -> None:
        self.channel, self.key, self.log = channel, key, log
        self.on_line, self.on_progress = on_line, on_progress
        self._lock = threading.Lock()
        self._closed = False
        self._node: str | None = None
        self._last = threading.Event()  # the task's last batch was taken
        log.write_text("")

    @property
    def target(self) -> tuple:
        """What the task gets to stream to: plain values, and the queue's actor handle."""
        return (self.channel.queue, self.key)

    def take(self, node: str, lines: list[str], last: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            if last:
                self._last.set()
            if self._node is not None and node != self._node:
                lines = [RESTARTED.format(node=node), *lines]
            self._node = node
            with open(self.log, "a") as f:
                f.writelines(f"{line}\n" for line in lines)
            for line in lines:
                try:  # a live view's error must not stop the stream
                    if self.on_line:
                        self.on_line(line)
                    if self.on_progress and (p := parse_progress(line)):
                        self.on_progress(p)
                except Exception:  # noqa: BLE001
                    continue

    def close(self, drain: float = 0.0) -> None:
        """Stop taking lines (before the shipped log replaces the streamed one), after waiting at most `drain`
        seconds for the task's last batch."""
        if drain:
            self._last.wait(drain)
        with self._lock:
            self._closed = True
        self.channel.close(self)


class Forwarder:
    """The node's end: collects the run's lines and sends them in batches from a thread of its own."""

    def __init__(self, target: tuple | None, node: str) -> None:
        self.queue, self.key = target if target else (None, None)
        self.node = node
        self.dropped = 0  # lines not streamed
        self._lines: list[str] = []
        self._bytes = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._send_loop, name="progress-forwarder", daemon=True)
        if self.queue is not None:
            self._thread.start()

    def line(self, text: str) -> None:
        if self.queue is None:
            return
        with self._lock:
            if self._bytes > STREAM_CAP and parse_progress(text) is None:
                self.dropped += 1
                return
            self._bytes += len(text) + 1
            self._lines.append(text)

    def _send(self, last: bool = False) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        if not lines and not last:
            return
        try:
            self.queue.put((self.key, self.node, lines, last), timeout=PUT_SECONDS)
        except Exception:  # noqa: BLE001 - full (ray.util.queue.Full), or the actor gone: these lines are lost
            self.dropped += len(lines)

    def _send_loop(self) -> None:
        while not self._done.wait(STREAM_SECONDS):
            self._send()

    def close(self) -> list[str]:
        """Send what is left and stop; for node.log, a note when lines were not streamed. Only the first call
        does anything."""
        if self.queue is None or self._done.is_set():
            return []
        self._done.set()
        self._thread.join(timeout=PUT_SECONDS + STREAM_SECONDS)
        self._send(last=True)
        return [f"progress: {self.dropped} lines were not streamed to the orchestrator"] if self.dropped else []
