"""The single writer: the journal, the branch of record and results.tsv, behind one lock.

Workers run side by side, each in its own thread, but every record and every move of `autoresearch/<tag>` goes
through here, one at a time. Each step is recorded in the journal before or after its git action in an order
`loop/resume.py` can finish from any interruption (even kill -9): the branch of record only ever moves forward, by
a keep, to a commit whose train.py is exactly what was measured.

What an experiment changes is train.py and, in a task workspace, any other editable file (the record's `files`,
path -> complete text): files_at(commit) says what a commit holds of them, so the GPT task's records stay train.py
only and a task's carry every file its agent may change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from autoresearch import vcs
from autoresearch.loop import load, results
from autoresearch.loop.policy import pooled_sd
from autoresearch.loop.journal import ExperimentRecord, Journal, RunRecord
from autoresearch.task.store import is_task_workspace, workspace_task
from autoresearch.workspace import EDITABLE


class Ledger:
    def __init__(self, ws: Path, journal: Journal, tag: str, branch: str, on_note=None) -> None:
        self.ws, self.journal, self.tag, self.branch = ws, journal, tag, branch
        self.lock = threading.RLock()
        self.on_note = on_note or (lambda text: None)
        # Called with each decided record, under the lock, right after it is recorded (live logging to trackers,
        # see/track/lanes.py). A watcher must be quick: the loop waits for it.
        self.watchers: list[Callable[[ExperimentRecord], None]] = []
        self.task = workspace_task(ws) if is_task_workspace(ws) else None  # None: the GPT task (train.py only)
        self._files: dict[str, dict[str, str]] = {}  # commit -> its editable files beyond train.py (immutable)

    # -- reading -------------------------------------------------------------------------------------------------

    def run(self) -> RunRecord:
        with self.lock:
            run = self.journal.run(self.tag)
        assert run is not None
        return run

    def best(self) -> ExperimentRecord | None:
        with self.lock:
            return self.journal.best(self.tag)

    def best_commit(self) -> str:
        best = self.best()
        return (best.commit_sha or best.parent_commit) if best else self.run().base_commit

    def best_val(self) -> float | None:
        best = self.best()
        return mean_of(best) if best else None

    def source_at(self, commit: str) -> str:
        return vcs.show(self.ws, commit, EDITABLE)

    def files_at(self, commit: str) -> dict[str, str]:
        """A task's editable files other than train.py as `commit` holds them, path -> text ({}: the GPT task)."""
        if self.task is None:
            return {}
        with self.lock:
            if commit not in self._files:
                task = self.task
                self._files[commit] = vcs.files_at(self.ws, commit, lambda n: n != EDITABLE and task.is_editable(n))
            return dict(self._files[commit])

    def info(self) -> dict:
        return self.run().info or {}

    def update_info(self, **values) -> None:
        with self.lock:
            self.journal.update_run(self.tag, info={**self.info(), **values})

    def noise_sigma(self) -> float | None:
        return self.noise()[0]

    def noise(self) -> tuple[float | None, int]:
        """The pooled sd of every group of repeated runs of the same code this run has made, and its degrees of
        freedom: the baseline and its repeats, each change's confirm runs, and the best with its re-measures at the
        load its kept runs met (one at another load measures the load too, not the seeds' noise alone)."""
        groups: dict[object, list[float]] = {}
        done = self.experiments(done_only=True)  # one read of the journal for both passes
        for e in done:
            runs = (e.evidence or {}).get("runs")
            if e.status in ("keep", "discard") and isinstance(runs, list):
                groups.setdefault(e.commit_sha if e.status == "keep" else e.id, []).extend(runs)
        for e in done:
            again = (e.evidence or {}).get("remeasured") or {}
            before, after = again.get("before") or {}, again.get("after") or {}
            if before.get("commit") not in groups:
                continue
            if "figures" not in after:  # an older record: "after" is the run itself
                fresh = after.get("val_bpb")
            elif "fresh" in again and _same_load(after["figures"], again.get("tolerance")):
                fresh = again["fresh"]
            else:  # nothing was run (the best's figures at that load were reused), or the run met another load
                fresh = None  # than the runs it was kept on: seed noise is measured under one load
            if isinstance(fresh, (int, float)):
                groups[before["commit"]].append(fresh)
        return pooled_sd(list(groups.values()))

    def reference(self, best: ExperimentRecord) -> load.Reference:
        """The best's figures to compare against: as its last re-measure left them (every figure it was measured
        at, pooled at the load of the last), else the runs it was kept on."""
        commit = best.commit_sha or best.parent_commit
        saved = self.info().get("reference")
        if saved and saved.get("commit") == commit and "figures" in saved:
            known = set(load.Reference.__dataclass_fields__)
            return load.Reference(**{k: v for k, v in saved.items() if k in known})
        mean = mean_of(best)
        assert mean is not None
        runs = best.evidence.get("runs") or [mean]
        loads = best.evidence.get("load") or []
        loads = loads if len(loads) == len(runs) else [None] * len(runs)
        return load.Reference(commit=commit, val_bpb=mean, runs=len(runs),
                              tokens_per_second=load.mean_speed(best.evidence.get("tps", [best.tokens_per_second])),
                              load=load.mean_known(loads),
                              figures=[{"val_bpb": v, "load": w, "at": None} for v, w in zip(runs, loads)])

    def experiments(self, done_only: bool = False) -> list[ExperimentRecord]:
        with self.lock:
            return self.journal.experiments(self.tag, done_only=done_only)

    def in_flight(self) -> list[ExperimentRecord]:
        """What the workers are trying right now: recorded, not yet decided."""
        return [e for e in self.experiments() if e.state != "done"]

    def get(self, exp_id: int) -> ExperimentRecord:
        with self.lock:
            return self.journal.get(exp_id)

    # -- writing -------------------------------------------------------------------------------------------------

    def add(self, number: int | None, attempt: int, description: str, train_py: str, parent: str,
            **values) -> ExperimentRecord:
        """Record a proposal; a new idea (number None) takes the next free number now, so numbers follow the
        order in which ideas were recorded and none is skipped."""
        with self.lock:
            if number is None:
                number = max((e.number for e in self.journal.experiments(self.tag)), default=0) + 1
            return self.journal.add_experiment(self.tag, number, attempt, description, train_py, parent,
                                               started_from=parent, **values)

    def update(self, exp_id: int, **values) -> ExperimentRecord:
        with self.lock:
            self.journal.update(exp_id, **values)
            return self.journal.get(exp_id)

    def finish(self, exp_id: int, status: str, keep_commit: str | None = None, **values) -> ExperimentRecord:
        """Record the decision (one transaction), then make git follow it, then rewrite results.tsv.

        A keep moves the branch of record forward to `keep_commit`, which must descend from the current best."""
        with self.lock:
            if status == "keep":
                assert keep_commit is not None
                if not vcs.is_ancestor(self.ws, self.best_commit(), keep_commit):
                    raise AssertionError(f"a keep must descend from the best ({keep_commit} does not)")
                values["commit_sha"] = keep_commit
            self.journal.update(exp_id, state="done", status=status, finished_at=time.time(), **values)
            self.restore_best()
            self.write_results()
            rec = self.journal.get(exp_id)
            for watch in self.watchers:
                try:
                    watch(rec)
                except Exception as e:  # noqa: BLE001 - the decision is recorded; what watches it must not undo that
                    self.on_note(f"a watcher of the journal failed on experiment {rec.number}: {type(e).__name__}: {e}")
            return rec

    def restore_best(self) -> None:
        """The workspace's checkout follows the branch of record: at the best, clean."""
        with self.lock:
            best = self.best_commit()
            if vcs.head(self.ws) != best or vcs.status_porcelain(self.ws):
                vcs.reset_hard(self.ws, best)

    def charge(self, number: int, usage) -> None:
        with self.lock:
            self.journal.add_charge(self.tag, number, usage.input_tokens, usage.output_tokens, usage.cost_usd)

    def write_results(self) -> None:
        with self.lock:
            notes = results.publish(self.journal, self.tag, self.ws)
        for note in notes:
            self.on_note(note)


def _same_load(figures: list[dict], tol) -> bool:
    """Whether the last figure (a re-measure) met the load the best's kept runs met (or either is unknown)."""
    kept = load.mean_known([f.get("load") for f in figures if f.get("at") is None])
    return not load.moved(kept, figures[-1].get("load"), tol if isinstance(tol, float) else load.STRETCH_FLOOR)


def mean_of(rec: ExperimentRecord) -> float | None:
    return rec.evidence.get("mean", rec.val_bpb) if rec.evidence else rec.val_bpb
