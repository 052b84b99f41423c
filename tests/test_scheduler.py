"""The scheduler's rules on a scripted backend (no training: a run's figures follow from its train.py's constants):
fix attempts made on the best they fix, runs a lost machine took re-run and never charged to the idea, the time
of every run counted, and no checkout left behind."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY
from loopkit import ScriptedAgent, assert_consistent

from autoresearch.backends.base import Slot
from autoresearch import vcs
from autoresearch.loop.core import Limits, Loop, LoopConfig, View
from autoresearch.run.result import RunResult
from autoresearch.settings import Settings
from autoresearch.workspace import init_workspace, read_constants, set_constants

# Two knobs on lines of their own, far apart, so that changes to each merge cleanly; CRASH makes a run fail.
SOURCE = """\
QUALITY = 0.3           # the lower val_bpb, the higher this
BONUS = 0.0             # adds to QUALITY, on the line beside it
CRASH = 0               # 1: the run crashes
SEED = 42               # other seeds (the repeats') shift val_bpb a little


def model():
    return "a stand-in: the scripted backend reads the constants"


EXTRA = 0.0             # adds to QUALITY
"""
RUN_SECONDS = 10.0  # what each scripted run says it took


def src(**constants) -> str:
    return set_constants(SOURCE, constants)


class ScriptedBackend:
    """Runs nothing. val_bpb = 2 - QUALITY - BONUS - EXTRA, less 0.01 per thousand of SEED (mod 3); CRASH = 1
    crashes; the first `lose` runs come back `lost`, as from a Ray node that died; `before(exp)` is called as each
    run starts (tests wait there for another worker)."""

    name = "scripted"

    def __init__(self, workers: int = 1, lose: int = 0, before=None) -> None:
        self._slots = [Slot(index=k + 1, device="cpu") for k in range(workers)]
        self.lose, self.before = lose, before
        self.runs: list[str] = []  # the sources run, in order
        self.lock = threading.Lock()

    def slots(self) -> list[Slot]:
        return list(self._slots)

    def run(self, exp, slot, on_line=None, on_progress=None) -> RunResult:
        if self.before:
            self.before(exp)
        with self.lock:
            self.runs.append(exp.source)
            if self.lose > 0:
                self.lose -= 1
                return RunResult(status="lost", reason="the Ray task failed (NodeDiedError): node 10.0.0.7 died",
                                 wall_seconds=RUN_SECONDS)
        with self.lock:  # CPython 3.11 can fail parsing in two threads at once (SystemError from ast)
            c = read_constants(exp.source)
        if c.get("CRASH"):
            return RunResult(status="crash", reason="exit code 1", error_tail="RuntimeError: boom",
                             wall_seconds=RUN_SECONDS)
        val = 2.0 - c["QUALITY"] - c["BONUS"] - c["EXTRA"] - 0.01 * ((c["SEED"] // 1000) % 3)
        return RunResult(status="ok", val_bpb=val, test_bpb=val, wall_seconds=RUN_SECONDS, training_seconds=8.0,
                         steps=10, train_tokens=10_000, tokens_per_second=1250.0)

    def cancel(self) -> None: ...

    def close(self) -> None: ...


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    ws = init_workspace(tmp_path / "ws", Settings(**TINY))
    (ws / "train.py").write_text(SOURCE)
    vcs.commit_all(ws, "the scripted stand-in")
    monkeypatch.chdir(ws)
    return ws


class Told(View):
    """A view that keeps what the loop says."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)


def make_loop(ws: Path, agents, backend, max_experiments: int, view: View | None = None, **kw) -> Loop:
    kw.setdefault("policy", "greedy")
    loop = Loop(ws, Settings.load(ws / "autoresearch.toml"), agents,
                LoopConfig(tag="t", limits=Limits(max_experiments=max_experiments), **kw), view=view,
                backend=backend)
    loop.start()
    return loop


def wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def decided(loop: Loop, description: str):
    return lambda: any(e.description == description for e in loop.ledger.experiments(done_only=True))


# -- fix attempts ------------------------------------------------------------------------------------------------

def test_a_fix_is_made_on_the_best_its_change_was_made_on_so_another_workers_keep_stays(ws):
    """Worker 1's change crashes after worker 2's change was kept. The fix is proposed against the best the change
    was made on (the baseline), so its diff is its own, and when it wins it goes through the merge path: the branch
    ends with both changes, never with worker 2's reverted."""

    class Fixer(ScriptedAgent):
        def propose(self, ctx):
            if ctx.failure is None:
                return super().propose(ctx)
            self.contexts.append(ctx)
            from autoresearch.agents.base import Proposal

            return Proposal(set_constants(ctx.failure.train_py, {"CRASH": 0}), "sharper, fixed")

    a = Fixer([(src(QUALITY=0.9, CRASH=1), "sharper, crashes")])
    b = ScriptedAgent([(src(EXTRA=0.4), "extra")])
    b.can_fix = False
    loop = None

    def before(exp):  # the crash comes back only once worker 2's change is kept
        if read_constants(exp.source).get("CRASH"):
            wait_for(decided(loop, "extra"))

    loop = make_loop(ws, [a, b], ScriptedBackend(workers=2, before=before), max_experiments=3)
    assert loop.run_until_limit().startswith("reached --max-experiments 3")
    assert_consistent(ws, "t")
    fix_ctx = a.contexts[-1]
    assert fix_ctx.failure is not None
    assert fix_ctx.train_py == SOURCE  # the best the crashed change was made on, not worker 2's newer best
    attempts = {(e.number, e.attempt): e for e in loop.journal.experiments("t")}
    fix = next(e for e in attempts.values() if e.description == "sharper, fixed")
    crashed = attempts[fix.number, 0]
    assert fix.started_from == crashed.parent_commit == loop.journal.final_attempts("t")[0].commit_sha
    assert fix.status == "keep" and "rebased" in fix.evidence  # the merge path ran: the combination was measured
    best = read_constants(vcs.show(ws, loop.best_commit(), "train.py"))
    assert (best["QUALITY"], best["EXTRA"]) == (0.9, 0.4)  # both changes: worker 2's keep is not reverted
    assert "-EXTRA = 0.4" not in fix.diff


def test_changes_to_constants_on_neighbouring_lines_merge_by_name(ws):
    """Worker 2's change beat its baseline while worker 1's change of the constant on the line above was kept. git
    sees a conflict (adjacent lines); by name there is none, so the combination runs and is kept, and worker 1's
    change stays (before: worker 2's file was committed as measured, reverting it)."""

    class Late(ScriptedAgent):
        def propose(self, ctx):
            wait_for(decided(loop, "quality"))
            return super().propose(ctx)

    loop = None
    loop = make_loop(ws, [ScriptedAgent([(src(QUALITY=0.5), "quality")]), Late([(src(BONUS=0.3), "bonus")])],
                     ScriptedBackend(workers=2), max_experiments=3)
    loop.run_until_limit()
    assert_consistent(ws, "t")
    bonus = next(e for e in loop.journal.final_attempts("t") if e.description == "bonus")
    assert bonus.status == "keep" and "rebased" in bonus.evidence, (bonus.status, bonus.evidence)
    best = read_constants(vcs.show(ws, loop.best_commit(), "train.py"))
    assert (best["QUALITY"], best["BONUS"]) == (0.5, 0.3)


# -- lost runs ---------------------------------------------------------------------------------------------------

def test_a_lost_run_is_run_again_and_never_charged_to_the_idea(ws):
    """A machine that went away mid-run is not the change's fault: the run is run again (and said so), the
    experiment is decided on the run that finished, and no crash reaches the records or the agents."""
    told = Told()
    backend = ScriptedBackend()
    agent = ScriptedAgent([(src(QUALITY=0.5), "sharper"), (src(QUALITY=0.6), "sharper still")])
    loop = make_loop(ws, agent, backend, max_experiments=3, view=told)
    loop.one_experiment()  # the baseline
    backend.lose = 1
    rec = loop.one_experiment()
    assert (rec.status, rec.outcome, rec.attempt) == ("keep", "ok", 0), (rec.status, rec.reason)
    assert backend.runs[-2:] == [src(QUALITY=0.5)] * 2
    assert any("lost" in m and "running it again" in m for m in told.messages), told.messages
    assert rec.run_seconds == 2 * RUN_SECONDS  # the lost run's time was spent too
    loop.one_experiment()
    assert [h.status for h in agent.contexts[-1].history] == ["keep", "keep"]  # no crash shown to the agent


def test_runs_lost_again_and_again_stop_the_run_and_leave_the_experiment_to_resume(ws):
    from autoresearch.loop import scheduler

    backend = ScriptedBackend()
    loop = make_loop(ws, ScriptedAgent([(src(QUALITY=0.5), "sharper")]), backend, max_experiments=2)
    loop.one_experiment()
    backend.lose = 1 + scheduler.LOST_RERUNS
    reason = loop.run_until_limit()
    assert "lost" in reason and "resume" in reason and loop.exit_code == 1, reason
    assert len(backend.runs) == 1 + 1 + scheduler.LOST_RERUNS  # bounded
    [pending] = loop.journal.all_unfinished("t")
    assert pending.description == "sharper" and pending.status is None  # not charged: a resume runs it again
    assert [e.status for e in loop.journal.final_attempts("t")] == ["keep"]


# -- what the records count --------------------------------------------------------------------------------------

def test_every_run_of_an_experiment_counts_as_its_run_time(ws):
    """The baseline's seed repeats and a marginal winner's confirmation runs are runs too: run_seconds (the TIME
    card's training) counts them all, not only the first."""
    from autoresearch.see.facts import ReadOnlyJournal, gather, journal_path

    agent = ScriptedAgent([(src(QUALITY=0.32), "a little sharper")])  # inside the noise: measured twice
    loop = make_loop(ws, agent, ScriptedBackend(), max_experiments=2, policy="noise", noise_runs=2, confirm_runs=1)
    loop.run_until_limit()
    base, change = loop.journal.final_attempts("t")
    assert base.run_seconds == 3 * RUN_SECONDS  # the baseline and its 2 repeats
    assert len(change.evidence["runs"]) == 2 and change.run_seconds == 2 * RUN_SECONDS
    j = ReadOnlyJournal(journal_path(ws))
    try:
        summary = gather(j, j.run("t")).summary
    finally:
        j.close()
    assert summary.train_hours * 3600 == pytest.approx(base.run_seconds + change.run_seconds)


def test_no_empty_worktree_directory_stays_behind(ws):
    loop = make_loop(ws, [ScriptedAgent([(src(QUALITY=0.5), "a")]), ScriptedAgent([(src(EXTRA=0.1), "b")])],
                     ScriptedBackend(workers=2), max_experiments=3)
    loop.run_until_limit()
    assert not (ws / ".worktrees").exists()
    assert_consistent(ws, "t")


# -- the baseline and the noise floor ----------------------------------------------------------------------------

class FailsFirst(ScriptedBackend):
    """The first `fail` runs crash, whatever their code (a machine that hiccups at the start)."""

    def __init__(self, fail: int, **kw) -> None:
        super().__init__(**kw)
        self.fail = fail

    def run(self, exp, slot, on_line=None, on_progress=None) -> RunResult:
        with self.lock:
            if self.fail > 0:
                self.fail -= 1
                self.runs.append(exp.source)
                return RunResult(status="crash", reason="exit code 1", error_tail="OSError: hiccup",
                                 wall_seconds=RUN_SECONDS)
        return super().run(exp, slot, on_line, on_progress)


def test_a_baseline_that_fails_once_is_run_again_and_the_noise_floor_is_measured(ws):
    agent = ScriptedAgent([(src(QUALITY=0.5), "sharper")])
    told = Told()
    loop = make_loop(ws, agent, FailsFirst(1), max_experiments=2, view=told, policy="noise", noise_runs=2)
    loop.run_until_limit()
    tries = [e for e in loop.journal.experiments("t", done_only=True) if e.number == 1]
    assert [e.status for e in tries] == ["crash", "keep"]
    assert len(tries[1].evidence["runs"]) == 3  # the floor: the baseline and its two repeats
    assert any("baseline failed" in m and "again" in m for m in told.messages)
    change = loop.journal.final_attempts("t")[1]
    assert change.status == "keep" and change.evidence["df"] == 2  # judged against the floor, not as "the baseline"
    assert_consistent(ws, "t")


def test_a_baseline_that_keeps_failing_stops_the_run_and_no_change_becomes_the_best(ws):
    (ws / "train.py").write_text(src(CRASH=1))
    vcs.commit_all(ws, "a train.py that crashes")
    agent = ScriptedAgent([(src(QUALITY=0.5), "sharper"), (src(QUALITY=0.6), "sharper still")])
    loop = make_loop(ws, agent, ScriptedBackend(), max_experiments=3, policy="noise", noise_runs=2)
    reason = loop.run_until_limit()
    assert "baseline" in reason and "failed 2 times" in reason and "fix train.py" in reason
    assert loop.exit_code == 1
    assert agent.contexts == []  # no change was proposed, so none was kept against nothing
    assert all(e.status == "crash" for e in loop.journal.experiments("t", done_only=True))
    assert loop.ledger.best() is None
    assert_consistent(ws, "t")


def test_the_noise_floor_pools_every_repeat_of_the_same_code_and_records_its_degrees_of_freedom(ws):
    agent = ScriptedAgent([(src(QUALITY=0.32), "a little sharper"), (src(QUALITY=0.6), "much sharper")])
    loop = make_loop(ws, agent, ScriptedBackend(), max_experiments=3, policy="noise", noise_runs=2, confirm_runs=1)
    loop.run_until_limit()
    base, marginal, clear = loop.journal.final_attempts("t")
    assert len(base.evidence["runs"]) == 3 and len(marginal.evidence["runs"]) == 2  # measured again
    assert marginal.evidence["df"] == 2  # the baseline's 3 runs
    assert clear.evidence["df"] == 3  # and the marginal change's 2: the floor sharpens as the run goes on
    assert clear.evidence["critical"] < marginal.evidence["critical"]
    assert clear.status == "keep"


# -- load: how long a run's threads waited for a core, which the change does not control -------------------------

class Loaded(ScriptedBackend):
    """Each run meets the load `loads` says (its threads' wait for a core per CPU second, as run/load_meter.py
    measures it), and a busy machine costs it 0.1 val_bpb, as fewer steps in the time budget would: `tps` is the
    run's own speed, whatever it is."""

    def __init__(self, loads, tps=None) -> None:
        super().__init__()
        self.loads, self.tps, self.n = loads, tps or (lambda c: 1250.0), 0

    def run(self, exp, slot, on_line=None, on_progress=None) -> RunResult:
        result = super().run(exp, slot, on_line, on_progress)
        with self.lock:
            result.load = self.loads(self.n, read_constants(exp.source))
            self.n += 1
        result.val_bpb += 0.1 if (result.load or 0.0) > 1.0 else 0.0
        result.tokens_per_second = self.tps(read_constants(exp.source))
        return result


def test_a_change_that_only_met_a_quieter_machine_is_judged_against_the_best_run_now(ws):
    assert not Settings.load(ws / "autoresearch.toml").token_budget
    agent = ScriptedAgent([(src(EXTRA=0.001), "nothing much")])
    backend = Loaded(lambda n, c: 1.6 if n < 3 else 0.1)  # the baseline and its repeats met a busy machine
    loop = make_loop(ws, agent, backend, max_experiments=2, policy="noise", noise_runs=2)
    loop.run_until_limit()
    change = loop.journal.final_attempts("t")[1]
    again = change.evidence["remeasured"]
    assert again["before"]["load"] == pytest.approx(1.6) and again["after"]["load"] == pytest.approx(0.1)
    assert "fresh" in again and len(backend.runs) == 5  # the best, run once more
    assert change.status == "discard"  # 0.1 better than the busy baseline, 0.001 better than the best run now
    assert_consistent(ws, "t")


def test_a_change_discarded_on_a_busier_machine_is_judged_again_against_the_best_run_now(ws):
    agent = ScriptedAgent([(src(QUALITY=0.45), "a real gain, on a busy machine")])
    backend = Loaded(lambda n, c: 0.1 if n < 3 else 1.6)  # the load arrives with the change
    loop = make_loop(ws, agent, backend, max_experiments=2, policy="noise", noise_runs=2)
    loop.run_until_limit()
    change = loop.journal.final_attempts("t")[1]
    assert change.evidence["remeasured"]["after"]["load"] == pytest.approx(1.6)
    assert change.status == "keep"  # 0.15 better than the best, both measured busy
    assert_consistent(ws, "t")


def test_a_change_that_trains_faster_by_itself_is_not_taken_for_load(ws):
    """DEPTH or the batch size move a run's own tokens/s (here 10x); the load it met stays the same."""
    agent = ScriptedAgent([(src(QUALITY=0.6), "smaller and faster")])
    backend = Loaded(lambda n, c: 0.5, tps=lambda c: 1250.0 * (10 if c["QUALITY"] > 0.5 else 1))
    told = Told()
    loop = make_loop(ws, agent, backend, max_experiments=2, policy="noise", noise_runs=2, view=told)
    loop.run_until_limit()
    change = loop.journal.final_attempts("t")[1]
    assert change.status == "keep" and "remeasured" not in change.evidence
    assert len(backend.runs) == 4  # the baseline, its 2 repeats and the change: no re-run of the best
    assert not any("again under the current load" in m for m in told.messages)


def test_the_best_s_figures_are_pooled_at_each_load_and_the_best_is_run_again_only_for_a_new_load(ws):
    """The best's kept runs and its re-measure stay its figures, each with its load: a change is judged against the
    mean of those at the load it met (with their count), and the best is run again only at a load it has none."""
    agent = ScriptedAgent([(src(EXTRA=0.001), "nothing, on a quiet machine"),
                           (src(EXTRA=-0.05), "worse, on a busy one"),
                           (src(EXTRA=0.002), "nothing, quiet again")])
    loads = {0: 1.6, 1: 1.6, 2: 1.6, 3: 0.1, 4: 0.1, 5: 1.6, 6: 0.1}  # 4: the best, run again quiet
    backend = Loaded(lambda n, c: loads.get(n, 0.1))
    loop = make_loop(ws, agent, backend, max_experiments=4, policy="noise", noise_runs=2, confirm_runs=0)
    loop.run_until_limit()
    base, quiet, busy, quiet_again = loop.journal.final_attempts("t")
    assert len(backend.runs) == 7  # the baseline 3 times, 3 changes, and the best once more: at the first quiet one
    assert "fresh" in quiet.evidence["remeasured"]
    at_busy = busy.evidence["remeasured"]["after"]
    assert "fresh" not in busy.evidence["remeasured"]  # judged on the 3 runs the best was kept on, all busy
    assert at_busy["runs"] == 3 and at_busy["val_bpb"] == pytest.approx(statistics.fmean(base.evidence["runs"]))
    assert busy.evidence["best_runs"] == 3
    at_quiet = quiet_again.evidence["remeasured"]
    assert "fresh" not in at_quiet and at_quiet["after"]["runs"] == 1
    assert at_quiet["after"]["val_bpb"] == pytest.approx(quiet.evidence["remeasured"]["fresh"])
    assert len(at_quiet["after"]["figures"]) == 4  # the best's 3 kept runs and its re-measure, none replaced
    assert [e.status for e in (quiet, busy, quiet_again)] == ["discard"] * 3
    assert_consistent(ws, "t")


def test_a_keep_whose_load_is_unknown_is_checked_against_the_best_run_now(ws):
    """A run with no figure for its wait (it never had work for its threads on the clock) does not skip the check."""
    agent = ScriptedAgent([(src(QUALITY=0.6), "sharper, load unknown")])
    backend = Loaded(lambda n, c: None if n == 3 else 0.5)
    loop = make_loop(ws, agent, backend, max_experiments=2, policy="noise", noise_runs=2)
    loop.run_until_limit()
    change = loop.journal.final_attempts("t")[1]
    assert "fresh" in change.evidence["remeasured"] and len(backend.runs) == 5
    assert change.status == "keep"  # a real gain survives the check
    assert_consistent(ws, "t")
