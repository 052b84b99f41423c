"""Start-up checks of the coding-agent CLIs, so that a run fails in seconds instead of after the baseline.

A command agent runs unattended for hours, so each of these would otherwise cost a night: a CLI that opens its
interactive UI and waits for an answer nobody gives, one that is not logged in, Claude Code refusing its bypass
flags as root (how most cloud GPU boxes run), and Codex's sandbox that cannot start inside a container. Each
check answers "go" unless it is sure: a CLI version without the probed subcommand, a probe that times out or
says something unexpected, all let the run start (the round then fails with the CLI's own message).

The checks look at argv[0]'s name, so they cover `cmd:"claude ..."` and `cmd:"codex ..."` as well as the
built-in `claude-code` and `codex` agents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from autoresearch.agents.base import AgentError

PROBE_SECONDS = 3.0  # one probe; a run must fail within ~5 s of `autoresearch run`

# Either makes Claude Code authenticate without a login (API key, token, or a cloud provider's credentials).
CLAUDE_ENV_CREDENTIALS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN",
                          "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY")
CODEX_ENV_CREDENTIALS = ("CODEX_API_KEY", "OPENAI_API_KEY")
CLAUDE_BYPASS = ("--dangerously-skip-permissions", "--allow-dangerously-skip-permissions",
                 "--permission-mode=bypassPermissions")
CODEX_BYPASS = ("--dangerously-bypass-approvals-and-sandbox", "--yolo", "danger-full-access",
                "--sandbox=danger-full-access")


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def check_cli(name: str, exe: str, argv: tuple[str, ...]) -> None:
    """Raise a fatal AgentError, saying exactly what to do, when the CLI in argv cannot run unattended."""
    program = Path(argv[0]).name
    if program == "claude":
        _check_claude(name, exe, argv)
    elif program == "codex":
        _check_codex(name, exe, argv)


def _check_claude(name: str, exe: str, argv: tuple[str, ...]) -> None:
    args = argv[1:]
    if "-p" not in args and "--print" not in args:
        raise AgentError(f"agent {name}: `claude` without -p opens its interactive session, which stops to ask and "
                         "waits for an answer nobody gives. Use --agent claude-code, or add -p (print mode) to "
                         "the command line.", fatal=True)
    bypass = any(a in CLAUDE_BYPASS for a in args) or _option_value(args, "--permission-mode") == "bypassPermissions"
    if bypass and is_root() and os.environ.get("IS_SANDBOX") != "1" and not os.environ.get("CLAUDE_CODE_BUBBLEWRAP"):
        raise AgentError(f"agent {name}: Claude Code refuses --dangerously-skip-permissions and bypassPermissions "
                         "when run as root (\"cannot be used with root/sudo privileges\"). Use --agent claude-code, "
                         "which needs no bypass (print mode, file tools allowed, shell refused); or run as a "
                         "non-root user; or, on a disposable container or VM, export IS_SANDBOX=1.", fatal=True)
    if any(os.environ.get(var) for var in CLAUDE_ENV_CREDENTIALS):
        return
    status = _probe([exe, "auth", "status"])
    logged_in = None
    if status is not None:
        try:
            data = json.loads(status.stdout)
            logged_in = data.get("loggedIn") if isinstance(data, dict) else None
        except ValueError:
            pass  # an older CLI without `auth status`, or text: not a verdict
    if logged_in is False:
        raise AgentError(f"agent {name}: Claude Code is not logged in (`claude auth status` says loggedIn: false). "
                         "Run `claude auth login` (or `claude` once and /login), or set ANTHROPIC_API_KEY "
                         "(or CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token` on a headless machine).", fatal=True)


def _check_codex(name: str, exe: str, argv: tuple[str, ...]) -> None:
    args = argv[1:]
    if "exec" not in args and "e" not in args:
        raise AgentError(f"agent {name}: `codex` without `exec` opens its interactive UI, which stops and asks "
                         "whether to go on. Use --agent codex, or `codex exec ... -` in the command line.", fatal=True)
    if not any(os.environ.get(var) for var in CODEX_ENV_CREDENTIALS):
        status = _probe([exe, "login", "status"])
        if status is not None and status.returncode != 0 and "not logged in" in (status.stdout + status.stderr).lower():
            raise AgentError(f"agent {name}: Codex is not logged in (`codex login status`: Not logged in). Run "
                             "`codex login` (`codex login --device-auth` on a machine without a browser), or pipe "
                             "an API key into `codex login --with-api-key`, or set CODEX_API_KEY.", fatal=True)
    if sys.platform != "linux" or any(a in CODEX_BYPASS for a in args):
        return
    sandbox = _probe([exe, "sandbox", "linux", "--", "true"])
    if sandbox is None or sandbox.returncode == 0:
        return
    said = (sandbox.stderr + sandbox.stdout).strip()
    if "bwrap" in said.lower() or "landlock" in said.lower():
        first = said.splitlines()[0][:200]
        raise AgentError(f"agent {name}: Codex's sandbox cannot start on this machine ({first}), so every edit "
                         "would fail. Inside a container or VM you can throw away, run Codex without its sandbox "
                         "(autoresearch still restores every file but train.py): --agent 'cmd:codex exec "
                         "--dangerously-bypass-approvals-and-sandbox --skip-git-repo-check --color never -'. "
                         "Or allow user namespaces in the container (e.g. docker --security-opt seccomp=unconfined).",
                         fatal=True)


def _option_value(args: tuple[str, ...], option: str) -> str | None:
    for i, a in enumerate(args):
        if a == option and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(option + "="):
            return a.split("=", 1)[1]
    return None


def _probe(argv: list[str]) -> subprocess.CompletedProcess | None:
    """Run a status subcommand of the CLI; None when it could not answer in time (no verdict, not a failure)."""
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              timeout=PROBE_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return None
