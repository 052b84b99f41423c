"""Terminal views of a running experiment: a live bar on a terminal, plain throttled lines elsewhere."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn

from autoresearch.runner import Progress

PLAIN_STEP_INTERVAL = 10.0  # seconds between echoed step lines when not on a terminal


class RunView:
    """Shows train.py's output: every line except step lines, which drive a progress bar (or are throttled)."""

    def __init__(self, budget: float, title: str = "train.py", console: Console | None = None) -> None:
        self.console = console or Console(file=sys.stdout)
        self.live = self.console.is_terminal
        self.budget = budget
        self.title = title
        self._last_plain = 0.0
        self._bar: Bar | None = None
        self._task = None

    def __enter__(self) -> RunView:
        if self.live:
            self._bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console,
                            transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=100.0, info="starting")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar:
            self._bar.stop()

    def line(self, text: str) -> None:
        if text.startswith("step "):
            now = time.monotonic()
            if not self.live and now - self._last_plain >= PLAIN_STEP_INTERVAL:
                self._last_plain = now
                print(text, flush=True)
            return
        if self.live:
            self.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def progress(self, p: Progress) -> None:
        if self._bar is None:
            return
        info = f"step {p.step} | loss {p.loss:.4f}"
        if p.tokens_per_second:
            info += f" | {p.tokens_per_second:,.0f} tok/s"
        if p.remaining is not None:
            info += f" | {p.remaining:.0f}s left"
        self._bar.update(self._task, completed=min(100.0, p.percent), info=info)
