"""Landlock (Linux >= 5.13): the launcher's filesystem rules, its network fallback (ABI >= 4) and its signal and
abstract-socket scoping (ABI >= 6). See run/sandbox.py for what the launcher does with them."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

from autoresearch.run.sandbox_policy import DEVICE_GLOBS, LINUX, Policy, Report, _Libc, system_read_paths

PR_SET_NO_NEW_PRIVS = 38
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


def fs_rights(abi: int) -> int:
    """Every filesystem right the running Landlock ABI knows (asking for an unknown one is EINVAL)."""
    rights = FS_ABI1 if abi >= 1 else 0
    for since, right in ((2, REFER), (3, TRUNCATE), (5, IOCTL_DEV), (9, RESOLVE_UNIX)):
        if abi >= since:
            rights |= right
    return rights


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


def confine(libc: _Libc, policy: Policy, netns_error: str | None, report: Report, skip: set[str],
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
        _failed(policy, netns_error, report, f"landlock abi {abi} < 4 has no network rules")
        return
    try:
        ruleset = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                               ctypes.c_uint32(0))
    except OSError as e:
        _failed(policy, netns_error, report, f"landlock_create_ruleset: {e.strerror}")
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
        _failed(policy, netns_error, report, f"landlock_restrict_self: {e.strerror}")
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


def _failed(policy: Policy, netns_error: str | None, report: Report, why: str) -> None:
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
