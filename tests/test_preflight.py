"""Coding-agent CLIs checked before the run: they must run unattended (never stop to ask), as root too, and
be logged in; otherwise the run fails at once with the exact fix. Stub `claude` and `codex` on PATH stand in for
the real CLIs and play their documented behaviour (the root guard, `auth status`, `login status`, the sandbox)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from autoresearch.agents import command, preflight
from autoresearch.agents.base import AgentError, Context
from autoresearch.agents.command import make_command_agent

SOURCE = "LR = 0.01\n"

STUB = """\
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
state = os.environ.get("STUB_STATE", "")
"""
CLAUDE = STUB + """\
if args[:2] == ["auth", "status"]:
    if state == "old":  # a CLI from before `auth status`
        sys.exit("error: unknown command 'auth'")
    print(json.dumps({"loggedIn": state != "logged-out", "authMethod": "claude.ai"}))
    sys.exit(0 if state != "logged-out" else 1)
bypass = "--dangerously-skip-permissions" in args or "bypassPermissions" in args
if bypass and os.environ.get("STUB_ROOT") and os.environ.get("IS_SANDBOX") != "1":  # Claude Code's root guard
    sys.exit("--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons")
if "-p" not in args:
    print("Do you want to proceed? (y/n)", flush=True)
    sys.stdin.readline()  # an interactive session waits here for a person
    sys.exit(1)
sys.stdin.read()
Path("train.py").write_text(Path("train.py").read_text().replace("0.01", "0.02"))
if "json" not in args:
    print("Description: lr 0.02")
    sys.exit(0)
error = state == "max-turns"
print(json.dumps({"type": "result", "subtype": "error_max_turns" if error else "success", "is_error": error,
                  "result": "Raised the learning rate.\\nDescription: lr 0.02", "session_id": "s1",
                  "total_cost_usd": 0.0421, "usage": {"input_tokens": 12, "cache_creation_input_tokens": 3000,
                                                      "cache_read_input_tokens": 9000, "output_tokens": 700}}))
"""
CODEX = STUB + """\
if args[:2] == ["login", "status"]:
    if state == "logged-out":
        print("Not logged in", file=sys.stderr)
        sys.exit(1)
    print("Logged in using ChatGPT", file=sys.stderr)
    sys.exit(0)
if args[:2] == ["sandbox", "linux"]:
    if state == "no-sandbox":
        sys.exit("bwrap: No permissions to create a new namespace, likely because the kernel does not allow "
                 "non-privileged user namespaces.")
    sys.exit(0)
if "exec" not in args:
    print("Allow codex to continue? [y/N]", flush=True)
    sys.stdin.readline()
    sys.exit(1)
sys.stdin.read()
Path("train.py").write_text(Path("train.py").read_text().replace("0.01", "0.03"))
print("Description: lr 0.03")
"""


@pytest.fixture
def stubs(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("claude", CLAUDE), ("codex", CODEX)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("STUB_LOG", str(log))
    for var in (*preflight.CLAUDE_ENV_CREDENTIALS, *preflight.CODEX_ENV_CREDENTIALS, "IS_SANDBOX",
                "CLAUDE_CODE_BUBBLEWRAP"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(command, "base_prompt", lambda ctx: "PROMPT\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(SOURCE)

    class Stubs:
        workspace = ws

        @staticmethod
        def calls() -> list[list[str]]:
            return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

        @staticmethod
        def state(value: str) -> None:
            monkeypatch.setenv("STUB_STATE", value)

        @staticmethod
        def root() -> None:
            monkeypatch.setenv("STUB_ROOT", "1")
            monkeypatch.setattr(preflight, "is_root", lambda: True)

    return Stubs


def ctx(ws: Path) -> Context:
    return Context(program="lower val_bpb", train_py=SOURCE, harness_surface="", workspace=ws, experiment=2)


@pytest.mark.parametrize("spec, new", [("claude-code", "0.02"), ("codex", "0.03")])
def test_builtin_agents_pass_the_checks_and_edit_as_root(stubs, spec, new):
    """The built-in command lines need no bypass flag, so Claude Code's root guard never fires, and they never
    open the interactive session that stops to ask."""
    stubs.root()
    agent = make_command_agent(spec)
    agent.check(stubs.workspace)
    proposal = agent.propose(ctx(stubs.workspace))
    assert proposal.train_py == f"LR = {new}\n"
    edit_call = stubs.calls()[-1]
    assert ("-p" in edit_call) if spec == "claude-code" else ("exec" in edit_call)


def test_claude_bypass_as_root_fails_at_once_with_the_fix(stubs, monkeypatch):
    stubs.root()
    agent = make_command_agent("cmd:claude -p --dangerously-skip-permissions")
    with pytest.raises(AgentError) as err:
        agent.check(stubs.workspace)
    assert err.value.fatal
    message = str(err.value)
    assert "root" in message and "--agent claude-code" in message and "IS_SANDBOX=1" in message
    assert stubs.calls() == []  # decided before running anything
    for spec in ("cmd:claude -p --permission-mode bypassPermissions", "cmd:claude -p --permission-mode=bypassPermissions"):
        with pytest.raises(AgentError, match="IS_SANDBOX=1"):
            make_command_agent(spec).check(stubs.workspace)
    monkeypatch.setenv("IS_SANDBOX", "1")  # the guard's own escape, for disposable containers
    agent.check(stubs.workspace)
    assert agent.propose(ctx(stubs.workspace)).train_py == "LR = 0.02\n"


@pytest.mark.parametrize("spec, fix", [("cmd:claude --model opus", "add -p"), ("cmd:codex --full-auto", "codex exec")])
def test_interactive_sessions_are_refused(stubs, spec, fix):
    with pytest.raises(AgentError) as err:
        make_command_agent(spec).check(stubs.workspace)
    assert err.value.fatal and fix in str(err.value) and "interactive" in str(err.value)


def test_claude_not_logged_in_fails_at_once(stubs, monkeypatch):
    stubs.state("logged-out")
    with pytest.raises(AgentError) as err:
        make_command_agent("claude-code").check(stubs.workspace)
    assert err.value.fatal and "claude auth login" in str(err.value) and "ANTHROPIC_API_KEY" in str(err.value)
    assert stubs.calls() == [["auth", "status"]]
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")  # claude -p uses the key: no login needed, no probe
    make_command_agent("claude-code").check(stubs.workspace)
    assert len(stubs.calls()) == 1


def test_claude_without_auth_status_is_not_blocked(stubs):
    stubs.state("old")
    make_command_agent("claude-code").check(stubs.workspace)  # no verdict is not a failure


def test_codex_not_logged_in_fails_at_once(stubs, monkeypatch):
    stubs.state("logged-out")
    with pytest.raises(AgentError) as err:
        make_command_agent("codex").check(stubs.workspace)
    assert err.value.fatal and "codex login" in str(err.value) and "CODEX_API_KEY" in str(err.value)
    monkeypatch.setenv("CODEX_API_KEY", "sk-test")
    make_command_agent("codex").check(stubs.workspace)


@pytest.mark.skipif(sys.platform != "linux", reason="Codex's bubblewrap/Landlock sandbox exists on Linux only")
def test_codex_sandbox_that_cannot_start_fails_at_once_with_the_fix(stubs):
    stubs.state("no-sandbox")
    with pytest.raises(AgentError) as err:
        make_command_agent("codex").check(stubs.workspace)
    assert err.value.fatal and "bwrap" in str(err.value)
    fix = str(err.value).split("--agent '", 1)[1].split("'", 1)[0]
    assert "--dangerously-bypass-approvals-and-sandbox" in fix
    calls = len(stubs.calls())
    agent = make_command_agent(fix)  # the command line the message gives works, and skips the probe
    agent.check(stubs.workspace)
    assert ["sandbox", "linux", "--", "true"] not in stubs.calls()[calls:]
    assert agent.propose(ctx(stubs.workspace)).train_py == "LR = 0.03\n"


def test_probe_that_hangs_gives_no_verdict(stubs, monkeypatch, tmp_path):
    hang = tmp_path / "bin" / "claude"
    hang.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    monkeypatch.setattr(preflight, "PROBE_SECONDS", 0.5)
    make_command_agent("claude-code").check(stubs.workspace)  # goes on: the round will say what is wrong


# -- what Claude Code spent, and which model ---------------------------------------------------------------------


def test_claude_code_reports_its_cost_so_max_cost_sees_it(stubs):
    proposal = make_command_agent("claude-code").propose(ctx(stubs.workspace))
    assert proposal.description == "lr 0.02" and proposal.rationale == "Raised the learning rate."
    assert proposal.usage.cost_usd == pytest.approx(0.0421)
    assert (proposal.usage.input_tokens, proposal.usage.output_tokens) == (12 + 3000 + 9000, 700)


def test_claude_error_result_fails_the_round_and_is_charged(stubs):
    stubs.state("max-turns")
    with pytest.raises(AgentError, match="error_max_turns") as err:
        make_command_agent("claude-code").propose(ctx(stubs.workspace))
    assert not err.value.fatal and err.value.usage.cost_usd == pytest.approx(0.0421)
    assert (stubs.workspace / "train.py").read_text() == SOURCE  # restored


@pytest.mark.parametrize("spec, model", [("claude-code:opus", "opus"), ("codex:gpt-5-codex", "gpt-5-codex")])
def test_the_model_of_a_coding_agent_is_chosen_in_the_spec(stubs, spec, model):
    agent = make_command_agent(spec)
    agent.propose(ctx(stubs.workspace))
    edit_call = stubs.calls()[-1]
    assert edit_call[edit_call.index("--model") + 1] == model
    if spec.startswith("codex"):
        assert edit_call[-1] == "-"  # the prompt still comes from stdin
    with pytest.raises(AgentError, match="claude-code"):
        make_command_agent(spec.split(":")[0] + ":")
