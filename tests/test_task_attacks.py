"""The task attacks of the catalogue (bench/attacks/task_*.py) on examples/digits, through the real loop, with the
static check off: the run-time layers alone must handle each one.

Each attack is the second experiment of a run whose first is the honest baseline. It is made as a researcher
would make it: the task directory was checked by hand first (`python prepare.py` there, so a copy of the hidden
labels lies beside the workspace), then `autoresearch init --task` (its warning checked where the attack brings a
careless evaluator), the baseline, a snapshot of every file the run has written, and the attack, proposed by a
command agent. Handled means: the outcome is one the attack's EXPECT allows (in results.tsv: `crash`, or a scored
`keep`/`discard`), a forged figure (FORGED) is not what was recorded, no earlier run's file changed
(PROTECT_RUNS), and the branch keeps the baseline.
"""

from __future__ import annotations

import csv
import hashlib
import re
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from attacks import catalogue
from click.testing import CliRunner

from autoresearch.cli import cli
from autoresearch.run import guard

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = catalogue(tasks=True)
REQUIRED = {"task_read_labels", "task_forge_metric", "task_write_other_run", "task_tamper_evaluator",
            "task_pickle_output", "task_link_labels"}

pytestmark = pytest.mark.slow  # trains, or runs the loop on real runs


def test_the_catalogue_has_the_task_attacks():
    assert REQUIRED <= {a.name for a in ATTACKS}
    assert all(a.task == "digits" for a in ATTACKS)
    assert not {a.name for a in catalogue()} & REQUIRED  # the GPT runners never see them


def fingerprints(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix not in (".db", ".db-wal", ".db-shm")
            and p.relative_to(root).parts[0] != "results"}  # the loop rewrites results/ after each decision


def results(ws: Path) -> list[dict]:
    with open(ws / "results.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def invoke(*args: str):
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


def invoke_in(ws: Path, *args: str):
    cwd = Path.cwd()
    os.chdir(ws)
    try:
        return invoke(*args)
    finally:
        os.chdir(cwd)


def git_tip(ws: Path) -> str:
    return subprocess.run(["git", "rev-parse", "autoresearch/t"], cwd=ws, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """The run up to the attack, made once per evaluator variant and copied for each attack: the task directory
    prepared by hand beside the workspace, `init --task` (its output kept for the warning check) and the honest
    baseline, with the static check off as in the test."""
    made: dict[str, tuple[Path, str]] = {}
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")
    mp.setattr(guard, "check_source", lambda source, allowed_imports=(): [])
    mp.setattr(guard, "check_task_source", lambda source, allowed_imports=(): [])

    def baseline(attack) -> tuple[Path, str]:
        key = attack.name if attack.careless_evaluator else ""
        if key not in made:
            root = tmp_path_factory.mktemp("baseline")
            task = root / "digits"
            shutil.copytree(ROOT / "examples" / attack.task, task, ignore=shutil.ignore_patterns("data", "output"))
            if attack.careless_evaluator:
                (task / "evaluate.py").write_text(attack.careless_evaluator((task / "evaluate.py").read_text()))
            subprocess.run([sys.executable, "prepare.py"], cwd=task, check=True, capture_output=True, timeout=120)
            ws = root / "ws"
            init = invoke("init", str(ws), "--task", str(task))
            invoke_in(ws, "run", "--tag", "t", "--agent", "search", "--policy", "greedy", "--noise-runs", "0",
                      "--fix-attempts", "0", "--max-experiments", "1")
            made[key] = root, init.output
        return made[key]

    yield baseline
    mp.undo()


def copy_run(root: Path, dest: Path) -> Path:
    """A copy of a prepared run at `dest` (the task directory and the workspace side by side, as made), its
    journal's run paths moved along with it, so that nothing of the copy points into the original."""
    for name in ("digits", "ws"):
        shutil.copytree(root / name, dest / name, symlinks=True)
    db = sqlite3.connect(dest / "ws" / ".autoresearch" / "journal.db")
    with db:
        for column in ("run_dir", "log_path"):
            db.execute(f"UPDATE experiments SET {column} = replace({column}, ?, ?)", (str(root), str(dest)))
    db.close()
    return dest / "ws"


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_a_task_attack_is_handled_with_the_static_check_off(attack, baselines, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(guard, "check_source", lambda source, allowed_imports=(): [])
    monkeypatch.setattr(guard, "check_task_source", lambda source, allowed_imports=(): [])
    root, init_output = baselines(attack)
    if attack.init_warning:
        assert re.search(attack.init_warning, init_output), f"init --task did not warn:\n{init_output}"
    ws = copy_run(root, tmp_path)
    monkeypatch.chdir(ws)
    base_commit = git_tip(ws)
    assert [r["description"] for r in results(ws)] == ["baseline"]
    before = fingerprints(ws / ".autoresearch")
    attacked = tmp_path / "attack.py"
    attacked.write_text(attack.source((ws / "train.py").read_text()))
    agent = tmp_path / "agent.py"
    agent.write_text("import os, shutil, sys\n"
                     f"shutil.copy({str(attacked)!r}, os.environ['AUTORESEARCH_TRAIN_PY'])\n"
                     f"print('Description: attack {attack.name}')\n")
    invoke("run", "--resume", "--tag", "t", "--more", "1", "--agent", f"cmd:{sys.executable} {agent}")
    rows = results(ws)
    assert len(rows) == 2, rows
    rec, said = rows[1], f"{rows}"
    allowed = ({"crash"} if attack.expect & {"crash", "rejected", "timeout", "oom", "nan"} else set()) | (
        {"keep", "discard"} if "ok" in attack.expect else set())
    assert rec["status"] in allowed, said
    if attack.forged is not None and rec["status"] != "crash":
        assert float(rec["accuracy"]) != pytest.approx(attack.forged), f"the forged figure was recorded: {said}"
    if attack.forged is not None:
        assert git_tip(ws) == base_commit, f"the attack was kept: {said}"
    if attack.protect_runs:
        after = fingerprints(ws / ".autoresearch")
        changed = [p for p, h in before.items() if after.get(p) != h]
        assert changed == [], f"files of the baseline's run changed: {changed}"
    assert not (ws / "data" / "val_y.npy").exists()
