"""Namespaces for the sandbox launcher: a new network, mount and PID namespace, and what is mounted inside.

    unshare()        as root the namespaces directly; otherwise inside a new user namespace that maps the caller's
                     own uid/gid, so files keep their owners. One call for all of them: one user namespace.
    private_dir()    an empty tmpfs over a directory (/dev/shm, /tmp): what a run leaves there dies with it.
    hide()           an empty, read-only, mode-000 tmpfs over a directory, or an empty mode-000 file bound over a
                     file: the original cannot be read, listed or written through any path in this namespace.
    pid namespace    enter_pid_namespace() forks: the caller stays outside as a waiter that forwards signals and
                     exits as the command did; the child is PID 1 of the new namespace, mounts a fresh /proc (so
                     no /proc/<pid>/root of a process outside leads back into the host's mounts) and later runs
                     the command under run_as_init(), which reaps orphans and forwards signals.

Why the mounts hold: propagation is made private first, so nothing reaches the host. The command execs without
capabilities (a non-zero uid in the user namespace loses them at exec; root's bounding set is emptied by the
launcher), so it cannot umount or mount over them. If it makes a user namespace of its own, the kernel locks
every mount it inherits (umount: EINVAL, and a bind of a covered directory is refused), so the covered files stay
out of reach there too.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import sys
import tempfile
from typing import NoReturn

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
NAMES = {CLONE_NEWNET: "net", CLONE_NEWNS: "mount", CLONE_NEWPID: "pid"}


def unshare(libc, flags: int) -> bool:
    """Enter new namespaces (`flags`): True when a user namespace was needed for it (not root)."""
    try:
        libc.call("unshare", ctypes.c_int(flags))
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EACCES):
            raise
    uid, gid = os.geteuid(), os.getegid()
    libc.call("unshare", ctypes.c_int(CLONE_NEWUSER | flags))
    # Map our own ids so files keep their owners; setgroups must be denied before an unprivileged gid_map.
    for name, text in (("uid_map", f"{uid} {uid} 1\n"), ("setgroups", "deny\n"), ("gid_map", f"{gid} {gid} 1\n")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    return True


def describe_namespaces(flags: int, userns: bool) -> str:
    names = "+".join(n for f, n in NAMES.items() if flags & f)
    return f"user+{names} namespace" if userns else f"{names}ns" if flags == CLONE_NEWNET else f"{names} namespace"


def _mount(libc, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: None if s is None else os.fsencode(s))
    libc.call("mount", enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))


def make_private(libc) -> None:
    """Nothing mounted here propagates to the host's mount namespace (or back)."""
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)


def private_dir(libc, path: str, keep: list[str] = (), writable: list[str] = ()) -> None:
    """An empty, world-writable (sticky) tmpfs over `path`, as /tmp and /dev/shm are on a fresh system.

    The paths in `keep` that lie beneath it (a workspace under /tmp, a virtual environment there) are bound back
    into the new tmpfs at the same place, so the run still finds what its policy grants it: read-only, unless they
    are in `writable`. (Landlock grants by path beneath: under a private /tmp that may be written, a bound-back
    package or prepared file would be writable too, but for the read-only mount.) Parents are bound first."""
    if not os.path.isdir(path):
        raise OSError(errno.ENOTDIR, f"{path} is not a directory")
    base = os.path.realpath(path).rstrip("/") + "/"
    kept: list[tuple[str, int]] = []
    rw = {os.path.realpath(w) for w in writable}
    try:
        for k in _to_bind(keep, rw):
            if k.startswith(base):
                kept.append((k, os.open(k, os.O_PATH | os.O_CLOEXEC)))
        _mount(libc, "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        for k, fd in kept:
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(k, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(k), exist_ok=True)
                os.close(os.open(k, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            _mount(libc, f"/proc/self/fd/{fd}", k, None, MS_BIND | MS_REC)
            if k not in rw:
                _mount(libc, None, k, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    finally:
        for _, fd in kept:
            os.close(fd)


def read_only(libc, paths: list[str]) -> None:
    """Bind each existing path (directory or file) read-only onto itself: what lies beneath can be read, not
    written, created or removed, by any path (a symbolic link to it leads onto the read-only mount)."""
    for p in paths:
        _mount(libc, p, p, None, MS_BIND | MS_REC)
        _mount(libc, None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def hide(libc, paths: list[str]) -> None:
    """Cover each existing path (directory or file) with something empty that nobody can read or change."""
    files = [p for p in paths if not os.path.isdir(p)]
    for p in paths:
        if os.path.isdir(p):
            _mount(libc, "tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   "mode=000,size=4k,nr_inodes=2")
    if not files:
        return
    # A file needs a file to bind over it: an empty mode-000 one on a scratch tmpfs, detached once bound.
    stage = tempfile.mkdtemp(prefix="autoresearch-hide-")
    try:
        _mount(libc, "tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=700,size=4k,nr_inodes=4")
        empty = os.path.join(stage, "empty")
        os.close(os.open(empty, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0))
        os.chmod(empty, 0)
        for p in files:
            _mount(libc, empty, p, None, MS_BIND)
            _mount(libc, None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        libc.call("umount2", os.fsencode(stage), ctypes.c_int(MNT_DETACH))
    finally:
        try:
            os.rmdir(stage)
        except OSError:
            pass


def _to_bind(keep, rw: set[str]) -> list[str]:
    """The real paths of `keep` to bind back, parents first; a child is bound too when its parent's writability
    differs from its own (a run directory inside a read-only tree)."""
    real = sorted({os.path.realpath(p) for p in keep if os.path.exists(p)}, key=len)
    out: list[str] = []
    for p in real:
        parent = next((q for q in reversed(out) if p.startswith(q.rstrip("/") + "/")), None)
        if parent is None or (parent in rw) != (p in rw):
            out.append(p)
    return out


def existing(paths) -> list[str]:
    """The real paths of those that exist, deduplicated, parents before children (a covered parent hides all)."""
    real = sorted({os.path.realpath(p) for p in paths if os.path.lexists(p) and os.path.exists(p)})
    return [p for i, p in enumerate(real) if not any(p.startswith(q.rstrip("/") + "/") for q in real[:i])]


# ---------------------------------------------------------------------------
# A PID namespace: the waiter outside, PID 1 inside
# ---------------------------------------------------------------------------


_pid1: dict[str, object] = {}  # in PID 1 between enter_pid_namespace() and run_as_init(): the status pipe, the mask


def enter_pid_namespace(libc) -> None:
    """After unshare(CLONE_NEWPID): fork. The parent never returns (it waits and exits as the child does); the
    child returns as PID 1 of the new namespace with a fresh /proc mounted, or raises OSError if it cannot be.
    The forwarded signals stay blocked in the child until run_as_init() can pass them on: PID 1 ignores a signal
    it has no handler for, so one that came earlier would be lost."""
    parent_alive_r, parent_alive_w = os.pipe()  # EOF in the child: the waiter is gone
    status_r, status_w = os.pipe()  # PID 1 writes the command's raw wait status here
    saved = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    pid = os.fork()
    if pid:
        os.close(parent_alive_r)
        os.close(status_w)
        _wait_outside(pid, status_r, saved)
    os.close(parent_alive_w)
    os.close(status_r)
    _pid1.update(status_w=status_w, mask=saved)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if select.select([parent_alive_r], [], [], 0)[0]:  # the waiter died before the death signal was armed
        os._exit(125)
    os.close(parent_alive_r)
    _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _wait_outside(child: int, status_r: int, saved_mask) -> NoReturn:
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: _kill(child, s))
    signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)
    _, status = os.waitpid(child, 0)
    with os.fdopen(status_r, "rb") as f:
        text = f.read().strip()
    if text.lstrip(b"-").isdigit():  # the command's own status, as PID 1 saw it
        status = int(text)
    _exit_like(status)


def in_pid_namespace() -> bool:
    return bool(_pid1)


def run_as_init(libc, command: list[str]) -> NoReturn:
    """PID 1: start `command`, forward signals to it, reap every orphan, exit as the command did."""
    status_w, saved = _pid1["status_w"], _pid1["mask"]
    pid = os.fork()
    if pid == 0:
        os.close(status_w)
        signal.pthread_sigmask(signal.SIG_SETMASK, saved)
        exec_command(command)
    # This process keeps the capabilities it had in the namespaces: nothing in there may ptrace it.
    try:
        libc.prctl(PR_SET_DUMPABLE, 0)
    except OSError:
        pass
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: _kill(pid, s))
    signal.pthread_sigmask(signal.SIG_SETMASK, saved)
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if reaped == pid:
            os.write(status_w, str(status).encode())
            os._exit(1)  # the waiter exits with the status just written; the namespace dies with PID 1


def exec_command(command: list[str]) -> NoReturn:
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; the command gets the defaults back
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvp(command[0], command)
    except OSError as e:
        print(f"sandbox: cannot execute {command[0]}: {e}", file=sys.stderr, flush=True)
        os._exit(127)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _exit_like(status: int) -> NoReturn:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # killed by a signal: die of the same one, so the caller sees what the command saw
        signal.signal(-code, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
        os.kill(os.getpid(), -code)
        code = 128 - code
    os._exit(code)
