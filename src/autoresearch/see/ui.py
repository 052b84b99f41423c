"""Terminal views of a running experiment: a live bar on a terminal, plain throttled lines elsewhere."""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar

from autoresearch.loop.keeps import keep_order
from autoresearch.see.facts import load_note

if TYPE_CHECKING:  # the supervisor imports the harness, hence torch: seconds that `status` must not spend
    from autoresearch.run.result import Progress

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


# -- the research loop ----------------------------------------------------------------------------------------------

STATUS_STYLE = {"keep": "bold green", "discard": "dim", "crash": "red", "rejected": "magenta"}


def _fmt(v: float | None, spec: str = ".6f") -> str:
    return "-" if v is None else format(v, spec)


def status_table(records, title: str | None = None, limit: int | None = None, metric: str = "val_bpb"):
    """The experiments of a run, one row each (the final attempt of every idea), keeps in green.

    `margin` is how far a keep cleared the noise: its gain in standard deviations of the measured noise floor.
    """
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title) if title else None, title_justify="left", show_edge=False, pad_edge=False,
                  header_style="bold")
    # The figures never wrap. The description column may shrink (rich shrinks only wrappable columns before it
    # squeezes every column alike), while its cells stay one line cut with an ellipsis: a long reason takes the
    # room that is left, never the other columns'.
    for col, kw in (("#", {"justify": "right"}), ("commit", {}), ("status", {}), (metric, {"justify": "right"}),
                    ("Δ best", {"justify": "right"}), ("margin", {"justify": "right"}),
                    ("mem GB", {"justify": "right"}), ("steps", {"justify": "right"}), ("tok/s", {"justify": "right"})):
        table.add_column(col, no_wrap=True, **kw)
    table.add_column("description", min_width=12)
    best: float | None = None
    rows = []
    for r in records:
        measured = r.status in ("keep", "discard")
        delta = None if best is None or r.val_bpb is None or not measured else r.val_bpb - best
        margin = (r.evidence or {}).get("margin") if r.status == "keep" else None
        note = r.description + (f"  [{r.outcome}: {r.reason}]" if r.status in ("crash", "rejected") else "")
        if r.attempt:
            note += f"  (fix attempt {r.attempt})"
        if load_note(r.evidence):
            note += f"  [{load_note(r.evidence)}]"
        rows.append((str(r.number), (r.commit_sha or r.parent_commit or "")[:7], r.status or r.state,
                     _fmt(r.val_bpb if measured else None), "" if delta is None else f"{delta:+.4f}",
                     "" if margin is None else f"{margin:+.1f}σ", _fmt(r.memory_gb, ".1f"),
                     "" if r.steps is None else str(r.steps), _fmt(r.tokens_per_second, ",.0f"), note[:200],
                     STATUS_STYLE.get(r.status or "", "")))
        if r.status == "keep":
            best = r.val_bpb
    for *cells, note, style in rows[-limit:] if limit else rows:  # Text: "[timeout: ...]" is not rich markup
        table.add_row(*(Text(c) for c in cells), Text(note, no_wrap=True, overflow="ellipsis"), style=style)
    return table


def summary_line(records, totals: dict | None = None, run=None, sessions=None, metric: str | None = None) -> str:
    """One line a researcher pastes into a chat: baseline -> best, the held-out test, the pace, what it cost.

    With the run and its sessions, the pace counts the time the run was going, not the pauses between sessions.
    """
    from autoresearch.see.facts import active_seconds, as_seen, noise_floor

    done = [r for r in records if r.status]
    kept = [r for r in done if r.status == "keep"]
    if not kept:
        return f"{len(done)} experiments, nothing kept yet"
    base, best = kept[0], keep_order(kept)[-1]  # the last decided
    metric = metric or metric_name(run)
    line = (f"{metric} {base.val_bpb:.4f} -> {best.val_bpb:.4f} ({best.val_bpb - base.val_bpb:+.4f}, "
            f"{(best.val_bpb - base.val_bpb) / base.val_bpb * 100:+.2f}%)")
    if base.test_bpb is not None and best.test_bpb is not None:
        line += f" | {'holdout' if metric != 'val_bpb' else 'test'} {base.test_bpb:.4f} -> {best.test_bpb:.4f}"
    finished = [r.finished_at for r in done if r.finished_at]
    if run is not None:
        hours = active_seconds(as_seen(run, sessions or []), sessions or [], finished) / 3600
    else:
        hours = (max(finished, default=0) - min(r.created_at for r in done)) / 3600
    line += (f" | {len(done)} experiments" + (f" in {_duration(hours)} ({len(done) / hours:.0f}/h)" if hours > 0
                                              else "")
             + f", {len(kept) - 1} kept, {sum(r.status == 'crash' for r in done)} crashed, "
             f"{sum(r.status == 'rejected' for r in done)} rejected")
    std, runs = noise_floor(run.info if run is not None else {})
    if std is not None:
        line += f" | noise sd {std:.4f} ({runs or 0} baseline runs)"
    if totals and totals.get("cost"):
        line += f" | agent ${totals['cost']:.2f}"
    return line


def metric_name(run) -> str:
    """The figure a run is judged on, from its record (val_bpb for the GPT task and for runs before tasks)."""
    from autoresearch.task.metric import metric_of

    return metric_of(getattr(run, "info", None)).name


def _duration(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 2 else f"{hours:.1f} h"


def wide_console() -> Console:
    """Tables pasted into a chat should not wrap at 80 columns when stdout is not a terminal."""
    console = Console(file=sys.stdout)
    return console if console.is_terminal else Console(file=sys.stdout, width=200)


class LoopView:
    """Live view of the loop: header, current experiment with its training progress, the last results.

    On a terminal it redraws in place (rich Live); elsewhere it prints one plain line per event.
    """

    def __init__(self, journal, tag: str, agent: str, console: Console | None = None, recent: int = 8,
                 vocab: int | None = None, metric: str = "val_bpb") -> None:
        self.vocab = vocab
        self.metric = metric
        self.console = console or Console(file=sys.stdout)
        self.journal, self.tag, self.agent, self.recent = journal, tag, agent, recent
        self.current = None
        self.budget = 0.0
        self.last: Progress | None = None
        self.workers: dict[int, tuple] = {}  # worker -> (its experiment, its last progress): several at once
        self._live = None
        self._last_plain = 0.0
        self._summary = False
        self.started = time.monotonic()

    def __enter__(self) -> LoopView:
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._live.update(self._render())
            self._live.stop()

    # View protocol (autoresearch.loop.core.View)
    def message(self, text: str) -> None:
        self._print(text)

    def experiment_started(self, rec, budget: float) -> None:
        self.current, self.budget, self.last, self._summary = rec, budget, None, False
        self.workers[getattr(rec, "worker", None) or 1] = (rec, None)
        where = f" | w{rec.worker} {rec.device}" if getattr(rec, "worker", None) and len(self.workers) > 1 else ""
        self._print(f"[exp {rec.number}] {rec.description} | running{where}")

    def line(self, text: str, rec=None) -> None:
        """Step lines drive the progress view; the summary block train.py ends with is shown as it is."""
        if text.startswith("step "):
            now = time.monotonic()
            if not self._live and now - self._last_plain >= PLAIN_STEP_INTERVAL:
                self._last_plain = now
                print(f"  {text}", flush=True)
        elif text == "---":
            self._summary = True
            self._print(f"  {text}")
        elif self._summary and _summary_line(text):
            self._print(f"  {text}")

    def progress(self, p: Progress, rec=None) -> None:
        self.last = p
        if rec is not None:
            self.workers[getattr(rec, "worker", None) or 1] = (rec, p)
        self._refresh()

    def experiment_done(self, rec, best: float | None) -> None:
        self.current = None
        self.workers.pop(getattr(rec, "worker", None) or 1, None)
        figure = f"{self.metric} {rec.val_bpb:.6f}" if rec.val_bpb is not None else rec.reason
        runs = (rec.evidence or {}).get("runs", [])
        if len(runs) > 1:
            figure += f" (mean of {len(runs)} runs)"
        if rec.status == "keep" and (rec.evidence or {}).get("margin") is not None:
            figure += f", {rec.evidence['margin']:+.1f}σ"
        self._print(f"[exp {rec.number}] {rec.status} | {figure} | best {_fmt(best)} | {rec.description}")
        harness = (rec.metrics or {}).get("harness", {})
        if rec.number == 1 and harness.get("val_bytes") and self.vocab:
            untrained = math.log2(self.vocab) * harness["val_tokens"] / harness["val_bytes"]
            self._print(f"  (an untrained model, uniform over {self.vocab} tokens, scores {untrained:.3f} bpb here)")
        noise = (rec.evidence or {}).get("sigma")
        if rec.number == 1 and noise is not None:
            self._print(f"  noise floor: {self.metric} sd {noise:.4f} over {len(runs)} runs with different seeds")

    # rendering
    def _print(self, text: str) -> None:
        if self._live:
            self._live.console.print(text, markup=False, highlight=False)
            self._refresh()
        else:
            print(text, flush=True)

    def _refresh(self) -> None:
        if self._live:
            self._live.update(self._render())

    def _render(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.text import Text

        records = self.journal.final_attempts(self.tag)
        kept = [r for r in records if r.status == "keep"]
        best = keep_order(kept)[-1].val_bpb if kept else None
        elapsed = time.monotonic() - self.started
        head = Text(f"run {self.tag} | agent {self.agent} | {len(records)} experiments | best {self.metric} {_fmt(best)}"
                    f" | {elapsed / 60:.1f} min", style="bold")
        parts = [head]
        if len(self.workers) > 1:  # one line per worker
            for w, (rec, p) in sorted(self.workers.items()):
                info = f"step {p.step} ({p.percent:.0f}%) | loss {p.loss:.4f}" if p else "starting"
                parts.append(Text(f"w{w} {rec.device}: exp {rec.number} {rec.description[:60]} | {info}",
                                  style="cyan"))
        elif self.current is not None:
            p = self.last
            pct = p.percent if p else 0.0
            info = f"step {p.step} | loss {p.loss:.4f}" + (f" | {p.remaining:.0f}s left" if p and p.remaining is not None
                                                           else "") if p else "starting"
            parts += [Text(f"exp {self.current.number}: {self.current.description}"),
                      ProgressBar(total=100, completed=min(100.0, pct), width=50), Text(info, style="cyan")]
        if records:
            parts.append(status_table(records, limit=self.recent, metric=self.metric))
        return Panel(Group(*parts), title="autoresearch", border_style="blue")


def _summary_line(text: str) -> bool:
    from autoresearch.run.result import SUMMARY_RE

    return bool(SUMMARY_RE.match(text))
