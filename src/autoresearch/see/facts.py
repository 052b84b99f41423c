"""What a run found, as plain data: the numbers the report, the progress plot and the dashboard all show.

Everything here reads; nothing writes. The journal is opened read-only, so a report or a dashboard can follow a
loop that is running (WAL mode lets readers in beside the writer) and can never disturb it. test_bpb appears in
these figures because they are for the human; none of this reaches an agent.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autoresearch.loop.journal import ExperimentRecord, Journal, RunRecord, SessionRecord
from autoresearch.loop.keeps import keep_order
from autoresearch.loop.liveness import as_seen  # noqa: F401  (re-exported: what the commands import)
from autoresearch.run.result import parse_progress
from autoresearch.see.studies import Ablation, Transfer, read_studies
from autoresearch.task.metric import metric_of

MAX_LOSS_POINTS = 2000  # a loss curve longer than this is thinned for the browser (first and last steps stay)


class ReadOnlyJournal(Journal):
    """The journal's read API over a connection that cannot write (a reader never takes the writer's lock)."""

    def __init__(self, path: Path) -> None:  # noqa: super().__init__ would create tables and switch modes
        if not path.exists():
            raise FileNotFoundError(f"no journal at {path}: start a run with `autoresearch run` first")
        self.path = path
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
        self.db.row_factory = sqlite3.Row


@dataclass
class Summary:
    tag: str
    branch: str
    agent: str
    state: str  # running | stopped
    stop_reason: str
    baseline: float | None  # val_bpb of the baseline (experiment 1)
    best: float | None  # val_bpb of the best kept commit
    best_number: int | None
    gain: float | None  # baseline - best, in bits per byte (positive = better)
    gain_pct: float | None  # the gain as a percentage of the baseline
    baseline_test: float | None
    best_test: float | None
    experiments: int  # finished ideas (final attempts), the baseline included
    attempts: int  # every try, fix attempts included
    kept: int  # improvements kept after the baseline
    discarded: int
    crashed: int
    rejected: int
    keep_rate: float | None  # over the ideas after the baseline
    crash_rate: float | None
    reject_rate: float | None
    wall_hours: float  # the time its sessions ran: a pause between a stop and a resume does not count
    per_hour: float | None  # finished ideas per hour of that time
    train_hours: float  # wall time of the experiments' processes, every run (seed repeats, re-measures) included
    agent_hours: float
    cost: float  # USD of agent usage, failed calls included
    input_tokens: int
    output_tokens: int
    noise_std: float | None  # the noise floor: std of val_bpb over repeated baseline runs (noise policy)
    noise_runs: int | None  # how many runs measured it
    floor: float | None  # entropy floor of the val split (embedded corpus only)
    test_floor: float | None
    metric: str = "val_bpb"  # the figure the run is judged on: a task's own (task.toml), or the GPT's val_bpb
    goal: str = "minimize"


@dataclass
class Row:
    """One attempt of one idea, as the tables show it."""

    number: int
    attempt: int
    final: bool  # the attempt that decided the idea (earlier ones crashed and were fixed)
    state: str  # proposed | committed | running | done; interrupted: unfinished, and the run has stopped
    status: str | None
    outcome: str | None
    commit: str
    val_bpb: float | None
    test_bpb: float | None
    delta: float | None  # val_bpb minus the best before it (negative = better)
    memory_gb: float | None
    seconds: float | None  # agent + run + bookkeeping
    run_seconds: float | None
    agent_seconds: float | None
    steps: int | None  # optimizer steps, counted by the harness
    tokens_per_second: float | None  # training speed, measured by the runner: under a time budget, load moves it
    cost: float
    tokens: int
    description: str
    reason: str
    val_only: bool = False  # kept for val_bpb, but the held-out test_bpb got worse
    test_change: float | None = None  # kept: test_bpb minus the previous keep's test_bpb
    load_note: str = ""  # the decision re-measured the best because the training speed had moved
    created_at: float = 0.0
    finished_at: float | None = None

    @property
    def label(self) -> str:
        return f"{self.number}" + (f".{self.attempt}" if self.attempt else "")


@dataclass
class Busy:
    """An experiment a worker holds now (or held when the run stopped): where it runs and how far it got."""

    number: int
    attempt: int
    worker: int | None  # the slot's number; None in a journal from before workers
    device: str
    node: str
    agent: str
    description: str
    state: str  # proposed | committed | running; interrupted when the run has stopped
    seconds: float  # since it was proposed
    step: int | None = None
    percent: float | None = None
    loss: float | None = None


@dataclass
class AgentFigures:
    """One agent's record in a run, to compare agents that ran side by side (`--agent A --agent B`)."""

    agent: str
    experiments: int  # finished ideas
    kept: int
    keep_rate: float | None
    gain: float  # val_bpb its keeps took off the best, summed
    hours: float  # its agent calls and its experiments' runs
    gain_per_hour: float | None
    cost: float  # USD
    cost_per_keep: float | None


@dataclass
class Facts:
    run: RunRecord
    summary: Summary
    rows: list[Row]  # every attempt, in order
    records: list[ExperimentRecord] = field(repr=False)  # every attempt, as the journal holds it
    busy: list[Busy] = field(default_factory=list)  # one per worker at work
    agents: list[AgentFigures] = field(default_factory=list)
    ablation: Ablation | None = None  # the latest `autoresearch ablate` of the run
    transfers: list[Transfer] = field(default_factory=list)  # its `autoresearch transfer` studies, oldest first

    @property
    def finals(self) -> list[Row]:
        return [r for r in self.rows if r.final]

    @property
    def keeps(self) -> list[Row]:
        """In the order they were decided: each beat the one before (workers may keep a later number first)."""
        rows = {(r.number, r.attempt): r for r in self.rows if r.final and r.status == "keep"}
        return [rows[e.number, e.attempt] for e in keep_order(finals(self.records)) if (e.number, e.attempt) in rows]

    def record(self, row: Row) -> ExperimentRecord:
        return next(e for e in self.records if e.number == row.number and e.attempt == row.attempt)


def journal_path(workspace: Path) -> Path:
    from autoresearch.workspace import JOURNAL_FILE, RUN_DIR

    return workspace / RUN_DIR / JOURNAL_FILE


def pick_run(journal: Journal, tag: str | None) -> RunRecord:
    """The run tagged `tag`, or the latest; FileNotFoundError (a friendly CLI error) when there is none."""
    runs = journal.runs()
    if not runs:
        raise FileNotFoundError("no runs yet: start one with `autoresearch run`")
    if tag is None:
        return runs[-1]
    run = journal.run(tag)
    if run is None:
        raise FileNotFoundError(f"no run tagged {tag!r}; see `autoresearch status --all`")
    return run


def gather(journal: Journal, run: RunRecord, cache: Path | None = None, now: float | None = None) -> Facts:
    sessions = journal.sessions(run.tag)
    run = as_seen(run, sessions)
    records = journal.experiments(run.tag)
    std, n = noise_floor(run.info)
    rows = _rows(records, std, live=run.state == "running", sign=metric_of(run.info).sign)
    ablation, transfers = read_studies(journal, run.tag)
    kept = keep_order(finals(records))
    return Facts(run=run, summary=_summary(journal, run, rows, (std, n), cache, now, sessions,
                                           kept[-1].number if kept else None), rows=rows, records=records, busy=busy(records, run, now), agents=agent_figures(records), ablation=ablation,
                 transfers=transfers)


def busy(records: list[ExperimentRecord], run: RunRecord, now: float | None = None) -> list[Busy]:
    """The experiments in flight, by worker, with the last progress line of each one's log."""
    now = time.time() if now is None else now
    last: dict[int, ExperimentRecord] = {}
    for e in records:
        if e.state != "done":
            last[e.number] = e
    out = []
    for e in sorted(last.values(), key=lambda e: (e.worker or 0, e.number)):
        p = _last_progress(Path(e.run_dir) / "run.log") if e.run_dir and e.state == "running" else None
        out.append(Busy(number=e.number, attempt=e.attempt, worker=e.worker, device=e.device, node=e.node,
                        agent=e.agent, description=e.description,
                        state=e.state if run.state == "running" else "interrupted",
                        seconds=max(0.0, now - e.created_at), step=p.step if p else None,
                        percent=p.percent if p else None, loss=p.loss if p else None))
    return out


def _last_progress(log: Path, tail: int = 8192):
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    return next((p for line in reversed(lines) if (p := parse_progress(line))), None)


def agent_figures(records: list[ExperimentRecord]) -> list[AgentFigures]:
    """Keep rate, val_bpb gained per hour and cost per kept improvement, per agent. A keep's gain is what it took
    off the best of the moment (keeps in the order they were decided)."""
    last = {e.number: e for e in finals(records)}
    gains: dict[int, float] = {}
    best = None
    for e in (e for e in keep_order(last.values()) if e.val_bpb is not None):
        if best is not None and e.number > 1:
            gains[e.number] = best - e.val_bpb
        best = e.val_bpb
    out = []
    for agent in dict.fromkeys(e.agent for e in records if e.agent and e.agent != "baseline"):
        ideas = [e for e in last.values() if e.agent == agent and e.number > 1]
        mine = [e for e in records if e.agent == agent]
        kept = sum(e.status == "keep" for e in ideas)
        gain = sum(gains.get(e.number, 0.0) for e in ideas if e.status == "keep")
        hours = sum((e.agent_seconds or 0.0) + (e.run_seconds or 0.0) for e in mine) / 3600
        cost = sum(e.cost_usd or 0.0 for e in mine)
        out.append(AgentFigures(agent=agent, experiments=len(ideas), kept=kept,
                                keep_rate=kept / len(ideas) if ideas else None, gain=gain, hours=hours,
                                gain_per_hour=gain / hours if hours > 0 else None, cost=cost,
                                cost_per_keep=cost / kept if kept else None))
    return out


def finals(records: list[ExperimentRecord]) -> list[ExperimentRecord]:
    """The attempt that decided each idea (its last finished one), by number: what results.tsv lists."""
    last: dict[int, ExperimentRecord] = {}
    for e in records:
        if e.state == "done" and e.status is not None:
            last[e.number] = e
    return [last[n] for n in sorted(last)]


def active_seconds(run: RunRecord, sessions: list[SessionRecord], finished: list[float],
                   now: float | None = None) -> float:
    """How long the run has been going: the sum of its sessions, up to now for one still going, and up to its last
    finished experiment for one that was killed. Without sessions (an older journal): from the run's start."""
    now = now or time.time()
    if not sessions:
        end = now if run.state == "running" else max(finished, default=run.created_at)
        return max(0.0, end - run.created_at)
    total = 0.0
    for i, s in enumerate(sessions):
        nxt = sessions[i + 1].started_at if i + 1 < len(sessions) else math.inf
        if s.ended_at is not None:
            end = s.ended_at
        elif nxt == math.inf and run.state == "running":
            end = now
        else:
            end = max((f for f in finished if s.started_at <= f < nxt), default=s.started_at)
        total += max(0.0, end - s.started_at)
    return total


def noise_floor(info: dict) -> tuple[float | None, int | None]:
    """(std, runs) from run.info["noise"], which the noise policy writes as {"std": s, "runs": [val_bpb, ...]}."""
    noise = info.get("noise") if isinstance(info, dict) else None
    if not isinstance(noise, dict) or not isinstance(noise.get("std"), (int, float)):
        return None, None
    runs = noise.get("runs")
    return float(noise["std"]), len(runs) if isinstance(runs, list) else runs if isinstance(runs, int) else None


def entropy_floor(settings: dict, split: str = "val", cache: Path | None = None) -> float | None:
    """The lowest bpb any model can reach on the split, known for the embedded corpus; None otherwise."""
    from autoresearch.paths import eval_key, load_meta, prepared_dir
    from autoresearch.settings import Settings

    try:
        s = Settings(**settings)
        value = load_meta(prepared_dir(s, cache))["eval"][eval_key(s)][split]["floor_bpb"]
        return float(value) if value is not None else None
    except (TypeError, KeyError, ValueError, OSError):
        return None


def val_only_threshold(noise_std: float | None, val_gain: float) -> float:
    """How much worse test_bpb may get on a kept change before we call the gain val-only: the noise floor when
    the run measured one, else the val_bpb gain itself."""
    return noise_std if noise_std is not None and noise_std > 0 else val_gain


# -- training loss from a run.log -----------------------------------------------------------------------------------

@dataclass
class LossCurve:
    steps: list[int] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)  # None where the run printed nan/inf
    last: dict | None = None  # the latest progress line: step, percent, loss, tokens_per_second, mfu, remaining


def read_loss(path: Path, max_points: int = MAX_LOSS_POINTS) -> LossCurve:
    """The training loss printed so far by train.py; a missing or half-written log gives what there is."""

    curve = LossCurve()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return curve
    for line in text.splitlines():
        p = parse_progress(line)
        if p is None:
            continue
        curve.steps.append(p.step)
        curve.loss.append(p.loss if math.isfinite(p.loss) else None)
        curve.last = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in asdict(p).items()}
    if len(curve.steps) > max_points:  # keep the first and last points, thin the middle evenly
        idx = sorted({round(i * (len(curve.steps) - 1) / (max_points - 1)) for i in range(max_points)})
        curve.steps = [curve.steps[i] for i in idx]
        curve.loss = [curve.loss[i] for i in idx]
    return curve


# -- internals ------------------------------------------------------------------------------------------------------

def load_note(evidence: dict | None) -> str:
    """One line when the decision judged the change against the best's figures at the load it met, run again now
    or measured before (see loop/load.py)."""
    again = (evidence or {}).get("remeasured")
    if again:
        before, after = again["before"], again["after"]
        if "figures" not in after:  # an older record: the speed was the signal
            return (f"speed moved: best re-measured now, {before['val_bpb']:.4f} -> {after['val_bpb']:.4f} at "
                    f"{_speed(before.get('tokens_per_second'))} -> {_speed(after.get('tokens_per_second'))} tok/s")
        how = "re-measured now" if "fresh" in again else "as measured before at this load"
        return (f"load moved (wait {_wait(before.get('load'))} -> {_wait(again.get('load'))} s per CPU s): best "
                f"{how}, {before['val_bpb']:.4f} -> {after['val_bpb']:.4f} ({after.get('runs', 1)} run(s))")
    return (evidence or {}).get("load_flag", "")


def _wait(w: float | None) -> str:
    return "?" if w is None else f"{w:.2f}"


def _speed(tps: float | None) -> str:
    return "?" if tps is None else f"{tps:,.0f}"


def _rows(records: list[ExperimentRecord], noise_std: float | None, live: bool = True, sign: int = 1) -> list[Row]:
    """`sign`: +1 when lower is better (val_bpb), -1 when higher is (a task's goal = "maximize")."""
    last_attempt: dict[int, int] = {}
    for e in records:
        last_attempt[e.number] = max(last_attempt.get(e.number, 0), e.attempt)
    rows: list[Row] = []
    best: Row | None = None  # the kept row before the current one
    for e in records:  # ordered by number, attempt: the best before each row is known when we reach it
        measured = e.status in ("keep", "discard")
        val = e.val_bpb if measured else None
        row = Row(
            number=e.number, attempt=e.attempt, final=e.attempt == last_attempt[e.number],
            state=e.state if live or e.state == "done" else "interrupted",
            status=e.status, outcome=e.outcome, commit=(e.commit_sha or e.parent_commit or "")[:7],
            val_bpb=val, test_bpb=e.test_bpb if measured else None,
            delta=None if best is None or val is None else val - best.val_bpb,  # type: ignore[operator]
            memory_gb=e.memory_gb if measured else None,
            seconds=_sum(e.agent_seconds, e.run_seconds, e.overhead_seconds) if e.state == "done" else None,
            run_seconds=e.run_seconds, agent_seconds=e.agent_seconds, steps=e.steps,
            tokens_per_second=e.tokens_per_second, load_note=load_note(e.evidence), cost=e.cost_usd or 0.0,
            tokens=(e.input_tokens or 0) + (e.output_tokens or 0), description=e.description, reason=e.reason,
            created_at=e.created_at, finished_at=e.finished_at)
        if e.status == "keep" and val is not None:
            if best is not None and best.test_bpb is not None and row.test_bpb is not None:
                row.test_change = row.test_bpb - best.test_bpb
                row.val_only = sign * row.test_change > val_only_threshold(  # type: ignore[operator]
                    noise_std, sign * (best.val_bpb - val))  # type: ignore[operator]
            best = row
        rows.append(row)
    return rows


def _summary(journal: Journal, run: RunRecord, rows: list[Row], noise: tuple[float | None, int | None],
             cache: Path | None, now: float | None, sessions: list[SessionRecord],
             best_number: int | None) -> Summary:
    done = [r for r in rows if r.final and r.status]
    keeps = [r for r in done if r.status == "keep" and r.val_bpb is not None]
    # The best is the keep decided last (workers side by side can keep a later number first).
    best = next((r for r in keeps if r.number == best_number), None)
    base = keeps[0] if best is not None else None
    ideas = [r for r in done if r.number > 1]

    def count(status: str) -> int:
        return sum(r.status == status for r in ideas)

    def rate(status: str) -> float | None:
        return count(status) / len(ideas) if ideas else None

    wall_hours = active_seconds(run, sessions, [r.finished_at for r in rows if r.finished_at], now) / 3600
    totals = journal.totals(run.tag)
    metric = metric_of(run.info)
    gain = metric.gain(best.val_bpb, base.val_bpb) if base and best else None  # type: ignore[arg-type]
    return Summary(metric=metric.name, goal=metric.goal,
        tag=run.tag, branch=run.branch, agent=run.agent, state=run.state, stop_reason=run.stop_reason,
        baseline=base.val_bpb if base else None, best=best.val_bpb if best else None,
        best_number=best.number if best else None, gain=gain,
        gain_pct=gain / base.val_bpb * 100 if base and gain is not None and base.val_bpb else None,
        baseline_test=base.test_bpb if base else None, best_test=best.test_bpb if best else None,
        experiments=len(done), attempts=sum(1 for r in rows if r.status), kept=max(0, len(keeps) - 1),
        discarded=count("discard"), crashed=count("crash"), rejected=count("rejected"),
        keep_rate=rate("keep"), crash_rate=rate("crash"), reject_rate=rate("rejected"),
        wall_hours=wall_hours, per_hour=len(done) / wall_hours if wall_hours > 0 and done else None,
        train_hours=sum(r.run_seconds or 0 for r in rows) / 3600,
        agent_hours=sum(r.agent_seconds or 0 for r in rows) / 3600,
        cost=float(totals["cost"]), input_tokens=int(totals["input_tokens"]), output_tokens=int(totals["output_tokens"]),
        noise_std=noise[0], noise_runs=noise[1], floor=entropy_floor(run.settings, "val", cache), test_floor=entropy_floor(run.settings, "test", cache))


def _sum(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None
