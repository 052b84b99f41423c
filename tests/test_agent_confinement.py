"""Command agents run confined: the evaluation data and the journal are out of their sight by every route, while
the workspace, the prompt and the network stay theirs (Linux: mount + PID namespaces, run/mounts.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from autoresearch.agents import command
from autoresearch.agents.base import AgentError, Context
from autoresearch.agents.command import SANDBOX_ENV, hidden_paths, make_command_agent
from autoresearch.run import sandbox

LINUX = sys.platform.startswith("linux")
SOURCE = "LR = 0.01\n"


def _can_confine() -> str:
    """'' when this machine can run the agents' policy; otherwise the launcher's report, to say why not."""
    if not LINUX:
        return "agents are confined with namespaces on Linux only"
    probe_dir = Path(__file__).parent
    argv = [*command.confinement("probe", probe_dir, probe_dir / "no-such-cache"), "true"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return "" if out.returncode == 0 else out.stderr.strip()


WHY_NOT = _can_confine()
needs_namespaces = pytest.mark.skipif(bool(WHY_NOT), reason=f"cannot confine agents here: {WHY_NOT}")

# The agent: tries to reach the holdout and the journal by every route it has, then does its job.
PROBE = """\
import ctypes, json, os, socket, sys
from pathlib import Path
ws = Path.cwd()
test_npy, journal, outside_pid = sys.argv[1], sys.argv[2], sys.argv[3]
got = {}
def attempt(label, fn):
    try:
        r = fn()
        got[label] = "READ " + repr(r)[:40]
    except OSError as e:
        got[label] = f"{type(e).__name__}: {e}"
def read(p):
    return open(p, "rb").read()
rel_test = os.path.relpath(test_npy, ws)
attempt("test-absolute", lambda: read(test_npy))
attempt("test-relative", lambda: read(rel_test))
attempt("test-proc-cwd", lambda: read(f"/proc/self/cwd/{rel_test}"))
attempt("test-proc-root-outside", lambda: read(f"/proc/{outside_pid}/root{test_npy}"))
attempt("test-list-cache", lambda: os.listdir(os.path.dirname(os.path.dirname(test_npy))))
attempt("journal-absolute", lambda: read(journal))
attempt("journal-relative", lambda: read(".autoresearch/journal.db"))
attempt("journal-proc-cwd", lambda: read("/proc/self/cwd/.autoresearch/journal.db"))
attempt("journal-proc-root-1", lambda: read(f"/proc/1/root{journal}"))
os.symlink(journal, "sneaky-link")
attempt("journal-symlink", lambda: read("sneaky-link"))
attempt("journal-hardlink", lambda: (os.link(journal, "sneaky-hardlink"), read("sneaky-hardlink")))
attempt("test-hardlink", lambda: (os.link(test_npy, "sneaky-hardlink2"), read("sneaky-hardlink2")))
attempt("records-list", lambda: os.listdir(".autoresearch"))
def list_by_fd():
    fd = os.open(".autoresearch", os.O_RDONLY | os.O_DIRECTORY)
    return os.listdir(fd)
attempt("records-list-fd", list_by_fd)
attempt("processes-outside", lambda: read(f"/proc/{outside_pid}/cmdline"))
libc = ctypes.CDLL(None, use_errno=True)
def umount():  # undo the cover, then look again
    if libc.umount2(os.fsencode(os.path.abspath(".autoresearch")), 2) != 0:
        raise OSError(ctypes.get_errno(), "umount")
    return os.listdir(".autoresearch")
attempt("umount-cover", umount)
def umount_in_own_namespace():  # a user namespace of its own gives it every capability there
    pid = os.fork()
    if pid == 0:
        if libc.unshare(0x10000000 | 0x00020000) != 0:
            os._exit(10)
        if libc.umount2(os.fsencode(os.path.abspath(".autoresearch")), 2) != 0:
            os._exit(ctypes.get_errno())  # EINVAL: the kernel locked the inherited cover
        os._exit(100 + len(os.listdir(".autoresearch")))
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code < 100:
        raise OSError(code, "no namespace of its own" if code == 10 else "umount: " + os.strerror(code))
    return code
attempt("umount-in-own-userns", umount_in_own_namespace)
for label, fn in (("prompt-file", lambda: read(os.environ["AUTORESEARCH_PROMPT_FILE"])),
                  ("network", lambda: socket.create_connection(("127.0.0.1", int(os.environ["PORT"])), 5).close())):
    attempt(label, fn)
got["stdin"] = sys.stdin.read()[:6]
got["api-key"] = os.environ.get("ANTHROPIC_API_KEY")
Path("train.py").write_text(Path("train.py").read_text().replace("LR = 0.01", "LR = 0.02"))
print("PROBE " + json.dumps(got))
print("Description: probed")
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A workspace with records, a cache with a prepared test split beside it, a stub agent, a TCP server."""
    ws, cache = tmp_path / "ws", tmp_path / "cache"
    (ws / ".autoresearch" / "runs").mkdir(parents=True)
    (ws / "train.py").write_text(SOURCE)
    journal = ws / ".autoresearch" / "journal.db"
    journal.write_text("test_bpb 0.987")
    test_npy = cache / "prepared" / "tiny" / "test.tokens.npy"
    test_npy.parent.mkdir(parents=True)
    test_npy.write_bytes(b"HOLDOUT")
    (tmp_path / "agent.py").write_text(PROBE)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setattr(command, "base_prompt", lambda ctx: "PROMPT\n")
    server = socket.create_server(("127.0.0.1", 0))
    monkeypatch.setenv("PORT", str(server.getsockname()[1]))
    def accept_one():
        try:
            server.accept()[0].close()
        except OSError:  # the test closed the server before any agent connected
            pass
    threading.Thread(target=accept_one, daemon=True).start()
    ctx = Context(program="", train_py=SOURCE, harness_surface="", workspace=ws, experiment=3)
    yield ws, cache, test_npy, journal, ctx
    server.close()


@needs_namespaces
@pytest.mark.timeout(60)
def test_a_confined_agent_cannot_read_the_holdout_or_the_journal_but_can_do_its_job(setup, tmp_path):
    ws, cache, test_npy, journal, ctx = setup
    outside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a dumpable process
    try:
        agent = make_command_agent(f"cmd:{sys.executable} {tmp_path / 'agent.py'} {test_npy} {journal} "
                                   f"{outside.pid}", cache=cache)
        assert agent.confine
        proposal = agent.propose(ctx)
    finally:
        outside.kill()
        outside.wait()
    got = json.loads(next(line for line in proposal.rationale.splitlines() if line.startswith("PROBE "))[6:])
    reached = {k: v for k, v in got.items() if k.startswith(("test-", "journal-", "records-", "processes-",
                                                              "umount-")) and v.startswith("READ")}
    assert reached == {}, got
    assert len([k for k in got if k.startswith(("test-", "journal-", "records-", "processes-", "umount-"))]) == 17
    assert got["prompt-file"].startswith("READ b'PROMPT") and got["stdin"] == "PROMPT"
    assert got["network"] == "READ None" and got["api-key"] == "sk-test"
    assert proposal.train_py == "LR = 0.02\n" and proposal.description == "probed"
    assert journal.read_text() == "test_bpb 0.987" and test_npy.read_bytes() == b"HOLDOUT"  # untouched outside
    assert (ws / "sneaky-link").is_symlink()  # what it made in the workspace is there, and leads nowhere new


SLEEPER = """\
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the child: only SIGKILL ends them
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", sys.argv[1]])
time.sleep(60)
"""


def _alive_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
@needs_namespaces
@pytest.mark.timeout(60)
def test_a_confined_agent_past_its_time_is_killed_with_everything_it_started(setup, tmp_path):
    ws, cache, *_, ctx = setup
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    marker = f"marker-{uuid.uuid4().hex}"
    agent = make_command_agent(f"cmd:{sys.executable} {tmp_path / 'sleeper.py'} {marker}", timeout=2.0, cache=cache)
    agent.grace = 0.5
    with pytest.raises(AgentError, match="timed out after 2 s") as err:
        agent.propose(ctx)
    assert not err.value.fatal
    deadline = time.monotonic() + 5
    while _alive_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive_with(marker) == []
    assert (ws / "train.py").read_text() == SOURCE


@pytest.mark.skipif(not LINUX, reason="the launcher's namespaces are Linux only")
@pytest.mark.timeout(60)
def test_a_launcher_that_cannot_confine_stops_the_loop_and_says_how_to_opt_out(setup, tmp_path, monkeypatch):
    ws, cache, *_, ctx = setup
    real = command.confinement

    def without_mount_namespaces(name, workspace, cache, *more):
        argv = real(name, workspace, cache, *more)
        return [*argv[:-1], "--skip", "mountns", "--"]  # as on a kernel without unprivileged user namespaces

    monkeypatch.setattr(command, "confinement", without_mount_namespaces)
    (tmp_path / "edit.py").write_text("open('train.py', 'w').write('LR = 0.5\\n')\n")
    agent = make_command_agent(f"cmd:{sys.executable} {tmp_path / 'edit.py'}", cache=cache)
    with pytest.raises(AgentError, match="could not be confined") as err:
        agent.propose(ctx)
    assert err.value.fatal and "--no-agent-sandbox" in str(err.value) and "NOT hidden" in str(err.value)
    assert (ws / "train.py").read_text() == SOURCE  # the command never ran

    monkeypatch.setenv(SANDBOX_ENV, "0")  # the opt-out: no launcher at all
    assert make_command_agent(f"cmd:{sys.executable} {tmp_path / 'edit.py'}", cache=cache).propose(ctx).train_py \
        == "LR = 0.5\n"


def test_what_is_hidden_and_a_workspace_inside_it_is_refused(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    assert hidden_paths(ws, tmp_path / "c") == [ws / ".autoresearch", (tmp_path / "c").resolve()]
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path / "env-cache"))
    assert hidden_paths(ws, None)[1] == (tmp_path / "env-cache").resolve()
    with pytest.raises(AgentError, match="lies inside") as err:
        command.confinement("cmd:x", ws, tmp_path)
    assert err.value.fatal
    argv = command.confinement("cmd:x", ws, tmp_path / "c")
    policy = sandbox.Policy.from_json(argv[argv.index("--policy") + 1])
    assert policy.network and policy.strict and policy.private_pids and not policy.filesystem
    assert set(policy.hidden_paths) == {str(ws / ".autoresearch"), str((tmp_path / "c").resolve())}
    for off in ("0", "false", "off"):
        monkeypatch.setenv(SANDBOX_ENV, off)
        assert not make_command_agent("cmd:x").confine
    monkeypatch.delenv(SANDBOX_ENV)
    assert make_command_agent("cmd:x").confine and not make_command_agent("cmd:x", confine=False).confine
