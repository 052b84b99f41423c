"""Least privilege for an experiment: a launcher that confines itself, then execs `python train.py`.

The runner starts `[*launcher_argv(policy), sys.executable, "train.py"]`. In that new, still single-threaded
process the launcher applies the policy, prints ONE line to stderr saying what it got (`sandbox: ...`), and
`os.execvp`s the command, so nothing unsafe runs between fork and exec in the multi-threaded orchestrator.

    network off      a new network namespace (root: CLONE_NEWNET; otherwise CLONE_NEWUSER|CLONE_NEWNET mapping the
                     caller's own uid/gid), loopback up inside it; fallback: Landlock (ABI >= 4) denies TCP
                     bind/connect (UDP stays open: reported as PARTLY); else NOT isolated, said loudly.
    private_dirs     a new mount namespace (in the same user namespace, if one is needed) with an empty tmpfs
                     over each, e.g. /dev/shm and /tmp: nothing a run leaves there survives it (run/mounts.py).
                     Without a mount namespace they are NOT private, said loudly, and stay out of the write rules.
    hidden_paths     in that mount namespace, covered with something empty and unreadable: the command cannot
                     read them by any path (a deny-list, which Landlock's allow-lists cannot express).
    readonly_paths   in that mount namespace, bound read-only onto themselves: readable, never written (a command
                     agent's view of the workspace's .git, whose config and hooks the orchestrator's git obeys).
    private_pids     a new PID namespace with its own /proc: the command sees no process outside, so no
                     /proc/<pid>/root leads back into the host's mounts. The launcher stays as a waiter outside
                     and a small init (PID 1) inside; both forward signals and exit as the command does.
    filesystem       Landlock (ABI >= 1): read+execute on the system and Python directories (and the hub-cache
                     folders of the attention kernels in KERNEL_REPOS, which `prepare` downloads), read-only on
                     policy.read_paths (directories or single files), read-write on policy.write_paths, a few
                     device nodes and the private dirs (the new mounts). Everything else (the journal,
                     results.tsv, the home directory, other experiments) can be neither read nor written. ABI >= 6
                     also scopes signals and abstract unix sockets: the run cannot signal the orchestrator.
                     Without Landlock: NOT confined, loudly.
    die_with_parent  prctl(PR_SET_PDEATHSIG, SIGKILL), checked against the orchestrator's pid afterwards.
    memory_mb        not enforced here (RLIMIT_AS breaks CUDA's address-space reservations): the runner polls
                     tree_rss_mb(pid) and stops the run itself.

Not covered: before Landlock ABI 9 (Linux 7.1), connecting to *pathname* unix sockets that DAC allows (e.g.
/run/docker.sock for group docker, the D-Bus session bus): the report line says so; /proc/<pid>/cmdline of
every process, and /proc/<pid>/environ of the user's other *dumpable* processes (the orchestrator protects its
own with protect_orchestrator(); a root experiment loses its capabilities, which protects root's processes).

As root, the command execs with no capabilities (bounding and ambient sets emptied).

The orchestrator side: protect_orchestrator() (non-dumpable: its environ with API keys stays unreadable),
enable_subreaper(), descendants(pid), kill_descendants(), tree_rss_mb(pid), group_members(pgid) (all from
run/proctree.py, loaded on first use: the launcher needs none of them, nor psutil), describe().
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.run import landlock, mounts
from autoresearch.run.landlock import fs_rules, landlock_abi  # noqa: F401  (re-exported)
from autoresearch.run.sandbox_policy import (  # noqa: F401  (re-exported: what callers import from here)
    DEVICE_GLOBS,
    KERNEL_REPOS,
    LINUX,
    PRIVATE_DIRS,
    REPORT_PREFIX,
    SYSTEM_DIRS,
    Policy,
    Report,
    _Libc,
    _libc,
    cache_env,
    kernel_cache_paths,
    launcher_argv,
    system_read_paths,
)

if TYPE_CHECKING:  # for type checkers and editors: at run time, __getattr__ below
    from autoresearch.run.proctree import (  # noqa: F401
        descendants,
        enable_subreaper,
        group_members,
        kill_descendants,
        protect_orchestrator,
        tree_rss_mb,
    )

PROCTREE = frozenset({"descendants", "enable_subreaper", "group_members", "kill_descendants", "protect_orchestrator",
                      "tree_rss_mb"})


def __getattr__(name: str):
    # The orchestrator's side, re-exported for its callers; imported only when asked for, so the launcher runs
    # under any interpreter, with or without psutil.
    if name in PROCTREE:
        from autoresearch.run import proctree

        return getattr(proctree, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# prctl(2), unshare(2): numbers are the same on every Linux architecture.
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 36, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID = mounts.CLONE_NEWNET, mounts.CLONE_NEWNS, mounts.CLONE_NEWPID


def apply(policy: Policy, parent_pid: int | None = None, skip: Iterable[str] = ()) -> Report:
    """Confine the *current* process (irreversibly) as `policy` asks; say what was and was not done.

    `skip` ("netns", "mountns", "landlock") leaves a mechanism out, to exercise the fallbacks in tests. With
    private_pids this forks (mounts.enter_pid_namespace): only the child returns, and main() runs the command
    under mounts.run_as_init().
    """
    report = Report()
    skip = set(skip)
    if not LINUX:
        why = f"not available on {sys.platform} (Linux only)"
        report.network = "network allowed (policy)" if policy.network else f"network NOT ISOLATED ({why})"
        report.filesystem = f"filesystem NOT CONFINED ({why})" if policy.filesystem else ""
        report.mounts = _mounts_not_done(policy, why, report)
        report.parent = f"does NOT die with parent ({why})" if policy.die_with_parent else ""
        report.gaps += [g for g, wanted in (("network", not policy.network), ("filesystem", policy.filesystem),
                                            ("parent", policy.die_with_parent)) if wanted]
        return report
    libc = _libc()
    try:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of the run stay inside its tree while it lives
    except OSError:
        pass
    done, userns, errors = _unshare(libc, policy, skip)
    netns_error = None
    if policy.network:
        report.network = "network allowed (policy)"
    elif done & CLONE_NEWNET:
        try:
            _loopback_up()  # harmless in an empty namespace; libraries that talk to 127.0.0.1 keep working
        except OSError:
            pass
        report.network = f"network isolated ({'user+net namespace' if userns else 'netns'})"
    else:
        netns_error = errors.get(CLONE_NEWNET, "netns skipped")
    private = _mount(libc, policy, done, userns, errors, report)
    # After the namespace step: changing credentials there must not clear the death signal set here.
    if policy.die_with_parent:
        report.parent = _die_with_parent(libc, parent_pid, report)
    if done & CLONE_NEWPID:
        try:
            mounts.enter_pid_namespace(libc)  # only the child, PID 1, comes back
            report.mounts += ", own pid namespace"
        except OSError as e:
            report.mounts += f", pid namespace but /proc NOT private (mount proc: {e.strerror or e})"
            report.gaps.append("pids")
    if policy.filesystem or netns_error is not None:
        landlock.confine(libc, policy, netns_error, report, skip, private)
    if os.geteuid() == 0:
        report.privileges = _drop_capabilities(libc)
    return report


def _unshare(libc: _Libc, policy: Policy, skip: set[str]) -> tuple[int, bool, dict[int, str]]:
    """New namespaces as the policy needs them, in one user namespace where one is needed (not root); if that
    fails, the network and the mount (+pid) namespaces one by one. -> (flags done, user namespace?, errors)."""
    flags = CLONE_NEWNET if not policy.network and "netns" not in skip else 0
    if "mountns" not in skip and (policy.private_dirs or policy.hidden_paths or policy.readonly_paths
                                  or policy.private_pids):
        flags |= CLONE_NEWNS | (CLONE_NEWPID if policy.private_pids else 0)
    groups = [g for g in (CLONE_NEWNET, CLONE_NEWNS | CLONE_NEWPID) if flags & g]
    done, userns, errors = 0, False, {}
    for attempt in ([flags] if len(groups) == 1 else [flags, *[flags & g for g in groups]]):
        if not attempt or done & attempt:
            continue
        try:
            userns |= mounts.unshare(libc, attempt)
            done |= attempt
        except OSError as e:
            name = "netns" if attempt == CLONE_NEWNET else "mount namespace"
            for g in groups:
                errors[g] = f"{name}: unshare: {e.strerror or e}"
    return done, userns, errors


def _mount(libc: _Libc, policy: Policy, done: int, userns: bool, errors: dict[int, str], report: Report) -> list[str]:
    """Cover the hidden paths, mount the private dirs; -> the private dirs now mounted (for Landlock's rules)."""
    if not (policy.private_dirs or policy.hidden_paths or policy.readonly_paths or policy.private_pids):
        return []
    if not done & CLONE_NEWNS:
        report.mounts = _mounts_not_done(policy, errors.get(CLONE_NEWNS, "mount namespace skipped"), report)
        return []
    private, parts = [], []
    try:
        mounts.make_private(libc)
        hidden = mounts.existing(policy.hidden_paths)
        mounts.hide(libc, hidden)
        if hidden:
            parts.append("hidden: " + " ".join(hidden))
        readonly = mounts.existing(policy.readonly_paths)
        mounts.read_only(libc, readonly)
        if readonly:
            parts.append("read-only: " + " ".join(readonly))
        failed = []
        keep = [*policy.read_paths, *policy.write_paths, *system_read_paths(policy)]
        for d in policy.private_dirs:
            try:
                mounts.private_dir(libc, d, keep, writable=list(policy.write_paths))
                private.append(d)
            except OSError as e:
                failed.append(f"{d}: {e.strerror or e}")
        if private:
            parts.insert(0, "private " + ", ".join(private))
        if failed:
            parts.append("NOT private: " + "; ".join(failed))
            report.gaps.append("private")
    except OSError as e:
        report.mounts = _mounts_not_done(policy, f"mount: {e.strerror or e}", report)
        return []
    how = "user+mount namespace" if userns else "mount namespace"
    report.mounts = f"{', '.join(parts) or 'nothing to mount'} ({how})"
    return private


def _mounts_not_done(policy: Policy, why: str, report: Report) -> str:
    parts = []
    for wanted, gap, text in ((policy.private_dirs, "private", f"{', '.join(policy.private_dirs)} NOT private"),
                              (policy.hidden_paths, "hidden", f"{', '.join(policy.hidden_paths)} NOT hidden"),
                              (policy.readonly_paths, "readonly",
                               f"{', '.join(policy.readonly_paths)} NOT read-only"),
                              (policy.private_pids, "pids", "other processes NOT hidden")):
        if wanted:
            parts.append(text)
            report.gaps.append(gap)
    return f"{'; '.join(parts)} ({why})" if parts else ""


def _drop_capabilities(libc: _Libc) -> str:
    """Root: empty the bounding and ambient sets, so the command execs with no capabilities at all.

    uid 0 without capabilities still owns root's files, but cannot override permissions, ptrace or read the
    orchestrator's /proc files once it is non-dumpable (protect_orchestrator), load modules, mount, or reconfigure
    the (new) network namespace.
    """
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        for cap in range(last + 1):
            libc.prctl(PR_CAPBSET_DROP, cap)
        libc.call("prctl", ctypes.c_int(PR_CAP_AMBIENT), ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), ctypes.c_ulong(0),
                  ctypes.c_ulong(0), ctypes.c_ulong(0))
    except (OSError, ValueError) as e:
        return f"root WITH capabilities (dropping them failed: {e})"
    inheritable = _status_field("CapInh")
    if inheritable not in (None, 0):  # inheritable capabilities would survive the exec: say so
        return f"root WITH inheritable capabilities {inheritable:#x}"
    return "root without capabilities"


def _status_field(name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def _loopback_up() -> None:
    import fcntl
    import socket
    import struct

    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
        flags = struct.unpack("16sH14x", ifreq)[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _die_with_parent(libc: _Libc, parent_pid: int | None, report: Report) -> str:
    try:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError as e:
        report.gaps.append("parent")
        return f"does NOT die with parent (prctl: {e.strerror})"
    if parent_pid is not None and os.getppid() != parent_pid:  # it died before the prctl could watch it
        print(f"{REPORT_PREFIX}parent {parent_pid} is gone; not starting", file=sys.stderr, flush=True)
        os._exit(125)
    return "dies with parent"


def main(argv: list[str] | None = None) -> None:
    """`python -m autoresearch.run.sandbox --policy JSON [--parent-pid N] [--skip netns,mountns,landlock] -- CMD`"""
    args = sys.argv[1:] if argv is None else argv
    if "--" not in args:
        sys.exit("usage: python -m autoresearch.run.sandbox --policy JSON [--parent-pid N] -- COMMAND [ARGS...]")
    split = args.index("--")
    opts, command = args[:split], args[split + 1 :]
    options = dict(zip(opts[::2], opts[1::2]))
    unknown = set(options) - {"--policy", "--parent-pid", "--skip"}
    if unknown or len(opts) % 2 or not command:
        sys.exit(f"sandbox: bad arguments {opts!r} (options: --policy, --parent-pid, --skip) or no command")
    policy = Policy.from_json(options.get("--policy", "{}"))
    parent = int(options["--parent-pid"]) if "--parent-pid" in options else None
    report = apply(policy, parent, skip=filter(None, options.get("--skip", "").split(",")))
    print(report, file=sys.stderr, flush=True)
    if policy.strict and not report.complete:
        print(f"{REPORT_PREFIX}strict policy: not starting ({', '.join(report.gaps)} not applied)", file=sys.stderr,
              flush=True)
        os._exit(126)
    if mounts.in_pid_namespace():
        mounts.run_as_init(_libc(), command)
    mounts.exec_command(command)


@cache
def describe() -> str:
    """What the sandbox achieves on this machine: the report line of a launcher run with an experiment's policy."""
    import subprocess

    argv = [*launcher_argv(Policy(private_dirs=PRIVATE_DIRS)), sys.executable, "-c", "pass"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return f"{REPORT_PREFIX}cannot run the launcher: {e}"
    lines = [line for line in out.stderr.splitlines() if line.startswith(REPORT_PREFIX)]
    return lines[0] if lines else f"{REPORT_PREFIX}launcher gave no report (exit {out.returncode}): {out.stderr[-300:]}"


if __name__ == "__main__":
    main()
