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

from autoresearch.task.store import DECLARATION, TASK_DIR, workspace_task

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


def unpacked(cache: Path, key: str, fetch) -> Path:
    """The node's copy of bundle `key` (a task workspace of its own: .autoresearch/task/ only), unpacked from
    `fetch()` (the tar) the first time. A half-unpacked copy is never used: it is renamed into place whole."""
    store = Path(cache) / TASKS_DIR
    bundle = store / key
    if (bundle / DECLARATION).is_file():
        return bundle
    store.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(store / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # runs side by side on the node unpack it once
        if not (bundle / DECLARATION).is_file():
            data = fetch()
            if hashlib.sha256(data).hexdigest() != key:
                raise ValueError(f"the task bundle does not match its name {key[:12]}")
            tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=store))
            try:
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    tar.extractall(tmp, filter="data")
                os.rename(tmp, bundle)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return bundle


def node_workspace(home: Path, bundle: Path, files: dict[str, str]) -> Path:
    """A run's task workspace on the node: the editable files, and the judge's copy linked in."""
    ws = Path(home) / "ws"
    (ws / TASK_DIR).parent.mkdir(parents=True)
    os.symlink(bundle / TASK_DIR, ws / TASK_DIR, target_is_directory=True)
    for name, text in files.items():
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(text)
    return ws
