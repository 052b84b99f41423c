"""Workers side by side on one branch of record: who runs what, and how a finished result becomes the best.

Each slot of the backend (a device, or a place on a Ray cluster) has a worker thread with its own git worktree.
A worker takes an unfinished experiment left by an earlier session, or asks its agent for a new one, proposed
from the best known when it starts, with the experiments in flight on the other workers in its context. The run
itself happens in the backend (a worker process of its own, or a Ray task); the decision is taken against the
best as it stands when the run ends:

- it started from the current best: a keep fast-forwards `autoresearch/<tag>` to its commit;
- a newer best landed meanwhile: it must clear the policy against that newer best with the figures it has, or it
  is discarded. If it does, its change (train.py, and a task's other editable files, each on its own) is merged
  onto the newer best (loop/merge.py: git merge-file, or by name where the changes only set constants). When the
  merge is clean, the combination has never run, so it runs now, and only its own figures decide. When the two
  changes conflict in any file, the files that were measured are committed on top of the newer best: they beat it
  as they are.

So the branch only moves forward, through keeps, and always to a train.py whose figures are on record.

A crashed change goes back to its agent to be fixed against the best it was made on, not the best of now: the
fix is the same idea, recorded with the same parent, so a newer best that landed meanwhile is merged as above
rather than overwritten. A run that the backend lost (the machine running it went away) says nothing about the
change: it is run again, up to LOST_RERUNS times, and past that the run stops with the experiment left unfinished
for a resume.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autoresearch import vcs
from autoresearch.agents.base import Agent, Failure
from autoresearch.backends.base import Backend, Slot, join_workers
from autoresearch.loop.decider import Decider, Decision, TestWanted, with_seed
from autoresearch.loop.journal import ExperimentRecord
from autoresearch.loop.ledger import Ledger
from autoresearch.loop.merge import merge, merge_files
from autoresearch.loop.options import LoopConfig
from autoresearch.loop.policy import GreedyPolicy, NoisePolicy
from autoresearch.loop.proposer import Proposer, Stopped
from autoresearch.run.compile_cache import SEED_DIR
from autoresearch.run.result import Experiment, RunResult, compact_curve
from autoresearch.settings import Settings
from autoresearch.workspace import EDITABLE, RUN_DIR

FIXABLE = ("crash", "oom", "rejected")  # outcomes an agent may repair in a follow-up attempt
WORKTREES = ".worktrees"  # beside .autoresearch/, which agents may not see: one checkout per worker
MAX_REBASES = 2  # a change re-run on a newer best at most this often; then the best kept moving: discard
JOIN_SECONDS = 60.0  # after a stop, for the workers to let go of their runs
BASELINE_TRIES = 2  # a baseline that fails is run again once; then the run stops: no floor, no noise policy
LOST_RERUNS = 2  # a run the backend lost is run again at most this often; then the run stops (the cluster is sick)


class BaselineFailed(Exception):
    """The unchanged train.py failed every time: there is no best and no noise floor to judge changes against."""


class RunsLost(Exception):
    """The backend lost the same experiment's run again and again: the run stops, the experiment stays unfinished."""


@dataclass
class _Jobs:
    """What each worker is doing: the idea's number, or None while its agent is still proposing."""

    numbers: dict[int, int | None] = field(default_factory=dict)  # slot index -> number
    # Experiments an earlier session left unfinished, to run again first (taken once the workers start: every
    # later unfinished record is another worker's experiment in flight).
    leftover: list[ExperimentRecord] = field(default_factory=list)


class Run(Protocol):
    """What the scheduler needs of the research run it schedules (loop/core.py's Loop): its rooms, its settings, and
    the answers that depend on the whole run."""

    ws: Path
    tag: str
    config: LoopConfig
    settings: Settings
    policy: GreedyPolicy | NoisePolicy
    ledger: Ledger
    decider: Decider
    proposer: Proposer
    view: object  # loop/core.py's View, called from every worker's thread
    stop: threading.Event

    @property
    def backend(self) -> Backend: ...
    def agent_for(self, slot: Slot) -> Agent: ...
    def limit_reached(self, busy: Iterable[int | None] = ()) -> str | None: ...
    def human_baseline(self, rec: ExperimentRecord) -> bool: ...
    def eval_rate(self) -> float | None: ...
    def first_answer_limit(self) -> float | None: ...


class Scheduler:
    def __init__(self, loop: Run) -> None:
        self.loop = loop
        self.ledger, self.decider, self.proposer = loop.ledger, loop.decider, loop.proposer
        self.backend, self.view, self.stop = loop.backend, loop.view, loop.stop
        self.slots: list[Slot] = self.backend.slots()
        self.jobs = _Jobs()
        self.error: BaseException | None = None
        self._spent: dict[int, float] = {}  # record id -> wall seconds of all its runs so far (repeats, re-runs)
        self._spent_lock = threading.Lock()

    # -- the whole run -------------------------------------------------------------------------------------------

    def drive(self) -> None:
        """Until a limit: the baseline first (on every slot at once), then one thread per slot."""
        self.prepare_worktrees()
        self.jobs.leftover = [e for e in self.ledger.journal.all_unfinished(self.loop.tag) if e.number > 1]
        try:
            if self.loop.limit_reached() is None or self._pending_baseline():
                self._guarded(self.baseline)
            threads = [threading.Thread(target=self._guarded, args=(self.worker, slot), name=f"worker-{slot.index}",
                                        daemon=True) for slot in self.slots]
            if self.error is None:
                for t in threads:
                    t.start()
            join_workers(threads, self.halt, JOIN_SECONDS)  # Ctrl-C: every run stopped, nothing more recorded
            if self.error is not None:
                raise self.error
        finally:
            self.release_worktrees()

    def halt(self) -> None:
        self.stop.set()
        self.backend.cancel()

    def _guarded(self, fn, *args) -> None:
        try:
            fn(*args)
        except Stopped:
            pass
        except BaseException as e:  # an agent's fatal error, or a bug: the first one stops everyone
            with self.ledger.lock:
                if self.error is None:
                    self.error = e
            self.halt()

    # -- worktrees -----------------------------------------------------------------------------------------------

    def checkout(self, slot: Slot) -> Path:
        return self.loop.ws / WORKTREES / self.loop.tag / f"w{slot.index}"

    def prepare_worktrees(self) -> None:
        """One clean checkout per worker at the best; leftovers of an earlier session (more workers, an agent
        killed mid-edit) are cleaned or removed."""
        _exclude(self.loop.ws, f"/{WORKTREES}/")
        base = self.loop.ws / WORKTREES / self.loop.tag
        wanted = {self.checkout(s) for s in self.slots}
        if base.is_dir():
            for old in base.iterdir():
                if old not in wanted:
                    vcs.remove_worktree(self.loop.ws, old)
        vcs.git(self.loop.ws, "worktree", "prune", check=False)
        best = self.ledger.best_commit()
        for path in sorted(wanted):
            if (path / ".git").exists():
                vcs.detach_at(path, best)
            else:
                vcs.add_worktree(self.loop.ws, path, best)

    def release_worktrees(self) -> None:
        for slot in self.slots:
            try:
                vcs.remove_worktree(self.loop.ws, self.checkout(slot))
            except vcs.VcsError:
                pass
        base = self.loop.ws / WORKTREES / self.loop.tag
        for empty in (base, base.parent):  # the tag's directory, then .worktrees/, when nothing else is in them
            try:
                empty.rmdir()
            except OSError:
                break

    # -- the baseline ----------------------------------------------------------------------------------------------

    def _pending_baseline(self) -> ExperimentRecord | None:
        return next((e for e in self.ledger.journal.all_unfinished(self.loop.tag) if e.number == 1), None)

    def baseline(self) -> None:
        """Experiment 1, the unchanged train.py, with its seed repeats (the noise floor) run side by side on all
        slots, so they are measured under the sharing the experiments will have (CPU workers, --per-device). One
        that fails is run again (BASELINE_TRIES in all); then the run stops: without a baseline the first change to
        run would become the best, judged against nothing, and every gain after it kept without a noise floor."""
        done = [e for e in self.ledger.experiments(done_only=True) if e.number == 1]
        if any(e.status == "keep" for e in done):
            return
        for attempt in range(len(done), len(done) + BASELINE_TRIES):
            rec = self._baseline_once(attempt)
            if rec.status == "keep":
                return
            if attempt + 1 < len(done) + BASELINE_TRIES:
                self.view.message(f"the baseline failed ({rec.reason}); running it again")
        raise BaselineFailed(
            f"the baseline (train.py as it is in git) failed {BASELINE_TRIES} times, last: {rec.reason}. Without it "
            f"there is no best and no noise floor to judge changes against: fix train.py (its log: {rec.log_path}) "
            "or the workspace's settings, commit, and resume")

    def _baseline_once(self, attempt: int) -> ExperimentRecord:
        rec = self._pending_baseline()
        if rec is None:
            source = (self.loop.ws / EDITABLE).read_text()
            parent = self.ledger.best_commit()
            rec = self.ledger.add(1, attempt, "baseline", source, parent, agent="baseline",
                                  files=self.ledger.files_at(parent))
        slots = self.slots
        total = max(1 + self.loop.policy.noise_runs, len(slots))
        total = -(-total // len(slots)) * len(slots)  # every batch fills every slot
        run_dir = self.run_dir(rec)
        dirs = [run_dir] + [run_dir.with_name(f"{run_dir.name}-seed{k}") for k in range(1, total)]
        sources = [rec.train_py] + [with_seed(rec.train_py, k) for k in range(1, total)]
        rec = self.ledger.update(rec.id, state="running", commit_sha=rec.parent_commit, run_dir=str(run_dir),
                                 worker=slots[0].index, device=slots[0].device)
        self.view.experiment_started(rec, self.loop.settings.time_budget)
        t0 = time.monotonic()
        results: list[RunResult] = []
        for start in range(0, total, len(slots)):
            batch: list[RunResult | None] = [None] * len(slots)

            def one(k: int, i: int, batch: list = batch) -> None:
                batch[i] = self.run(rec, sources[k], dirs[k], slots[i])

            threads = [threading.Thread(target=self._guarded, args=(one, start + i, i), daemon=True)
                       for i in range(len(slots))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if self.stop.is_set():
                raise Stopped
            results += [r for r in batch if r is not None]
            if not all(r.ok for r in results):
                break
        decision = self.decider.baseline(results)
        first = results[0]
        if decision.status == "keep":
            first.val_bpb = sum(decision.runs) / len(decision.runs)
            tests = [t for t in decision.evidence["tests"] if t is not None]
            first.test_bpb = sum(tests) / len(tests) if tests else None
        return self.finish(rec, first, decision, keep_commit=rec.parent_commit, t0=t0)

    # -- one worker ------------------------------------------------------------------------------------------------

    def worker(self, slot: Slot) -> None:
        agent = self.loop.agent_for(slot)
        while not self.stop.is_set():
            rec = self.next_job(slot)
            if rec is False:
                return
            try:
                if rec is None:
                    rec = self.proposer.propose(agent, self.checkout(slot), None, 0, None, slot.index, slot.device)
                with self.ledger.lock:
                    self.jobs.numbers[slot.index] = rec.number
                self.idea(rec, slot, agent)
            finally:
                with self.ledger.lock:
                    self.jobs.numbers.pop(slot.index, None)

    def next_job(self, slot: Slot) -> ExperimentRecord | None | bool:
        """An unfinished experiment to run again, None for a new proposal, or False: this worker is done."""
        with self.ledger.lock:
            if self.jobs.leftover:
                e = self.jobs.leftover.pop(0)
                self.jobs.numbers[slot.index] = e.number
                return e
            if self.loop.limit_reached(busy=self.jobs.numbers.values()) is not None:
                return False
            self.jobs.numbers[slot.index] = None
            return None

    def idea(self, rec: ExperimentRecord, slot: Slot, agent: Agent) -> ExperimentRecord:
        """One idea to its decision, with up to `fix_attempts` repairs of its own crashes."""
        while True:
            rec = self.execute(rec, slot)
            if not (rec.status in ("crash", "rejected") and rec.outcome in FIXABLE and rec.number > 1
                    and rec.attempt < self.loop.config.fix_attempts and getattr(agent, "can_fix", True)):
                return rec
            failure = Failure(description=rec.description, status=rec.outcome or rec.status or "crash",
                              reason=rec.reason, error_tail=rec.error_tail, train_py=rec.train_py,
                              files=rec.files)
            self.view.message(f"experiment {rec.number}: {rec.outcome}; asking the agent to fix it "
                              f"(attempt {rec.attempt + 1} of {self.loop.config.fix_attempts})")
            # On the best the change was made on: a newer best is then merged in settle(), never overwritten.
            vcs.detach_at(self.checkout(slot), rec.parent_commit)
            rec = self.proposer.propose(agent, self.checkout(slot), rec.number, rec.attempt + 1, failure,
                                        slot.index, slot.device, parent=rec.parent_commit)

    def execute(self, rec: ExperimentRecord, slot: Slot) -> ExperimentRecord:
        if rec.state == "done":  # rejected at proposal time
            return rec
        t0 = time.monotonic()
        sha = self.commit(slot, rec.parent_commit, rec.train_py, rec.description, rec.files)
        run_dir = self.run_dir(rec)
        rec = self.ledger.update(rec.id, state="running", commit_sha=sha, run_dir=str(run_dir), worker=slot.index,
                                 device=slot.device)
        self.view.experiment_started(rec, self.loop.settings.time_budget)
        result = self.run(rec, rec.train_py, run_dir, slot)
        decision = self.decider.decide(rec, result, run_dir,
                                       lambda src, d, runs, at=None: self.run(rec, src, d, slot, runs, at))
        return self.settle(rec, result, decision, slot, run_dir, t0)

    def commit(self, slot: Slot, parent: str, source: str, description: str,
               files: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> str:
        """The change as a commit on `parent`, made in the worker's own checkout (no branch moves): train.py and
        a task's other editable `files` (path -> text, checked by the proposer), every one it changed; `drop`:
        editable files of `parent` the change ran without, taken out (a measured change kept on a newer best)."""
        checkout = self.checkout(slot)
        vcs.detach_at(checkout, parent)
        (checkout / EDITABLE).write_text(source)
        for name, text in sorted((files or {}).items()):
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            (checkout / name).write_text(text)
        for name in drop:
            (checkout / name).unlink(missing_ok=True)
        if not vcs.status_porcelain(checkout):
            return parent
        return vcs.commit_file(checkout, EDITABLE, " ".join(description.split())[:200] or "unnamed change",
                               *sorted(files or {}), *sorted(drop))

    def run_dir(self, rec: ExperimentRecord) -> Path:
        return self.loop.ws / RUN_DIR / "runs" / self.loop.tag / f"{rec.number:04d}-{rec.attempt}"

    def run(self, rec: ExperimentRecord, source: str, run_dir: Path, slot: Slot,
            runs: list[float] | None = None, at: str | None = None) -> RunResult:
        """One run of `source` on `slot`, with a task's other editable files as the commit `at` holds them (by
        default the experiment's own); `runs`: the val_bpb of this change's earlier runs (seed repeats)."""
        loop = self.loop
        best = self.ledger.best()
        wants_test = TestWanted(loop.policy, self.ledger.reference(best).val_bpb if best else None, tuple(runs or ()))
        human = loop.human_baseline(rec)
        exp = Experiment(source=source, workspace=loop.ws, settings=loop.settings, run_dir=run_dir,
                         timeout=loop.config.timeout, cache=loop.config.cache,
                         compile_cache=loop.ws / RUN_DIR / SEED_DIR, fills_compile_cache=human,
                         eval_rate=loop.eval_rate(), wants_test=wants_test,
                         first_answer_limit=None if human else loop.first_answer_limit(),
                         files=tuple(sorted(self.ledger.files_at(at or rec.commit_sha or rec.parent_commit).items())))
        for lost in range(LOST_RERUNS + 1):
            result = self.backend.run(exp, slot, on_line=lambda line: self.view.line(line, rec),
                                      on_progress=lambda p: self.view.progress(p, rec))
            if result.status == "interrupted" or self.stop.is_set():
                raise Stopped  # the record stays unfinished: a resume runs it again
            with self._spent_lock:
                self._spent[rec.id] = self._spent.get(rec.id, 0.0) + (result.wall_seconds or 0.0)
            if result.status != "lost":
                break
            if lost == LOST_RERUNS:
                raise RunsLost(f"the backend lost experiment {rec.number}'s run {lost + 1} times in a row (last: "
                               f"{result.reason}); the experiment stays unfinished")
            self.view.message(f"experiment {rec.number}: its run was lost ({result.reason}), which says nothing "
                              f"about the change; running it again ({lost + 1} of {LOST_RERUNS})")
        if result.node:
            self.ledger.update(rec.id, node=result.node)
        return result

    # -- deciding against the best as it stands now ---------------------------------------------------------------

    def settle(self, rec: ExperimentRecord, result: RunResult, decision: Decision, slot: Slot, run_dir: Path,
               t0: float, rebases: int = 0) -> ExperimentRecord:
        if decision.status != "keep":
            return self.finish(rec, result, decision, t0=t0)
        with self.ledger.lock:
            best_commit = self.ledger.best_commit()
            if rec.parent_commit == best_commit:  # nothing landed meanwhile: a fast-forward
                return self.finish(rec, result, decision, keep_commit=rec.commit_sha, t0=t0)
            best = self.ledger.best()
            assert best is not None
            keep, ev = self.decider.against(decision.runs, best)
            evidence = {**decision.evidence, **ev, "newer_best": best.number}
            if not keep:
                decision.evidence = evidence
                return self.finish(rec, result, Decision("discard", evidence, decision.runs, best), t0=t0,
                                   reason=f"beat the best it started from, not the newer best (experiment "
                                          f"{best.number})")
            parent_src, best_src = self.ledger.source_at(rec.parent_commit), self.ledger.source_at(best_commit)
            best_files = self.ledger.files_at(best_commit)
            mine = {**self.ledger.files_at(rec.parent_commit), **rec.files}  # a task's other files, as measured
            merged = merge(parent_src, best_src, rec.train_py).text  # by name where only constants changed
            files = merge_files(self.ledger.files_at(rec.parent_commit), best_files, mine)
            merged = merged if files is not None else None  # a conflict in any file is a conflict
            if merged == best_src and files == best_files:
                return self.finish(rec, result, Decision("discard", evidence, decision.runs, best), t0=t0,
                                   reason=f"its change is already in the newer best (experiment {best.number})")
            if merged is None or (merged, files) == (rec.train_py, mine) or rebases >= MAX_REBASES:
                if merged is not None and (merged, files) != (rec.train_py, mine):  # the best kept moving
                    return self.finish(rec, result, Decision("discard", evidence, decision.runs, best), t0=t0,
                                       reason=f"the best moved {rebases + 1} times while it ran")
                # exactly what ran: a file the newer best added, which its run never had, is taken out
                sha = self.commit(slot, best_commit, rec.train_py, rec.description, mine,
                                  drop=tuple(sorted(set(best_files) - set(mine))))
                evidence["rebase"] = "conflict: the measured train.py kept as it is" if merged is None else "none"
                rec = self.ledger.update(rec.id, parent_commit=best_commit, files=mine, diff=vcs.diff_files(
                    {EDITABLE: best_src, **best_files}, {EDITABLE: rec.train_py, **mine}))
                return self.finish(rec, result, Decision("keep", evidence, decision.runs, best), keep_commit=sha,
                                   t0=t0)
        # A clean merge: the combination never ran. Run it on the newer best; only its own figures decide.
        self.view.message(f"experiment {rec.number}: beat its starting point while experiment {best.number} was "
                          "kept; its change applies cleanly on the new best, so the combination runs now")
        assert files is not None
        sha = self.commit(slot, best_commit, merged, rec.description, files)
        rec = self.ledger.update(rec.id, train_py=merged, files=files, parent_commit=best_commit, commit_sha=sha,
                                 diff=vcs.diff_files({EDITABLE: best_src, **best_files}, {EDITABLE: merged, **files}),
                                 evidence={"rebased": {"from": rec.parent_commit, "runs": decision.runs}})
        run_dir = run_dir.with_name(f"{run_dir.name}-rebase{rebases + 1}")
        result = self.run(rec, merged, run_dir, slot)
        decision = self.decider.decide(rec, result, run_dir,
                                       lambda src, d, runs, at=None: self.run(rec, src, d, slot, runs, at))
        decision.evidence["rebased"] = {"from": rec.started_from, "runs_before": rec.evidence["rebased"]["runs"]}
        return self.settle(rec, result, decision, slot, run_dir, t0, rebases + 1)

    def finish(self, rec: ExperimentRecord, result: RunResult, decision: Decision, keep_commit: str | None = None,
               t0: float | None = None, reason: str = "") -> ExperimentRecord:
        with self._spent_lock:  # every run of it: seed repeats, a re-measured best, a rebase, lost runs
            run_seconds = self._spent.pop(rec.id, result.wall_seconds or 0.0)
        values: dict = {"outcome": result.status, "evidence": decision.evidence,
                        "val_bpb": result.val_bpb, "test_bpb": result.test_bpb, "memory_gb": result.memory_gb,
                        "reason": reason or result.reason, "error_tail": result.error_tail if not result.ok else "",
                        "log_path": str(result.log_path or ""), "run_seconds": run_seconds,
                        "training_seconds": result.training_seconds, "eval_seconds": result.eval_seconds,
                        "startup_seconds": result.startup_seconds, "steps": result.steps,
                        "train_tokens": result.train_tokens, "tokens_per_second": result.tokens_per_second,
                        "metrics": {"harness": result.harness, "summary": result.summary,
                                    "curve": compact_curve(result.curve)}}
        if t0 is not None:
            values["overhead_seconds"] = max(0.0, time.monotonic() - t0 - run_seconds)
        if decision.status != "keep" and decision.runs:
            values["val_bpb"] = sum(decision.runs) / len(decision.runs)
        rec = self.ledger.finish(rec.id, decision.status, keep_commit=keep_commit, **values)
        self.view.experiment_done(rec, self.ledger.best_val())
        return rec


def _exclude(ws: Path, pattern: str) -> None:
    """Keep the workers' checkouts out of `git status` of the workspace (its .gitignore is the user's)."""
    path = Path(vcs.git(ws, "rev-parse", "--git-path", "info/exclude").strip())
    path = path if path.is_absolute() else ws / path
    text = path.read_text() if path.exists() else ""
    if pattern not in text.splitlines():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + ("" if text.endswith("\n") or not text else "\n") + pattern + "\n")
