"""The newcomer's path: mistakes found at once (agent credentials and packages, dataset typos), not after a
baseline; commands that only read the journal start without torch; the demo ends by saying what to do next."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY, git

from autoresearch.cli import cli
from autoresearch.loop.journal import Journal
from autoresearch.paths import prepared_dir
from autoresearch.see.facts import journal_path
from autoresearch.settings import SETTINGS_FILE, Settings

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """A workspace whose data looks prepared (only meta.json: nothing here may get as far as reading tokens)."""
    assert invoke("init", str(tmp_path / "ws"), "--profile", "cpu").exit_code == 0
    ws = tmp_path / "ws"
    cache = tmp_path / "cache"
    meta = prepared_dir(Settings.load(ws / SETTINGS_FILE), cache) / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text("{}")
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(cache))
    monkeypatch.chdir(ws)
    return ws


def add_run(ws: Path, experiments: int = 3) -> None:
    j = Journal(journal_path(ws))
    j.create_run("demo", "autoresearch/demo", "b" * 40, "search", "noise", asdict(Settings(**TINY)))
    for n in range(1, experiments + 1):
        rec = j.add_experiment("demo", n, 0, f"change {n}", "# train.py\n", "a" * 40, agent="search")
        j.update(rec.id, state="done", status="keep" if n == 1 else "discard", outcome="ok", val_bpb=1.5 + n / 100,
                 commit_sha=f"{n}" * 40)
    j.update_run("demo", state="stopped", stop_reason="reached --max-experiments 3")
    j.close()


# -- an agent that cannot work fails before any training -------------------------------------------------------

AGENT_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL",
             "CODEX_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "AUTORESEARCH_BASE_URL", "AUTORESEARCH_AGENT")


@pytest.mark.parametrize("spec, setup, says", [
    ("anthropic:claude-sonnet-4-5", "", "ANTHROPIC_API_KEY"),
    ("anthropic:claude-sonnet-4-5", "no-package", "pip install 'autoresearch[anthropic]'"),
    ("openai:gpt-5", "", "OPENAI_API_KEY"),
    ("openai:gpt-5", "no-package", "pip install 'autoresearch[openai]'"),
    ("claude-code", "", "npm install -g @anthropic-ai/claude-code"),
    ("claude-code", "logged-out", "claude auth login"),
    ("codex", "", "npm install -g @openai/codex"),
    ("codex", "logged-out", "codex login"),
    ('cmd:"./my-agent.sh --go"', "", "my-agent.sh"),
    ("serach", "", "unknown agent"),
])
def test_every_builtin_agent_fails_before_the_baseline(workspace, tmp_path, monkeypatch, spec, setup, says):
    from autoresearch.loop import core

    def no_training(*args, **kwargs):
        raise AssertionError("the loop was built: the agent's check came too late")

    monkeypatch.setattr(core.Loop, "__init__", no_training)
    for var in AGENT_ENV:
        monkeypatch.delenv(var, raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))  # no claude, no codex
    if setup == "no-package":
        monkeypatch.setitem(sys.modules, spec.split(":")[0], None)
    if setup == "logged-out":  # installed, but never logged in: the CLIs' own status commands say so
        exe = spec.split("-")[0]
        status = ('print(\'{"loggedIn": false}\')' if exe == "claude"
                  else 'print("Not logged in", file=sys.stderr); sys.exit(1)')
        (bin_dir / exe).write_text(f"#!{sys.executable}\nimport sys\n{status}\n")
        (bin_dir / exe).chmod(0o755)
    r = invoke("run", "--agent", spec, "--max-experiments", "1")
    assert r.exit_code == 1 and not isinstance(r.exception, AssertionError), r.exception
    assert says in r.output
    assert not journal_path(workspace).exists()  # no run was started


def test_a_missing_key_fails_without_importing_torch(workspace):
    """The structural reason it takes about a second, not a baseline: nothing before the check imports torch."""
    probe = ("import sys\nfrom autoresearch.cli import cli\n"
             "try:\n    cli(['run', '--agent', 'anthropic:claude-sonnet-4-5'], prog_name='autoresearch')\n"
             "except SystemExit as e:\n    print('exit', e.code)\n"
             "print('torch' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k not in AGENT_ENV}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert "ANTHROPIC_API_KEY" in out.stderr, out.stderr
    assert out.stdout.split() == ["exit", "1", "False"], (out.stdout, out.stderr)


def test_unprepared_data_is_named_before_the_agent(workspace, monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(workspace.parent / "empty-cache"))
    r = invoke("run", "--agent", "anthropic:claude-sonnet-4-5")
    assert r.exit_code == 1 and "autoresearch prepare" in r.output and "'embedded'" in r.output


# -- status reads the journal only -----------------------------------------------------------------------------


def test_status_does_not_import_torch(workspace):
    add_run(workspace)
    probe = ("import sys\nfrom autoresearch.cli import cli\n"
             "try:\n    cli(['status'], prog_name='autoresearch')\nexcept SystemExit as e:\n    assert not e.code, e\n"
             "print('torch imported:', 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "change 3" in out.stdout and "run demo" in out.stdout
    assert out.stdout.strip().endswith("torch imported: False")


# -- datasets are checked at init, and can be changed before the first run -------------------------------------


@pytest.mark.parametrize("dataset, says", [("climbmx", "Did you mean --dataset climbmix?"),
                                           ("/nonexistent/corpus", "no file or directory of that name")])
def test_init_refuses_an_unknown_dataset(tmp_path, dataset, says):
    r = invoke("init", str(tmp_path / "ws"), "--profile", "cpu", "--dataset", dataset)
    assert r.exit_code == 1 and says in r.output
    assert not (tmp_path / "ws").exists()


def test_init_refuses_a_directory_without_text_files(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "image.png").write_bytes(b"\x89PNG")
    r = invoke("init", str(tmp_path / "ws"), "--dataset", str(tmp_path / "corpus"))
    assert r.exit_code == 1 and ".txt" in r.output and not (tmp_path / "ws").exists()


def test_init_records_a_local_dataset_as_an_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("hello world\n")
    monkeypatch.chdir(tmp_path)
    assert invoke("init", "ws", "--profile", "cpu", "--dataset", "corpus").exit_code == 0
    # prepare runs from inside the workspace, where "corpus" would name nothing
    assert Settings.load(tmp_path / "ws" / SETTINGS_FILE).dataset == str(tmp_path / "corpus")


def test_prepare_changes_the_dataset_of_a_workspace_without_runs(workspace, tmp_path, monkeypatch):
    from autoresearch.data import prepare

    seen = []
    monkeypatch.setattr(prepare, "prepare", lambda settings, cache, **kw: seen.append(settings.dataset) or 1 / 0)
    r = invoke("prepare", "--dataset", "climbmx")
    assert r.exit_code == 1 and "climbmix" in r.output and seen == []
    with pytest.raises(ZeroDivisionError):  # stops right after the change, where the real prepare would start
        CliRunner().invoke(cli, ["prepare", "--dataset", "tinystories"], catch_exceptions=False)
    assert seen == ["tinystories"]
    assert Settings.load(workspace / SETTINGS_FILE).dataset == "tinystories"
    assert git(workspace, "status", "--porcelain") == ""  # committed
    assert "dataset: embedded -> tinystories" in git(workspace, "log", "-1", "--format=%s")

    add_run(workspace)  # once a run has measured something, the data stays what it measured
    r = invoke("prepare", "--dataset", "embedded")
    assert r.exit_code == 1 and "autoresearch init NEW_DIR --dataset embedded" in r.output
    assert Settings.load(workspace / SETTINGS_FILE).dataset == "tinystories" and seen == ["tinystories"]


# -- the demo says what to do next -----------------------------------------------------------------------------


def test_setup_demo_ends_with_the_next_commands():
    text = (ROOT / "setup.sh").read_text()
    epilogue = text[text.index("next_steps()"):]
    for needed in ("source", "bin/activate", "autoresearch status", "autoresearch report", "autoresearch dashboard",
                   "--agent anthropic:", "ANTHROPIC_API_KEY"):
        assert needed in epilogue, needed
    out = subprocess.run(["bash", "-c", f"source <(sed -n '/^next_steps()/,/^}}/p' {ROOT / 'setup.sh'}); "
                          "VENV=.venv WS=demo-workspace next_steps"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "source .venv/bin/activate" in out.stdout and "cd demo-workspace" in out.stdout
    assert "autoresearch status" in out.stdout and "autoresearch dashboard" in out.stdout
