"""The only module that runs git. Small, explicit wrappers; every failure is a VcsError with git's own words."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

FALLBACK_IDENTITY = ("autoresearch", "autoresearch@localhost")


class VcsError(Exception):
    pass


# A command agent may write what our unconfined git obeys: the workspace's .git (its confinement makes that
# read-only, agents/command.py) and the user's home (~/.gitconfig, ~/.config/git/config). So our git reads neither
# the global nor the system config, runs no hook (post-checkout at the next detach_at, post-commit) and no
# fsmonitor; the user's name and e-mail are read once, by a `git config` that runs nothing.
NO_HOOKS = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
_OWN_CONFIG = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str, check: bool = True, input: str | None = None) -> str:
    cmd = ["git", "-C", str(repo), *NO_HOOKS, *_identity_args(repo), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input, env={**os.environ, **_OWN_CONFIG})
    except FileNotFoundError as e:
        raise VcsError("git is not installed or not on PATH; install git and try again") from e
    if check and proc.returncode != 0:
        raise VcsError(f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


@cache
def _identity_args(repo: Path) -> list[str]:
    """Commit as the user when their git config names them (the repository's, else their global one), else as
    autoresearch (CI machines often have none)."""
    def get(key: str) -> str:
        try:
            probe = subprocess.run(["git", "-C", str(repo), "config", "--get", key], capture_output=True, text=True)
        except FileNotFoundError:
            return ""
        return probe.stdout.strip() if probe.returncode == 0 else ""

    name, email = get("user.name"), get("user.email")
    if not (name and email):
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


def commit_file(repo: Path, name: str, message: str, *more: str) -> str:
    """Commit exactly one file (the experiment's train.py), and `more` (a task's other editable files it changes),
    whatever else the index holds."""
    git(repo, "add", "--", name, *more)
    git(repo, "commit", "-q", "--no-verify", "-m", message, "--", name, *more)
    return head(repo)


def status_porcelain(repo: Path) -> list[str]:
    """Changed and untracked (not ignored) paths, one `XY path` entry each (a rename: its new path, and its old
    one as ` D old`, deleted)."""
    fields = iter(git(repo, "status", "--porcelain", "--untracked-files=all", "-z").split("\0"))
    entries = []
    for entry in fields:
        if entry:
            entries.append(entry)
        if {"R", "C"} & set(entry[:2]):  # a rename or copy: its source follows as a field of its own
            source = next(fields, "")
            if "R" in entry[:2] and source:
                entries.append(f" D {source}")  # renamed away: gone from where it was
    return entries


def ignored(repo: Path, names) -> list[str]:
    """The paths among `names` that git's ignore rules exclude (`git add` refuses them)."""
    names = list(names)
    if not names:
        return []
    out = git(repo, "check-ignore", "--stdin", "-z", check=False, input="\0".join(names) + "\0")
    return [n for n in out.split("\0") if n]


def show(repo: Path, commit: str, name: str) -> str:
    return git(repo, "show", f"{commit}:{name}")


def diff_texts(old: str, new: str, name: str = "train.py") -> str:
    import difflib

    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"a/{name}", tofile=f"b/{name}"))


def files_at(repo: Path, commit: str, wanted: Callable[[str], bool]) -> dict[str, str]:
    """The text of every file of `commit` whose path is `wanted` (a task's editable files beyond train.py)."""
    names = git(repo, "ls-tree", "-r", "-z", "--name-only", commit).split("\0")
    return {n: show(repo, commit, n) for n in names if n and wanted(n)}


def diff_files(old: dict[str, str], new: dict[str, str]) -> str:
    """One unified diff of several files (path -> text), train.py first, the rest by path; a file missing on one
    side is empty there."""
    names = sorted(set(old) | set(new), key=lambda n: (n != "train.py", n))
    return "".join(diff_texts(old.get(n, ""), new.get(n, ""), n) for n in names if old.get(n) != new.get(n))


def clear_stale_lock(repo: Path) -> bool:
    """A kill -9 during a git command can leave index.lock behind; we are the only writer, so remove it."""
    lock = Path(git(repo, "rev-parse", "--git-dir").strip())
    lock = (lock if lock.is_absolute() else repo / lock) / "index.lock"
    if lock.exists():
        lock.unlink()
        return True
    return False


# -- worktrees: one per worker, so workers never share a checkout -----------------------------------------------------

def add_worktree(repo: Path, path: Path, commit: str) -> None:
    """A checkout of `commit` at `path` (detached: experiments commit there without moving any branch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "add", "-q", "--force", "--detach", str(path), commit)


def remove_worktree(repo: Path, path: Path) -> None:
    git(repo, "worktree", "remove", "--force", str(path), check=False)
    git(repo, "worktree", "prune", check=False)


def detach_at(worktree: Path, commit: str) -> None:
    """Put a worker's checkout at `commit`, clean: whatever an agent or a killed orchestrator left there goes."""
    clear_stale_lock(worktree)
    git(worktree, "checkout", "-q", "--force", "--detach", commit)
    git(worktree, "reset", "-q", "--hard", commit)
    git(worktree, "clean", "-q", "-f", "-d")  # untracked, not ignored: an agent's stray files


def is_ancestor(repo: Path, ancestor: str, commit: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", ancestor, commit],
                          capture_output=True).returncode == 0


def merge3(base: str, ours: str, theirs: str) -> str | None:
    """`ours` with the change from `base` to `theirs` applied too (git merge-file); None when the two conflict."""
    text, conflicts = merge_file(base, ours, theirs)
    return None if conflicts else text


def merge_file(base: str, ours: str, theirs: str) -> tuple[str, int]:
    """git merge-file of the three texts: the merge (with conflict markers where they conflict) and the number
    of conflicts (-1: git failed)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="autoresearch-merge-") as d:
        paths = [Path(d) / n for n in ("ours", "base", "theirs")]
        for p, text in zip(paths, (ours, base, theirs)):
            p.write_text(text)
        proc = subprocess.run(["git", "merge-file", "-p", "-q", *map(str, paths)], capture_output=True, text=True)
    return proc.stdout, (proc.returncode if proc.returncode >= 0 else -1)
