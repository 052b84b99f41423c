"""The watch over one running experiment: the phase clocks, the limits, and what the harness and the scorer said.

The clock has four phases, all timed here from the harness's marks (harness/meter.py) and the scorer's report:
- start-up, launch -> the first training batch: imports, data, building the model. Generous
  (settings.startup_seconds): a busy machine is slow, and nothing trains without a batch.
- warm-up, the first batch -> timed training (`train_clock`, when the first optimizer step returns): the first
  forward/backward and optimizer step compile here, untimed. At most settings.warmup_seconds: then the clock
  starts anyway, so the first few batches cannot be trained on for free for longer than a cold compile takes.
- training, -> the evaluation: the budget plus the allowance (settings.training_limit).
- evaluation, from when train.py's evaluate_bpb reaches the scorer -> exit: derived from the evaluation's tokens
  and the evaluation speed measured on this workspace (never from this run's own figures, which it could
  shape), with a generous floor.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time

from autoresearch.run.proctree import group_members, rss_mb, tree_rss_mb
from autoresearch.run.result import Experiment

EVAL_FLOOR_SECONDS = 180.0  # evaluation limit: this much, plus EVAL_FACTOR x the expected evaluation time
EVAL_FACTOR = 5.0
POLL_SECONDS = 0.25  # how often the watch checks time and memory
TERM_GRACE_SECONDS = 10.0  # after SIGTERM, before SIGKILL


class _Watch:
    """Waits for the experiment, enforcing from outside: the limit of each phase, and the memory limit."""

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.t0 = time.monotonic()
        self.events: list[tuple[float, dict]] = []  # (seconds since start, event), by the runner's clock
        self.totals: dict = {}  # the training meter's latest running totals (batches, tokens, steps)
        self.samples: list[tuple[float, int]] = []  # (seconds since start, tokens served): the meter's reports
        self.stopped_for: str = ""  # startup | train_time | eval | timeout | memory
        self.peak_rss_mb = 0.0
        self.eval_limit: float | None = None
        self.expected_eval: float | None = None
        self.answers: list[tuple[object, bool]] = []  # (val_bpb asked about, whether the test split was wanted)
        self.miscount = ""  # the meter's totals went down or negative: they cannot be trusted
        self.scorer_events: list[tuple[float, dict]] = []  # what the scorer reported, by the runner's clock
        self.eval_at: float | None = None  # when evaluate_bpb reached the scorer: the end of training
        self.eval_clock: float | None = None  # the same moment on time.monotonic(): output after it is withheld
        # From the moment the test split is wanted, train.py's process is served held-out rows, and can measure its
        # own loss there: nothing it says after that (its memory figure, its summary lines) may reach an agent.
        self.test_clock: float | None = None  # time.monotonic() when the runner said yes to the test split
        self.memory_mb: float | None = None  # the process's own peak memory, as last reported before that

    def read_channel(self, fd: int) -> None:
        """Record the harness's events from train.py's process (informative: the scorer's are what count)."""
        with os.fdopen(fd, "rb") as f:
            for raw in f:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                if event.get("event") in ("train_batch", "train_clock", "eval_start") and "tokens" in event:
                    tokens = int(event["tokens"])
                    if tokens < max(0, self.totals.get("tokens", 0)):
                        self.miscount = f"the training token count went from {self.totals['tokens']} to {tokens}"
                    self.totals = {k: event[k] for k in ("batches", "tokens", "steps") if k in event}
                    self.samples.append((time.monotonic() - self.t0, tokens))
                if self.test_clock is None and isinstance(event.get("peak_memory_mb"), (int, float)):
                    self.memory_mb = float(event["peak_memory_mb"])
                if event.get("event") not in ("train_batch", "result", "ask_test"):  # totals: the latest only
                    self.events.append((time.monotonic() - self.t0, event))

    def read_scorer(self, report_fd: int, answer_fd: int) -> None:
        """Record the scorer's report (its pipe's read end); answer its question (score the test split?) on its
        answer pipe (the write end)."""
        try:
            with os.fdopen(report_fd, "rb") as f:
                for raw in f:
                    try:
                        event = json.loads(raw)
                    except ValueError:
                        continue
                    now = time.monotonic() - self.t0
                    self.scorer_events.append((now, event))
                    if event.get("event") == "connected" and self.eval_at is None:
                        self.eval_at = now
                        at = event.get("at")  # the scorer's CLOCK_MONOTONIC, the same clock as ours on Linux
                        self.eval_clock = at if isinstance(at, float) and at <= time.monotonic() else time.monotonic()
                    if event.get("event") == "ask_test":
                        self.answers.append(_answer(self.exp, event, answer_fd, self._test_starts))
        finally:
            os.close(answer_fd)

    def _test_starts(self) -> None:
        self.test_clock = time.monotonic()

    def scorer_said(self, name: str) -> dict | None:
        return next((e for _, e in self.scorer_events if e.get("event") == name), None)

    def first(self, name: str) -> float | None:
        return next((t for t, e in self.events if e.get("event") == name), None)

    def last(self, name: str) -> dict | None:
        return next((e for _, e in reversed(self.events) if e.get("event") == name), None)

    def clock_at(self, elapsed: float) -> float | None:
        """When timed training began, as known at `elapsed`: the `train_clock` mark (the first optimizer step's
        end, or the batch cap), but no later than warmup_seconds after the first batch; a run that has not
        reached either yet is provisionally clocked from its first batch."""
        first_batch = self.first("train_start")
        mark = self.first("train_clock")
        if first_batch is None:
            return mark
        cap = first_batch + self.exp.settings.warmup_seconds
        if mark is not None:
            return min(mark, cap)
        end = self.eval_at
        return cap if (end if end is not None else elapsed) > cap else first_batch

    def clocked(self, elapsed: float) -> bool:
        """Whether timed training has started for sure (not only provisionally)."""
        start = self.clock_at(elapsed)
        return start is not None and (self.first("train_clock") is not None or start != self.first("train_start"))

    @property
    def clock_start(self) -> float | None:
        return self.clock_at(time.monotonic() - self.t0)

    @property
    def training_seconds(self) -> float | None:
        start = self.clock_start
        if start is None:
            return None
        end = self.eval_at
        return (end if end is not None else time.monotonic() - self.t0) - start

    @property
    def timed_tokens(self) -> int | None:
        """Training tokens served while the clock ran (the meter reports every half second)."""
        start = self.clock_start
        if "tokens" not in self.totals or start is None:
            return None
        before = [tokens for t, tokens in self.samples if t <= start]
        return int(self.totals["tokens"]) - (before[-1] if before else 0)

    @property
    def tokens_per_second(self) -> float | None:
        """Training speed while the clock ran; None for a run that never reached timed training (no speed to
        compare: a single batch scored at once, say)."""
        if not self.clocked(time.monotonic() - self.t0):
            return None
        seconds, tokens = self.training_seconds, self.timed_tokens
        return tokens / seconds if tokens and seconds else None

    def _eval_limit(self) -> float:
        """Limit of the evaluation phase: a floor, plus a multiple of the time the evaluation's tokens take at the
        evaluation speed measured on this workspace (the slowest of recent runs), or the budget before any. Never
        from this run's own figures: a run chooses how many tokens it is served, so it could look slow and buy
        itself hours of evaluation."""
        s = self.exp.settings
        tokens = 2 * s.eval_tokens  # val and the held-out test split
        rate = self.exp.eval_rate
        self.expected_eval = tokens / rate if rate else max(60.0, s.time_budget)
        return EVAL_FLOOR_SECONDS + EVAL_FACTOR * self.expected_eval

    def over_limit(self, elapsed: float) -> str:
        """The phase whose limit the run has passed ('' if none)."""
        s = self.exp.settings
        if self.exp.timeout is not None and elapsed > self.exp.timeout:
            return "timeout"
        eval_start = self.eval_at
        if eval_start is not None:
            if self.eval_limit is None:
                self.eval_limit = self._eval_limit()
            return "eval" if elapsed - eval_start > self.eval_limit else ""
        if self.clocked(elapsed):
            return "train_time" if elapsed - self.clock_at(elapsed) > s.training_limit else ""
        if self.first("train_start") is None:  # after the first batch, the warm-up window starts the clock
            return "startup" if elapsed > s.startup_seconds else ""
        return ""

    def wait(self, proc: subprocess.Popen) -> None:
        memory_limit = self.exp.settings.memory_limit
        while True:
            try:
                proc.wait(timeout=POLL_SECONDS)
                return
            except subprocess.TimeoutExpired:
                pass
            self.stopped_for = self.over_limit(time.monotonic() - self.t0)
            if not self.stopped_for and memory_limit and (rss := _tree_rss_mb(proc.pid)) > memory_limit:
                self.peak_rss_mb = rss
                self.stopped_for = "memory"
            if self.stopped_for:
                _stop(proc, polite=self.stopped_for != "memory")
                return


def _answer(exp: Experiment, event: dict, answer_fd: int, on_yes=lambda: None) -> tuple[object, bool]:
    """Answer the harness's question "score the held-out test split?" from `exp.wants_test`, and return what was
    asked and answered: the answer the runner holds the run to (see _classify), whatever reaches the harness.
    `on_yes` runs before a yes is written, so before any test row can be served."""
    val = event.get("val_bpb")
    want = True
    if exp.wants_test is not None and isinstance(val, float) and math.isfinite(val):
        try:
            want = bool(exp.wants_test(val))
        except Exception:  # noqa: BLE001 - a failing callback must not lose the run: score the test split
            want = True
    if want:
        on_yes()
    try:
        os.write(answer_fd, (json.dumps({"test": want}) + "\n").encode())
    except OSError:
        pass  # the experiment is gone; it scores the test split by default, and the runner knows what it said
    return val, want


def _stop(proc: subprocess.Popen, polite: bool) -> None:
    """SIGTERM the group and give it a grace period (unless memory is at stake), then SIGKILL."""
    if polite:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=TERM_GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of the experiment and everything it started, including processes that left its group."""
    return max(rss_mb(group_members(pid)), tree_rss_mb(pid))


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
