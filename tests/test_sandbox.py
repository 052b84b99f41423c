"""The sandbox launcher and the process-tree helpers, exercised through real subprocesses (Linux)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from autoresearch.run import proctree, sandbox
from autoresearch.run.sandbox import Policy, descendants, kill_descendants, landlock_abi, launcher_argv, tree_rss_mb

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox confines on Linux only")
SRC = str(Path(sandbox.__file__).resolve().parents[2])
needs_landlock = pytest.mark.skipif(landlock_abi() == 0, reason="this kernel has no Landlock")


def run(code: str, policy: Policy | None, *, skip: str = "", cwd: Path | None = None, timeout: float = 60,
        launcher_python: str = sys.executable, python: str = sys.executable, prefix: tuple[str, ...] = (),
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -c code`, through the launcher unless `policy` is None."""
    argv = [python, "-c", textwrap.dedent(code)]
    if policy is not None:
        head = [launcher_python, "-m", "autoresearch.run.sandbox", "--policy", policy.to_json()]
        argv = [*head, *(["--skip", skip] if skip else []), "--", *argv]
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env, stdin=subprocess.DEVNULL)


def report_of(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith(sandbox.REPORT_PREFIX)]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def tree(tmp_path) -> dict[str, Path]:
    """A workspace with records, a prepared-data directory, a run directory, and a directory nobody granted."""
    ws = tmp_path / "ws"
    run_dir = ws / ".autoresearch" / "runs" / "0001"
    data = tmp_path / "cache" / "prepared" / "x"
    secret = tmp_path / "secret"
    for d in (run_dir, data, secret):
        d.mkdir(parents=True)
    (ws / "results.tsv").write_text("commit\tval_bpb\n")
    (ws / ".autoresearch" / "journal.db").write_text("journal")
    (ws / "autoresearch.toml").write_text("[workspace]\n")
    (data / "val.tokens.npy").write_text("tokens")
    (secret / "key").write_text("secret")
    return {"ws": ws, "run": run_dir, "data": data, "secret": secret}


def tree_policy(t: dict[str, Path]) -> Policy:
    return Policy(read_paths=[t["data"], t["ws"] / "autoresearch.toml"], write_paths=[t["run"]])


PROBE = """
    import os, sys
    def attempt(label, fn):
        try:
            fn()
            print(label, "ok")
        except OSError as e:
            print(label, type(e).__name__)
    ws, run, data, secret = sys.argv[1:5]
    attempt("read-data", lambda: open(f"{data}/val.tokens.npy").read())
    attempt("write-data", lambda: open(f"{data}/new", "w").write("x"))
    attempt("read-settings", lambda: open(f"{ws}/autoresearch.toml").read())
    attempt("read-results", lambda: open(f"{ws}/results.tsv").read())
    attempt("write-results", lambda: open(f"{ws}/results.tsv", "a").write("x"))
    attempt("read-journal", lambda: open(f"{ws}/.autoresearch/journal.db").read())
    attempt("write-run", lambda: open(f"{run}/out.txt", "w").write("x"))
    attempt("mkdir-run", lambda: os.mkdir(f"{run}/sub"))
    attempt("read-secret", lambda: open(f"{secret}/key").read())
    attempt("list-secret", lambda: os.listdir(secret))
    attempt("write-secret", lambda: open(f"{secret}/new", "w").write("x"))
    attempt("read-cwd", lambda: open("key").read())
    attempt("parent-environ", lambda: open(f"/proc/{os.getppid()}/environ").read())
    attempt("signal-parent", lambda: os.kill(os.getppid(), 0))
    attempt("devnull", lambda: open("/dev/null", "w").write("x"))
"""


def probe(t: dict[str, Path], policy: Policy, **kw) -> tuple[dict[str, str], str]:
    code = f"import sys; sys.argv[1:] = {[str(t[k]) for k in ('ws', 'run', 'data', 'secret')]!r}\n"
    proc = run(code + textwrap.dedent(PROBE), policy, cwd=t["secret"], **kw)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split() for line in proc.stdout.splitlines()), report_of(proc)


# ---------------------------------------------------------------------------
# Filesystem
# ---------------------------------------------------------------------------


@needs_landlock
def test_filesystem_is_confined_to_the_granted_paths(tree):
    got, report = probe(tree, tree_policy(tree))
    assert got["read-data"] == "ok" and got["read-settings"] == "ok"  # read-only grants: a directory, one file
    assert got["write-data"] == "PermissionError"
    assert got["write-run"] == "ok" and got["mkdir-run"] == "ok"
    for denied in ("read-results", "write-results", "read-journal", "read-secret", "list-secret", "write-secret",
                   "read-cwd"):
        assert got[denied] == "PermissionError", (denied, got)
    assert got["devnull"] == "ok"
    assert f"filesystem confined (landlock abi {landlock_abi()}" in report
    if landlock_abi() >= 6:
        assert got["signal-parent"] == "PermissionError" and "signals scoped" in report
    assert (tree["run"] / "out.txt").read_text() == "x"


@needs_landlock
def test_a_pythonpath_holding_the_workspace_does_not_widen_the_sandbox(tree):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree["ws"]), os.path.expanduser("~"), "/"])}
    got, _ = probe(tree, tree_policy(tree), env=env)
    assert got["read-results"] == got["read-journal"] == "PermissionError"
    assert got["write-run"] == "ok"


def test_without_landlock_the_report_says_not_confined(tree):
    got, report = probe(tree, tree_policy(tree), skip="landlock")
    assert "filesystem NOT CONFINED" in report
    assert got["read-secret"] == "ok"  # and indeed it is not: the report did not pretend


def test_strict_policy_refuses_to_start_when_a_restriction_is_missing(tree):
    policy = Policy(write_paths=[tree["run"]], strict=True)
    proc = run("print('started')", policy, skip="landlock")
    assert proc.returncode == 126 and "started" not in proc.stdout
    assert "strict policy: not starting (filesystem not applied)" in proc.stderr


@pytest.mark.slow
@needs_landlock
def test_torch_imports_and_computes_inside_the_sandbox(tree):
    proc = run("import numpy, torch; print(torch.ones(3).sum().item())", tree_policy(tree), cwd=tree["run"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3.0"
    assert "filesystem confined" in report_of(proc)


# ---------------------------------------------------------------------------
# Private /dev/shm and /tmp
# ---------------------------------------------------------------------------

PERSIST = """
    import ctypes, os, sys
    name = sys.argv[1]
    def attempt(label, fn):
        try:
            fn()
            print(label, "ok")
        except OSError as e:
            print(label, type(e).__name__)
    attempt("write-shm", lambda: open(f"/dev/shm/{name}", "w").write("x"))
    attempt("write-tmp", lambda: open(f"/tmp/{name}", "w").write("x"))
    attempt("write-run", lambda: open(f"{sys.argv[2]}/{name}", "w").write("x"))  # granted, though under /tmp
    libc = ctypes.CDLL(None, use_errno=True)
    def umount():
        if libc.umount2(b"/dev/shm", 2) != 0:
            raise OSError(ctypes.get_errno(), "umount")
    attempt("umount-shm", umount)
"""


def persist(tree, **kw) -> tuple[dict[str, str], str, str]:
    name = f"sandbox-test-{os.getpid()}-{time.monotonic_ns()}"
    code = f"import sys; sys.argv[1:] = [{name!r}, {str(tree['run'])!r}]\n" + textwrap.dedent(PERSIST)
    proc = run(code, Policy(write_paths=[tree["run"]], private_dirs=sandbox.PRIVATE_DIRS), **kw)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split() for line in proc.stdout.splitlines()), report_of(proc), name


@needs_landlock
def test_dev_shm_and_tmp_are_private_to_the_run_and_stay_so(tree):
    got, report, name = persist(tree)
    if "NOT private" in report:
        pytest.skip(f"no mount namespace here: {report}")
    assert "private /dev/shm, /tmp (" in report
    assert got == {"write-shm": "ok", "write-tmp": "ok", "write-run": "ok", "umount-shm": "PermissionError"}
    assert not os.path.exists(f"/dev/shm/{name}") and not os.path.exists(f"/tmp/{name}")  # gone with the run
    assert (tree["run"] / name).exists()


@needs_landlock
def test_without_a_mount_namespace_dev_shm_is_not_private_and_not_writable(tree):
    got, report, name = persist(tree, skip="mountns")
    assert "/dev/shm, /tmp NOT private (mount namespace skipped)" in report
    assert got["write-shm"] == got["write-tmp"] == "PermissionError" and got["write-run"] == "ok"
    assert not os.path.exists(f"/dev/shm/{name}")


# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------


@pytest.fixture
def tcp_server():
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    server.close()


CONNECT = """
    import socket, sys
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
        print("connected")
    except OSError as e:
        print("failed", type(e).__name__)
"""


def connect_code(port: int) -> str:
    return f"import sys; sys.argv[1:] = [{port}]\n" + textwrap.dedent(CONNECT)


def test_tcp_to_the_host_works_outside_and_fails_inside(tcp_server, tree):
    outside = run(connect_code(tcp_server), None)
    assert outside.stdout.strip() == "connected"
    inside = run(connect_code(tcp_server), Policy(write_paths=[tree["run"]]))
    assert inside.stdout.startswith("failed"), inside.stdout + inside.stderr
    assert "network isolated (" in report_of(inside)


def test_network_allowed_by_policy_is_reported(tcp_server, tree):
    proc = run(connect_code(tcp_server), Policy(network=True, write_paths=[tree["run"]]))
    assert proc.stdout.strip() == "connected"
    assert "network allowed (policy)" in report_of(proc)


@pytest.mark.skipif(landlock_abi() < 4, reason="Landlock network rules need ABI 4 (Linux 6.7)")
def test_landlock_denies_tcp_when_no_namespace_can_be_made(tcp_server, tree):
    proc = run(connect_code(tcp_server), Policy(write_paths=[tree["run"]]), skip="netns")
    assert proc.stdout.strip() == "failed PermissionError", proc.stdout + proc.stderr
    assert "network PARTLY isolated (landlock abi" in report_of(proc)
    assert "UDP not" in report_of(proc)


# ---------------------------------------------------------------------------
# The report line, the command line, the policy
# ---------------------------------------------------------------------------


def test_one_report_line_before_the_command_runs(tree):
    proc = run("import sys; print('child', file=sys.stderr)", Policy(write_paths=[tree["run"]]))
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(sandbox.REPORT_PREFIX) and lines[1] == "child"
    assert sum(line.startswith(sandbox.REPORT_PREFIX) for line in lines) == 1
    assert lines[0].endswith("dies with parent")
    if os.geteuid() == 0:
        assert "network isolated (netns)" in lines[0] and "root without capabilities" in lines[0]


PARENT = """
    import subprocess, sys
    from autoresearch.run import sandbox
    if sys.argv[2] == "protect":
        assert sandbox.protect_orchestrator()
    code = ("import os\\ntry:\\n    open(f'/proc/{os.getppid()}/environ').read(); print('read')\\n"
            "except OSError as e:\\n    print(type(e).__name__)")
    policy = sandbox.Policy(write_paths=[sys.argv[1]])
    out = subprocess.run([*sandbox.launcher_argv(policy), sys.executable, "-c", code], capture_output=True, text=True)
    print(out.stdout.strip() or out.stderr)
"""


def test_a_protected_orchestrator_keeps_its_environment_from_the_experiment(tree):
    # The orchestrator's environment holds API keys; the experiment runs as the same user.
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(PARENT), str(tree["run"]), "protect"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "SOME_API_KEY": "sk-x"})
    assert proc.stdout.strip() == "PermissionError", proc.stdout + proc.stderr


def test_launcher_argv_and_policy_round_trip(tree):
    policy = Policy(read_paths=[tree["data"]], write_paths=[str(tree["run"])], memory_mb=512)
    assert policy.read_paths == (str(tree["data"]),)  # lists and Paths become a tuple of str
    assert Policy.from_json(policy.to_json()) == policy
    argv = launcher_argv(policy)
    assert argv[:4] == [sys.executable, "-P", "-m", "autoresearch.run.sandbox"] and argv[-1] == "--"
    assert json.loads(argv[argv.index("--policy") + 1])["memory_mb"] == 512
    assert argv[argv.index("--parent-pid") + 1] == str(os.getpid())
    with pytest.raises(ValueError, match="unknown sandbox policy key"):
        Policy.from_json('{"network": false, "gpu": true}')


def test_bad_usage_and_missing_command():
    proc = subprocess.run([sys.executable, "-m", "autoresearch.run.sandbox", "--policy", "{}"], capture_output=True,
                          text=True)
    assert proc.returncode != 0 and "usage" in proc.stderr
    proc = run("pass", Policy(), python="/nonexistent/python")
    assert proc.returncode == 127 and "cannot execute" in proc.stderr


def test_describe_reports_what_this_machine_supports():
    line = sandbox.describe()
    assert line.startswith(sandbox.REPORT_PREFIX)
    assert "network" in line and "filesystem" in line


# ---------------------------------------------------------------------------
# Dying with the parent
# ---------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def test_the_experiment_dies_when_its_parent_is_killed(tree):
    parent_code = textwrap.dedent(f"""
        import subprocess, sys, time
        from autoresearch.run.sandbox import Policy, launcher_argv
        policy = Policy(write_paths=[{str(tree["run"])!r}])
        child = subprocess.Popen([*launcher_argv(policy), sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while "autoresearch.run.sandbox" in Path(f"/proc/{child}/cmdline").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # wait until the launcher has exec'd the command
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child)
    finally:
        parent.kill()
        parent.wait()


def test_the_launcher_does_not_start_when_its_parent_is_already_gone():
    argv = [*launcher_argv(Policy(), parent_pid=1), sys.executable, "-c", "print('started')"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 125 and "started" not in proc.stdout and "is gone" in proc.stderr


# ---------------------------------------------------------------------------
# Process trees: memory, descendants, killing what is left
# ---------------------------------------------------------------------------

ALLOCATOR = ("import sys; print('ready', flush=True); sys.stdin.readline(); "
             "b = b'x' * (200 << 20); print('allocated', flush=True); sys.stdin.readline()")


def test_tree_rss_counts_a_child_that_allocates_200_mb():
    helper = ("import subprocess, sys; "
              f"subprocess.run([sys.executable, '-c', {ALLOCATOR!r}])")
    proc = subprocess.Popen([sys.executable, "-c", helper], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert len(descendants(proc.pid)) == 1
        before = tree_rss_mb(proc.pid)
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "allocated"
        after = tree_rss_mb(proc.pid)
        assert after - before > 150, (before, after)
    finally:
        kill_descendants(proc.pid)
        proc.kill()
        proc.wait()
    assert tree_rss_mb(2**22 + 12345) == 0.0  # no such process


def test_kill_descendants_of_a_child_spares_the_child():
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(p.pid, flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(child.stdout.readline())
        assert descendants(child.pid) == [grandchild]
        assert kill_descendants(child.pid) == [grandchild]
        deadline = time.monotonic() + 5
        while not _gone(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(grandchild) and child.poll() is None
    finally:
        child.kill()
        child.wait()


SUBREAPER = """
    import os, subprocess, sys, time
    import psutil
    from autoresearch.run import sandbox
    assert sandbox.enable_subreaper()
    # A child that starts a grandchild in a new session (out of any process group) and exits at once.
    out = subprocess.run([sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
                          "'import time; time.sleep(60)'], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
                          "print(p.pid)"],
                         capture_output=True, text=True, check=True)
    escapee = int(out.stdout)
    deadline = time.monotonic() + 5
    while psutil.Process(escapee).ppid() != os.getpid() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert psutil.Process(escapee).ppid() == os.getpid(), "not re-parented to the subreaper"
    spared = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.DEVNULL)
    hit = sandbox.kill_descendants(spare=[spared.pid])
    assert hit == [escapee], (hit, escapee)
    assert not psutil.pid_exists(escapee), "killed and reaped"
    assert spared.poll() is None
    spared.kill(); spared.wait()
    print("OK")
"""


def test_kill_descendants_finds_a_setsid_escapee_under_a_subreaper():
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SUBREAPER)], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.strip() == "OK", proc.stderr


CALLER = """
    import os, subprocess, sys
    # Inside a helper H: a sleeping sibling, and a caller that kills the descendants of H, its own parent.
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.DEVNULL)
    caller = subprocess.run([sys.executable, "-c", "import os; from autoresearch.run.sandbox import kill_descendants; "
                             "print(kill_descendants(os.getppid()), os.getpid())"], capture_output=True, text=True)
    hit, caller_pid = caller.stdout.rsplit(" ", 1)
    print(caller.returncode, hit == f"[{sibling.pid}]", sibling.wait() == -9)
"""


def test_kill_descendants_never_hits_the_caller():
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(CALLER)], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["0", "True", "True"], proc.stdout + proc.stderr


WORKER = """
    import json, os, subprocess, sys, time
    import psutil
    from autoresearch.run import sandbox
    assert sandbox.enable_subreaper()  # as backends/worker.py does: this experiment's strays come back to us
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    quiet = "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL"  # or run() would wait for the escapee's EOF
    out = subprocess.run([sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen(%r, "
                          "start_new_session=True, %s); print(p.pid)" % (sleep, quiet)],
                         capture_output=True, text=True, check=True, timeout=30)
    escapee = int(out.stdout)
    deadline = time.monotonic() + 5
    while psutil.Process(escapee).ppid() != os.getpid() and time.monotonic() < deadline:
        time.sleep(0.02)
    train = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen(%r); "
                              "print(p.pid, flush=True); p.wait()" % (sleep,)], stdout=subprocess.PIPE, text=True)
    print(json.dumps(sorted([escapee, train.pid, int(train.stdout.readline())])), flush=True)
    sys.stdin.readline()
    print(json.dumps(sorted(sandbox.kill_descendants())), flush=True)
    sys.stdin.readline()
"""


def _live(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_killing_one_experiments_processes_leaves_a_sibling_experiments_alone():
    workers = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(WORKER)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        trees = [json.loads(w.stdout.readline()) for w in workers]  # each: escapee, train.py, its child
        assert all(len(t) == 3 for t in trees) and not set(trees[0]) & set(trees[1])
        first, second = workers
        first.stdin.write("\n")
        first.stdin.flush()
        assert json.loads(first.stdout.readline()) == trees[0]
        deadline = time.monotonic() + 5
        while any(map(_live, trees[0])) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_live, trees[0]))
        assert all(map(_live, trees[1])) and first.poll() is None and second.poll() is None
        second.stdin.write("\n")
        second.stdin.flush()
        assert json.loads(second.stdout.readline()) == trees[1]
    finally:
        for w in workers:
            kill_descendants(w.pid)
            w.kill()
            w.wait(timeout=10)


def test_group_members_are_the_live_processes_of_the_group():
    # The leader leaves a zombie child in its group (never reaped) and starts a live one.
    code = ("import subprocess, sys, time; z = subprocess.Popen([sys.executable, '-c', '']); "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(z.pid, p.pid, flush=True); time.sleep(60)")
    leader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        zombie, live = map(int, leader.stdout.readline().split())
        deadline = time.monotonic() + 10
        while _live(zombie) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(p.pid for p in proctree.group_members(leader.pid)) == sorted([leader.pid, live])
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait(timeout=10)
    deadline = time.monotonic() + 10  # SIGKILL lands when the kernel next schedules the member
    while proctree.group_members(leader.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proctree.group_members(leader.pid) == []


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "psutil-only"])
def test_kill_descendants_signals_no_process_that_took_over_a_pid(monkeypatch, pidfd):
    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)  # as on macOS
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        seen = psutil.Process(child.pid)
        # As if this pid had named an older process when it was seen: the start time is how psutil tells them apart.
        seen._ident = (seen.pid, seen._ident[1] - 100.0)
        assert not proctree._signal(seen, signal.SIGKILL)
        assert child.poll() is None
        assert proctree._signal(psutil.Process(child.pid), signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait(timeout=10)


# ---------------------------------------------------------------------------
# Without root: the user-namespace path
# ---------------------------------------------------------------------------


def _unprivileged_python() -> str | None:
    """A Python interpreter the user nobody can run (ours may live under an unreadable /root)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return None
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if not os.path.exists(candidate):
            continue
        ok = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", candidate, "-c",
                             "import os, sys; os.stat(os.path.realpath(sys.executable)); os.listdir(os.path.dirname(os.__file__))"],
                            capture_output=True)
        if ok.returncode == 0:
            return candidate
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="not root: every other test here already runs the unprivileged path")
@needs_landlock
def test_unprivileged_user_gets_a_user_namespace_and_keeps_its_ids(tcp_server):
    python = _unprivileged_python()
    if python is None:
        pytest.skip("no user nobody, no setpriv, or no Python interpreter that nobody may run")
    root = Path(tempfile.mkdtemp(prefix="sandbox-nobody-", dir="/tmp"))
    try:
        tree = {"ws": root / "ws", "run": root / "ws" / ".autoresearch" / "runs" / "1", "data": root / "data",
                "secret": root / "secret"}
        for d in (tree["run"], tree["data"], tree["secret"]):
            d.mkdir(parents=True)
        for path, text in ((tree["ws"] / "results.tsv", "r"), (tree["ws"] / ".autoresearch" / "journal.db", "j"),
                           (tree["ws"] / "autoresearch.toml", "t"), (tree["data"] / "val.tokens.npy", "v"),
                           (tree["secret"] / "key", "s")):
            path.write_text(text)
        for dirpath, _, filenames in os.walk(root):  # readable by everyone, as a shared machine might be
            os.chmod(dirpath, 0o755)
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), 0o644)
        os.chmod(tree["run"], 0o777)
        as_nobody = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": SRC}
        got, report = probe(tree, tree_policy(tree), launcher_python=python, python=python, prefix=as_nobody, env=env)
        assert "network isolated (user+net namespace)" in report and "filesystem confined" in report
        assert got["read-data"] == "ok" and got["write-run"] == "ok"
        assert got["read-secret"] == got["read-results"] == got["write-data"] == "PermissionError"
        assert (tree["run"] / "out.txt").stat().st_uid == 65534  # files keep the user's own id
        ids = run("import os; print(os.getuid(), os.getgid())", tree_policy(tree), launcher_python=python,
                  python=python, prefix=as_nobody, env=env)
        assert ids.stdout.split() == ["65534", "65534"], ids.stderr
        net = run(connect_code(tcp_server), tree_policy(tree), launcher_python=python, python=python,
                  prefix=as_nobody, env=env)
        assert net.stdout.startswith("failed"), net.stdout + net.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)



@needs_landlock
def test_what_is_bound_back_into_a_private_tmp_keeps_its_rights(tmp_path):
    """Under a private /tmp that the run may write, a granted read-only file that lives in /tmp (a prepared cache,
    a package checked out there) is bound back read-only: Landlock grants by path, and /tmp's right to write would
    reach it."""
    assert str(tmp_path).startswith("/tmp/")
    data, run_dir = tmp_path / "data.npy", tmp_path / "run"
    data.write_text("train")
    run_dir.mkdir()
    code = f"""
        for path, mode in (({str(data)!r}, "a"), ({str(run_dir / 'out')!r}, "w")):
            try:
                open(path, mode).write("x")
                print("wrote", path)
            except OSError as e:
                print("refused", path, type(e).__name__)
        print("read", open({str(data)!r}).read())
    """
    proc = run(code, Policy(read_paths=[data], write_paths=[run_dir], private_dirs=sandbox.PRIVATE_DIRS))
    if "NOT private" in report_of(proc):
        pytest.skip(f"no mount namespace here: {report_of(proc)}")
    assert proc.returncode == 0, proc.stderr
    assert f"refused {data}" in proc.stdout and f"wrote {run_dir / 'out'}" in proc.stdout, proc.stdout
    assert "read train" in proc.stdout and data.read_text() == "train"
