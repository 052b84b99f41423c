"""results.tsv for people and the original's tools; a copy per run, so no run's rows are ever lost.

`results.tsv` at the workspace root lists the active run, in the original's format, as the original's habits and
notebooks expect. Every run also has its own `.autoresearch/results/<tag>.tsv`, written at the same moments, so
starting a new run (or resuming another) changes which run results.tsv shows and loses no row. A results.tsv
that autoresearch did not write (edited by hand, or from another tool) is moved aside, never overwritten.

Both are derived from the journal, which stays the record: `status --tag` and `report --tag` read any run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from urllib.parse import quote

from autoresearch.loop.journal import Journal
from autoresearch.workspace import RUN_DIR

RESULTS_FILE = "results.tsv"
RUNS_DIR = Path(RUN_DIR) / "results"  # <tag>.tsv for every run; saved-*.tsv: files we moved aside
WRITTEN = ".written.json"  # {sha256: tag} of what we last wrote to results.tsv


def run_file(workspace: Path, tag: str) -> Path:
    return workspace / RUNS_DIR / f"{quote(tag, safe='')}.tsv"  # a tag may hold "/" (git allows it in branches)


def publish(journal: Journal, tag: str, workspace: Path) -> list[str]:
    """Write the run's rows to its own file and to results.tsv; returns what a user must be told (a file moved
    aside, or results.tsv switching from another run)."""
    own = run_file(workspace, tag)
    own.parent.mkdir(parents=True, exist_ok=True)
    journal.write_results_tsv(tag, own)
    text = own.read_text()
    target = workspace / RESULTS_FILE
    notes: list[str] = []
    written = _read_written(workspace)
    try:
        current = target.read_text()
    except FileNotFoundError:
        current = None
    keep = {_sha(text): tag}
    if current is not None and current != text:
        owner = _owner(journal, workspace, current, written)
        if owner is None:
            saved = _free(workspace / RUNS_DIR / f"saved-{time.strftime('%Y%m%d-%H%M%S')}.tsv")
            os.replace(target, saved)
            notes.append(f"{RESULTS_FILE} held rows autoresearch did not write (edited, or from another tool): "
                         f"moved it to {saved.relative_to(workspace)}")
        else:
            keep[_sha(current)] = owner
            if owner != tag:
                notes.append(f"{RESULTS_FILE} now lists run {tag}; run {owner}'s rows stay in "
                             f"{run_file(workspace, owner).relative_to(workspace)} (and `autoresearch status "
                             f"--tag {owner}`)")
    _write_written(workspace, keep)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
    return notes


def _owner(journal: Journal, workspace: Path, content: str, written: dict[str, str]) -> str | None:
    """The run whose rows `content` is, or None when autoresearch did not write it."""
    if _sha(content) in written:
        return written[_sha(content)]
    for run in journal.runs():  # not marked: a workspace from before per-run files; the journal can tell
        own = run_file(workspace, run.tag)
        if own.exists() and own.read_text() == content:
            return run.tag
        tmp = workspace / RUNS_DIR / ".render.tmp"
        journal.write_results_tsv(run.tag, tmp)
        rendered = tmp.read_text()
        tmp.unlink()
        if rendered == content:
            if not own.exists():
                own.write_text(content)
            return run.tag
    return None


def _free(path: Path) -> Path:
    n = 1
    while path.exists():
        path = path.with_name(f"{path.stem.rsplit('.', 1)[0]}.{n}{path.suffix}")
        n += 1
    return path


def _sha(text: str | None) -> str:
    return hashlib.sha256((text or "").encode()).hexdigest()


def _read_written(workspace: Path) -> dict[str, str]:
    try:
        written = json.loads((workspace / RUNS_DIR / WRITTEN).read_text())
        return written if isinstance(written, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_written(workspace: Path, written: dict[str, str]) -> None:
    """Written before results.tsv is replaced, with the hashes of both its old and its new content (and whose rows
    each is): whichever one an interruption leaves there is still known as ours."""
    path = workspace / RUNS_DIR / WRITTEN
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(written))
    os.replace(tmp, path)
