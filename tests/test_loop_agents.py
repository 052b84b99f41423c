"""The loop through the CLI with the model and command-line agents (scripted server, stub executables)."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner
from fakellm import Reply, Status, fake_llm  # noqa: F401  (fixture)
from loopkit import assert_consistent, fast_source

from autoresearch import vcs
from autoresearch.cli import cli


@pytest.fixture
def ws(tiny_workspace):
    (tiny_workspace / "train.py").write_text(fast_source())
    vcs.commit_all(tiny_workspace, "fast train.py")
    return tiny_workspace


def fenced(source: str, description: str) -> str:
    return f"Trying something.\nDescription: {description}\n\n```python\n{source}```\n"


def line(quality: float) -> str:
    return next(x for x in fast_source(QUALITY=quality).splitlines() if x.startswith("QUALITY"))


def run_cli(*args: str):
    return CliRunner().invoke(cli, ["run", "--tag", "t", *args], catch_exceptions=False)


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_llm_agent_rate_limit_crash_and_fix(ws, fake_llm, provider, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    broken = fast_source(QUALITY=0.7).replace("tok = Tokenizer.load()", "tok = Tokenizer.load()\n1 / 0")
    fake_llm.push(
        Status(429, retry_after=0.01),  # rate limited: waited out
        Reply(fenced(broken, "sharper prior")),  # crashes: ZeroDivisionError
        Reply(fenced(fast_source(QUALITY=0.7), "sharper prior (fixed)")),  # the agent repairs its change
        Reply("I think we should be sharper still, but I forgot the code."),  # malformed: one corrective retry
        Reply(f"<<<<<<< SEARCH\n{line(0.7)}\n=======\n{line(0.9)}\n>>>>>>> REPLACE\nDescription: sharper still"),
        Status(401),  # anything more is a bug of the loop: a fatal error ends the run at once instead of backoff
    )
    base = fake_llm.url + ("/v1" if provider == "openai" else "")
    r = run_cli("--agent", f"{provider}:test-model", "--base-url", base, "--max-experiments", "3")
    assert r.exit_code == 0, r.output
    rows = assert_consistent(ws, "t")
    assert [(x["status"], x["description"]) for x in rows] == [
        ("keep", "baseline"), ("keep", "sharper prior (fixed)"), ("keep", "sharper still")]
    fix_prompt = json.dumps(fake_llm.requests[2].body)
    assert "ZeroDivisionError" in fix_prompt  # the traceback tail reached the model
    assert "Description:" in fake_llm.requests[4].user_texts[-1] or len(fake_llm.requests[4].messages) > 1
    assert "test_bpb" not in json.dumps([q.body for q in fake_llm.requests])  # the held-out figure never leaks
    assert "ANTHROPIC_API_KEY" not in (ws / ".autoresearch/runs/t/0002-1/run.log").read_text()


@pytest.mark.slow
def test_command_agent_through_the_cli(ws, tmp_path):
    stub = tmp_path / "agent.py"
    stub.write_text(
        "import os, re, sys\n"
        "p = os.environ['AUTORESEARCH_TRAIN_PY']\n"
        "prompt = sys.stdin.read()\n"
        "assert 'QUALITY' in prompt and os.path.exists(os.environ['AUTORESEARCH_PROMPT_FILE'])\n"
        "n = int(os.environ['AUTORESEARCH_EXPERIMENT'])\n"
        "s = re.sub(r'(?m)^QUALITY = [0-9.]+', f'QUALITY = {0.3 + 0.2 * n}', open(p).read())\n"
        "open(p, 'w').write(s)\n"
        "print('thinking...')\n"
        "print(f'Description: quality up, round {n}')\n")
    r = run_cli("--agent", f"cmd:{sys.executable} {stub}", "--max-experiments", "3")
    assert r.exit_code == 0, r.output
    rows = assert_consistent(ws, "t")
    assert [x["description"] for x in rows] == ["baseline", "quality up, round 2", "quality up, round 3"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_failing_command_agent_is_shown_and_stops_the_run(ws, tmp_path, monkeypatch):
    """A cmd: agent that exits 3 with a message: every failure is printed as it happens, and the same failure
    again and again stops the run with it (before: nothing was printed, and the loop waited forever)."""
    from autoresearch.loop import proposer

    monkeypatch.setattr(proposer, "AGENT_BACKOFF", (0.01,))
    stub = tmp_path / "agent.py"
    stub.write_text("import sys\nprint('my-agent: no credentials for the service', file=sys.stderr)\nsys.exit(3)\n")
    r = run_cli("--agent", f"cmd:{sys.executable} {stub}", "--max-experiments", "3")
    assert r.exit_code == 1, r.output
    assert r.output.count("exited with code 3") >= proposer.AGENT_SAME_ERRORS, r.output
    assert "my-agent: no credentials for the service" in r.output
    assert f"stopped: agent error: " in r.output and "times in a row" in r.output, r.output
    assert_consistent(ws, "t")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_request_the_api_refuses_each_time_stops_the_run(ws, fake_llm, provider, monkeypatch):  # noqa: F811
    from autoresearch.loop import proposer

    monkeypatch.setattr(proposer, "AGENT_BACKOFF", (0.01,))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    fake_llm.push(*[Status(400, message="prompt is too long: 250000 tokens > 200000 maximum")] * 5)
    base = fake_llm.url + ("/v1" if provider == "openai" else "")
    r = run_cli("--agent", f"{provider}:test-model", "--base-url", base, "--max-experiments", "3")
    assert r.exit_code == 1, r.output
    assert len(fake_llm.requests) == proposer.AGENT_SAME_ERRORS  # a 400 is not retried: it would fail again
    assert "stopped: agent error:" in r.output and "prompt is too long" in r.output.split("stopped:")[1]
    assert_consistent(ws, "t")


def test_missing_command_agent_refuses_to_start(ws):
    r = CliRunner().invoke(cli, ["run", "--agent", "cmd:/nonexistent/agent --flag"])
    assert r.exit_code == 1 and "/nonexistent/agent" in r.output
    assert not (ws / "results.tsv").exists()


def test_unknown_agent_lists_the_choices(ws):
    r = CliRunner().invoke(cli, ["run", "--agent", "gpt9000"])
    assert r.exit_code == 1 and "search" in r.output and "anthropic:MODEL" in r.output


@pytest.mark.slow
def test_status_prints_the_table_and_the_best(ws):
    assert run_cli("--max-experiments", "2").exit_code == 0
    r = CliRunner().invoke(cli, ["status"], catch_exceptions=False)
    assert r.exit_code == 0
    assert "baseline" in r.output and "keep" in r.output and "val_bpb" in r.output
    r = CliRunner().invoke(cli, ["status", "--all"], catch_exceptions=False)
    assert "autoresearch/t" in r.output
