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
import ctypes.util
import json
import os
import signal
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.run import mounts

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


REPORT_PREFIX = "sandbox: "
LINUX = sys.platform.startswith("linux")

# prctl(2), unshare(2), landlock(7): numbers are the same on every Linux architecture.
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 36, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID = mounts.CLONE_NEWNET, mounts.CLONE_NEWNS, mounts.CLONE_NEWPID
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

# Landlock filesystem rights, with the ABI version that introduced each.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REFER, TRUNCATE, IOCTL_DEV, RESOLVE_UNIX = 1 << 13, 1 << 14, 1 << 15, 1 << 16
FS_ABI1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV | RESOLVE_UNIX  # what a rule on a file may hold
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

READ = READ_FILE | READ_DIR
READ_EXEC = READ | EXECUTE
DEVICE = READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV  # open("/dev/null", "w") truncates; CUDA needs ioctl

SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys",
               "/nix/store", "/gnu/store", "/run/current-system", "/run/opengl-driver")  # last four: Nix/Guix
# Device nodes an experiment may open read-write (glob patterns under /dev): basics, NVIDIA, AMD/Intel (dri, kfd),
# WSL2 (dxg), accelerators (accel, Habana hl*, AWS neuron*, Ascend davinci*), RDMA for NCCL (infiniband). /dev itself
# is listable. /dev/shm is writable only where it is private (POSIX semaphores of torch.compile's worker pool,
# NCCL, CUDA IPC need it): a shared one would carry state from one run to the next.
DEVICE_GLOBS = ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "nvidia*", "nvidia-caps", "dri",
                "kfd", "dxg", "accel", "hl*", "neuron*", "davinci*", "infiniband", "hugepages")
PRIVATE_DIRS = ("/dev/shm", "/tmp")  # what an experiment gets fresh and empty, and may write
# Hugging Face kernels the harness may load (harness.attention_backends.FA3_REPO; a test keeps the two equal). They
# sit in the hub cache, beside its token: only their own folders are opened to the experiment.
KERNEL_REPOS = ("kernels-community/flash-attn3",)


def fs_rights(abi: int) -> int:
    """Every filesystem right the running Landlock ABI knows (asking for an unknown one is EINVAL)."""
    rights = FS_ABI1 if abi >= 1 else 0
    for since, right in ((2, REFER), (3, TRUNCATE), (5, IOCTL_DEV), (9, RESOLVE_UNIX)):
        if abi >= since:
            rights |= right
    return rights


@dataclass(frozen=True)
class Policy:
    """What an experiment may do. JSON-serialisable: it travels to the launcher on its command line."""

    network: bool = False
    read_paths: tuple[str, ...] = ()  # read-only: directories (everything beneath) or single files
    write_paths: tuple[str, ...] = ()  # read-write: the run directory, a compile cache
    die_with_parent: bool = True
    memory_mb: int | None = None  # for the runner to enforce with tree_rss_mb; the launcher ignores it
    filesystem: bool = True  # confine the filesystem at all
    strict: bool = False  # refuse to run (exit 126) when a requested restriction could not be applied
    private_dirs: tuple[str, ...] = ()  # an empty tmpfs over each (mount namespace); writable when private
    hidden_paths: tuple[str, ...] = ()  # covered, unreadable by any path (mount namespace); missing ones are skipped
    private_pids: bool = False  # a PID namespace with its own /proc

    def __post_init__(self) -> None:
        # Accept lists and Paths, store a hashable tuple of str.
        for name in ("read_paths", "write_paths", "private_dirs", "hidden_paths"):
            object.__setattr__(self, name, tuple(os.fspath(p) for p in getattr(self, name)))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Policy:
        data = json.loads(text)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown sandbox policy key(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def launcher_argv(policy: Policy, parent_pid: int | None = None) -> list[str]:
    """The prefix the runner puts in front of the experiment's command."""
    pid = os.getpid() if parent_pid is None else parent_pid
    # -P: the working directory (a workspace an agent writes) must not shadow the launcher's own modules.
    return [sys.executable, "-P", "-m", "autoresearch.run.sandbox", "--policy", policy.to_json(),
            "--parent-pid", str(pid), "--"]


def cache_env(compile_cache: str | os.PathLike[str]) -> dict[str, str]:
    """Environment that points torch/triton/CUDA caches into `compile_cache` (a run's private copy, inside a write
    path)."""
    root = Path(compile_cache)
    return {"TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"), "TRITON_CACHE_DIR": str(root / "triton"),
            "TRITON_HOME": str(root / "triton-home"), "CUDA_CACHE_PATH": str(root / "cuda"),
            "PYTORCH_KERNEL_CACHE_PATH": str(root / "torch-kernels")}


# ---------------------------------------------------------------------------
# Applying a policy to the current process (the launcher)
# ---------------------------------------------------------------------------


@dataclass
class Report:
    network: str = ""
    filesystem: str = ""
    mounts: str = ""
    privileges: str = ""
    parent: str = ""
    gaps: list[str] = field(default_factory=list)  # requested restrictions that were not (fully) applied

    @property
    def complete(self) -> bool:
        return not self.gaps

    def __str__(self) -> str:
        return REPORT_PREFIX + ", ".join(p for p in (self.network, self.filesystem, self.mounts, self.privileges,
                                                      self.parent) if p)


class _Libc:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.lib.syscall.restype = ctypes.c_long

    def call(self, name: str, *args) -> int:
        ret = getattr(self.lib, name)(*args)
        if ret == -1:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return ret

    def syscall(self, number: int, *args) -> int:
        return self.call("syscall", ctypes.c_long(number), *args)

    def prctl(self, option: int, arg: int = 0) -> int:
        return self.call("prctl", ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                         ctypes.c_ulong(0))


_libc = cache(_Libc)  # finding libc runs ldconfig: once is enough


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
        _landlock(libc, policy, netns_error, report, skip, private)
    if os.geteuid() == 0:
        report.privileges = _drop_capabilities(libc)
    return report


def _unshare(libc: _Libc, policy: Policy, skip: set[str]) -> tuple[int, bool, dict[int, str]]:
    """New namespaces as the policy needs them, in one user namespace where one is needed (not root); if that
    fails, the network and the mount (+pid) namespaces one by one. -> (flags done, user namespace?, errors)."""
    flags = CLONE_NEWNET if not policy.network and "netns" not in skip else 0
    if "mountns" not in skip and (policy.private_dirs or policy.hidden_paths or policy.private_pids):
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
    if not (policy.private_dirs or policy.hidden_paths or policy.private_pids):
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


def landlock_abi() -> int:
    """The running kernel's Landlock ABI version; 0 where there is none (old kernel, disabled, not Linux)."""
    if not LINUX:
        return 0
    try:
        return _Libc().syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                               ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    except OSError:
        return 0


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _landlock(libc: _Libc, policy: Policy, netns_error: str | None, report: Report, skip: set[str],
              private: list[str]) -> None:
    abi = 0 if "landlock" in skip else landlock_abi()
    want_net = netns_error is not None  # the namespace failed: Landlock is the network fallback
    if abi == 0:
        why = "skipped" if "landlock" in skip else "landlock unavailable (kernel < 5.13 or disabled)"
        if policy.filesystem:
            report.filesystem = f"filesystem NOT CONFINED ({why})"
            report.gaps.append("filesystem")
        if want_net:
            report.network = f"network NOT ISOLATED ({netns_error}; {why})"
            report.gaps.append("network")
        return
    handled_fs = fs_rights(abi) if policy.filesystem else 0
    net_by_landlock = want_net and abi >= 4
    attr = _RulesetAttr(handled_fs, NET_BIND_TCP | NET_CONNECT_TCP if net_by_landlock else 0,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    if not (attr.handled_access_fs or attr.handled_access_net or attr.scoped):  # nothing Landlock could add
        _landlock_failed(policy, netns_error, report, f"landlock abi {abi} < 4 has no network rules")
        return
    try:
        ruleset = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                               ctypes.c_uint32(0))
    except OSError as e:
        _landlock_failed(policy, netns_error, report, f"landlock_create_ruleset: {e.strerror}")
        return
    missing: list[str] = []
    requested = {os.path.abspath(p) for p in (*policy.read_paths, *policy.write_paths)}
    try:
        if policy.filesystem:
            for path, rights in fs_rules(policy, abi, private):
                if not _add_path_rule(libc, ruleset, path, rights & handled_fs) and path in requested:
                    missing.append(path)
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1)
        libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    except OSError as e:
        _landlock_failed(policy, netns_error, report, f"landlock_restrict_self: {e.strerror}")
        return
    finally:
        os.close(ruleset)
    if policy.filesystem:
        extra = ", signals scoped" if abi >= 6 else ""
        extra += "" if abi >= 9 else "; pathname unix sockets NOT confined before abi 9"
        extra += f"; missing, so unreachable: {', '.join(missing)}" if missing else ""
        report.filesystem = f"filesystem confined (landlock abi {abi}{extra})"
    elif abi >= 6:
        report.filesystem = f"filesystem NOT confined (policy), signals scoped (landlock abi {abi})"
    if want_net:
        if net_by_landlock:
            report.network = f"network PARTLY isolated (landlock abi {abi}: TCP denied, UDP not; {netns_error})"
        else:
            report.network = f"network NOT ISOLATED ({netns_error}; landlock abi {abi} < 4 has no network rules)"
        report.gaps.append("network")


def _landlock_failed(policy: Policy, netns_error: str | None, report: Report, why: str) -> None:
    if policy.filesystem:
        report.filesystem = f"filesystem NOT CONFINED ({why})"
        report.gaps.append("filesystem")
    if netns_error is not None:
        report.network = f"network NOT ISOLATED ({netns_error}; {why})"
        report.gaps.append("network")


def fs_rules(policy: Policy, abi: int, private: Iterable[str] = ()) -> list[tuple[str, int]]:
    """(path, rights) pairs of the filesystem rules; later entries widen earlier ones on the same tree.

    `private`: the private dirs mounted for this run. Their rules are made after mounting, so they name the new
    tmpfs, not what it covers (a path into the host's /dev/shm through /proc/<pid>/root stays denied)."""
    everything = fs_rights(abi)
    rules = [(p, READ_EXEC) for p in system_read_paths(policy)]
    rules.append(("/dev", READ_DIR))
    import glob

    rules += [(p, DEVICE | READ_DIR) for g in DEVICE_GLOBS for p in sorted(glob.glob(f"/dev/{g}"))]
    rules += [(p, everything) for p in private]
    rules += [(os.path.abspath(p), READ) for p in policy.read_paths]
    rules += [(os.path.abspath(p), everything) for p in policy.write_paths]
    return rules


def system_read_paths(policy: Policy | None = None) -> list[str]:
    """System and Python directories: what any Python program with torch needs to start and to compile kernels.

    The launcher's own sys.path is included (stdlib, site-packages, an editable install's src), except its
    working directory: `python -m` puts the cwd first, and that must not widen the sandbox. So is the directory
    holding this package, for editable installs that map it with an import hook rather than a sys.path entry
    (other packages installed that way are not found: add their directories to read_paths). A sys.path entry
    that is /, the home directory, or holds one of the policy's paths (PYTHONPATH=the workspace) is left out.
    """
    cwd = os.getcwd()
    held = [os.path.abspath(p) for p in (*policy.read_paths, *policy.write_paths)] if policy else []
    paths = list(SYSTEM_DIRS) + kernel_cache_paths()
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable)),
              str(Path(__file__).resolve().parents[2])]  # src/, holding this package
    too_wide = {"/", os.path.expanduser("~"), cwd}
    for p in filter(None, sys.path):
        p = os.path.abspath(p)
        if p not in too_wide and not any(h == p or h.startswith(p.rstrip("/") + "/") for h in held):
            paths.append(p)
    seen: dict[str, None] = {}
    for p in paths:
        seen.setdefault(os.path.abspath(p), None)
    return [p for p in seen if os.path.exists(p)]


def kernel_cache_paths() -> list[str]:
    """The local hub-cache folders of KERNEL_REPOS that exist: compiled attention kernels `prepare` downloaded.

    An experiment has no network, so the harness loads FA3 from here; $KERNELS_CACHE wins over the hub cache,
    as in the `kernels` package. Both folder layouts are listed: `kernels--org--name` and the older `models--`.
    """
    try:
        from huggingface_hub import constants
    except ImportError:
        return []
    root = os.environ.get("KERNELS_CACHE") or constants.HF_HUB_CACHE
    folders = [os.path.join(root, f"{kind}--{repo.replace('/', '--')}") for repo in KERNEL_REPOS
               for kind in ("kernels", "models")]
    return [f for f in folders if os.path.isdir(f)]


def _add_path_rule(libc: _Libc, ruleset: int, path: str, rights: int) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False  # not there: stays unreachable, which is the safe direction
    try:
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            rights &= FILE_ONLY
        if not rights:
            return True
        rule = _PathBeneathAttr(rights, fd)
        libc.syscall(SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                     ctypes.byref(rule), ctypes.c_uint32(0))
        return True
    except OSError:
        return False  # a rule that cannot be added grants nothing: safe, though the run may then fail
    finally:
        os.close(fd)


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
