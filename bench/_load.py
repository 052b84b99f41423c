"""CPU-bound burner processes: the other jobs of a busy machine, started and stopped by a benchmark."""

from __future__ import annotations

import subprocess
import sys


class Burners:
    """`n` processes that spin one core each until stopped (also when the benchmark dies: they watch stdin)."""

    def __init__(self, n: int, own_sessions: bool = False) -> None:
        self.n, self.own_sessions = n, own_sessions  # own_sessions: each its own scheduler autogroup, like a job
        self.procs: list[subprocess.Popen] = []

    def start(self) -> Burners:
        code = ("import sys, threading, os\n"
                "threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()\n"
                "while True:\n    pass\n")
        self.procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                       start_new_session=self.own_sessions) for _ in range(self.n)]
        return self

    def alive(self) -> int:
        """How many are still spinning (a benchmark whose load died quietly would measure a quiet machine)."""
        return sum(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(timeout=10)
        self.procs = []

    def __enter__(self) -> Burners:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
