"""The only module that runs git. Small, explicit wrappers; every failure is a VcsError with git's own words."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

FALLBACK_IDENTITY = ("autoresearch", "autoresearch@localhost")


class VcsError(Exception):
    pass


def git(repo: Path, *args: str, check: bool = True, input: str | None = None) -> str:
    cmd = ["git", "-C", str(repo), *_identity_args(repo), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input)
    except FileNotFoundError as e:
        raise VcsError("git is not installed or not on PATH; install git and try again") from e
    if check and proc.returncode != 0:
        raise VcsError(f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


@cache
def _identity_args(repo: Path) -> list[str]:
    """Commit as the user when git knows who they are, else as autoresearch (CI machines often have no identity)."""
    probe = subprocess.run(["git", "-C", str(repo), "config", "user.email"], capture_output=True, text=True)
    if probe.returncode == 0 and probe.stdout.strip():
        return []
    name, email = FALLBACK_IDENTITY
    return ["-c", f"user.name={name}", "-c", f"user.email={email}"]


def is_repo(path: Path) -> bool:
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--git-dir"], capture_output=True, text=True)
    return proc.returncode == 0


def init_repo(path: Path, branch: str = "main") -> None:
    git(path, "init", "-q", "-b", branch)


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return head(repo)


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def branch_exists(repo: Path, branch: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                          capture_output=True).returncode == 0


def create_branch(repo: Path, branch: str) -> None:
    git(repo, "checkout", "-q", "-b", branch)


def checkout(repo: Path, branch: str) -> None:
    git(repo, "checkout", "-q", branch)


def reset_hard(repo: Path, commit: str) -> None:
    git(repo, "reset", "-q", "--hard", commit)


def commit_file(repo: Path, name: str, message: str) -> str:
    """Commit exactly one file (the experiment's train.py), whatever else the index holds."""
    git(repo, "add", "--", name)
    git(repo, "commit", "-q", "--no-verify", "-m", message, "--", name)
    return head(repo)


def status_porcelain(repo: Path) -> list[str]:
    """Changed and untracked (not ignored) paths, one `XY path` entry each."""
    out = git(repo, "status", "--porcelain", "--untracked-files=all", "-z")
    return [entry for entry in out.split("\0") if entry]


def show(repo: Path, commit: str, name: str) -> str:
    return git(repo, "show", f"{commit}:{name}")


def diff_texts(old: str, new: str, name: str = "train.py") -> str:
    import difflib

    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"a/{name}", tofile=f"b/{name}"))


def clear_stale_lock(repo: Path) -> bool:
    """A kill -9 during a git command can leave index.lock behind; we are the only writer, so remove it."""
    lock = Path(git(repo, "rev-parse", "--git-dir").strip())
    lock = (lock if lock.is_absolute() else repo / lock) / "index.lock"
    if lock.exists():
        lock.unlink()
        return True
    return False
