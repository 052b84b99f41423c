"""kill -9 of the orchestrator at several points of an experiment, then `run --resume`: nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from loopkit import alive, assert_consistent, fast_source, pid_working_in

from autoresearch import vcs
from autoresearch.cli import cli

pytestmark = pytest.mark.slow  # every test here trains or runs the loop: not in `-m fast`

# A command agent: experiment n sets QUALITY from a fixed plan (2 is worse than the baseline: a discard).
AGENT = """\
import os, re
n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
q = {2: 0.1, 3: 0.6, 4: 0.8, 5: 0.9}[n]
p = os.environ["AUTORESEARCH_TRAIN_PY"]
s = re.sub(r"(?m)^QUALITY = [0-9.]+", f"QUALITY = {q}", open(p).read())
open(p, "w").write(s)
print(f"Description: quality {q}")
"""

# Runs the CLI with a SIGKILL planted at one point of the loop (fault injection from outside the package).
WRAPPER = """\
import os, signal, sys
from autoresearch import vcs
from autoresearch.loop.journal import Journal
point = os.environ["KILL_AT"]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def after(owner, name, when):
    orig = getattr(owner, name)
    calls = []
    def wrapped(*a, **k):
        calls.append(1)
        out = orig(*a, **k)
        if when(len(calls), out):
            die()
        return out
    setattr(owner, name, wrapped)
if point == "after_proposal":    # the journal holds experiment 2's proposal; git has nothing of it
    after(Journal, "add_experiment", lambda n, rec: rec.number == 2)
elif point == "after_commit":    # experiment 2 is committed on the branch; the journal does not know
    after(vcs, "commit_file", lambda n, sha: True)
elif point == "before_reset":    # the discard of experiment 2 is recorded; the branch still holds its commit
    orig_reset = vcs.reset_hard
    def reset(*a, **k):
        die()
    vcs.reset_hard = reset
elif point == "before_results":  # the decision is recorded and git follows it; results.tsv is one line behind
    after(Journal, "write_results_tsv", lambda n, out: n == 3)
from autoresearch.cli import main
sys.argv = ["autoresearch", *sys.argv[1:]]
main()
"""


@pytest.fixture
def ws(tiny_workspace, tmp_path):
    (tiny_workspace / "train.py").write_text(fast_source())
    vcs.commit_all(tiny_workspace, "fast train.py for resume tests")
    (tmp_path / "agent.py").write_text(AGENT)
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    return tiny_workspace


def orchestrator(ws: Path, point: str, tmp_path: Path, **env: str) -> subprocess.Popen:
    agent = f"cmd:{sys.executable} {tmp_path / 'agent.py'}"
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "wrapper.py"), "run", "--tag", "t", "--agent", agent,
         "--max-experiments", "4"],
        cwd=ws, env={**os.environ, "KILL_AT": point, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def resume(ws: Path, tmp_path: Path) -> None:
    agent = f"cmd:{sys.executable} {tmp_path / 'agent.py'}"
    r = CliRunner().invoke(cli, ["run", "--resume", "--agent", agent, "--max-experiments", "4"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "stopped: reached --max-experiments 4" in r.output


@pytest.mark.parametrize("point", ["after_proposal", "after_commit", "before_reset", "before_results"])
def test_resume_after_sigkill(ws, tmp_path, point):
    proc = orchestrator(ws, point, tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, out
    resume(ws, tmp_path)
    rows = assert_consistent(ws, "t")
    assert [r["description"] for r in rows] == ["baseline", "quality 0.1", "quality 0.6", "quality 0.8"]
    assert [r["status"] for r in rows] == ["keep", "discard", "keep", "keep"]
    assert not list((ws / ".autoresearch" / "results").glob("saved-*"))  # results.tsv is still known as ours


def test_resume_after_sigkill_mid_run_kills_the_orphan_and_reruns(ws, tmp_path):
    proc = orchestrator(ws, "none", tmp_path, FAST_TRAIN_HANG="1")
    run_dir = ws / ".autoresearch" / "runs" / "t" / "0002-0"
    deadline = time.monotonic() + 90
    training_pid = None
    while training_pid is None and time.monotonic() < deadline:  # experiment 2's train.py has started its hang
        time.sleep(0.5)
        training_pid = pid_working_in(run_dir) if run_dir.exists() else None
    assert training_pid, "experiment 2 never started"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while alive(training_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(training_pid), "the experiment trained on after its orchestrator died"
    resume(ws, tmp_path)  # without FAST_TRAIN_HANG: the re-run goes through
    rows = assert_consistent(ws, "t")
    assert [r["description"] for r in rows] == ["baseline", "quality 0.1", "quality 0.6", "quality 0.8"]
