"""Records that must not mislead: crash reasons in `status`, every run's rows in results.tsv files, limits checked
before anything exists, and a resume that keeps the run's agent, policy and limits after Ctrl-C (exit 130)."""

from __future__ import annotations

import ctypes
import threading
from io import StringIO

import pytest
from click.testing import CliRunner
from loopkit import ScriptedAgent, assert_consistent, fast_source, git
from rich.console import Console

from autoresearch import vcs
from autoresearch.cli import cli
from autoresearch.loop import results
from autoresearch.loop.core import Limits, Loop, LoopConfig, LoopError
from autoresearch.loop.journal import Journal, read_results_tsv
from autoresearch.loop.options import RunOptions, merge, resume_command
from autoresearch.see.facts import ReadOnlyJournal, gather, journal_path, pick_run
from autoresearch.see.ui import status_table
from autoresearch.settings import Settings


@pytest.fixture
def fast_ws(tiny_workspace):
    (tiny_workspace / "train.py").write_text(fast_source())
    vcs.commit_all(tiny_workspace, "fast train.py for records tests")
    return tiny_workspace


def _run_with_rows(j: Journal, tag: str, n: int) -> None:
    j.create_run(tag, f"autoresearch/{tag}", "c" * 40, "search", "greedy", {})
    for i in range(1, n + 1):
        rec = j.add_experiment(tag, i, 0, f"{tag} idea {i}", "x", "c" * 40)
        j.update(rec.id, state="done", status="keep" if i == 1 else "discard", outcome="ok", val_bpb=1 + i / 100,
                 memory_gb=0.5, commit_sha=f"{i:07d}" + "0" * 33)


def test_status_shows_the_reason_of_a_crash(tmp_path):
    j = Journal(tmp_path / "journal.db")
    _run_with_rows(j, "t", 1)
    rec = j.add_experiment("t", 2, 0, "swap [the] MLP", "x", "c" * 40)
    j.update(rec.id, state="done", status="crash", outcome="timeout", reason="training ran past 600s [limit]")
    out = StringIO()
    Console(file=out, width=250).print(status_table(j.final_attempts("t"), title="run [t]"))
    assert "swap [the] MLP  [timeout: training ran past 600s [limit]]" in out.getvalue()  # text, not rich markup
    assert "run [t]" in out.getvalue()
    j.close()


def test_a_new_run_never_erases_another_runs_results(tmp_path):
    ws = tmp_path
    j = Journal(ws / ".autoresearch" / "journal.db")
    _run_with_rows(j, "old", 3)
    j.write_results_tsv("old", ws / "results.tsv")  # as autoresearch wrote it before there were per-run files
    old_rows = (ws / "results.tsv").read_text()
    _run_with_rows(j, "new/one", 1)
    notes = results.publish(j, "new/one", ws)
    assert [r["description"] for r in read_results_tsv(ws / "results.tsv")] == ["new/one idea 1"]
    assert (ws / ".autoresearch" / "results" / "old.tsv").read_text() == old_rows
    assert notes and "old.tsv" in notes[0]
    assert results.publish(j, "old", ws) and (ws / "results.tsv").read_text() == old_rows  # resuming the old run
    results.publish(j, "new/one", ws)
    assert (ws / ".autoresearch" / "results" / "new%2Fone.tsv").read_text() == (ws / "results.tsv").read_text()
    assert not list((ws / ".autoresearch" / "results").glob("saved-*"))

    edited = (ws / "results.tsv").read_text() + "abcdef0\t0.9\t0.1\tkeep\tmy own note\n"
    (ws / "results.tsv").write_text(edited)
    notes = results.publish(j, "new/one", ws)
    saved = list((ws / ".autoresearch" / "results").glob("saved-*.tsv"))
    assert len(saved) == 1 and saved[0].read_text() == edited and "moved it to" in notes[0]
    assert "my own note" not in (ws / "results.tsv").read_text()
    j.close()


@pytest.mark.slow
def test_a_bad_limit_is_refused_before_anything_is_created(fast_ws):
    branches = git(fast_ws, "branch", "--list")
    for args in (["--max-hours", "-1"], ["--max-hours", "nan"], ["--max-cost", "0"], ["--timeout", "-5"],
                 ["--agent-timeout", "0"], ["--max-experiments", "0"]):
        r = CliRunner().invoke(cli, ["run", "--tag", "x", *args])
        assert r.exit_code == 2 and args[0] in r.output, (args, r.output)
    with pytest.raises(LoopError, match="--max-hours must be a positive number"):
        Loop(fast_ws, Settings.load(fast_ws / "autoresearch.toml"), ScriptedAgent([]),
             LoopConfig(tag="x", limits=Limits(max_hours=-1)))
    assert git(fast_ws, "branch", "--list") == branches
    assert not (fast_ws / "results.tsv").exists() and not (fast_ws / ".autoresearch" / "journal.db").exists()


def test_options_merge_and_the_resume_command():
    stored = RunOptions(agent="cmd:python my agent.py", policy="greedy", max_experiments=6, max_cost=2.5).to_dict()
    same, notes = merge(stored, RunOptions(), explicit=set())  # nothing given again: the run's own options
    assert same == RunOptions.from_dict(stored) and notes == []
    changed, notes = merge(stored, RunOptions(max_experiments=10, policy="greedy"), {"max_experiments", "policy"})
    assert changed.max_experiments == 10 and changed.agent == ("cmd:python my agent.py",) and changed.max_cost == 2.5
    assert notes == ["--max-experiments 10 (the run had 6)"]
    assert resume_command("t", changed) == ("autoresearch run --resume --tag t --agent 'cmd:python my agent.py' "
                                            "--policy greedy --max-experiments 10 --max-cost 2.5")


@pytest.mark.slow
def test_ctrl_c_then_resume_keeps_the_agent_policy_and_limits(fast_ws, monkeypatch):
    """The run is interrupted while experiment 2 trains: exit 130, the report says interrupted, and a bare
    `run --resume` re-runs experiment 2 with the same agent and stops at the run's own --max-experiments
    (before, it resumed with the search agent and no limit)."""
    import autoresearch.agents

    specs = []
    agent = ScriptedAgent([(fast_source(QUALITY=0.6), "sharper")])  # one idea: a third experiment would fail

    def make_agent(spec, **options):
        specs.append(spec)
        agent.name = spec
        return agent

    import autoresearch.backends.local as local
    from autoresearch.run.result import RunResult

    real_run, real_cancel = local.run_isolated, local.LocalBackend.cancel
    cancelled = threading.Event()

    def cancel(self):
        cancelled.set()
        real_cancel(self)

    caller = threading.get_ident()  # the thread that runs the CLI here: where a Ctrl-C's KeyboardInterrupt lands

    def interrupted(exp, *args, **kw):
        if exp.run_dir.name.startswith("0002"):  # Ctrl-C while experiment 2 trains: the run is cancelled
            # KeyboardInterrupt in the CLI's own thread, as Ctrl-C raises it in a terminal's main thread. A signal
            # (SIGINT, or _thread.interrupt_main()) reaches the process's main thread, which under pytest-xdist
            # is not always the test's: the run then ended "stopped" (exit 0) in CI.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(caller), ctypes.py_object(KeyboardInterrupt))
            # As on a real Ctrl-C, the run comes back once the orchestrator has cancelled it (returning at once
            # raced the main thread).
            cancelled.wait(timeout=120)
            return RunResult(status="interrupted", reason="stopped by the orchestrator")
        return real_run(exp, *args, **kw)

    monkeypatch.setattr(autoresearch.agents, "make_agent", make_agent)
    monkeypatch.setattr(local, "run_isolated", interrupted)
    monkeypatch.setattr(local.LocalBackend, "cancel", cancel)
    invoke = lambda *args: CliRunner().invoke(cli, ["run", *args], catch_exceptions=False)  # noqa: E731
    r = invoke("--tag", "t", "--agent", "anthropic:claude-test", "--policy", "greedy", "--max-experiments", "2",
               "--max-cost", "5")
    assert r.exit_code == 130, r.output
    command = "autoresearch run --resume --tag t --agent anthropic:claude-test --policy greedy --max-experiments 2 " \
              "--max-cost 5"
    assert f"stopped: interrupted (Ctrl-C); resume with `{command}`" in r.output

    status = CliRunner().invoke(cli, ["status"], catch_exceptions=False).output
    assert "interrupted: experiment 2 (sharper)" in status and "running:" not in status
    j = ReadOnlyJournal(journal_path(fast_ws))
    facts = gather(j, pick_run(j, None))
    j.close()
    assert facts.run.state == "stopped" and [(r.number, r.state) for r in facts.rows] == [(1, "done"),
                                                                                          (2, "interrupted")]

    monkeypatch.setattr(local, "run_isolated", real_run)
    r = invoke("--resume")
    assert r.exit_code == 0, r.output
    assert specs == ["anthropic:claude-test"] * 2
    assert "goes on with agent anthropic:claude-test, policy greedy, --max-experiments 2, --max-cost 5" in r.output
    assert "resume: experiment 2 (sharper) was interrupted (running); running it again" in r.output
    assert "stopped: reached --max-experiments 2" in r.output
    rows = assert_consistent(fast_ws, "t")
    assert [x["description"] for x in rows] == ["baseline", "sharper"]

    r = invoke("--resume", "--max-cost", "9")  # given again: used, and said; the rest stays the run's own
    assert r.exit_code == 0 and "resume: using --max-cost 9 (the run had 5)" in r.output, r.output
    assert "stopped: reached --max-experiments 2" in r.output
    j = Journal(journal_path(fast_ws))
    sessions = j.sessions("t")
    assert len(sessions) == 3 and all(s.ended_at for s in sessions)
    assert (sessions[-1].options["agent"], sessions[-1].options["max_experiments"],
            sessions[-1].options["max_cost"]) == (["anthropic:claude-test"], 2, 9.0)
    j.close()



def test_the_best_follows_the_chain_of_keeps_not_the_clock(tmp_path):
    """Each keep is made on the best before it: that chain orders the keeps. A system clock stepped back between
    two decisions must not move the best (and the branch) backwards."""
    from autoresearch.see.facts import agent_figures
    from autoresearch.see.ui import summary_line

    j = Journal(tmp_path / "journal.db")
    j.create_run("t", "autoresearch/t", "a" * 40, "search", "greedy", {})

    def keep(number: int, parent: str, sha: str, val: float, at: float) -> None:
        rec = j.add_experiment("t", number, 0, f"change {number}", "x", parent, agent="search" if number > 1
                               else "baseline")
        j.update(rec.id, state="done", status="keep", outcome="ok", val_bpb=val, commit_sha=sha, finished_at=at)

    keep(1, "a" * 40, "a" * 40, 1.5, 1000.0)
    keep(2, "a" * 40, "b" * 40, 1.4, 2000.0)
    keep(3, "b" * 40, "c" * 40, 1.3, 1400.0)  # decided after #2, once the clock had gone back ten minutes
    assert j.best("t").number == 3
    facts = gather(j, j.run("t"))
    assert (facts.summary.best_number, facts.summary.best) == (3, 1.3)
    assert [r.number for r in facts.keeps] == [1, 2, 3]
    assert "1.5000 -> 1.3000" in summary_line(j.final_attempts("t"))
    [search] = agent_figures(j.experiments("t"))
    assert search.gain == pytest.approx(0.2)  # each keep's gain on the keep before it in the chain
    j.close()


def test_a_proposal_is_recorded_in_one_transaction(tmp_path):
    """A kill between two transactions would leave the proposal recorded without what it cost."""
    j = Journal(tmp_path / "journal.db")
    j.create_run("t", "autoresearch/t", "a" * 40, "search", "greedy", {})
    statements: list[str] = []
    j.db.set_trace_callback(statements.append)
    rec = j.add_experiment("t", 2, 0, "an idea", "x", "a" * 40, agent="anthropic:m", cost_usd=0.25,
                           input_tokens=1000, output_tokens=200, diff="-a\n+b\n")
    j.db.set_trace_callback(None)
    assert sum(s.strip().upper().startswith("BEGIN") for s in statements) == 1, statements
    assert (rec.cost_usd, rec.input_tokens, rec.agent, rec.state) == (0.25, 1000, "anthropic:m", "proposed")
    with pytest.raises(ValueError, match="state"):
        j.add_experiment("t", 3, 0, "bad", "x", "a" * 40, state="nowhere")
    j.close()


@pytest.mark.parametrize("width", [100, 200])
def test_status_keeps_its_columns_beside_a_long_reason(tmp_path, width):
    """One rejected proposal with a long reason: the figures stay readable and the description is cut, at any
    width (before, every column but the description collapsed to nothing)."""
    j = Journal(tmp_path / "journal.db")
    _run_with_rows(j, "t", 2)
    rec = j.add_experiment("t", 3, 0, "DEPTH=3, MATRIX_LR=0.02", "x", "c" * 40)
    j.update(rec.id, state="done", status="rejected", outcome="rejected",
             reason="the static check refused it: " + "an import outside the allowed list; " * 12)
    out = StringIO()
    Console(file=out, width=width).print(status_table(j.final_attempts("t"), title="run t"))
    lines = out.getvalue().splitlines()
    j.close()
    assert all(len(line) <= width for line in lines)
    header = next(line for line in lines if "description" in line)
    for column in ("#", "commit", "status", "val_bpb", "mem GB", "steps", "tok/s"):
        assert column in header, out.getvalue()
    assert any("0000001" in line and "keep" in line and "1.010000" in line for line in lines), out.getvalue()
    rejected = next(line for line in lines if "DEPTH=3" in line)
    assert "rejected" in rejected and rejected.rstrip().endswith("…"), out.getvalue()


@pytest.mark.slow
def test_resume_more_adds_experiments_and_keeps_the_runs_limit_otherwise(fast_ws):
    """`--max-experiments` is of the whole run, so giving it again at the same figure adds nothing; `--more N`
    adds N to what the run finished, and that total is what a later plain resume keeps."""
    agent = ScriptedAgent([(fast_source(QUALITY=q), f"quality {q}") for q in (0.4, 0.5, 0.6, 0.7)])
    import autoresearch.agents

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(autoresearch.agents, "make_agent", lambda spec, **options: agent)
        invoke = lambda *args: CliRunner().invoke(cli, ["run", *args], catch_exceptions=False)  # noqa: E731
        assert invoke("--tag", "t", "--policy", "greedy", "--max-experiments", "2").exit_code == 0
        r = invoke("--resume", "--more", "2")
        assert r.exit_code == 0, r.output
        assert "resume: --more 2: --max-experiments 4 (2 finished)" in r.output, r.output
        assert "stopped: reached --max-experiments 4" in r.output
        assert len(assert_consistent(fast_ws, "t")) == 4
        r = invoke("--resume")
        assert "stopped: reached --max-experiments 4" in r.output and len(assert_consistent(fast_ws, "t")) == 4
        r = CliRunner().invoke(cli, ["run", "--more", "2"])
        assert r.exit_code == 2 and "--resume" in r.output
        r = CliRunner().invoke(cli, ["run", "--resume", "--more", "2", "--max-experiments", "9"])
        assert r.exit_code == 2 and "not both" in r.output


def test_setup_demo_run_again_adds_experiments(tmp_path):
    """`./setup.sh demo` a second time goes on with more experiments, and never lowers the run's limit (before,
    it resumed with --max-experiments 4, which the run had reached: nothing happened)."""
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "setup.sh", tmp_path / "setup.sh")
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    log = tmp_path / "calls.log"
    (bin_ / "python").write_text("#!/bin/sh\nexit 0\n")  # pip and the torch check: nothing to install here
    (bin_ / "autoresearch").write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$1" in
  init) mkdir -p "$2" && touch "$2/autoresearch.toml" && git -C "$2" init -q ;;
  run) git -c user.name=t -c user.email=t@t commit -q --allow-empty -m run && git branch -f autoresearch/demo ;;
esac
""")
    for f in (bin_ / "python", bin_ / "autoresearch"):
        f.chmod(0o755)
    for _ in range(2):
        out = subprocess.run(["bash", "setup.sh", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
    runs = [line for line in log.read_text().splitlines() if line.startswith("run")]
    assert runs == ["run --tag demo --max-experiments 4", "run --resume --tag demo --more 4"], runs
