"""Coding-agent command lines as agents: Claude Code, the Codex CLI, or any program you name.

A command agent only makes the edit. The loop checks the result, commits it, runs the experiment and keeps or
reverts it; the command never does any of that.

Choose one with `claude-code`, `codex`, or `cmd:"<command line>"` (split like a shell would, run without a shell).

The protocol every command follows:

- It runs in a scratch checkout of the best and edits `train.py` there, in place, and any other file a task declares
  editable (the prompt shows each). It changes no other file (the loop verifies this and refuses such a change with
  the reason). When it is asked to fix its own failed attempt, the files hold that attempt when it starts.
- The prompt reaches it twice: on standard input (closed after the prompt) and in a file named by the environment
  variable `AUTORESEARCH_PROMPT_FILE` (a temporary file outside the workspace, deleted afterwards). It also finds
  `AUTORESEARCH_TRAIN_PY` (the absolute path of train.py) and `AUTORESEARCH_EXPERIMENT` (the number of the
  experiment being proposed). The rest of its environment is the orchestrator's, API keys included, less the
  trackers' variables (MLFLOW_*, WANDB_*: their credentials, run/supervisor.py TRACKER_PREFIXES).
- Its description of the change is the last line of its standard output that begins with `Description:`
  (without one: `edit by <agent name>`). The rest of its standard output, trimmed and bounded, is kept as the
  rationale.
- Optionally it reports what the edit cost with lines `Cost: <usd>` and `Tokens: <input> <output>` on standard
  output (the last of each counts; a failed round is charged too). Without them the usage is recorded as zero.
- Exit code 0 means a proposal was made; train.py or another editable file must then differ from before. A
  non-zero exit is a failed round: the loop may skip it. After any failed round autoresearch puts the files back.
- It has a time limit (default 900 s). Past it, its whole process group gets SIGTERM, then SIGKILL after a grace
  period, and the round fails.
- A command that cannot be found stops the loop before it starts, with a message saying how to install it.
- It is confined (see confinement()): it may read and write the workspace and its own configuration, and use the
  network, but the workspace's `.autoresearch/` (journal, runs), the autoresearch cache (prepared val and test
  data, downloads) and the trackers' local stores and credential files (`run --track`) are hidden from it, as
  are the processes outside it. Where that cannot be done the round stops
  with a message; `--no-agent-sandbox` (AUTORESEARCH_AGENT_SANDBOX=0) runs agents unconfined.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from autoresearch import vcs
from autoresearch.agents.base import AgentError, Context, Proposal, Usage
from autoresearch.agents.preflight import check_cli
from autoresearch.agents.prompt import build_prompt
from autoresearch.paths import restore_file
from autoresearch.run.proctree import group_members
from autoresearch.run.secrets import TRACKER_PREFIXES
from autoresearch.workspace import RUN_DIR

DEFAULT_TIMEOUT = 900.0
TERM_GRACE_SECONDS = 10.0  # after SIGTERM, before SIGKILL
READER_JOIN_SECONDS = 5.0  # for output pipes kept open by a process that escaped the group
STDERR_TAIL_LINES = 20
STDOUT_KEEP_LINES = 2000
RATIONALE_CHARS = 4000
DESCRIPTION_CHARS = 200

PROMPT_ENV = "AUTORESEARCH_PROMPT_FILE"
TRAIN_PY_ENV = "AUTORESEARCH_TRAIN_PY"
EXPERIMENT_ENV = "AUTORESEARCH_EXPERIMENT"
SANDBOX_ENV = "AUTORESEARCH_AGENT_SANDBOX"
SANDBOX_OFF_HINT = (f"If your setup cannot confine agents, turn it off with --no-agent-sandbox ({SANDBOX_ENV}=0); "
                    "the agent can then read the evaluation data and the journal.")

# Claude Code in print mode: prompt from stdin, one JSON object on stdout at the end (the final message, what the
# round cost, its tokens: the only way --max-cost sees Claude Code's spending). Only the file tools exist (--tools),
# they run without asking (--allowedTools, acceptEdits; no bypass flag, so it runs as root too), and the shell is
# refused twice over. `claude-code:MODEL` adds --model MODEL.
CLAUDE_CODE_ARGV = (
    "claude", "-p",
    "--output-format", "json",
    "--permission-mode", "acceptEdits",
    "--tools", "Read,Edit,Write",
    "--allowedTools", "Read,Edit,Write",
    "--disallowedTools", "Bash,WebFetch,WebSearch",
)
# Codex non-interactive: writes only inside the workspace, no network, never asks; "-" reads the prompt from stdin.
# Progress goes to stderr, the final message to stdout. `codex:MODEL` adds --model MODEL.
CODEX_ARGV = (
    "codex", "exec",
    "--sandbox", "workspace-write",
    "-c", 'approval_policy="never"',
    "-c", "sandbox_workspace_write.network_access=false",
    "--skip-git-repo-check",
    "--color", "never",
    "-",
)

INSTALL_HINTS = {
    "claude-code": "Install Claude Code (npm install -g @anthropic-ai/claude-code, or see "
                   "https://docs.anthropic.com/en/docs/claude-code), log in once by running `claude`, "
                   "or choose another agent.",
    "codex": "Install the Codex CLI (npm install -g @openai/codex), log in with `codex login` "
             "(or set OPENAI_API_KEY), or choose another agent.",
}
CMD_HINT = "Put the program on PATH or give its path in the command line after `cmd:`."

COMMAND_INSTRUCTIONS = """
## How to deliver your change (this replaces the reply format above)
You run non-interactively; your current working directory is the workspace. Do not reply with the file or with
SEARCH/REPLACE blocks: make the change yourself.
- Edit `train.py` in place, in the current directory. Change, create or delete no other file.
- Do not run train.py, training, benchmarks or any other experiment, and do not use git: the loop runs the
  experiment after you finish and keeps or reverts your change.
- Leave train.py complete and runnable.
- The last line you print must be `Description: <one line saying what you changed>`.
"""

DESCRIPTION_RE = re.compile(r"^[\s>*_`#-]*Description\s*:[\s*_`]*(?P<text>.*?)[\s*_`]*$", re.IGNORECASE)
COST_RE = re.compile(r"^\s*Cost:\s*\$?\s*(?P<usd>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")
TOKENS_RE = re.compile(r"^\s*Tokens:\s*(?P<inp>\d+)\s+(?P<out>\d+)\s*$")


def base_prompt(ctx: Context) -> str:
    """The prompt every agent gets; command_prompt adds how a command delivers its change."""
    return build_prompt(ctx)


def command_prompt(ctx: Context) -> str:
    files = ", ".join(f"`{n}`" for n in ["train.py", *sorted(ctx.files)]) + (" (any of them)" if ctx.files else "")
    return base_prompt(ctx).rstrip() + "\n" + COMMAND_INSTRUCTIONS.replace("`train.py` in place", f"{files} in place")


@dataclass
class CommandAgent:
    """Runs `argv` in the workspace to edit train.py in place (see the module docstring for the protocol)."""

    name: str
    argv: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT
    grace: float = TERM_GRACE_SECONDS
    install_hint: str = CMD_HINT
    confine: bool = True  # run it under the sandbox launcher (confinement())
    cache: Path | None = None  # the autoresearch cache to hide (None: settings.cache_dir())
    hidden: tuple[Path, ...] = ()  # more to hide: the trackers' stores (test figures) and credential files
    claude_json: bool = False  # stdout ends with Claude Code's JSON result (--output-format json)

    def check(self, workspace: Path | None = None) -> str:
        """Before the run: the executable's absolute path, or a fatal AgentError saying how to install it; and,
        for Claude Code and Codex, that they can run unattended here (logged in, never asking, see preflight)."""
        exe = self.executable(workspace)
        check_cli(self.name, exe, self.argv)
        return exe

    def executable(self, workspace: Path | None = None) -> str:
        """The executable's absolute path; a fatal AgentError saying how to install it if there is none."""
        exe = self.argv[0]
        if os.sep in exe or (os.altsep and os.altsep in exe):
            path = Path(exe).expanduser()
            if not path.is_absolute():
                path = (workspace or Path.cwd()) / path
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
            raise AgentError(f"agent {self.name}: `{exe}` does not exist or is not executable "
                             f"(looked at {path}). {self.install_hint}", fatal=True)
        found = shutil.which(exe)
        if found is None:
            raise AgentError(f"agent {self.name}: the command `{exe}` was not found on PATH. {self.install_hint}",
                             fatal=True)
        return found

    def propose(self, ctx: Context) -> Proposal:
        if ctx.workspace is None:
            raise AgentError(f"agent {self.name} edits train.py in the workspace, but none was given", fatal=True)
        workspace = Path(ctx.workspace).resolve()
        train = workspace / "train.py"
        try:
            before = {train: train.read_bytes(),  # and the other editable files, to put back after a failed round
                      **{workspace / n: (workspace / n).read_bytes() for n in ctx.files if (workspace / n).exists()}}
        except OSError as e:
            raise AgentError(f"agent {self.name}: cannot read {train}: {e}", fatal=True) from e
        argv = [self.executable(workspace), *self.argv[1:]]
        prompt = command_prompt(ctx)
        start = ctx.failure.train_py if ctx.failure and ctx.failure.train_py else ctx.train_py
        start_files = {**ctx.files, **(ctx.failure.files if ctx.failure else {})}
        fd, prompt_path = tempfile.mkstemp(prefix="autoresearch-prompt-", suffix=".md")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(prompt)
            # The files on disk must be the ones the prompt describes: when fixing a failed attempt, that attempt.
            for path, text in ((train, start), *((workspace / n, t) for n, t in start_files.items())):
                if before.get(path) != text.encode("utf-8"):
                    path.write_text(text, encoding="utf-8")
            status = vcs.git(workspace, "status", "--porcelain", check=False)
            env = {**{k: v for k, v in os.environ.items() if not k.upper().startswith(TRACKER_PREFIXES)},
                   PROMPT_ENV: prompt_path, TRAIN_PY_ENV: str(train), EXPERIMENT_ENV: str(ctx.experiment)}
            prefix = confinement(self.name, workspace, self.cache, self.hidden) if self.confine else []
            out = _run([*prefix, *argv], workspace, env, prompt, self.timeout, self.grace)
            if prefix:
                self._check_launcher(out)
            return self._proposal(out, train, unchanged=(start, ctx.train_py), files=(start_files, ctx.files, status))
        except BaseException:
            for path, original in before.items():
                restore_file(workspace, path.relative_to(workspace).as_posix(), original)
            raise
        finally:
            Path(prompt_path).unlink(missing_ok=True)

    def _check_launcher(self, out: _Output) -> None:
        """A launcher that refused (or failed) to start the command stops the loop: every round would fail so."""
        from autoresearch.run.sandbox import REPORT_PREFIX

        refused = any(line.startswith(REPORT_PREFIX + "strict policy") for line in out.stderr)
        if refused or (out.returncode != 0 and not (out.first_stderr or "").startswith(REPORT_PREFIX)):
            raise AgentError(f"agent {self.name} could not be confined (exit {out.returncode}){_tail(out.stderr)}\n"
                             f"{SANDBOX_OFF_HINT}", usage=out.usage, fatal=True)

    def _proposal(self, out: _Output, train: Path, unchanged: tuple[str, ...],
                  files: tuple[dict, dict, str] = ({}, {}, "")) -> Proposal:  # as started, best's; git status
        if self.claude_json:
            _read_claude_json(out)

        def fail(message: str, lines: list[str] = ()) -> AgentError:
            return AgentError(f"agent {self.name} {message}{_tail(list(lines))}", usage=out.usage)

        if out.timed_out:
            raise fail(f"timed out after {self.timeout:g} s (stopped with SIGTERM, then SIGKILL)", out.stderr)
        if out.returncode != 0:
            how = (f"was killed by signal {-out.returncode}" if out.returncode < 0
                   else f"exited with code {out.returncode}")
            raise fail(how, out.stderr or out.stdout)
        start, best, status = files
        try:
            source = train.read_bytes().decode("utf-8")
            now = {name: (train.parent / name).read_bytes().decode("utf-8") for name in start}
        except OSError as e:
            raise fail(f"exited 0 but {Path(e.filename or train).name} is gone: {e}") from e
        except UnicodeDecodeError as e:
            raise fail(f"left train.py or another editable file that is not UTF-8 text: {e}") from e
        moved = vcs.git(train.parent, "status", "--porcelain", check=False) != status  # a fixed file: refused later
        if source in unchanged and all(now[n] in (start[n], best.get(n)) for n in now) and not moved:
            raise fail(f"exited 0 but made no change to {'any editable file' if now else 'train.py'}", out.stderr)
        return Proposal(train_py=source, description=out.description or f"edit by {self.name}",
                        rationale=out.rationale(), usage=out.usage,
                        files={n: t for n, t in now.items() if t != best.get(n)})


def make_command_agent(spec: str, *, timeout: float = DEFAULT_TIMEOUT, confine: bool = True,
                       cache: Path | None = None, hidden: tuple[Path, ...] = ()) -> CommandAgent:
    """`claude-code`, `codex`, or `cmd:<command line>` (also `cmd:"<command line>"`) -> an agent named `spec`.

    `confine=False` or AUTORESEARCH_AGENT_SANDBOX=0 runs it unconfined; `cache`: the cache it must not read;
    `hidden`: more paths it must not read."""
    spec = spec.strip()
    if not timeout > 0:
        raise AgentError(f"agent {spec}: the time limit must be positive, got {timeout}", fatal=True)
    confine = confine and os.environ.get(SANDBOX_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
    kw = dict(timeout=timeout, confine=confine, cache=cache, hidden=tuple(Path(p) for p in hidden))
    kind, colon, model = spec.partition(":")
    model = model.strip()
    if kind in ("claude-code", "codex") and (model or not colon):
        argv = CLAUDE_CODE_ARGV if kind == "claude-code" else CODEX_ARGV
        if model and kind == "codex":  # before codex's trailing "-" (the prompt from stdin)
            argv = (*argv[:-1], "--model", model, argv[-1])
        elif model:
            argv = (*argv, "--model", model)
        return CommandAgent(spec, argv, install_hint=INSTALL_HINTS[kind], claude_json=kind == "claude-code", **kw)
    if spec.startswith("cmd:"):
        return CommandAgent(spec, parse_command_line(spec[4:]), **kw)
    raise AgentError(f"unknown command agent {spec!r}: use claude-code[:MODEL], codex[:MODEL] or "
                     "cmd:\"<command line>\"", fatal=True)


def parse_command_line(line: str) -> tuple[str, ...]:
    """Split like a POSIX shell; a command line wrapped whole in quotes (cmd:"python agent.py") is unwrapped."""
    try:
        argv = shlex.split(line)
        if len(argv) == 1 and line.strip()[:1] in ("'", '"'):
            argv = shlex.split(argv[0])
    except ValueError as e:
        raise AgentError(f"cannot parse the command line {line!r}: {e}", fatal=True) from e
    if not argv:
        raise AgentError("the command line after cmd: is empty; write e.g. cmd:\"python my_agent.py\"", fatal=True)
    return tuple(argv)


# ---------------------------------------------------------------------------
# Confinement
# ---------------------------------------------------------------------------


def hidden_paths(workspace: Path, cache: Path | None) -> list[Path]:
    """What an agent may not read: the workspace's records (journal with the test figures, run directories,
    logs, compile cache) and the autoresearch cache (prepared val and test splits, raw downloads)."""
    from autoresearch.settings import cache_dir

    return [*{workspace / RUN_DIR, main_checkout(workspace) / RUN_DIR}, Path(cache_dir(cache)).resolve()]


def main_checkout(workspace: Path) -> Path:
    """The workspace itself, or, for a worker's git worktree (`--workers N`), the workspace it belongs to: its
    records are what must stay hidden, wherever the agent works."""
    if not (workspace / ".git").is_file():  # a worktree's .git is a file that points into the main .git
        return workspace
    proc = subprocess.run(["git", "-C", str(workspace), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                          capture_output=True, text=True)
    common = Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None
    return common.parent if common is not None and common.name == ".git" else workspace


def confinement(name: str, workspace: Path, cache: Path | None, more: tuple[Path, ...] = ()) -> list[str]:
    """The launcher prefix that runs an agent command with the paths of hidden_paths() (and `more`) out of its
    sight.

    Linux: a mount namespace covers them (a deny-list: Landlock's rules only grant, and listing everything an
    agent may use - node, npm's global modules, ~/.claude, ~/.codex, ~/.config - would break real installs), and
    a PID namespace with its own /proc keeps /proc/<pid>/root of the user's other processes from leading back to
    them. The network stays open: the agent talks to its model's API. The policy is strict: the launcher refuses
    to start the command when something could not be hidden (macOS: a Seatbelt profile, run/seatbelt.py)."""
    from autoresearch.run import sandbox

    hidden = [*hidden_paths(workspace, cache), *(Path(p).resolve() for p in more)]
    for h in hidden:
        if workspace == h or h in workspace.parents:
            raise AgentError(f"agent {name}: the workspace {workspace} lies inside {h}, which agents may not see "
                             f"(it holds the evaluation data or the journal). Move the workspace, or the cache with "
                             f"--cache-dir / AUTORESEARCH_CACHE. {SANDBOX_OFF_HINT}", fatal=True)
    # The workspace's .git (a worker's checkout shares it) read-only: our unconfined git obeys what its config, info
    # and hooks say (a filter driver, core.fsmonitor), so an agent that wrote there would run commands as us.
    git_dir = main_checkout(workspace) / ".git"
    policy = sandbox.Policy(network=True, filesystem=False, die_with_parent=True, private_dirs=("/dev/shm",),
                            hidden_paths=hidden, readonly_paths=[git_dir] if git_dir.is_dir() else [],
                            private_pids=True, strict=True)
    return sandbox.launcher_argv(policy)


# ---------------------------------------------------------------------------
# Running the command
# ---------------------------------------------------------------------------


@dataclass
class _Output:
    returncode: int
    timed_out: bool
    stdout: list[str]  # the last STDOUT_KEEP_LINES lines
    stderr: list[str]  # the last STDERR_TAIL_LINES lines
    description: str | None
    usage: Usage
    first_stderr: str | None = None  # the sandbox launcher's report line, when it ran

    def rationale(self) -> str:
        lines = [ln for ln in self.stdout
                 if not (DESCRIPTION_RE.match(ln) or COST_RE.match(ln) or TOKENS_RE.match(ln))]
        text = "\n".join(lines).strip()
        return text if len(text) <= RATIONALE_CHARS else "..." + text[-RATIONALE_CHARS:]


class _StdoutReader:
    """Keeps a bounded tail and the last Description/Cost/Tokens lines seen anywhere in the stream."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=STDOUT_KEEP_LINES)
        self.description: str | None = None
        self.usage = Usage()

    def __call__(self, stream) -> None:
        for raw in stream:
            line = raw.rstrip("\r\n")
            self.lines.append(line)
            if (m := DESCRIPTION_RE.match(line)) and (text := " ".join(m["text"].split())):
                self.description = text[:DESCRIPTION_CHARS]
            elif m := COST_RE.match(line):
                self.usage.cost_usd = float(m["usd"])
            elif m := TOKENS_RE.match(line):
                self.usage.input_tokens, self.usage.output_tokens = int(m["inp"]), int(m["out"])


def _run(argv: list[str], cwd: Path, env: dict[str, str], prompt: str, timeout: float, grace: float) -> _Output:
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                                start_new_session=True)
    except OSError as e:  # e.g. a script whose interpreter is missing
        raise AgentError(f"could not start {shlex.join(argv)}: {e}", fatal=True) from e
    out_reader = _StdoutReader()
    err_lines: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    first: list[str] = []
    # Separate threads: the command may never read its stdin, and either pipe may fill while we wait on the other.
    threads = [
        threading.Thread(target=_feed, args=(proc.stdin, prompt), daemon=True),
        threading.Thread(target=out_reader, args=(proc.stdout,), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr, err_lines, first), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop_group(proc, grace)
    finally:
        _signal_group(proc, signal.SIGKILL)  # whatever the command left behind goes with it
        proc.wait()
    deadline = time.monotonic() + READER_JOIN_SECONDS
    for t in threads[1:]:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    return _Output(returncode=proc.returncode, timed_out=timed_out, stdout=list(out_reader.lines),
                   stderr=list(err_lines), description=out_reader.description, usage=out_reader.usage,
                   first_stderr=first[0] if first else None)


def _read_claude_json(out: _Output) -> None:
    """Claude Code's `--output-format json` result: the final message becomes the output the protocol reads (its
    Description line, the rationale), and its cost and tokens the round's usage. Output that is not such a
    result (an older CLI, a crash) is left as it is, read as text."""
    found = _last_json_result(out.stdout)
    if found is None:
        return
    i, result = found
    reader = _StdoutReader()
    reader(io.StringIO(str(result.get("result") or "")))
    out.stdout = [*out.stdout[:i], *reader.lines]
    out.description = reader.description or out.description
    usage = result.get("usage") if isinstance(result.get("usage"), dict) else {}
    tokens = {key: int(v) if isinstance(v := usage.get(key), (int, float)) else 0
              for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")}
    cost = result.get("total_cost_usd")
    output = tokens.pop("output_tokens")  # every input token counts, cached or not: each is billed
    out.usage = Usage(sum(tokens.values()), output, float(cost) if isinstance(cost, (int, float)) else 0.0)
    if result.get("is_error") and out.returncode == 0:  # e.g. max turns, or an API error reported in the result
        out.returncode = 1
        out.stderr = [*out.stderr, f"claude reported an error ({result.get('subtype', 'error')}): "
                      f"{str(result.get('result') or '')[:300]}"]


def _last_json_result(lines: list[str]) -> tuple[int, dict] | None:
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i].strip()
        if not line.startswith("{"):
            continue
        try:
            result = json.loads(line)
        except ValueError:
            return None
        return (i, result) if isinstance(result, dict) and "result" in result else None
    return None


def _feed(stdin, text: str) -> None:
    try:
        stdin.write(text)
    except (BrokenPipeError, OSError, ValueError):
        pass  # the command did not read its stdin; the prompt file has the same text
    finally:
        try:
            stdin.close()
        except (BrokenPipeError, OSError):
            pass


def _drain(stream, sink: deque[str], first: list[str]) -> None:
    for line in stream:
        sink.append(line.rstrip("\r\n"))
        if not first:
            first.append(sink[-1])


def _stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the whole group; SIGKILL if any member is still there after `grace` seconds."""
    _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader so that it does not count as a live member
        if not _group_alive(proc.pid):
            return
        time.sleep(0.05)
    _signal_group(proc, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs. Zombies do not count: in containers whose init reaps slowly
    (or never), they would otherwise hold every timeout for its full grace period."""
    return bool(group_members(pgid))


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(lines: list[str]) -> str:
    text = "\n".join(lines[-STDERR_TAIL_LINES:]).strip()
    return f":\n{text}" if text else ""
