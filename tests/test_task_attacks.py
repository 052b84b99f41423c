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
import shutil
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
            "task_pickle_output"}

pytestmark = pytest.mark.slow  # trains, or runs the loop on real runs


def test_the_catalogue_has_the_task_attacks():
    assert REQUIRED <= {a.name for a in ATTACKS}
    assert all(a.task == "digits" for a in ATTACKS)
    assert not {a.name for a in catalogue()} & REQUIRED  # the GPT runners never see them


def fingerprints(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix not in (".db", ".db-wal", ".db-shm")
            and p.relative_to(root).parts[0] != "results"}  # the loop rewrites results/ after each decision


def invoke(*args: str):
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_a_task_attack_is_handled_with_the_static_check_off(attack, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(guard, "check_source", lambda source, allowed_imports=(): [])
    monkeypatch.setattr(guard, "check_task_source", lambda source, allowed_imports=(): [])
    task = tmp_path / "digits"
    shutil.copytree(ROOT / "examples" / attack.task, task, ignore=shutil.ignore_patterns("data", "output"))
    if attack.careless_evaluator:
        (task / "evaluate.py").write_text(attack.careless_evaluator((task / "evaluate.py").read_text()))
    subprocess.run([sys.executable, "prepare.py"], cwd=task, check=True, capture_output=True, timeout=120)
    ws = tmp_path / "ws"
    init = invoke("init", str(ws), "--task", str(task))
    if attack.init_warning:
        assert re.search(attack.init_warning, init.output), f"init --task did not warn:\n{init.output}"
    monkeypatch.chdir(ws)
    invoke("run", "--tag", "t", "--agent", "search", "--policy", "greedy", "--noise-runs", "0",
           "--fix-attempts", "0", "--max-experiments", "1")
    base_commit = subprocess.run(["git", "rev-parse", "autoresearch/t"], cwd=ws, capture_output=True, text=True,
                                 check=True).stdout.strip()
    before = fingerprints(ws / ".autoresearch")
    attacked = tmp_path / "attack.py"
    attacked.write_text(attack.source((ws / "train.py").read_text()))
    agent = tmp_path / "agent.py"
    agent.write_text("import os, shutil, sys\n"
                     f"shutil.copy({str(attacked)!r}, os.environ['AUTORESEARCH_TRAIN_PY'])\n"
                     f"print('Description: attack {attack.name}')\n")
    invoke("run", "--resume", "--tag", "t", "--more", "1", "--agent", f"cmd:{sys.executable} {agent}")
    with open(ws / "results.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 2, rows
    rec, said = rows[1], f"{rows}"
    allowed = ({"crash"} if attack.expect & {"crash", "rejected", "timeout", "oom", "nan"} else set()) | (
        {"keep", "discard"} if "ok" in attack.expect else set())
    assert rec["status"] in allowed, said
    if attack.forged is not None and rec["status"] != "crash":
        assert float(rec["accuracy"]) != pytest.approx(attack.forged), f"the forged figure was recorded: {said}"
    if attack.forged is not None:
        tip = subprocess.run(["git", "rev-parse", "autoresearch/t"], cwd=ws, capture_output=True, text=True,
                             check=True).stdout.strip()
        assert tip == base_commit, f"the attack was kept: {said}"
    if attack.protect_runs:
        after = fingerprints(ws / ".autoresearch")
        changed = [p for p, h in before.items() if after.get(p) != h]
        assert changed == [], f"files of the baseline's run changed: {changed}"
    assert not (ws / "data" / "val_y.npy").exists()
