"""A task's evaluator: a process of its own, after the experiment. It alone reads the hidden files (cwd = the
judge's copy: fixed + hidden files), gets the experiment's output directory read-only, and never runs code the
agent wrote. The judge's files are checked against the manifest before every evaluation. Its last stdout line is
one JSON object; anything else is a clear reason and never a figure."""

from __future__ import annotations

import json
import math
import os
import signal
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.task.declaration import OUTPUT_ENV, Task
from autoresearch.task.store import tampered

TAIL = 15


@dataclass
class Evaluation:
    value: float | None = None  # the task's metric; None when the evaluation failed
    figures: dict = field(default_factory=dict)  # every number it printed
    reason: str = ""  # why there is no value

    @property
    def ok(self) -> bool:
        return self.value is not None


def evaluate(task: Task, workspace: Path, output: Path, command: str, sandbox: bool = True,
             timeout: float | None = None) -> Evaluation:
    """Run `command` (task.evaluate or task.holdout) on the experiment's `output`."""
    broken = tampered(workspace)
    if broken:
        return Evaluation(reason=f"the task's fixed files changed since init ({', '.join(broken[:5])}): the "
                                 "evaluator was not run; restore them or make a new workspace")
    judge = task.root
    odd = not_plain(output)
    if odd:  # a link resolves in the evaluator's process, whose cwd is the judge's copy: the labels themselves
        return Evaluation(reason=f"the experiment's output holds links or special files ({', '.join(odd[:5])}): "
                                 "the evaluator reads plain files only; write the predictions themselves (np.save, "
                                 "CSV, JSON, safetensors)")
    pickled = pickles_in(output)
    if pickled:
        return Evaluation(reason=f"the experiment's output holds pickled data ({', '.join(pickled[:5])}): unpickling "
                                 "it would run its code in the evaluator, which reads the hidden files; save plain "
                                 "arrays (np.save of a numeric array), CSV, JSON or safetensors")
    for path in [output, *output.rglob("*")]:  # read-only, besides Landlock's read-only grant (no links: above)
        try:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode):
                path.chmod(mode & ~0o222)
        except OSError:
            pass
    prefix: list[str] = []
    if sandbox:
        from autoresearch.run import sandbox as sb

        policy = sb.Policy(network=False, read_paths=[str(judge), str(output)], write_paths=[],
                           die_with_parent=True, private_dirs=sb.PRIVATE_DIRS)
        prefix = sb.launcher_argv(policy)
    env = {k: v for k, v in os.environ.items() if k.startswith(("PATH", "LANG", "LC_", "HOME", "PYTHON"))}
    env.update({OUTPUT_ENV: str(output), "PYTHONDONTWRITEBYTECODE": "1"})
    limit = timeout or task.timeout
    try:
        proc = subprocess.Popen([*prefix, *task.argv(command)], cwd=judge, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, errors="replace",
                                start_new_session=True)
    except OSError as e:
        return Evaluation(reason=f"the evaluator could not start ({command!r}): {e}")
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.communicate()
        return Evaluation(reason=f"the evaluator hung: no result within {limit:g}s ({command!r})")
    err_tail = "\n".join(line for line in err.splitlines() if not line.startswith("sandbox: "))[-2000:]
    if proc.returncode != 0:
        return Evaluation(reason=f"the evaluator crashed (exit {proc.returncode}, {command!r}):\n"
                                 + "\n".join(err_tail.splitlines()[-TAIL:]))
    return parse(out, task.metric.name)


PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".bin", ".dill")


def not_plain(output: Path) -> list[str]:
    """What in the output is neither a regular file nor a directory: links (to the labels, in the evaluator's
    process: /proc/self/cwd/...), FIFOs, sockets, devices. Checked once the experiment's processes are all gone,
    so nothing can change the output afterwards."""
    found = []
    for dirpath, dirnames, filenames in os.walk(output):  # never follows a link
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                found.append(path.relative_to(output).as_posix())
    return sorted(found)


def pickles_in(output: Path) -> list[str]:
    """The files of an experiment's output that hold a pickle, checked before any evaluator sees them: .npy (or
    .npz members) of an object dtype, files named as pickles or torch checkpoints, and any file that starts with a
    pickle's protocol header. Whatever the evaluator does with them, they never reach it."""
    import zipfile

    import numpy as np

    found = []
    for path in sorted(p for p in output.rglob("*") if p.is_file() and not p.is_symlink()):
        name = path.relative_to(output).as_posix()
        try:
            with open(path, "rb") as f:
                head = f.read(2)
                if path.suffix.lower() in PICKLE_SUFFIXES or (head[:1] == b"\x80" and head[1:2] in bytes(range(2, 6))):
                    found.append(name)
                elif head == b"\x93N":  # .npy
                    f.seek(0)
                    if _npy_has_objects(f, np):
                        found.append(name)
                elif head == b"PK" and zipfile.is_zipfile(path):  # .npz, or a torch zip checkpoint
                    with zipfile.ZipFile(path) as z:
                        for member in z.namelist():
                            if member.endswith(".pkl") or member.endswith("data.pkl"):
                                found.append(f"{name}:{member}")
                            elif member.endswith(".npy"):
                                with z.open(member) as m:
                                    if _npy_has_objects(m, np):
                                        found.append(f"{name}:{member}")
        except (OSError, ValueError, zipfile.BadZipFile):
            found.append(f"{name} (unreadable)")
    return found


def _npy_has_objects(f, np) -> bool:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        _, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        _, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:  # a format this check does not read: refused, rather than handed over unread
        return True
    return bool(dtype.hasobject)


def parse(stdout: str, metric: str) -> Evaluation:
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return Evaluation(reason=f"the evaluator printed nothing: its last stdout line must be one JSON object, "
                                 f'e.g. {{"{metric}": 0.97}}')
    try:
        data = json.loads(lines[-1])
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return Evaluation(reason=f"the evaluator's last line is not a JSON object: {lines[-1][:200]!r}; print "
                                 f'e.g. {{"{metric}": 0.97}} last')
    figures = {k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if metric not in data:
        return Evaluation(figures=figures, reason=f"the evaluator printed no {metric!r} (its keys: "
                          f"{', '.join(sorted(data)) or 'none'}): the task's metric is {metric!r}")
    value = data[metric]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return Evaluation(figures=figures, reason=f"the evaluator's {metric} is not a number: {value!r}")
    if not math.isfinite(value):
        return Evaluation(figures=figures, reason=f"the evaluator's {metric} is {value}: not a finite number")
    return Evaluation(value=float(value), figures=figures)
