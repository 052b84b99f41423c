"""What a tracker receives, built from the journal's records alone: the one source of live logging and replay.

Live logging (see/track/lanes.py) calls `entry` when the ledger records a decision, with the experiments decided
so far; `autoresearch track --replay` calls `entries` on the finished journal. Both go through `entry`, and what it
reads of a record never changes once the record is done, so a replay sends exactly what live logging sent.

The metric comes from one place, `metric_of` (val_bpb and its held-out twin test_bpb for
the GPT task; a task's metric and holdout_<metric>, in its direction).
Test figures go to the tracker, which is the user's own store; nothing here reaches an agent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from autoresearch.loop.journal import ExperimentRecord, RunRecord, SessionRecord
from autoresearch.loop.keeps import keep_order
from autoresearch.loop.ledger import mean_of
from autoresearch.see.facts import load_note
from autoresearch.workspace import constants_of

Param = str | int | float | bool

# What each record's number is called in a tracker, in the order a reader meets them.
FIGURES = ("memory_gb", "steps", "train_tokens", "tokens_per_second", "startup_seconds", "training_seconds",
           "eval_seconds", "run_seconds", "agent_seconds", "overhead_seconds", "cost_usd", "input_tokens",
           "output_tokens")
# The policy's evidence (loop/policy.py), as `decision.<name>`: margin is the gain in noise standard deviations,
# threshold the gain it had to clear, reference the best's figure it was compared with.
EVIDENCE = {"gain": "gain", "margin": "margin", "threshold": "threshold", "sigma": "sigma", "sigmas": "sigmas",
            "best": "reference", "best_runs": "reference_runs"}
CURVE_SERIES = ("loss", "tokens_per_second")  # per training step, as `train/<name>`


@dataclass(frozen=True)
class Metric:
    name: str  # the figure decisions are made on
    test_name: str  # the same figure on the held-out split
    minimize: bool = True


VAL_BPB = Metric("val_bpb", "test_bpb", minimize=True)


def metric_of(run: RunRecord) -> Metric:
    """The run's metric (a task's own, recorded in the run's info; val_bpb for the GPT task and older runs). Every
    tracker names its figures from this one place."""
    from autoresearch.task.metric import metric_of as recorded

    m = recorded(run.info)
    return VAL_BPB if m.name == "val_bpb" else Metric(m.name, f"holdout_{m.name}", minimize=m.goal == "minimize")


@dataclass(frozen=True)
class Research:
    """The research run: a parent run (MLflow), a group (W&B), a directory of runs (TensorBoard)."""

    tag: str
    key: str  # the tag and the base commit: two workspaces with the same tag stay apart in one project
    workspace: str  # the workspace directory's name
    metric: Metric
    started_at: float
    params: dict[str, Param]  # autoresearch.toml: fixed for the run
    tags: dict[str, str]  # what may change between sessions (the agent, the policy)
    state: str  # running | stopped
    stop_reason: str
    ended_at: float | None  # when the last session ended; None while one runs (or after a kill -9)

    @property
    def best_name(self) -> str:
        return f"best_{self.metric.name}"


@dataclass(frozen=True)
class BestPoint:
    """The research run's best-so-far after a decision: `step` counts the decisions, 1 is the baseline."""

    step: int
    value: float | None  # None until something was kept
    at: float  # when the decision was recorded


@dataclass(frozen=True)
class Entry:
    """One experiment attempt (idea `number`, repair `attempt`) as one tracker run."""

    key: str  # "<research key>/0003-0": unique within its tracker
    slug: str  # "0003-0", as its run directory is named
    number: int
    attempt: int
    title: str  # "#3 description" (attempts after the first: "#3.1 ...")
    decision: str  # keep | discard | crash | rejected
    started_at: float
    finished_at: float
    params: dict[str, Param]  # train.py's CAPS constants; another editable file's as `model.py:NAME`
    tags: dict[str, str]
    metrics: dict[str, float]
    curve: dict[str, list[tuple[int, float]]]  # series name -> (step, value), finite values only
    artifacts: dict[str, str]  # file name -> text: every editable file as the run had it, the diff, the error
    best: BestPoint

    @property
    def failed(self) -> bool:
        return self.decision in ("crash", "rejected")


def research(run: RunRecord, sessions: list[SessionRecord], workspace: str) -> Research:
    ended = [s.ended_at for s in sessions]
    return Research(
        tag=run.tag, key=f"{run.tag}-{run.base_commit[:8]}", workspace=workspace, metric=metric_of(run),
        started_at=run.created_at, params={k: param(v) for k, v in sorted(run.settings.items())},
        tags={"tag": run.tag, "branch": run.branch, "base_commit": run.base_commit, "agent": run.agent,
              "policy": run.policy},
        state=run.state, stop_reason=run.stop_reason,
        ended_at=max(ended) if run.state == "stopped" and ended and None not in ended else None)


def decided(done: list[ExperimentRecord]) -> list[ExperimentRecord]:
    """The decided attempts in the order they were decided (workers side by side finish out of number order)."""
    return sorted((e for e in done if e.state == "done" and e.status is not None),
                  key=lambda e: (e.finished_at or 0.0, e.id))


def entries(run: RunRecord, done: list[ExperimentRecord]) -> list[Entry]:
    """Every decided attempt of the run, in decision order: what a replay sends."""
    order = decided(done)
    return [_entry(run, order, i) for i in range(len(order))]


def entry(run: RunRecord, done: list[ExperimentRecord], rec: ExperimentRecord) -> Entry:
    """The attempt `rec` as decided, among the attempts decided so far (live logging, right after the decision)."""
    order = decided(done)
    return _entry(run, order, next(i for i, e in enumerate(order) if e.id == rec.id))


def _entry(run: RunRecord, order: list[ExperimentRecord], i: int) -> Entry:
    e = order[i]
    metric = metric_of(run)
    kept = keep_order(order[: i + 1])
    best = mean_of(kept[-1]) if kept else None  # the end of the chain of keeps is the best (loop/keeps.py)
    measured = e.status in ("keep", "discard")
    metrics: dict[str, float] = {}
    if measured:
        _put(metrics, metric.name, e.val_bpb)
        _put(metrics, metric.test_name, e.test_bpb)
    for name in FIGURES:
        _put(metrics, name, getattr(e, name))
    evidence = e.evidence or {}
    for name, as_name in EVIDENCE.items():
        _put(metrics, f"decision.{as_name}", evidence.get(name))
    if isinstance(evidence.get("runs"), list):
        _put(metrics, "decision.runs", len(evidence["runs"]))
    tags = {"decision": e.status or "", "outcome": e.outcome or "", "agent": e.agent, "description": e.description,
            "reason": e.reason, "why": str(evidence.get("why", "")), "rule": str(evidence.get("rule", "")),
            "load": load_note(evidence), "commit": e.commit_sha or "", "parent_commit": e.parent_commit,
            "started_from": e.started_from or "", "worker": "" if e.worker is None else str(e.worker),
            "device": e.device, "node": e.node, "rationale": e.rationale}
    artifacts = {"train.py": e.train_py, **{path: text for path, text in sorted((e.files or {}).items())}}
    if e.diff:
        artifacts["diff.patch"] = e.diff
    if e.error_tail:
        artifacts["error.txt"] = e.error_tail
    slug = f"{e.number:04d}-{e.attempt}"
    title = f"#{e.number}" + (f".{e.attempt}" if e.attempt else "") + f" {' '.join(e.description.split())}"
    return Entry(key=f"{run.tag}-{run.base_commit[:8]}/{slug}", slug=slug, number=e.number, attempt=e.attempt,
                 title=title[:250], decision=e.status or "", started_at=e.created_at,
                 finished_at=e.finished_at or e.created_at,
                 params={k: param(v) for k, v in constants_of(e.train_py, e.files).items()},
                 tags={k: v for k, v in tags.items() if v}, metrics=metrics, curve=curve_of(e),
                 artifacts=artifacts, best=BestPoint(step=i + 1, value=best, at=e.finished_at or e.created_at))


def curve_of(e: ExperimentRecord) -> dict[str, list[tuple[int, float]]]:
    """The training curve the journal keeps with the record (run/result.py compact_curve), finite points only."""
    columns = (e.metrics or {}).get("curve") or {}
    steps = columns.get("step") or []
    out: dict[str, list[tuple[int, float]]] = {}
    for name in CURVE_SERIES:
        points = [(int(s), float(v)) for s, v in zip(steps, columns.get(name) or [])
                  if isinstance(v, (int, float)) and math.isfinite(v)]
        if points:
            out[name] = points
    return out


def param(value: Any) -> Param:
    """A value every tracker takes as a parameter: numbers, booleans and strings as they are, the rest as Python
    writes them (a tuple of betas, None)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return repr(tuple(value) if isinstance(value, list) else value)


def _put(out: dict[str, float], name: str, value: Any) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        out[name] = float(value)

