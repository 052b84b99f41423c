"""One experiment in a process of its own: what each worker runs, locally and in a Ray task.

`run_isolated` starts `python -m autoresearch.backends.worker`, hands it the Experiment (pickled on its stdin: the
orchestrator's own data, never the experiment's) and reads back the log's lines, the progress and finally the
RunResult as JSON lines on its stdout. The worker makes itself the subreaper of what it starts, so a process
that escapes its experiment's process group is re-parented to that worker, and the runner's cleanup
(`kill_descendants` of the worker) reaches this experiment's processes and never another worker's.

The worker dies with whoever started it (PR_SET_PDEATHSIG): like on SIGTERM, it then kills its experiment's
processes and exits, so nothing trains on after a kill -9 of the orchestrator.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict

from autoresearch.run.result import Experiment, Progress, RunResult

PATH_ENV = "AUTORESEARCH_WORKER_PATH"  # the orchestrator's sys.path: what the pickled Experiment refers to
WORKER_LOG = "worker.log"  # the worker's own stderr (a traceback, if it ever has one), in the run directory
STOP_SECONDS = 10.0  # after SIGTERM, for a worker to kill its experiment and exit


class Handle:
    """A worker process in flight, so that it can be stopped from another thread."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.cancelled = threading.Event()
        self._lock = threading.Lock()

    def attach(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self.proc = proc
            if self.cancelled.is_set():
                _terminate(proc)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled.set()
            if self.proc is not None:
                _terminate(self.proc)


def run_isolated(exp: Experiment, on_line: Callable[[str], None] | None = None,
                 on_progress: Callable[[Progress], None] | None = None, handle: Handle | None = None) -> RunResult:
    """Run `exp` in a worker process of its own; a RunResult for every outcome (`interrupted` after cancel)."""
    handle = handle or Handle()
    exp.run_dir.mkdir(parents=True, exist_ok=True)
    if handle.cancelled.is_set():
        return RunResult(status="interrupted", reason="stopped before it started")
    with open(exp.run_dir / WORKER_LOG, "wb") as log:
        try:
            proc = subprocess.Popen([sys.executable, "-m", "autoresearch.backends.worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                                    env={**os.environ, PATH_ENV: json.dumps(sys.path)})
        except OSError as e:
            return RunResult(status="crash", reason=f"could not start a worker process: {e}")
        handle.attach(proc)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(pickle.dumps(exp))
            proc.stdin.close()
        except OSError:
            pass  # it died at once: its exit status and worker.log say why
        result = None
        for raw in proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            try:
                if "line" in message and on_line:
                    on_line(message["line"])
                elif "progress" in message and on_progress:
                    on_progress(Progress(**message["progress"]))
                elif "result" in message:
                    result = RunResult.from_dict(message["result"])
            except Exception:  # noqa: BLE001 - a live view's error must not lose the result
                continue
        proc.wait()
    if result is not None:
        return result
    if handle.cancelled.is_set():
        return RunResult(status="interrupted", reason="stopped by the orchestrator")
    return RunResult(status="crash", log_path=exp.run_dir / "run.log",
                     reason=f"the worker process died (exit {proc.returncode}); see {exp.run_dir / WORKER_LOG}")


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except OSError:
            pass


# -- the worker process --------------------------------------------------------------------------------------------

def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _stop(signum, frame) -> None:
    """Kill this experiment's processes (all of them are our descendants: we are their subreaper), then go."""
    try:
        from autoresearch.run import sandbox

        sandbox.kill_descendants()
    finally:
        os._exit(128 + signum)


def main() -> None:
    parent = os.getppid()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides; a terminal's Ctrl-C is its to handle
    _die_with_parent(parent)
    # The Experiment may refer to classes the orchestrator imported from its own path (a policy in a test, a
    # plugin): see them too. The variable goes, so train.py's environment stays what the runner makes it.
    sys.path[:0] = [p for p in json.loads(os.environ.pop(PATH_ENV, "[]")) if p not in sys.path]
    exp: Experiment = pickle.loads(sys.stdin.buffer.read())
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to worker.log, not into the reports
    lock = threading.Lock()  # the runner's reader threads call back concurrently

    def emit(kind: str, value) -> None:
        with lock:
            out.write(json.dumps({kind: value}) + "\n")

    from autoresearch.run.supervisor import protect_orchestrator, run_experiment

    protect_orchestrator()  # non-dumpable, and the subreaper of this experiment's processes
    result = run_experiment(exp, on_line=lambda line: emit("line", line),
                            on_progress=lambda p: emit("progress", asdict(p)))
    emit("result", result.to_dict())
    out.close()


if __name__ == "__main__":
    main()
