"""The only module that runs git. Small, explicit wrappers; every failure is a VcsError with git's own words."""

from __future__ import annotations

import subprocess
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
