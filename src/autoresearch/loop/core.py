"""The research loop: propose -> check -> commit -> run -> decide -> record, until a limit; and resume.

Loop ties the rooms together: the proposer (agents, waits after their errors), the decider (policy, seed
repeats), the ledger (journal + git, the single writer) and the scheduler (workers side by side on the backend's
slots). Git, the journal and results.tsv stay consistent at every instant that matters: each step is recorded in
the journal before or after its git action in an order that `loop/resume.py` can finish from any interruption
(even kill -9), by resetting the branch to the best kept commit and re-running every experiment that was in flight.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

from autoresearch import vcs
from autoresearch.agents.base import Agent, AgentError
from autoresearch.backends import Backend, BackendError, Slot, make_backend
from autoresearch.loop import results, resume
from autoresearch.loop.decider import Decider, TestWanted
from autoresearch.loop.journal import ExperimentRecord, Journal, RunRecord, SessionRecord
from autoresearch.loop.ledger import Ledger
from autoresearch.loop.options import Limits, LoopConfig, OptionsError, default_tag, resume_command
from autoresearch.loop.policy import make_policy
from autoresearch.loop.proposer import Proposer
from autoresearch.loop.scheduler import BaselineFailed, RunsLost, Scheduler
from autoresearch.run.supervisor import Progress, protect_orchestrator
from autoresearch.settings import Settings
from autoresearch.task.store import workspace_metric
from autoresearch.workspace import EDITABLE, JOURNAL_FILE, RUN_DIR

RESULTS_FILE = results.RESULTS_FILE


__all__ = ["Limits", "Loop", "LoopConfig", "LoopError", "TestWanted", "View", "default_tag", "open_journal"]


class LoopError(Exception):
    """The loop cannot start or go on; the message says how to fix it."""


class View:
    """What the loop reports as it goes. The terminal UI subclasses it; tests use it as is (silent)."""

    def message(self, text: str) -> None: ...
    def experiment_started(self, rec: ExperimentRecord, budget: float) -> None: ...
    def line(self, text: str, rec: ExperimentRecord | None = None) -> None: ...
    def progress(self, p: Progress, rec: ExperimentRecord | None = None) -> None: ...
    def experiment_done(self, rec: ExperimentRecord, best: float | None) -> None: ...


def branch_name(tag: str) -> str:
    return f"autoresearch/{tag}"


def open_journal(workspace: Path) -> Journal:
    return Journal(workspace / RUN_DIR / JOURNAL_FILE)


class Loop:
    """A research run: its branch of record, its journal, its agents and its workers (loop/scheduler.py)."""

    def __init__(self, workspace: Path, settings: Settings, agent: Agent | Sequence[Agent], config: LoopConfig,
                 view: View | None = None, backend: Backend | None = None) -> None:
        self.ws = workspace
        self.config = config
        try:
            self.options = config.options()  # a bad limit is refused before anything is created
        except OptionsError as e:
            raise LoopError(str(e)) from e
        self.agents: list[Agent] = [agent] if isinstance(agent, Agent) else list(agent)
        if not self.agents:
            raise LoopError("no agent given")
        self.agent = self.agents[0]
        self._view = _Serialized(view or View())
        self.metric = workspace_metric(workspace)  # the task's figure and direction (val_bpb, lower, for the GPT)
        self.policy = make_policy(config.policy, sign=self.metric.sign, **({"sigmas": config.sigmas, "noise_runs": config.noise_runs,
                                                       "confirm_runs": config.confirm_runs}
                                                    if config.policy == "noise" else {}))
        self.journal = open_journal(workspace)
        self.tag = config.tag
        self.branch = branch_name(config.tag)
        self.ledger = Ledger(workspace, self.journal, self.tag, self.branch, on_note=self.view.message)
        self.stop = threading.Event()
        self.proposer = Proposer(workspace, settings, self.ledger, self.stop, self.view.message)
        self.decider = Decider(self.policy, settings, self.ledger, self.view.message)
        self._settings = settings
        self._backend = backend
        self.started = time.monotonic()
        self.run: RunRecord | None = None
        self.session: SessionRecord | None = None
        self.exit_code = 0  # of `run`: 130 after Ctrl-C, 143 after SIGTERM, 1 after an agent error or lost runs
        self.notices: list[str] = []  # what start() found and did, for the user (the view comes after it)

    @property
    def view(self):
        return self._view

    @view.setter
    def view(self, value: View) -> None:
        """The `run` command puts its live view in after the loop is made: the proposer, the decider and the
        ledger, which were handed the view's methods, then talk to the new one."""
        self._view.swap(value)

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, value: Settings) -> None:  # a bench may tighten limits between experiments
        self._settings = self.proposer.settings = self.decider.settings = value

    @property
    def policy(self):
        return self._policy

    @policy.setter
    def policy(self, value) -> None:
        self._policy = value
        if hasattr(self, "decider"):
            self.decider.policy = value

    @property
    def sleep(self):
        return self.proposer.sleep

    @sleep.setter
    def sleep(self, fn) -> None:  # tests replace the waits between agent retries
        self.proposer.sleep = fn

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            try:
                self._backend = make_backend(self.config.backend, profile=self.settings.profile,
                                             workers=self.config.workers, per_device=self.config.per_device,
                                             address=self.config.address)
            except BackendError as e:
                raise LoopError(str(e)) from e
        return self._backend

    def agent_for(self, slot: Slot) -> Agent:
        """Workers take the agents in turn: with `--agent A --agent B`, worker 1 asks A, worker 2 B, worker 3 A."""
        return self.agents[(slot.index - 1) % len(self.agents)]

    # -- start and resume ------------------------------------------------------------------------------------------

    def start(self) -> list[str]:
        """Create the run's branch (new tag) or check it out and reconcile (resume). Returns what the user should
        be told about it (also kept in `notices`)."""
        if not vcs.is_repo(self.ws):
            raise LoopError(f"{self.ws} is not a git repository; create the workspace with `autoresearch init`")
        protect_orchestrator()
        vcs.clear_stale_lock(self.ws)
        self.backend  # noqa: B018 - a bad --workers or --backend is refused before anything is created
        existing = self.journal.run(self.tag)
        if self.config.resume:
            if existing is None or not vcs.branch_exists(self.ws, self.branch):
                raise LoopError(f"nothing to resume: no run tagged {self.tag!r} (see `autoresearch status --all`)")
            self.run = existing
            self.notices += resume.resume(self.ledger)
        else:
            self._create()
        self.session = self.journal.start_session(self.tag, self.options.to_dict())
        return self.notices

    def _create(self) -> None:
        existing = self.journal.run(self.tag)
        if existing is not None or vcs.branch_exists(self.ws, self.branch):
            raise LoopError(f"branch {self.branch} already exists: continue it with `autoresearch run --resume "
                            f"--tag {self.tag}`, or start a new run with another --tag")
        dirty = [e for e in vcs.status_porcelain(self.ws) if e[3:] == EDITABLE or e[:2] != "??"]
        if dirty:
            raise LoopError("the workspace has uncommitted changes (" + ", ".join(e[3:] for e in dirty) +
                            "): commit or discard them first, so the baseline is what git holds")
        vcs.create_branch(self.ws, self.branch)
        self.run = self.journal.create_run(self.tag, self.branch, vcs.head(self.ws),
                                           " + ".join(dict.fromkeys(a.name for a in self.agents)), self.policy.name,
                                           asdict(self.settings))
        self.ledger.update_info(metric={"name": self.metric.name, "goal": self.metric.goal})
        self.notices += results.publish(self.journal, self.tag, self.ws)

    def best_commit(self) -> str:
        return self.ledger.best_commit()

    def best_val(self) -> float | None:
        return self.ledger.best_val()

    # -- the loop --------------------------------------------------------------------------------------------------

    def run_until_limit(self) -> str:
        """Run experiments on every worker until a limit, a fatal agent error or Ctrl-C. Returns why it stopped."""
        assert self.run is not None, "call start() first"
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        again = f"resume with `{resume_command(self.tag, self.options)}`"
        reason = "stopped"
        try:
            Scheduler(self).drive()
            reason = self.limit_reached() or "stopped"
        except KeyboardInterrupt as e:
            terminated = isinstance(e, Terminated)
            reason = f"interrupted ({'SIGTERM' if terminated else 'Ctrl-C'}); {again}"
            self.exit_code = 143 if terminated else 130  # 128 + the signal, as a shell reports it
        except AgentError as e:
            reason = f"agent error: {e}"
            self.exit_code = 1
        except (RunsLost, BaselineFailed) as e:
            reason = f"{e}; {again}"
            self.exit_code = 1
        except BaseException:
            reason = ""
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.backend.close()
            reason = reason or f"the orchestrator crashed (see the traceback); {again}"
            self.ledger.restore_best()
            self.journal.update_run(self.tag, state="stopped", stop_reason=reason)
            self.ledger.write_results()
            if self.session is not None:
                self.journal.end_session(self.session.id)
        return reason

    def one_experiment(self) -> ExperimentRecord:
        """One idea to its decision on the first worker, in this thread (benches step through a run so): the
        baseline first, then one proposal of the first agent."""
        scheduler = Scheduler(self)
        scheduler.slots = scheduler.slots[:1]
        scheduler.prepare_worktrees()
        scheduler.jobs.leftover = [e for e in self.journal.all_unfinished(self.tag) if e.number > 1]
        try:
            if not any(e.number == 1 for e in self.ledger.experiments(done_only=True)):
                scheduler.baseline()
                return next(e for e in self.ledger.experiments(done_only=True) if e.number == 1)
            slot = scheduler.slots[0]
            rec = scheduler.next_job(slot) or self.proposer.propose(
                self.agent, scheduler.checkout(slot), None, 0, None, slot.index, slot.device)
            return scheduler.idea(rec, slot, self.agent)
        finally:
            scheduler.release_worktrees()
            self.ledger.restore_best()

    def limit_reached(self, busy: Iterable[int | None] = ()) -> str | None:
        """Why no new experiment may start, or None. `busy`: the ideas the workers hold now (None: still being
        proposed); they count toward --max-experiments."""
        lim = self.config.limits
        busy = list(busy)
        done = {e.number for e in self.journal.final_attempts(self.tag)}
        started = len(done | {n for n in busy if n is not None}) + sum(1 for n in busy if n is None)
        if lim.max_experiments is not None and started >= lim.max_experiments:
            return (f"reached --max-experiments {lim.max_experiments} (to go on: `autoresearch run --resume "
                    f"--tag {self.tag} --more N` for N more)")
        if lim.max_hours is not None and time.monotonic() - self.started >= lim.max_hours * 3600:
            return f"reached --max-hours {lim.max_hours:g} (of this session)"
        if lim.max_cost is not None and self.journal.totals(self.tag)["cost"] >= lim.max_cost:
            return f"reached --max-cost ${lim.max_cost:.2f} (to go on: resume with a higher --max-cost)"
        return None

    # -- what the harness is told about this workspace -------------------------------------------------------------

    def human_baseline(self, rec: ExperimentRecord) -> bool:
        """Whether the baseline's source is a human's, so its compile cache may seed the next runs': the train.py
        committed when the run started, unless an agent proposed that very text in this workspace (a run started
        from an agent's commit). See run/compile_cache.py."""
        return rec.number == 1 and rec.agent == "baseline" and not self.journal.proposed_by_agent(rec.train_py)

    def _human_figures(self) -> list[dict]:
        """The scorer's figures of this run's human-written runs (the baseline and its repeats), latest first: the
        evaluation's speed comes from them only, since an agent's run could look slow on purpose to buy itself a
        longer evaluation (time it could train in)."""
        return [h for e in reversed(self.ledger.experiments(done_only=True)) if self.human_baseline(e)
                if (h := (e.metrics or {}).get("harness") or {})]

    def eval_rate(self) -> float | None:
        """Evaluation tokens/s on this workspace: the slowest of the last five human-written runs (None before)."""
        rates = [((h.get("val_tokens") or 0) + (h.get("test_tokens") or 0)) / h["eval_seconds"]
                 for h in self._human_figures()[:5] if h.get("eval_seconds") and h.get("val_tokens")]
        return min(rates) if rates else None

    def first_answer_limit(self) -> float | None:
        """Seconds an agent's run may take for the scorer's first call: 10 s plus three times the slowest first
        answer of the human-written runs (it includes compiling the model for evaluation); None before any."""
        firsts = [h["first_answer_seconds"] for h in self._human_figures() if h.get("first_answer_seconds")]
        return 10.0 + 3.0 * max(firsts) if firsts else None

    def noise_sigma(self) -> float | None:
        return self.ledger.noise_sigma()


class _Serialized:
    """The view, called from every worker's thread: one call at a time. Its methods look the view up when they are
    called, so a view swapped in later (swap) is the one every holder of a method reaches."""

    def __init__(self, view: View) -> None:
        self._view, self._lock = view, threading.Lock()

    def swap(self, view: View) -> None:
        with self._lock:
            self._view = view._view if isinstance(view, _Serialized) else view

    def __getattr__(self, name: str):
        if not callable(getattr(self._view, name)):
            return getattr(self._view, name)

        def call(*args, **kwargs):
            with self._lock:
                return getattr(self._view, name)(*args, **kwargs)

        return call


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop as on Ctrl-C, and exit with its own status."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


