"""The compile cache: private to each run, seeded from a copy no experiment can write.

Compiling is slow (minutes for the `cuda` profile), so runs start from a warm cache. A cache an experiment can
write is also a way to pass files from one run to the next (weights saved there resume the next run) and to plant
code (inductor and triton load what they find there). So:
- each run gets `<run dir>/compile-cache`, a copy of the seed, the only cache directory its environment names and
  inside the only directory it may write; it is deleted when the run ends (the run's log stays);
- the seed (`.autoresearch/compile-seed` of the workspace) lies outside every sandbox, so an experiment can
  neither read nor write it; the orchestrator fills it only from a run whose source a human wrote: the baseline
  of a research run (experiment 1 and its seed repeats: the train.py committed when `autoresearch run` started),
  and only when that text is not one an agent proposed in this workspace (a run started from an agent's commit
  seeds nothing). A successful such run's private cache (seed + what it compiled) replaces the seed;
- copying never follows a symlink (one is skipped: nothing outside the tree comes in), and the seed is replaced
  atomically: built in a temporary directory beside it, then renamed. A run that copies while another run swaps
  the seed gets fewer files (a cache miss), never a partial file; of two runs swapping at once, one wins.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

SEED_DIR = "compile-seed"  # under the workspace's .autoresearch/ (not the old shared, writable compile-cache/)
PRIVATE_DIR = "compile-cache"  # under the run directory


def private_dir(run_dir: Path) -> Path:
    return run_dir / PRIVATE_DIR


def copy_tree(src: Path, dst: Path) -> tuple[int, int]:
    """Copy the directories and regular files of `src` into `dst` (created); symlinks and other special files
    are skipped, never followed. Returns (files, bytes) copied. Entries that vanish meanwhile are skipped."""
    files = size = 0
    dst.mkdir(parents=True, exist_ok=True)
    if src.is_symlink() or not src.is_dir():
        return 0, 0
    stack = [(str(src), dst)]
    while stack:
        here, there = stack.pop()
        try:
            entries = list(os.scandir(here))
        except OSError:
            continue
        for entry in entries:
            target = there / entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    target.mkdir(exist_ok=True)
                    stack.append((entry.path, target))
                elif entry.is_file(follow_symlinks=False):
                    shutil.copyfile(entry.path, target, follow_symlinks=False)
                    files += 1
                    size += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return files, size


def seed_private(seed: Path, private: Path) -> tuple[int, int]:
    """The run's private cache: a fresh copy of the seed (empty when there is none yet)."""
    discard(private)
    return copy_tree(seed, private)


def publish(private: Path, seed: Path) -> bool:
    """Make `private` (a human-written run's cache) the seed, atomically. False when there was nothing new or
    another run published at the same moment (its cache is as good)."""
    if private.is_symlink() or not private.is_dir() or _listing(private) == _listing(seed):
        return False
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp, old = seed.with_name(f".{seed.name}.tmp-{tag}"), seed.with_name(f".{seed.name}.old-{tag}")
    try:
        copy_tree(private, tmp)
        try:
            os.rename(seed, old)
        except FileNotFoundError:
            pass
        try:
            os.rename(tmp, seed)
        except OSError:  # another publisher renamed its own in between
            return False
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def discard(private: Path) -> None:
    """Delete a run's private cache (a symlink the run put in its place is removed, never followed)."""
    if private.is_symlink():
        private.unlink()
    else:
        shutil.rmtree(private, ignore_errors=True)


def _listing(root: Path) -> set[tuple[str, int]]:
    out = set()
    if root.is_symlink() or not root.is_dir():
        return out
    for here, _, names in os.walk(root):
        for name in names:
            path = os.path.join(here, name)
            try:
                out.add((os.path.relpath(path, root), os.lstat(path).st_size))
            except OSError:
                continue
    return out
