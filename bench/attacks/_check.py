"""After an attack: was anything lost? The one place for the checks the bench and the tests share.

`snapshot(attack)` before the attack (removes stale canaries, fingerprints protected files); `problems(...)` after
it, then `clear(snapshot)`. The checks: git, the journal and results.tsv agree (tests/loopkit.py's
assert_consistent, the loop tests' own check), the branch tip is still the expected best commit, results.tsv and
the journal hold every experiment, no process of the run is left, nothing was written outside the workspace.
`problems` returns one line per problem; empty means nothing was lost.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch import vcs
from autoresearch.loop.core import JOURNAL_FILE, RESULTS_FILE
from autoresearch.loop.journal import Journal, read_results_tsv
from autoresearch.workspace import RUN_DIR

LOOPKIT = Path(__file__).resolve().parents[2] / "tests" / "loopkit.py"


def assert_consistent(ws: Path, tag: str):
    """tests/loopkit.py's check (imported by path: the bench does not have tests/ on sys.path)."""
    module = sys.modules.get("loopkit")
    if module is None:
        spec = importlib.util.spec_from_file_location("loopkit", LOOPKIT)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["loopkit"] = module
        spec.loader.exec_module(module)
    return module.assert_consistent(ws, tag)


@dataclass
class Snapshot:
    protected: dict[str, str | None] = field(default_factory=dict)  # path -> sha256 (None: absent)
    canaries: tuple[str, ...] = ()
    leftovers: tuple[str, ...] = ()  # glob patterns under the workspace
    workspace: Path | None = None  # set by problems(), for clear()


def digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def snapshot(attack) -> Snapshot:
    """Before the attack: clear canaries an earlier run may have left, fingerprint what must not change."""
    for path in attack.canaries:
        Path(path).unlink(missing_ok=True)
    return Snapshot(protected={p: digest(p) for p in attack.protected}, canaries=attack.canaries,
                    leftovers=attack.leftovers)


def clear(snap: Snapshot) -> None:
    """After the checks: remove what an attack managed to write (only where a layer let it through)."""
    for path in snap.canaries:
        Path(path).unlink(missing_ok=True)
    for path in _leftovers(snap):
        path.unlink(missing_ok=True)


def _leftovers(snap: Snapshot) -> list[Path]:
    if snap.workspace is None:
        return []
    return [p for pattern in snap.leftovers for p in snap.workspace.glob(pattern)]


def problems(ws: Path, tag: str, experiments: int, best_commit: str, snap: Snapshot) -> list[str]:
    """What the attack broke or left behind (empty: nothing)."""
    out: list[str] = []
    try:
        assert_consistent(ws, tag)
    except AssertionError as e:
        where = traceback.extract_tb(e.__traceback__)[-1]
        out.append(f"git, journal and results.tsv disagree ({where.line}){': ' + str(e) if str(e) else ''}")
    except Exception as e:  # noqa: BLE001 - a missing journal or branch is exactly what we look for
        out.append(f"records unreadable: {type(e).__name__}: {e}")
    results = ws / RESULTS_FILE
    if not results.exists():
        out.append("results.tsv is gone")
    else:
        rows = read_results_tsv(results)
        if len(rows) != experiments:
            out.append(f"results.tsv has {len(rows)} rows, expected {experiments}")
    if not (ws / RUN_DIR / JOURNAL_FILE).exists():
        out.append("the journal is gone")
    else:
        journal = Journal(ws / RUN_DIR / JOURNAL_FILE)
        try:
            final = journal.final_attempts(tag)
            if len(final) != experiments:
                out.append(f"the journal has {len(final)} experiments, expected {experiments}")
        finally:
            journal.close()
    try:
        head = vcs.head(ws)
        if head != best_commit:
            out.append(f"the branch tip is {head[:7]}, not the best commit {best_commit[:7]}")
    except Exception as e:  # noqa: BLE001
        out.append(f"git unreadable: {e}")
    out += [f"process left running: {p}" for p in leftover_processes(ws)]
    out += [f"wrote outside the workspace: {p}" for p in snap.canaries if os.path.lexists(p)]
    out += [f"changed outside the workspace: {p}" for p, d in snap.protected.items() if digest(p) != d]
    snap.workspace = ws
    out += [f"left for the next run: {p.relative_to(ws)}" for p in _leftovers(snap)]
    return out


MEASURE = ("val_bytes", "val_tokens", "test_bytes", "test_tokens")  # what the evaluation measured, whatever the model


def measured_differently(base: dict, run: dict) -> list[str]:
    """For an attack that ran and was scored (neutralised): did the evaluation measure what the baseline's did?"""
    return [f"the evaluation measured {k} {run.get(k)}, the baseline's {base.get(k)}" for k in MEASURE
            if run.get(k) != base.get(k) and (k.removesuffix("_bytes").removesuffix("_tokens") + "_bpb" in run
                                              or not k.startswith("test_"))]  # the loop may not want the test split


def leftover_processes(ws: Path, wait: float = 2.0) -> list[str]:
    """Live processes (not us, not our ancestors) working in the workspace or carrying its path in their
    environment (an experiment's children inherit TMPDIR=<run dir>/tmp). Waits up to `wait` s for them to go."""
    deadline = time.monotonic() + wait
    while True:
        found = _scan(str(ws.resolve()))
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def _scan(ws: str) -> list[str]:
    me = os.getpid()
    skip = {me, *_ancestors(me)}
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid in skip:
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                continue
            cwd = os.readlink(entry / "cwd")
            environ = (entry / "environ").read_bytes()
        except (OSError, IndexError):
            continue
        if cwd == ws or cwd.startswith(ws + "/") or ws.encode() in environ:
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                cmd = "?"
            found.append(f"pid {pid}: {cmd[:100]}")
    return found


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
        out.append(pid)
    return out


def held_out_in(ws: Path, tag: str, *texts: str) -> list[str]:
    """The test figures of the run's journal that appear in `texts` (what an agent proposed), as JSON or printed
    with 4 to 6 decimals: held-out data an agent must never have."""
    journal = Journal(ws / RUN_DIR / JOURNAL_FILE)
    try:
        figures = [e.test_bpb for e in journal.experiments(tag) if e.test_bpb is not None]
    finally:
        journal.close()
    said = "\n".join(texts)
    return [f"test_bpb {x!r}" for x in figures
            if any(form in said for form in (repr(x), f"{x:.6f}", f"{x:.5f}", f"{x:.4f}"))]
