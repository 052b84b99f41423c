"""Measuring train.py variants after a run, for `ablate` and `transfer`: each variant with K seeds on the
workspace's workers, every run recorded in the journal (studies, measurements), and what the difference between
two variants is worth against the noise.

A study reads the run's records and runs sources derived from them. It never moves the branch of record nor
writes results.tsv. It refuses to start beside the run's own loop: both would share the machine, and each would
measure the other's load.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.backends.base import Backend, Slot, join_workers
from autoresearch.loop.decider import with_seed
from autoresearch.loop.journal import ExperimentRecord, Journal, RunRecord
from autoresearch.loop.keeps import keep_order
from autoresearch.loop.liveness import as_seen
from autoresearch.loop.options import DEFAULTS
from autoresearch.loop.policy import NoisePolicy, pooled_sd, t_quantile
from autoresearch.run.compile_cache import SEED_DIR
from autoresearch.run.result import Experiment, RunResult
from autoresearch.settings import Settings
from autoresearch.workspace import JOURNAL_FILE, RUN_DIR

SIGMAS = DEFAULTS.sigmas  # the test's level, as a normal tail in sd: the noise policy's default
RESOLUTION = 1e-6  # figures are recorded to six decimals: a smaller difference is no difference


class StudyError(Exception):
    """A study cannot run (the run is running, nothing was kept, a bad --set); the message says how to fix it."""


@dataclass
class Variant:
    name: str  # best | baseline | without #N
    source: str
    files: dict[str, str] = field(default_factory=dict)  # a task's other editable files ({}: the workspace's)

    @property
    def slug(self) -> str:
        return self.name.replace("without #", "without-")


@dataclass
class Stats:
    """One variant's figures over its seeds; failed runs are listed, not averaged."""

    vals: list[float] = field(default_factory=list)
    tests: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def val(self) -> float | None:
        return statistics.fmean(self.vals) if self.vals else None

    @property
    def test(self) -> float | None:
        return statistics.fmean(self.tests) if self.tests else None

    @classmethod
    def from_dict(cls, data: dict) -> Stats:
        return cls(vals=list(data.get("vals", [])), tests=list(data.get("tests", [])),
                   failed=list(data.get("failed", [])))


@dataclass
class Difference:
    """`a - b` in val_bpb and test_bpb, with the margin each must clear to be told apart from the noise."""

    test: float | None
    val: float | None
    margin_test: float
    margin_val: float
    df_test: int | None = None  # degrees of freedom of the sd behind each margin (None: taken as known)
    df_val: int | None = None

    @property
    def decisive(self) -> float | None:
        """The held-out figure decides; val_bpb only where the test split was not scored."""
        return self.test if self.test is not None else self.val

    @property
    def margin(self) -> float:
        return self.margin_test if self.test is not None else self.margin_val

    def sign(self) -> int:
        """+1: `a` is clearly higher, -1: clearly lower, 0: within the noise."""
        d = self.decisive
        return 0 if d is None or abs(d) <= self.margin else (1 if d > 0 else -1)

    @classmethod
    def between(cls, a: Stats, b: Stats, floor: float | None, groups: list[Stats],
                floor_df: int | None = None) -> Difference:
        """`floor`: the run's noise floor (std of val_bpb over seeds of its baseline), if it measured one, with
        its degrees of freedom; the seeds of `groups` give this study's own spread. The larger counts: a difference
        must clear both, in a t test on that sd (as the noise policy judges a keep)."""
        sigma_val, df_val = _larger((floor, floor_df), pooled([g.vals for g in groups]))
        sigma_test, df_test = _larger((floor, floor_df), pooled([g.tests for g in groups]))
        return cls(test=minus(a.test, b.test), val=minus(a.val, b.val),
                   margin_test=margin(sigma_test, len(a.tests), len(b.tests), df=df_test),
                   margin_val=margin(sigma_val, len(a.vals), len(b.vals), df=df_val), df_test=df_test, df_val=df_val)

    @classmethod
    def from_dict(cls, data: dict) -> Difference:
        return cls(**{k: data.get(k) for k in ("test", "val", "margin_test", "margin_val", "df_test", "df_val")})


def pooled_std(groups: list[list[float]]) -> float | None:
    """The spread of seeds around their own variant's mean, pooled over the variants: run-to-run noise, with
    what the variants change taken out. None with no variant measured twice."""
    return pooled(groups)[0]


def pooled(groups: list[list[float]]) -> tuple[float | None, int | None]:
    """pooled_std with its degrees of freedom (the noise policy's pooled_sd)."""
    sd, df = pooled_sd(groups)
    return sd, (df or None)


def margin(sigma: float | None, n_a: int, n_b: int, df: int | None = None) -> float:
    """How far apart two means of n_a and n_b seeds must be to be told apart from noise: the noise policy's one-sided
    t test, at its level on each side, on `sigma` with `df` degrees of freedom (None: sigma taken as known)."""
    if not sigma or not n_a or not n_b:
        return RESOLUTION
    level = NoisePolicy(sigmas=SIGMAS).level
    critical = t_quantile(1 - level, df) if df else statistics.NormalDist().inv_cdf(1 - level)
    return max(RESOLUTION, critical * sigma * math.sqrt(1 / n_a + 1 / n_b))


def _larger(a: tuple[float | None, int | None], b: tuple[float | None, int | None]) -> tuple[float | None, int | None]:
    known = [x for x in (a, b) if x[0] is not None]
    return max(known, key=lambda x: x[0]) if known else (None, None)


def minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# -- the run a study is about ---------------------------------------------------------------------------------------

@dataclass
class Subject:
    """A run, open on its journal: what a study reads, and where it records."""

    ws: Path
    journal: Journal
    run: RunRecord
    best: ExperimentRecord
    baseline: ExperimentRecord

    @property
    def noise_floor(self) -> float | None:
        noise = (self.run.info or {}).get("noise") or {}
        std = noise.get("std") if isinstance(noise, dict) else None
        return float(std) if isinstance(std, (int, float)) else None

    @property
    def noise_df(self) -> int | None:
        """The noise floor's degrees of freedom: its baseline runs less one (None: not known)."""
        noise = (self.run.info or {}).get("noise") or {}
        runs = noise.get("runs") if isinstance(noise, dict) else None
        return len(runs) - 1 if isinstance(runs, list) and len(runs) > 1 else None

    def keeps(self) -> list[ExperimentRecord]:
        """The changes kept after the baseline, in the order they were decided (each beat the best before it)."""
        return [e for e in keep_order(self.journal.final_attempts(self.run.tag)) if e.number > 1]

    def source_at(self, commit: str) -> str:
        """train.py as it was at a commit of the run: from the journal (no git needed), else from git."""
        for e in self.journal.final_attempts(self.run.tag):
            if e.status == "keep" and (e.commit_sha or e.parent_commit) == commit:
                return e.train_py
        from autoresearch import vcs
        from autoresearch.workspace import EDITABLE

        return vcs.show(self.ws, commit, EDITABLE)

    def files_at(self, commit: str) -> dict[str, str]:
        """A task's editable files other than train.py at a commit of the run ({} for the GPT task)."""
        from autoresearch import vcs
        from autoresearch.task.store import is_task_workspace, workspace_task
        from autoresearch.workspace import EDITABLE

        if not is_task_workspace(self.ws):
            return {}
        task = workspace_task(self.ws)
        return vcs.files_at(self.ws, commit, lambda n: n != EDITABLE and task.is_editable(n))

    def eval_rate(self) -> float | None:
        """Evaluation tokens/s of the baseline run, as the loop gives its experiments (loop/core.py)."""
        h = (self.baseline.metrics or {}).get("harness") or {}
        tokens = (h.get("val_tokens") or 0) + (h.get("test_tokens") or 0)
        return tokens / h["eval_seconds"] if tokens and h.get("eval_seconds") else None

    def first_answer_limit(self) -> float | None:
        """The scorer's first-call limit the loop gives an agent's run (loop/core.py): the sources a study runs
        hold agents' code."""
        first = ((self.baseline.metrics or {}).get("harness") or {}).get("first_answer_seconds")
        return 10.0 + 3.0 * first if first else None

    def close(self) -> None:
        self.journal.close()


def open_subject(ws: Path, tag: str | None) -> Subject:
    """The run tagged `tag` (default: the latest), checked to be idle and to have a measured best."""
    journal = Journal(ws / RUN_DIR / JOURNAL_FILE)
    try:
        runs = journal.runs()
        run = journal.run(tag) if tag else (runs[-1] if runs else None)
        if run is None:
            raise StudyError(f"no run tagged {tag!r} (see `autoresearch status --all`)" if tag else
                             "no runs yet: start one with `autoresearch run`")
        if as_seen(run, journal.sessions(run.tag)).state == "running":
            raise StudyError(f"run {run.tag} is running: a study beside it would share the machine, and both would "
                             "measure each other's load. Wait for it to stop (or stop it with Ctrl-C), then try again")
        finals = journal.final_attempts(run.tag)
        baseline = next((e for e in finals if e.number == 1 and e.status == "keep"), None)
        best = journal.best(run.tag)
        if baseline is None or best is None:
            raise StudyError(f"run {run.tag} has no measured baseline yet: resume it with `autoresearch run --resume "
                             f"--tag {run.tag}`")
    except BaseException:
        journal.close()
        raise
    return Subject(ws=ws, journal=journal, run=run, best=best, baseline=baseline)


# -- running variants x seeds on the workers ------------------------------------------------------------------------

@dataclass
class Measured:
    """One finished run of a study, as it is reported while the study goes on."""

    variant: str
    seed: int
    result: RunResult


@dataclass
class Bench:
    """Runs every variant with seeds 0..K-1 on the backend's slots, one run per slot at a time, and records each
    run in the journal as it finishes."""

    subject: Subject
    study_id: int
    root: Path  # this study's directory: one run directory per variant and seed below it
    backend: Backend
    settings: Settings
    cache: Path | None = None
    timeout: float | None = None
    # The evaluation's speed and the first-answer limit of the run's human-written baseline. Only valid at the
    # settings the run measured them under: a study at another setting passes neither.
    eval_rate: float | None = None
    first_answer_limit: float | None = None
    on_run: Callable[[Measured], None] = lambda m: None

    def measure(self, variants: list[Variant], seeds: int) -> dict[str, Stats]:
        # Seed-major: with fewer workers than runs, an interrupted study still has every variant at seed 0.
        jobs = [(v, k) for k in range(seeds) for v in variants]
        stats = {v.name: Stats() for v in variants}
        lock = threading.Lock()
        stop = threading.Event()
        errors: list[BaseException] = []

        def worker(slot: Slot) -> None:
            try:
                while not stop.is_set():
                    with lock:
                        if not jobs:
                            return
                        variant, k = jobs.pop(0)
                    result = self._run(variant, k, slot)
                    if result.status == "interrupted":
                        return
                    with lock:
                        self._record(variant, k, result, stats[variant.name])
                        self.on_run(Measured(variant.name, k, result))
            except BaseException as e:  # a bug: stop everyone, raise it in the caller's thread
                errors.append(e)
                stop.set()
                self.backend.cancel()

        threads = [threading.Thread(target=worker, args=(s,), name=f"study-{s.index}", daemon=True)
                   for s in self.backend.slots()]
        for t in threads:
            t.start()

        def halt() -> None:
            stop.set()
            self.backend.cancel()

        join_workers(threads, halt)  # Ctrl-C: no run may train on after we return
        if errors:
            raise errors[0]
        return stats

    def _run(self, variant: Variant, k: int, slot: Slot) -> RunResult:
        exp = Experiment(source=with_seed(variant.source, k), workspace=self.subject.ws, settings=self.settings,
                         run_dir=self.root / f"{variant.slug}-s{k}", timeout=self.timeout, cache=self.cache,
                         compile_cache=self.subject.ws / RUN_DIR / SEED_DIR, eval_rate=self.eval_rate,
                         first_answer_limit=self.first_answer_limit, files=tuple(sorted(variant.files.items())))
        return self.backend.run(exp, slot)

    def _record(self, variant: Variant, k: int, result: RunResult, stats: Stats) -> None:
        if result.ok and result.val_bpb is not None:
            stats.vals.append(result.val_bpb)
            if result.test_bpb is not None:
                stats.tests.append(result.test_bpb)
        else:
            stats.failed.append(f"seed {k}: {result.status}: {result.reason}")
        self.subject.journal.add_measurement(
            self.study_id, variant.name, k, result.status, result.val_bpb if result.ok else None,
            result.test_bpb if result.ok else None, reason=result.reason,
            run_dir=str(self.root / f"{variant.slug}-s{k}"), run_seconds=result.wall_seconds)


def study_root(subject: Subject, kind: str, study_id: int) -> Path:
    return subject.ws / RUN_DIR / "runs" / subject.run.tag / f"{kind}-{study_id}"


def finish_study(subject: Subject, study_id: int, findings: dict) -> None:
    subject.journal.update_study(study_id, state="done", findings=findings, finished_at=time.time())


def stop_study(subject: Subject, study_id: int, why: str) -> None:
    subject.journal.update_study(study_id, state="stopped", findings={"stopped": why}, finished_at=time.time())


def local_backend(settings: Settings, workers: int | None, per_device: int) -> Backend:
    """This machine's workers, as `run --workers/--per-device` would have them."""
    from autoresearch.backends import BackendError, make_backend

    try:
        return make_backend("local", profile=settings.profile, workers=workers, per_device=per_device)
    except BackendError as e:
        raise StudyError(str(e)) from e
