"""The research loop: propose -> check -> commit -> run -> decide -> record, until a limit; and resume.

Git, the journal and results.tsv stay consistent at every instant that matters: each step is recorded in the
journal before or after its git action in an order that `reconcile` can finish from any interruption (even
kill -9), by resetting the branch to the best kept commit and re-running the experiment that was in flight.
"""

from __future__ import annotations

import ast
import signal
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from autoresearch.agents.base import Agent, AgentError, Context, Failure, HistoryEntry, Proposal, Usage
from autoresearch.loop import load, results, resume, vcs
from autoresearch.loop.journal import ExperimentRecord, Journal, RunRecord, SessionRecord
from autoresearch.loop.options import Limits, LoopConfig, OptionsError, resume_command
from autoresearch.loop.policy import GreedyPolicy, NoisePolicy, make_policy, noise_sigma
from autoresearch.run import guard
from autoresearch.run.compile_cache import SEED_DIR
from autoresearch.run.supervisor import (
    Experiment,
    Progress,
    RunResult,
    protect_orchestrator,
    run_experiment,
)
from autoresearch.settings import Settings
from autoresearch.workspace import EDITABLE, JOURNAL_FILE, RUN_DIR, harness_surface, read_constants, set_constants

RESULTS_FILE = results.RESULTS_FILE
FIXABLE = ("crash", "oom", "rejected")  # outcomes an agent may repair in a follow-up attempt
AGENT_BACKOFF = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0)  # waits after non-fatal agent errors; the last repeats


__all__ = ["Limits", "Loop", "LoopConfig", "LoopError", "TestWanted", "View", "default_tag", "open_journal"]


class LoopError(Exception):
    """The loop cannot start or go on; the message says how to fix it."""


class View:
    """What the loop reports as it goes. The terminal UI subclasses it; tests use it as is (silent)."""

    def message(self, text: str) -> None: ...
    def experiment_started(self, rec: ExperimentRecord, budget: float) -> None: ...
    def line(self, text: str) -> None: ...
    def progress(self, p: Progress) -> None: ...
    def experiment_done(self, rec: ExperimentRecord, best: float | None) -> None: ...


def default_tag() -> str:
    return datetime.now().strftime("%b%d").lower()  # e.g. nov21, as the original names its branches


def branch_name(tag: str) -> str:
    return f"autoresearch/{tag}"


def open_journal(workspace: Path) -> Journal:
    return Journal(workspace / RUN_DIR / JOURNAL_FILE)


class Loop:
    def __init__(self, workspace: Path, settings: Settings, agent: Agent, config: LoopConfig,
                 view: View | None = None) -> None:
        self.ws = workspace
        self.settings = settings
        self.agent = agent
        self.config = config
        try:
            self.options = config.options()  # a bad limit is refused before anything is created
        except OptionsError as e:
            raise LoopError(str(e)) from e
        self.view = view or View()
        self.policy = make_policy(config.policy, **({"sigmas": config.sigmas, "noise_runs": config.noise_runs,
                                                       "confirm_runs": config.confirm_runs}
                                                    if config.policy == "noise" else {}))
        self.journal = open_journal(workspace)
        self.tag = config.tag
        self.branch = branch_name(config.tag)
        self.started = time.monotonic()
        self.run: RunRecord | None = None
        self.session: SessionRecord | None = None
        self.exit_code = 0  # of the `run` command: 130 after Ctrl-C, 143 after SIGTERM, 1 after an agent error
        self.notices: list[str] = []  # what start() found and did, for the user (the view comes after it)
        self.sleep = time.sleep  # waits between agent retries (tests replace it)

    # -- start and resume ------------------------------------------------------------------------------------------

    def start(self) -> list[str]:
        """Create the run's branch (new tag) or check it out and reconcile (resume). Returns what the user should
        be told about it (also kept in `notices`)."""
        if not vcs.is_repo(self.ws):
            raise LoopError(f"{self.ws} is not a git repository; create the workspace with `autoresearch init`")
        protect_orchestrator()
        vcs.clear_stale_lock(self.ws)
        existing = self.journal.run(self.tag)
        if self.config.resume:
            if existing is None or not vcs.branch_exists(self.ws, self.branch):
                raise LoopError(f"nothing to resume: no run tagged {self.tag!r} (see `autoresearch status --all`)")
            self.run = existing
            self.notices += resume.resume(self)
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
        self.run = self.journal.create_run(self.tag, self.branch, vcs.head(self.ws), self.agent.name,
                                           self.policy.name, asdict(self.settings))
        self.notices += results.publish(self.journal, self.tag, self.ws)

    def best_commit(self) -> str:
        best = self.journal.best(self.tag)
        assert self.run is not None
        return (best.commit_sha or best.parent_commit) if best else self.run.base_commit

    def best_val(self) -> float | None:
        best = self.journal.best(self.tag)
        return _mean_of(best) if best else None

    # -- the loop --------------------------------------------------------------------------------------------------

    def run_until_limit(self) -> str:
        """Run experiments until a limit, a fatal agent error or Ctrl-C. Returns why it stopped."""
        assert self.run is not None, "call start() first"
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        again = f"resume with `{resume_command(self.tag, self.options)}`"
        reason = "stopped"
        try:
            while (reason := self.limit_reached()) is None:
                self.one_experiment()
        except KeyboardInterrupt as e:
            terminated = isinstance(e, Terminated)
            reason = f"interrupted ({'SIGTERM' if terminated else 'Ctrl-C'}); {again}"
            self.exit_code = 143 if terminated else 130  # 128 + the signal, as a shell reports it
            self._restore_best()
        except AgentError as e:
            reason = f"agent error: {e}"
            self.exit_code = 1
            self._restore_best()
        finally:
            signal.signal(signal.SIGTERM, previous)
            reason = reason or f"the orchestrator crashed (see the traceback); {again}"
            self.journal.update_run(self.tag, state="stopped", stop_reason=reason)
            self._write_results()
            if self.session is not None:
                self.journal.end_session(self.session.id)
        return reason

    def limit_reached(self) -> str | None:
        lim = self.config.limits
        done = len(self.journal.final_attempts(self.tag))
        if lim.max_experiments is not None and done >= lim.max_experiments:
            return (f"reached --max-experiments {lim.max_experiments} (to go on: resume with a higher "
                    "--max-experiments)")
        if lim.max_hours is not None and time.monotonic() - self.started >= lim.max_hours * 3600:
            return f"reached --max-hours {lim.max_hours:g} (of this session)"
        if lim.max_cost is not None and self.journal.totals(self.tag)["cost"] >= lim.max_cost:
            return f"reached --max-cost ${lim.max_cost:.2f} (to go on: resume with a higher --max-cost)"
        return None

    def one_experiment(self) -> ExperimentRecord:
        """One idea, from proposal to decision, with up to `fix_attempts` repairs of its own crashes."""
        pending = self.journal.unfinished(self.tag)
        if pending is not None:
            rec = pending
        else:
            number = self._next_number()
            if number == 1:
                source = (self.ws / EDITABLE).read_text()
                rec = self.journal.add_experiment(self.tag, number, 0, "baseline", source, self.best_commit(),
                                                  agent="baseline")
            else:
                rec = self._propose(number, attempt=0, failure=None)
        while True:
            rec = self._execute(rec)
            if not (rec.status in ("crash", "rejected") and rec.outcome in FIXABLE and rec.number > 1
                    and rec.attempt < self.config.fix_attempts and getattr(self.agent, "can_fix", True)):
                return rec
            failure = Failure(description=rec.description, status=rec.outcome or rec.status or "crash",
                              reason=rec.reason, error_tail=rec.error_tail, train_py=rec.train_py)
            self.view.message(f"experiment {rec.number}: {rec.outcome}; asking the agent to fix it "
                              f"(attempt {rec.attempt + 1} of {self.config.fix_attempts})")
            rec = self._propose(rec.number, attempt=rec.attempt + 1, failure=failure)

    def _next_number(self) -> int:
        numbers = [e.number for e in self.journal.experiments(self.tag)]
        return max(numbers, default=0) + 1

    # -- steps -----------------------------------------------------------------------------------------------------

    def _propose(self, number: int, attempt: int, failure: Failure | None) -> ExperimentRecord:
        """Ask the agent, waiting out non-fatal errors (the loop never dies of a provider error)."""
        best_source = vcs.show(self.ws, self.best_commit(), EDITABLE)
        ctx = Context(program=_read(self.ws / "program.md"), train_py=best_source,
                      harness_surface=harness_surface(), history=self._history(), best_val_bpb=self.best_val(),
                      time_budget=self.settings.time_budget, failure=failure, workspace=self.ws, experiment=number,
                      max_seq_len=self.settings.max_seq_len)
        if failure is not None:  # a command agent edits the file on disk: show it the failed attempt
            (self.ws / EDITABLE).write_text(failure.train_py)
        before = set(vcs.status_porcelain(self.ws))
        for wait in _backoff():
            t0 = time.monotonic()
            try:
                proposal = self.agent.propose(ctx)
                break
            except AgentError as e:
                usage = getattr(e, "usage", None)
                if usage:
                    self._charge_failed_call(number, usage)
                if e.fatal:
                    raise
                self.view.message(f"agent error (waiting {wait:.0f}s, then trying again): {e}")
                _restore_editable(self.ws, self.best_commit(), before)
                self.sleep(wait)
        agent_seconds = time.monotonic() - t0
        rec = self.journal.add_experiment(
            self.tag, number, attempt, _one_line(proposal.description), proposal.train_py, self.best_commit(),
            rationale=proposal.rationale, agent=self.agent.name, agent_seconds=agent_seconds,
            input_tokens=proposal.usage.input_tokens, output_tokens=proposal.usage.output_tokens,
            cost_usd=proposal.usage.cost_usd, diff=vcs.diff_texts(best_source, proposal.train_py))
        rejection = self._check(proposal, best_source, before)
        if rejection:
            self._finish(rec.id, status="rejected", outcome="rejected", reason=rejection)
            _remove_new_files(self.ws, before)
            return self.journal.get(rec.id)
        return rec

    def _check(self, proposal: Proposal, best_source: str, before: set[str]) -> str:
        """Why the proposal cannot run ('' if it can): only train.py may change, and it must parse."""
        if proposal.train_py == best_source:
            return f"no change: the proposed {EDITABLE} is the current best"
        changed = [e[3:] for e in set(vcs.status_porcelain(self.ws)) - before if e[3:] != EDITABLE]
        if changed:
            return f"the agent changed files other than {EDITABLE}: {', '.join(sorted(changed))}"
        try:
            ast.parse(proposal.train_py, filename=EDITABLE)
        except SyntaxError as e:
            return f"{EDITABLE} does not parse: {e.msg} (line {e.lineno})"
        if not proposal.description.strip():
            return "the proposal has no description"
        problems = guard.check_source(proposal.train_py, self.settings.allowed_imports)
        if problems:
            return "; ".join(problems)
        return ""

    def _execute(self, rec: ExperimentRecord) -> ExperimentRecord:
        if rec.state == "done":  # rejected at proposal time
            return rec
        t0 = time.monotonic()
        best = self.best_commit()
        if vcs.head(self.ws) != best:
            vcs.reset_hard(self.ws, best)
        (self.ws / EDITABLE).write_text(rec.train_py)
        sha = best
        if rec.number > 1 and vcs.status_porcelain(self.ws):
            sha = vcs.commit_file(self.ws, EDITABLE, _one_line(rec.description))
        run_dir = self.ws / RUN_DIR / "runs" / self.tag / f"{rec.number:04d}-{rec.attempt}"
        self.journal.update(rec.id, state="running", commit_sha=sha, run_dir=str(run_dir), parent_commit=best)
        rec = self.journal.get(rec.id)
        self.view.experiment_started(rec, self.settings.time_budget)
        overhead = time.monotonic() - t0
        result = self._run(rec, rec.train_py, run_dir)
        t1 = time.monotonic()
        status, evidence = self._decide(rec, result, run_dir)
        self._finish(rec.id, status=status, outcome=result.status, result=result, evidence=evidence,
                     overhead_before=overhead, t_after=t1)
        rec = self.journal.get(rec.id)
        self.view.experiment_done(rec, self.best_val())
        return rec

    def _run(self, rec: ExperimentRecord, source: str, run_dir: Path, runs: list[float] | None = None) -> RunResult:
        """One run of `source`; `runs`: the val_bpb of this change's earlier runs (seed repeats), if any."""
        best = self.journal.best(self.tag)
        wants_test = TestWanted(self.policy, self._reference(best).val_bpb if best else None, tuple(runs or ()))
        return run_experiment(Experiment(source=source, workspace=self.ws, settings=self.settings, run_dir=run_dir,
                                         timeout=self.config.timeout, cache=self.config.cache,
                                         compile_cache=self.ws / RUN_DIR / SEED_DIR,
                                         fills_compile_cache=self._human_baseline(rec),
                                         eval_rate=self._eval_rate(), wants_test=wants_test,
                                         first_answer_limit=None if self._human_baseline(rec) else
                                         self._first_answer_limit()),
                              on_line=self.view.line, on_progress=self.view.progress)

    def _human_baseline(self, rec: ExperimentRecord) -> bool:
        """Whether the baseline's source is a human's, so its compile cache may seed the next runs': the train.py
        committed when the run started, unless an agent proposed that very text in this workspace (a run started
        from an agent's commit). See run/compile_cache.py."""
        return rec.number == 1 and rec.agent == "baseline" and not self.journal.proposed_by_agent(rec.train_py)

    def _human_figures(self) -> list[dict]:
        """The scorer's figures of this run's human-written runs (the baseline and its repeats), latest first: the
        evaluation's speed comes from them only, since an agent's run could look slow on purpose to buy itself a
        longer evaluation (time it could train in)."""
        return [h for e in reversed(self.journal.experiments(self.tag, done_only=True)) if self._human_baseline(e)
                if (h := (e.metrics or {}).get("harness") or {})]

    def _eval_rate(self) -> float | None:
        """Evaluation tokens/s on this workspace: the slowest of the last five human-written runs (None before)."""
        rates = [((h.get("val_tokens") or 0) + (h.get("test_tokens") or 0)) / h["eval_seconds"]
                 for h in self._human_figures()[:5] if h.get("eval_seconds") and h.get("val_tokens")]
        return min(rates) if rates else None

    def _first_answer_limit(self) -> float | None:
        """Seconds an agent's run may take for the scorer's first call: 10 s plus three times the slowest first
        answer of the human-written runs (it includes compiling the model for evaluation); None before any."""
        firsts = [h["first_answer_seconds"] for h in self._human_figures() if h.get("first_answer_seconds")]
        return 10.0 + 3.0 * max(firsts) if firsts else None

    def _decide(self, rec: ExperimentRecord, result: RunResult, run_dir: Path) -> tuple[str, dict]:
        """Decide on a finished run; under the noise policy, repeat runs with other seeds where it matters; under
        a time budget, re-measure the best when the machine's load has moved (see load.py)."""
        if not result.ok:
            return ("rejected" if result.status == "rejected" else "crash"), {"why": result.reason}
        runs, tests, speeds = [result.val_bpb], [result.test_bpb], [result.tokens_per_second]
        best = self.journal.best(self.tag)
        ref = self._reference(best) if best else None
        sigma = self.noise_sigma()
        extra = self.policy.noise_runs if best is None else 0  # the baseline: measure the noise floor
        decision = None
        while True:
            for _ in range(extra):
                seed_run = self._run(rec, _with_seed(rec.train_py, len(runs)), run_dir.with_name(
                    f"{run_dir.name}-seed{len(runs)}"), runs=runs)
                if not seed_run.ok:
                    return "crash", {"why": f"a repeat with another seed failed: {seed_run.reason}", "runs": runs}
                runs.append(seed_run.val_bpb)
                tests.append(seed_run.test_bpb)
                speeds.append(seed_run.tokens_per_second)
            if best is None and len(runs) > 1:
                sigma = noise_sigma(runs)
            final = extra > 0 or best is None or self.policy.confirm_runs == 0
            decision = self.policy.decide(runs, ref.val_bpb if ref else None, ref.runs if ref else 1, sigma,
                                          final=final)
            if not decision.rerun:
                break
            extra = self.policy.confirm_runs
            self.view.message(f"experiment {rec.number}: marginal gain; measuring again with "
                              f"{extra} other seed(s)")
        evidence = {**decision.evidence, "tests": tests, "tps": speeds}
        if decision.keep and ref is not None and not self.settings.token_budget:
            decision, evidence = self._check_load(rec, best, ref, runs, speeds, sigma, run_dir, decision, evidence)
        if best is None and len(runs) > 1:
            evidence["sigma"] = sigma
            noise = {"runs": runs, "std": sigma, "mean": statistics.fmean(runs), "tests": tests, "tps": speeds}
            self._update_info(noise=noise)
        result.val_bpb = statistics.fmean(runs)
        result.test_bpb = statistics.fmean(t for t in tests if t is not None) if any(t is not None for t in tests) \
            else None
        return ("keep" if decision.keep else "discard"), evidence

    def _reference(self, best: ExperimentRecord) -> load.Reference:
        """The best's figures to compare against: its last re-measurement, else what it scored when kept."""
        commit = best.commit_sha or best.parent_commit
        saved = self._info().get("reference")
        if saved and saved.get("commit") == commit:
            return load.Reference(**saved)
        mean = _mean_of(best)
        assert mean is not None
        return load.Reference(commit=commit, val_bpb=mean, runs=len(best.evidence.get("runs", [1])),
                              tokens_per_second=load.mean_speed(best.evidence.get("tps", [best.tokens_per_second])))

    def _check_load(self, rec, best, ref, runs, speeds, sigma, run_dir, decision, evidence):
        """A change about to be kept trained at another speed than the best did: run the best again now."""
        speed = load.mean_speed(speeds)
        tol = load.tolerance(((self._info().get("noise") or {}).get("tps")) or [])
        if not load.shifted(ref.tokens_per_second, speed, tol):
            return decision, evidence
        self.view.message(f"experiment {rec.number}: trained at {_speed(speed)} tokens/s, the best at "
                          f"{_speed(ref.tokens_per_second)} (more than {tol:.0%} apart, or unknown): the load may have "
                          "changed; running the best again under the current load before deciding")
        fresh = self._run(rec, best.train_py, run_dir.with_name(f"{run_dir.name}-ref"))
        if not fresh.ok:  # cannot tell load from code: keep the decision, and say so
            return decision, {**evidence, "load_flag": f"speed moved by more than {tol:.0%}; re-measuring the "
                                                        f"best failed: {fresh.reason}"}
        new_ref = load.Reference(commit=ref.commit, val_bpb=fresh.val_bpb, runs=1,
                                 tokens_per_second=fresh.tokens_per_second, remeasured_at=rec.number)
        self._update_info(reference=new_ref.to_dict())
        decision = self.policy.decide(runs, new_ref.val_bpb, 1, sigma, final=True)
        return decision, {**decision.evidence, "tests": evidence["tests"], "tps": speeds,
                          "remeasured": {"before": ref.to_dict(), "after": new_ref.to_dict(), "tolerance": tol}}

    def _info(self) -> dict:
        run = self.journal.run(self.tag)
        return (run.info or {}) if run else {}

    def _update_info(self, **values) -> None:
        self.journal.update_run(self.tag, info={**self._info(), **values})

    def noise_sigma(self) -> float | None:
        run = self.journal.run(self.tag)
        noise = (run.info or {}).get("noise") if run else None
        return noise.get("std") if noise else None

    def _finish(self, exp_id: int, status: str, outcome: str, reason: str = "", result: RunResult | None = None,
                evidence: dict | None = None, overhead_before: float = 0.0, t_after: float | None = None) -> None:
        """Record the decision (one transaction), then make git follow it, then rewrite results.tsv."""
        values: dict = {"state": "done", "status": status, "outcome": outcome, "finished_at": time.time(),
                        "evidence": evidence or {}}
        if result is not None:
            values.update(
                val_bpb=result.val_bpb, test_bpb=result.test_bpb, memory_gb=result.memory_gb,
                reason=result.reason, error_tail=result.error_tail if not result.ok else "",
                log_path=str(result.log_path or ""), run_seconds=result.wall_seconds,
                training_seconds=result.training_seconds, eval_seconds=result.eval_seconds,
                startup_seconds=result.startup_seconds, steps=result.steps, train_tokens=result.train_tokens,
                tokens_per_second=result.tokens_per_second,
                metrics={"harness": result.harness, "summary": result.summary})
        else:
            values["reason"] = reason
        self.journal.update(exp_id, **values)
        if status != "keep":
            self._restore_best()
        self._write_results()
        if t_after is not None:
            self.journal.update(exp_id, overhead_seconds=overhead_before + time.monotonic() - t_after)

    def _restore_best(self) -> None:
        vcs.reset_hard(self.ws, self.best_commit())

    def _charge_failed_call(self, number: int, usage: Usage) -> None:
        """A failed agent call still costs money: record it so --max-cost sees it."""
        self.journal.add_charge(self.tag, number, usage.input_tokens, usage.output_tokens, usage.cost_usd)

    def _history(self) -> tuple[HistoryEntry, ...]:
        return tuple(
            HistoryEntry(number=e.number, status=e.status or "crash", description=e.description, val_bpb=e.val_bpb,
                         memory_gb=e.memory_gb, reason=e.reason if e.status in ("crash", "rejected") else "",
                         diff=e.diff, train_py=e.train_py)
            for e in self.journal.experiments(self.tag, done_only=True) if e.status is not None
        )

    def _write_results(self) -> None:
        for note in results.publish(self.journal, self.tag, self.ws):
            self.view.message(note)


@dataclass(frozen=True)
class TestWanted:
    """The loop's answer to the harness's "score the held-out test split?" for one run (Experiment.wants_test).

    Yes for the baseline and its seed repeats (there is no best yet), and for a run whose val_bpb, with this
    change's earlier runs, could still be kept by the policy; no otherwise: a discarded change's test_bpb is never
    used, and scoring it would double the evaluation. A plain value, so an Experiment can still be shipped.
    """

    __test__ = False  # not a pytest test class, whatever its name

    policy: GreedyPolicy | NoisePolicy
    best: float | None  # the best kept mean when the run started; None: this is the baseline
    runs: tuple[float, ...] = ()  # val_bpb of this change's earlier runs (seed repeats)

    def __call__(self, val_bpb: float) -> bool:
        return self.policy.could_keep([*self.runs, val_bpb], self.best)


def _speed(tps: float | None) -> str:
    return "an unknown number of" if tps is None else f"{tps:,.0f}"


def _mean_of(rec: ExperimentRecord) -> float | None:
    return rec.evidence.get("mean", rec.val_bpb) if rec.evidence else rec.val_bpb


def _with_seed(source: str, k: int) -> str:
    """The same change with another seed (when train.py has a SEED constant): what noise looks like."""
    constants = read_constants(source)
    if isinstance(constants.get("SEED"), int):
        return set_constants(source, {"SEED": constants["SEED"] + 1000 * k})
    return source


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop as on Ctrl-C, and exit with its own status."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def _backoff():
    for wait in AGENT_BACKOFF:
        yield wait
    while True:
        yield AGENT_BACKOFF[-1]


def _restore_editable(ws: Path, best: str, before: set[str]) -> None:
    if set(vcs.status_porcelain(ws)) != before:
        vcs.reset_hard(ws, best)
        _remove_new_files(ws, before)


def _remove_new_files(ws: Path, before: set[str]) -> None:
    """Delete untracked files that appeared since `before` (an agent's stray output); the user's stay."""
    for entry in set(vcs.status_porcelain(ws)) - before:
        if entry.startswith("?? "):
            (ws / entry[3:]).unlink(missing_ok=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200] or "unnamed change"


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
