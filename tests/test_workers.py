"""Several workers on one branch of record (`run --workers N`): every experiment recorded once, the branch moving
only through keeps, the rule for a result whose best moved while it ran, kills from outside, and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from loopkit import ScriptedAgent, alive, assert_consistent, fast_source, pid_working_in, resume_with_counter

from autoresearch import vcs
from autoresearch.backends.base import BackendError, Slot
from autoresearch.backends.local import plan_slots
from autoresearch.cli import cli
from autoresearch.loop.core import Limits, Loop, LoopConfig
from autoresearch.loop.journal import Journal
from autoresearch.see.facts import busy
from autoresearch.settings import Settings
from autoresearch.workspace import read_constants, set_constants

PAUSE = 20  # seconds worker 2's first change waits: the other worker's experiments land meanwhile

# The fast stand-in with a second knob far from QUALITY (so two changes merge cleanly), and a pause that only
# the unmerged change takes (its QUALITY is still the baseline's), so a re-run of a merge does not wait.
MERGE_TRAIN = (fast_source()
               .replace("        return (QUALITY * logp + jitter)", "        return ((QUALITY + EXTRA) * logp + jitter)")
               .replace("\n\nclass Unigram", "\n\nEXTRA = 0.0             # added to QUALITY\n"
                        "PAUSE = 0.0             # seconds the run waits while QUALITY is the baseline's\n\n\n"
                        "class Unigram")
               .replace("time.sleep(SLEEP)\n", "time.sleep(SLEEP)\nif QUALITY == 0.3:\n    time.sleep(PAUSE)\n"))


@pytest.fixture
def merge_ws(tiny_workspace):
    (tiny_workspace / "train.py").write_text(MERGE_TRAIN)
    vcs.commit_all(tiny_workspace, "the fast stand-in with two knobs")
    return tiny_workspace


def change(**constants) -> str:
    return set_constants(MERGE_TRAIN, constants)


def two_workers(ws: Path, agents, max_experiments: int, **kw) -> Loop:
    settings = Settings.load(ws / "autoresearch.toml")
    loop = Loop(ws, settings, agents, LoopConfig(tag="t", policy="greedy", limits=Limits(max_experiments=max_experiments),
                                                 workers=2, **kw))
    loop.start()
    return loop


def records(ws: Path):
    j = Journal(ws / ".autoresearch" / "journal.db")
    try:
        return j.final_attempts("t")
    finally:
        j.close()


# -- slots ---------------------------------------------------------------------------------------------------------

def test_slots_give_each_worker_its_device_and_its_share():
    gpus = plan_slots("cuda", None, 1, ["0", "3"], cores=16)
    assert [(s.device, dict(s.env)["CUDA_VISIBLE_DEVICES"], s.sharing) for s in gpus] == [("cuda:0", "0", 1),
                                                                                       ("cuda:1", "3", 1)]
    shared = plan_slots("cuda", None, 2, ["0"], cores=16)
    assert [(s.device, s.sharing) for s in shared] == [("cuda:0", 2), ("cuda:0", 2)]
    cpu = plan_slots("cpu", 2, 1, [], cores=4)
    assert [dict(s.env)["OMP_NUM_THREADS"] for s in cpu] == ["2", "2"] and cpu[0].sharing == 2
    assert plan_slots("cpu", None, 1, [], cores=4) == [Slot(index=1, device="cpu")]
    with pytest.raises(BackendError, match="--per-device"):
        plan_slots("cuda", 3, 1, ["0", "1"], cores=16)
    with pytest.raises(BackendError, match="no GPU"):
        plan_slots("cuda", None, 1, [], cores=16)


def test_cpu_workers_split_the_memory_limit():
    from autoresearch.backends.local import with_share
    from autoresearch.run.result import Experiment

    settings = Settings.from_profile("cpu")
    exp = Experiment(source="", workspace=Path("."), settings=settings, run_dir=Path("."))
    shared = with_share(exp, plan_slots("cpu", 2, 1, [], cores=2)[0], 2)
    assert shared.settings.memory_limit == settings.memory_limit // 2
    assert dict(shared.env)["OMP_NUM_THREADS"] == "1"


# -- the loop on two workers ------------------------------------------------------------------------------------------

class GatedAgent(ScriptedAgent):
    """A scripted agent whose answer waits for a condition on the run (its context was built before: the best it
    proposes from is the one before the condition came true). Past its script it proposes fillers: which worker
    takes the last experiment of a run is a race, and either may."""

    def __init__(self, proposals, gate=None, name="scripted") -> None:
        super().__init__(proposals)
        self.gate, self.name = gate, name

    def propose(self, ctx):
        deadline = time.monotonic() + 120
        while self.gate is not None and not self.gate() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not self.proposals:
            self.proposals.append((change(QUALITY=0.35 + 0.01 * len(self.contexts)), "filler"))
        return super().propose(ctx)


def done(loop: Loop, description: str):
    return lambda: any(e.description == description for e in loop.ledger.experiments(done_only=True))


@pytest.mark.slow
def test_a_change_whose_best_moved_is_merged_and_measured_again(merge_ws):
    """Worker 2 proposes from the baseline, and its answer comes once worker 1's change is kept. Its result beat
    its starting point and the newer best, and the two changes merge cleanly: the combination runs, and is kept
    on its own figures."""
    a = GatedAgent([(change(QUALITY=0.5), "quality 0.5"), (change(QUALITY=0.6), "quality 0.6")])
    b = GatedAgent([(change(EXTRA=0.4), "extra 0.4")], name="scripted-b")
    loop = two_workers(merge_ws, [a, b], max_experiments=4)
    b.gate = done(loop, "quality 0.5")
    assert loop.run_until_limit().startswith("reached --max-experiments 4")
    rows = assert_consistent(merge_ws, "t")
    recs = {r.description: r for r in records(merge_ws)}
    assert [recs[d].status for d in ("baseline", "quality 0.5", "extra 0.4")] == ["keep", "keep", "keep"], \
        {d: (r.status, r.val_bpb, r.reason, r.evidence, r.finished_at) for d, r in recs.items()}
    extra = recs["extra 0.4"]
    assert extra.worker == 2 and extra.agent == "scripted-b" and recs["quality 0.5"].worker == 1
    assert extra.started_from == recs["baseline"].commit_sha != extra.parent_commit  # rebased onto a newer best
    assert "rebased" in extra.evidence and len(list((merge_ws / ".autoresearch/runs/t").glob("*-rebase1"))) == 1
    consts = read_constants(extra.train_py)
    assert consts["EXTRA"] == 0.4 and consts["QUALITY"] in (0.5, 0.6)  # the merge: both changes
    assert extra.val_bpb < recs["quality 0.5"].val_bpb
    assert len(rows) == 4 and not list((merge_ws / ".worktrees" / "t").glob("w*"))  # checkouts go at the end

    # Seeing it: the agents compared in status, the dashboard and the report.
    from autoresearch.see import dashboard
    from autoresearch.see.report import write_report

    status = CliRunner().invoke(cli, ["status"], catch_exceptions=False).output
    assert "agent scripted-b: 1 kept of 1 (100%)" in status, status
    assert "agent scripted: " in status
    agents = {a["agent"]: a for a in dashboard.state(merge_ws)["agents"]}
    assert agents["scripted-b"]["gain"] == pytest.approx(recs["quality 0.6"].val_bpb - extra.val_bpb) or \
        agents["scripted-b"]["gain"] == pytest.approx(recs["quality 0.5"].val_bpb - extra.val_bpb)
    assert "<h2>Agents</h2>" in write_report(merge_ws).html.read_text()


@pytest.mark.slow
def test_conflicting_change_that_beat_the_newer_best_is_kept_as_measured(merge_ws):
    a = GatedAgent([(change(QUALITY=0.5), "quality 0.5")])
    b = GatedAgent([(change(QUALITY=0.9), "quality 0.9")])  # the same line: the changes conflict
    loop = two_workers(merge_ws, [a, b], max_experiments=3)
    b.gate = done(loop, "quality 0.5")
    loop.run_until_limit()
    rows = assert_consistent(merge_ws, "t")
    assert [r["status"] for r in rows] == ["keep", "keep", "keep"]
    recs = {r.description: r for r in records(merge_ws)}
    late = recs["quality 0.9"]
    assert late.parent_commit == recs["quality 0.5"].commit_sha and late.evidence["rebase"].startswith("conflict")
    assert read_constants(late.train_py)["QUALITY"] == 0.9  # exactly what was measured


@pytest.mark.slow
def test_a_result_that_beats_only_its_old_best_is_discarded(merge_ws):
    a = GatedAgent([(change(QUALITY=0.8), "quality 0.8")])
    b = GatedAgent([(change(EXTRA=0.2), "extra 0.2")])  # 0.5 in all: beats the baseline's 0.3, not 0.8
    loop = two_workers(merge_ws, [a, b], max_experiments=3)
    b.gate = done(loop, "quality 0.8")
    loop.run_until_limit()
    rows = assert_consistent(merge_ws, "t")
    assert [r["status"] for r in rows] == ["keep", "keep", "discard"]
    recs = {r.description: r for r in records(merge_ws)}
    late = recs["extra 0.2"]
    assert late.evidence["best"] == recs["quality 0.8"].val_bpb  # judged against the best of the moment


@pytest.mark.slow
def test_in_flight_experiments_are_in_the_context_and_never_proposed_again(merge_ws):
    """What the other workers run now is in an agent's context (and its prompt), and the search agent never
    proposes it again."""
    from dataclasses import replace

    from autoresearch.agents.prompt import build_prompt
    from autoresearch.agents.search import SearchAgent

    loop = two_workers(merge_ws, [SearchAgent(seed=3)], max_experiments=1)
    loop.run_until_limit()  # the baseline
    best = loop.best_commit()
    before = loop.proposer.context(merge_ws, best, None, None)
    first = SearchAgent(seed=3).propose(before)
    rec = loop.ledger.add(None, 0, first.description, first.train_py, best, agent="search")  # another worker's
    after = loop.proposer.context(merge_ws, best, None, None)
    assert [(f.number, f.train_py) for f in after.in_flight] == [(rec.number, first.train_py)]
    assert f"#{rec.number} {first.description}" in build_prompt(after)
    again = SearchAgent(seed=3).propose(replace(before, in_flight=after.in_flight))
    assert again.train_py != first.train_py
    # the run's study (in the workspace) holds what was asked even before the journal lists it in flight
    assert SearchAgent(seed=3).propose(before).train_py not in (first.train_py, again.train_py)


@pytest.mark.slow
def test_an_experiment_killed_from_outside_is_recorded_and_leaves_nothing(merge_ws):
    """The training process of worker 2's experiment is killed by someone else: that experiment is a crash,
    nothing of it survives, and worker 1 goes on. Meanwhile status and the dashboard showed worker 2 at work."""
    from autoresearch.see import dashboard

    a = GatedAgent([(change(QUALITY=0.5), "quality 0.5"), (change(QUALITY=0.6), "quality 0.6")])
    b = GatedAgent([(change(EXTRA=0.1, PAUSE=120.0), "hangs")], name="scripted-b")
    loop = two_workers(merge_ws, [a, b], max_experiments=4, fix_attempts=0)
    victim: list[int] = []
    seen: list = []  # what status showed of the workers then
    shown: list = []  # and the dashboard

    def kill_it() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not victim:
            for rec in loop.ledger.in_flight():
                if rec.description == "hangs" and rec.run_dir and (pid := pid_working_in(Path(rec.run_dir))):
                    time.sleep(1.0)  # let it settle into its pause
                    seen.extend(busy(loop.ledger.experiments(), loop.ledger.run()))
                    shown.extend(dashboard.state(merge_ws)["workers"])
                    os.kill(pid, signal.SIGKILL)
                    victim.append(pid)
                    return
            time.sleep(0.3)

    killer = threading.Thread(target=kill_it, daemon=True)
    killer.start()
    loop.run_until_limit()
    killer.join(timeout=5)
    assert victim, "the experiment never started"
    hanging = [b for b in seen if b.description == "hangs"]
    assert hanging and hanging[0].worker == 2 and hanging[0].device == "cpu" and hanging[0].state == "running"
    assert any(w["description"] == "hangs" and w["worker"] == 2 for w in shown)
    rows = assert_consistent(merge_ws, "t")
    assert len(rows) == 4 and {"baseline", "hangs", "quality 0.5"} <= {r["description"] for r in rows}
    hung = {r.description: r for r in records(merge_ws)}["hangs"]
    assert hung.status == "crash" and hung.worker == 2
    run_dir = Path(hung.run_dir).resolve()
    strays = [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] and Path(p.info["cwd"]) == run_dir]
    assert not strays


# -- kill -9 of the orchestrator with two experiments in flight -----------------------------------------------------

# A command agent: the n-th proposal (counted in a file, under a lock: two workers ask at once) sets QUALITY.
AGENT = """\
import fcntl, os, re
plan = [0.6, 0.7, 0.8, 0.9]
with open(os.environ["AGENT_COUNTER"], "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0)
    n = len(f.read())
    f.write("x")
q = plan[n % len(plan)]
p = os.environ["AUTORESEARCH_TRAIN_PY"]
s = re.sub(r"(?m)^QUALITY = [0-9.]+", f"QUALITY = {q}", open(p).read())
open(p, "w").write(s)
print(f"Description: quality {q}")
"""


@pytest.mark.slow
def test_kill_9_with_two_experiments_in_flight_then_resume_loses_nothing(tiny_workspace, tmp_path):
    ws = tiny_workspace
    (ws / "train.py").write_text(fast_source())
    vcs.commit_all(ws, "fast train.py")
    (tmp_path / "agent.py").write_text(AGENT)
    env = {**os.environ, "AGENT_COUNTER": str(tmp_path / "counter"), "AUTORESEARCH_AGENT_SANDBOX": "0"}
    agent = f"cmd:{sys.executable} {tmp_path / 'agent.py'}"
    args = ["run", "--tag", "t", "--agent", agent, "--policy", "greedy", "--workers", "2", "--max-experiments", "4"]
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch.cli", *args], cwd=ws, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**env, "FAST_TRAIN_HANG": "1"})
    runs = ws / ".autoresearch" / "runs" / "t"
    pids: dict[str, int] = {}
    deadline = time.monotonic() + 120
    while len(pids) < 2 and time.monotonic() < deadline:  # experiments 2 and 3 both training (hanging)
        time.sleep(0.5)
        for name in ("0002-0", "0003-0"):
            if name not in pids and (pid := pid_working_in(runs / name)):
                pids[name] = pid
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert len(pids) == 2, f"two experiments never ran at once: {pids}\n{out}"
    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids.values()), "experiments trained on after their orchestrator died"

    rows = resume_with_counter(env["AGENT_COUNTER"])
    assert len(rows) == 4 and sorted(r["description"] for r in rows) == ["baseline", "quality 0.6", "quality 0.7",
                                                                        "quality 0.8"]
    assert not [p for p in (ws / ".worktrees" / "t").glob("*") if vcs.status_porcelain(p)]


@pytest.mark.slow
def test_cpu_workers_say_they_share_the_cores(tiny_workspace, monkeypatch):
    """`--workers 2` on a 2-core machine: the run says that the workers split the cores rather than add any."""
    from autoresearch.backends.local import LocalBackend

    assert LocalBackend("cpu", workers=1, cores=2).notes == []
    [note] = LocalBackend("cpu", workers=2, cores=2).notes
    assert "2 workers share the 2 CPU cores" in note and "1 thread each" in note
    assert LocalBackend("cuda", workers=2, gpus=["0", "1"]).notes == []  # a device each: nothing to say
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    r = CliRunner().invoke(cli, ["run", "--tag", "t", "--workers", "2", "--max-experiments", "1", "--policy",
                                 "greedy"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "2 workers share the 2 CPU cores" in r.output.split("[exp 1]")[0], r.output
