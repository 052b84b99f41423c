"""Command agents against stub executables on PATH: no real claude/codex, no network, a few seconds in all."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from autoresearch.agents import command
from autoresearch.agents.base import Agent, AgentError, Context, Failure
from autoresearch.agents.command import (
    CLAUDE_CODE_ARGV,
    CODEX_ARGV,
    CommandAgent,
    make_command_agent,
    parse_command_line,
)

SOURCE = "LR = 0.01                   # learning rate\nprint('training')\n"

# Shared by the stubs: record what they were given into $STUB_OUT/<name>.json, then act on $STUB_MODE.
STUB_PRELUDE = """\
import json, os, sys
from pathlib import Path
out = Path(os.environ["STUB_OUT"])
out.mkdir(parents=True, exist_ok=True)
def record(name):
    prompt_file = os.environ.get("AUTORESEARCH_PROMPT_FILE")
    (out / f"{name}.json").write_text(json.dumps({
        "argv": sys.argv[1:],
        "stdin": sys.stdin.read(),
        "prompt_file": prompt_file,
        "prompt_file_text": Path(prompt_file).read_text() if prompt_file else None,
        "train_py": os.environ.get("AUTORESEARCH_TRAIN_PY"),
        "experiment": os.environ.get("AUTORESEARCH_EXPERIMENT"),
        "cwd": os.getcwd(),
        "secret": os.environ.get("ANTHROPIC_API_KEY"),
    }))
def edit(old="LR = 0.01", new="LR = 0.02"):
    p = Path("train.py")
    p.write_text(p.read_text().replace(old, new))
"""


def write_stub(bin_dir: Path, name: str, body: str) -> Path:
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n" + STUB_PRELUDE + textwrap.dedent(body))
    path.chmod(0o755)
    return path


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A workspace with train.py, a bin dir first on PATH, a stand-in for the shared prompt builder."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(SOURCE)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "out"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("STUB_OUT", str(out))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")  # command agents keep the orchestrator's keys
    # The protocol, unconfined: the stubs record their own pids, which a PID namespace would renumber.
    # tests/test_agent_confinement.py runs agents confined (the default).
    monkeypatch.setenv(command.SANDBOX_ENV, "0")
    monkeypatch.setattr(command, "base_prompt", lambda ctx: f"PROMPT {ctx.experiment}\n{ctx.program}\n")
    ctx = Context(program="Make val_bpb lower.", train_py=SOURCE, harness_surface="", workspace=ws, experiment=7)

    class Env:
        pass

    e = Env()
    e.ws, e.bin, e.out, e.ctx = ws, bin_dir, out, ctx
    e.record = lambda name="stub": json.loads((out / f"{name}.json").read_text())
    return e


def alive(pid: int) -> bool:
    """A zombie counts as gone: it holds no resources and some containers' init never reaps it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_gone(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


# ---------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------


def test_edit_in_place_with_description(env):
    write_stub(env.bin, "edit-agent", """\
        record("stub")
        edit()
        print("I raised the learning rate because the loss plateaus early.")
        print("Description: raise LR")
        """)
    agent = make_command_agent("cmd:edit-agent --fast")
    assert isinstance(agent, Agent) and agent.name == "cmd:edit-agent --fast"
    proposal = agent.propose(env.ctx)

    assert proposal.train_py == SOURCE.replace("LR = 0.01", "LR = 0.02")
    assert (env.ws / "train.py").read_text() == proposal.train_py  # edited in place, left for the loop
    assert proposal.description == "raise LR"
    assert proposal.rationale == "I raised the learning rate because the loss plateaus early."
    assert proposal.usage.cost_usd == 0 and proposal.usage.input_tokens == 0

    got = env.record()
    assert got["argv"] == ["--fast"]
    assert got["stdin"] == got["prompt_file_text"]
    assert got["stdin"].startswith("PROMPT 7\nMake val_bpb lower.")
    assert "Edit `train.py` in place" in got["stdin"] and "Description:" in got["stdin"]
    assert got["cwd"] == str(env.ws.resolve())
    assert got["train_py"] == str((env.ws / "train.py").resolve())
    assert got["experiment"] == "7"
    assert got["secret"] == "sk-test"
    assert not Path(got["prompt_file"]).exists()  # the temp prompt file is deleted
    assert not Path(got["prompt_file"]).resolve().is_relative_to(env.ws.resolve())


@pytest.mark.parametrize("printed, description", [
    ("just edited it", "edit by cmd:stub"),
    ("Description: first\nmore words\nDescription: second", "second"),
    ("**Description:** bold one", "bold one"),
    ("Description:   \nDescription: spaced   out  ", "spaced out"),
    ("Description: " + "x" * 500, "x" * command.DESCRIPTION_CHARS),
])
def test_description_is_last_description_line(env, printed, description):
    write_stub(env.bin, "stub", f"""\
        edit()
        print({printed!r})
        """)
    assert make_command_agent("cmd:stub").propose(env.ctx).description == description


def test_cost_and_tokens_lines(env):
    write_stub(env.bin, "stub", """\
        edit()
        print("reasoning")
        print("Tokens: 1200 340")
        print("Cost: $0.0125")
        print("Description: cheaper")
        """)
    proposal = make_command_agent("cmd:stub").propose(env.ctx)
    assert (proposal.usage.input_tokens, proposal.usage.output_tokens) == (1200, 340)
    assert proposal.usage.cost_usd == pytest.approx(0.0125)
    assert proposal.rationale == "reasoning"


def test_nonzero_exit_is_nonfatal_with_stderr_tail_and_restores(env):
    write_stub(env.bin, "stub", """\
        edit()
        for i in range(40):
            print(f"log line {i}", file=sys.stderr)
        print("rate limited: try again later", file=sys.stderr)
        print("Cost: 0.5")
        sys.exit(3)
        """)
    with pytest.raises(AgentError) as err:
        make_command_agent("cmd:stub").propose(env.ctx)
    assert not err.value.fatal
    msg = str(err.value)
    assert "exited with code 3" in msg and "rate limited: try again later" in msg
    assert "log line 39" in msg and "log line 0\n" not in msg  # only the tail
    assert err.value.usage.cost_usd == pytest.approx(0.5)  # what the failed attempt still cost
    assert (env.ws / "train.py").read_text() == SOURCE


def test_deleted_train_py_is_restored(env):
    write_stub(env.bin, "stub", """\
        os.remove("train.py")
        print("Description: gone")
        """)
    with pytest.raises(AgentError, match="train.py is gone"):
        make_command_agent("cmd:stub").propose(env.ctx)
    assert (env.ws / "train.py").read_text() == SOURCE


def test_unchanged_train_py_is_an_error(env):
    write_stub(env.bin, "stub", """\
        print("I looked and decided not to change anything.")
        print("Description: nothing")
        """)
    with pytest.raises(AgentError, match="made no change to train.py") as err:
        make_command_agent("cmd:stub").propose(env.ctx)
    assert not err.value.fatal


def test_missing_executable_is_fatal(env, monkeypatch):
    agent = make_command_agent("cmd:no-such-agent-xyz --go")
    with pytest.raises(AgentError, match="no-such-agent-xyz") as err:
        agent.check()
    assert err.value.fatal
    with pytest.raises(AgentError, match="no-such-agent-xyz") as err:
        agent.propose(env.ctx)
    assert err.value.fatal

    empty = env.bin.parent / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    builtins = [("claude-code", "claude", "@anthropic-ai/claude-code"), ("codex", "codex", "@openai/codex")]
    for spec, exe, hint in builtins:
        with pytest.raises(AgentError) as err:
            make_command_agent(spec).check()
        assert err.value.fatal and f"`{exe}`" in str(err.value) and hint in str(err.value)


def test_not_executable_path_is_fatal(env):
    script = env.ws / "agent.sh"
    script.write_text("#!/bin/sh\nexit 0\n")  # no execute bit
    agent = make_command_agent("cmd:./agent.sh")
    with pytest.raises(AgentError, match="not executable") as err:
        agent.check(env.ws)
    assert err.value.fatal
    script.chmod(0o755)
    assert agent.check(env.ws) == str(script)


def test_check_passes_when_present(env):
    write_stub(env.bin, "stub", "")
    assert make_command_agent("cmd:stub").check() == str(env.bin / "stub")


# ---------------------------------------------------------------------------
# Never hang, leave nothing behind
# ---------------------------------------------------------------------------

SLEEPER = """\
    import signal, subprocess
    if os.environ.get("IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the child below
    edit()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (out / "child.pid").write_text(str(child.pid))
    print("working...", flush=True)
    import time; time.sleep(60)
    """


@pytest.mark.slow
@pytest.mark.parametrize("ignore_term", [False, True])
def test_timeout_kills_the_whole_group_and_restores(env, monkeypatch, ignore_term):
    if ignore_term:
        monkeypatch.setenv("IGNORE_TERM", "1")
    write_stub(env.bin, "stub", SLEEPER)
    agent = make_command_agent("cmd:stub", timeout=1.0)
    agent.grace = 1.0
    t0 = time.monotonic()
    with pytest.raises(AgentError, match="timed out after 1 s") as err:
        agent.propose(env.ctx)
    elapsed = time.monotonic() - t0
    assert not err.value.fatal
    assert elapsed < 1.0 + 1.0 + 2.0
    if ignore_term:
        assert elapsed >= 1.0 + 1.0 - 0.1  # it waited out the grace period before SIGKILL
    child = int((env.out / "child.pid").read_text())
    assert wait_gone(child), f"child {child} survived"
    assert (env.ws / "train.py").read_text() == SOURCE


def test_background_child_holding_stdout_does_not_block(env):
    write_stub(env.bin, "stub", """\
        import subprocess
        edit()
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # inherits stdout
        (out / "child.pid").write_text(str(child.pid))
        print("Description: quick")
        """)
    t0 = time.monotonic()
    proposal = make_command_agent("cmd:stub", timeout=30).propose(env.ctx)
    assert time.monotonic() - t0 < 3.0
    assert proposal.description == "quick"
    assert wait_gone(int((env.out / "child.pid").read_text()))


def test_command_that_never_reads_a_large_prompt(env, monkeypatch):
    monkeypatch.setattr(command, "base_prompt", lambda ctx: "x" * 2_000_000)
    write_stub(env.bin, "stub", """\
        edit()
        print("Description: ignored stdin")
        """)
    t0 = time.monotonic()
    proposal = make_command_agent("cmd:stub", timeout=30).propose(env.ctx)
    assert time.monotonic() - t0 < 5.0
    assert proposal.description == "ignored stdin"


# ---------------------------------------------------------------------------
# Specs and the argv of the built-in command lines
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec, exe, argv", [("claude-code", "claude", CLAUDE_CODE_ARGV),
                                             ("codex", "codex", CODEX_ARGV)])
def test_builtin_specs_build_their_argv(env, spec, exe, argv):
    write_stub(env.bin, exe, f"""\
        record({exe!r})
        edit()
        print("Description: via {exe}")
        """)
    agent = make_command_agent(spec, timeout=60)
    assert agent.name == spec and agent.timeout == 60
    proposal = agent.propose(env.ctx)
    got = env.record(exe)
    assert got["argv"] == list(argv[1:])
    assert got["stdin"].startswith("PROMPT 7")
    assert proposal.description == f"via {exe}"


def test_builtin_argv_restrict_the_agents():
    claude = " ".join(CLAUDE_CODE_ARGV)
    assert CLAUDE_CODE_ARGV[:2] == ("claude", "-p")
    assert "--tools Read,Edit,Write" in claude and "--permission-mode acceptEdits" in claude
    assert "Bash" in CLAUDE_CODE_ARGV[CLAUDE_CODE_ARGV.index("--disallowedTools") + 1]
    assert "bypassPermissions" not in claude and "dangerously" not in claude
    codex = " ".join(CODEX_ARGV)
    assert CODEX_ARGV[:2] == ("codex", "exec") and CODEX_ARGV[-1] == "-"
    assert "--sandbox workspace-write" in codex and 'approval_policy="never"' in codex
    assert "network_access=false" in codex and "danger" not in codex


@pytest.mark.parametrize("line, argv", [
    ('"python agent.py --x \'a b\'"', ("python", "agent.py", "--x", "a b")),
    ("python agent.py", ("python", "agent.py")),
    ("'my-agent'", ("my-agent",)),
    ('"\'/opt/my agent/run\' --go"', ("/opt/my agent/run", "--go")),
])
def test_parse_command_line(line, argv):
    assert parse_command_line(line) == argv
    assert make_command_agent("cmd:" + line).argv == argv


@pytest.mark.parametrize("spec", ["gpt-4", "cmd:", 'cmd:"unterminated', "cmd:  "])
def test_bad_specs_are_fatal(spec):
    with pytest.raises(AgentError) as err:
        make_command_agent(spec)
    assert err.value.fatal


def test_needs_a_workspace(env):
    ctx = Context(program="", train_py=SOURCE, harness_surface="")
    with pytest.raises(AgentError, match="workspace") as err:
        CommandAgent("cmd:stub", ("stub",)).propose(ctx)
    assert err.value.fatal


def test_fixing_a_failed_attempt_starts_from_that_attempt(env):
    failed = SOURCE.replace("LR = 0.01", "LR = 0.05 +")  # a syntax error
    ctx = replace(env.ctx, failure=Failure(description="raise LR", status="crash", reason="SyntaxError",
                                           error_tail="SyntaxError: invalid syntax", train_py=failed))
    write_stub(env.bin, "stub", """\
        (out / "seen.py").write_text(Path("train.py").read_text())
        edit("LR = 0.05 +", "LR = 0.05")
        print("Description: raise LR (fixed)")
        """)
    proposal = make_command_agent("cmd:stub").propose(ctx)
    assert (env.out / "seen.py").read_text() == failed
    assert proposal.train_py == SOURCE.replace("LR = 0.01", "LR = 0.05")

    # Reverting to the best is no proposal either; the workspace goes back to what it held (the best).
    write_stub(env.bin, "stub", f"""\
        Path("train.py").write_text({SOURCE!r})
        print("Description: give up")
        """)
    (env.ws / "train.py").write_text(SOURCE)
    with pytest.raises(AgentError, match="made no change"):
        make_command_agent("cmd:stub").propose(ctx)
    assert (env.ws / "train.py").read_text() == SOURCE


def test_real_prompt_builder_gets_the_command_section():
    from autoresearch.agents.prompt import build_prompt

    ctx = Context(program="Make val_bpb lower.", train_py=SOURCE, harness_surface="", workspace=Path("/ws"))
    text = command.command_prompt(ctx)
    assert text.startswith(build_prompt(ctx).rstrip())
    assert text.rstrip().endswith(command.COMMAND_INSTRUCTIONS.rstrip())
    assert "```python" in text and "Description:" in text
