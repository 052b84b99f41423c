"""A researcher's task on a Ray node: the judge's copy travels once per node, the editable files with each run.

The orchestrator packs the task workspace's `.autoresearch/task/` (the declaration, the manifest and the judge's
copy: the fixed files, the evaluator and the hidden data) into one deterministic tar, puts it in Ray's object store
once, and names it by the tar's sha256. Each run's payload carries that name, a reference to the object, the
name of the task's main script and every editable file's text (never the orchestrator's paths).

A node unpacks a bundle it has not seen into its cache (`<cache>/tasks/<sha256>/`, once, under a lock) and gives
each run a workspace of its own in the run's directory: the editable files, and `.autoresearch/task` as a link to
the unpacked copy. The runner then does what it does locally (run/task_runner.py): the experiment's sandbox covers
the judge's copy (the mount follows the link to the copy itself), the evaluator alone reads it, and the manifest,
which travelled with it, is checked before every evaluation.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from autoresearch.task.store import DECLARATION, MANIFEST, TASK_DIR, workspace_task

TASKS_DIR = "tasks"  # in a node's cache: the unpacked bundles, by sha256


def pack(workspace: Path) -> tuple[str, bytes]:
    """-> (sha256, tar) of the workspace's .autoresearch/task/: sorted, with no owner or time, so that the same
    judge's copy is always the same bundle and any change of it is a new one."""
    root = Path(workspace) / TASK_DIR
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in [root, *sorted(root.rglob("*"))]:
            info = tar.gettarinfo(str(path), arcname=path.relative_to(workspace).as_posix())
            if not (info.isfile() or info.isdir()):
                continue  # a link or a device in the judge's copy does not travel
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    data = buf.getvalue()
    return hashlib.sha256(data).hexdigest(), data


def main_and_others(workspace: Path, files: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Split an experiment's editable files (run/task_runner.experiment_files) into its main script's name and the
    others: the main one is the file that holds exp.source."""
    from autoresearch.run.task_runner import main_script

    main = main_script(workspace_task(workspace).editable_files(workspace))
    return main, {k: v for k, v in files.items() if k != main}


def seals(workspace: Path) -> dict[str, str]:
    """sha256 of the declaration and the manifest (which holds the sha256 of every judge's file): checked on the
    node before every run, so a copy that changed since it was unpacked is never used."""
    return {name: _sha(Path(workspace) / name) for name in (DECLARATION, MANIFEST)}


def unpacked(cache: Path, key: str, fetch, expect: dict[str, str] | None = None) -> Path:
    """The node's copy of bundle `key` (a task workspace of its own: .autoresearch/task/ only), unpacked from
    `fetch()` (the tar) the first time, read-only. A copy is used only whole and as sealed (`expect`, from seals()):
    it is renamed into place whole, and one that is incomplete or changed is unpacked again. Leftovers of an unpack
    that died (a killed node) are removed under the lock, where none can be in progress."""
    store = Path(cache) / TASKS_DIR
    bundle = store / key
    if _intact(bundle, expect):
        return bundle
    store.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(store / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # runs side by side on the node unpack it once
        for stale in store.glob(".unpack-*"):
            _remove(stale)
        if _intact(bundle, expect):
            return bundle
        if bundle.exists():
            _remove(bundle)
        data = fetch()
        if hashlib.sha256(data).hexdigest() != key:
            raise ValueError(f"the task bundle does not match its name {key[:12]}")
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=store))
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(tmp, filter="data")
            for path in sorted(tmp.rglob("*"), reverse=True):  # read-only: files, then their directories
                path.chmod(path.stat().st_mode & ~0o222)
            os.rename(tmp, bundle)
        except BaseException:
            _remove(tmp)
            raise
    if not _intact(bundle, expect):
        raise ValueError(f"the task bundle {key[:12]} does not hold the declaration and manifest it was sent with")
    return bundle


def _intact(bundle: Path, expect: dict[str, str] | None) -> bool:
    if not (bundle / DECLARATION).is_file():
        return False
    try:
        return expect is None or all(_sha(bundle / name) == sha for name, sha in expect.items())
    except OSError:
        return False


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _remove(path: Path) -> None:
    for p in [path, *path.rglob("*")]:  # our read-only copies: writable again, so that they can go
        try:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o700)
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)


def check_names(bundle: Path, files: dict[str, str]) -> str:
    """Why the payload's editable files may not be written ('' when they may): a name that is absolute, climbs
    out (..), is not normal, lies under .autoresearch/, or is not editable by the copy's own declaration."""
    from pathlib import PurePosixPath

    task = workspace_task(bundle)
    bad = []
    for name in files:
        parts = PurePosixPath(name).parts
        if (not name or name.startswith("/") or ".." in parts or os.path.normpath(name) != name
                or parts[0] == ".autoresearch" or not task.is_editable(name)):
            bad.append(name)
    return (f"the run's files {', '.join(sorted(bad)[:5])} are not editable files of the task: refused on the node"
            if bad else "")


def node_workspace(home: Path, bundle: Path, files: dict[str, str]) -> Path:
    """A run's task workspace on the node: the editable files (names checked with check_names first), and the
    judge's copy linked in."""
    ws = Path(home) / "ws"
    ws.mkdir()
    for name, text in files.items():
        path = ws / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    (ws / TASK_DIR).parent.mkdir(parents=True)
    os.symlink(bundle / TASK_DIR, ws / TASK_DIR, target_is_directory=True)
    return ws
