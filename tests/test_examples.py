"""The examples (examples/digits, examples/diabetes) and a newcomer's task (tests/tasks/breast_cancer, written from
the README alone), by hand and through the real loop from the command line.

By hand: prepare, train and evaluate run as the README says, and each evaluator refuses what it must not trust (a
missing file, a pickle, the wrong shape or type, NaN) with a reason and without running anything it was handed.
Through the loop: `autoresearch init --task` + `run` with `search` and with the scripted LLM server; results.tsv
carries the task's metric; and what a short search keeps is better on the holdout too (the best commit's train.py,
retrained by hand, scores the test split better than the baseline's).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakellm import Reply, fake_llm  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NEWCOMER = Path(__file__).resolve().parent / "tasks" / "breast_cancer"
TIMEOUT = 600  # seconds, for a whole short loop on a busy 2-core machine
FIGURES = {"digits": ("accuracy", 0.5, 0.95), "diabetes": ("rmse", 40.0, 100.0)}  # the starting train.py's range

pytestmark = pytest.mark.slow  # trains, or runs the loop on real runs


def task_copy(src: Path, dest: Path, prepared: bool = False) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("data", "output", "__pycache__"))
    if prepared:
        run([sys.executable, "prepare.py"], dest)
    return dest


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """prepared(name, dest): a copy of examples/name with its data, prepared once per module (`python prepare.py`
    there, as by hand; its outputs are the same on every run) and copied for each test that needs it."""
    made: dict[str, Path] = {}

    def copy(name: str, dest: Path) -> Path:
        if name not in made:
            made[name] = task_copy(EXAMPLES / name, tmp_path_factory.mktemp(name) / name, prepared=True)
        shutil.copytree(made[name], dest, ignore=shutil.ignore_patterns("output", "__pycache__"))
        return dest

    return copy


def run(cmd: list[str], cwd: Path, timeout: float = 300, check: bool = True, **env) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    assert not check or r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def autoresearch(*args: str, cwd: Path, timeout: float = TIMEOUT, **env) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "autoresearch", *args], cwd, timeout=timeout, **env)


def figures(task: Path, split: str, output: Path | None = None) -> dict:
    env = {"AUTORESEARCH_OUTPUT": str(output)} if output else {}
    r = run([sys.executable, "evaluate.py", split], task, **env)
    return json.loads(r.stdout.strip().splitlines()[-1])


def by_hand(task: Path, train_py: str, split: str, seed: int = 0) -> dict:
    """Train `train_py` by hand in the prepared task directory (seed fixed), then evaluate `split`."""
    (task / "train.py").write_text(train_py)
    shutil.rmtree(task / "output", ignore_errors=True)
    run([sys.executable, "train.py"], task, AUTORESEARCH_SEED=str(seed))
    return figures(task, split)


def results(ws: Path) -> list[dict]:
    with open(ws / "results.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


# ---------------------------------------------------------------------------
# By hand
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_an_example_runs_by_hand_and_prints_one_json_line(name, prepared, tmp_path):
    task = prepared(name, tmp_path / name)
    assert {p.name for p in (task / "data").iterdir()} == {f"{s}_{k}.npy" for s in ("train", "val", "test")
                                                           for k in "xy"}
    run([sys.executable, "train.py"], task)
    key, lo, hi = FIGURES[name]
    for split in ("val", "test"):
        value = figures(task, split)[key]
        assert lo < value < hi, f"{name} {split} {key} = {value}: the starting train.py should be decent, improvable"


BAD_OUTPUTS = {
    "missing": None,
    "pickle": "pickle",
    "shape": lambda n, kind: np.zeros(n + 1, dtype=kind),
    "type": lambda n, kind: np.array(["a"] * n),
}


@pytest.mark.parametrize("case", sorted(BAD_OUTPUTS) + ["nan"])
@pytest.mark.parametrize("name", sorted(FIGURES))
def test_an_example_evaluator_refuses_what_it_must_not_trust(name, case, prepared, tmp_path):
    task = prepared(name, tmp_path / name)
    n = len(np.load(task / "data" / "val_x.npy"))
    kind = np.int64 if name == "digits" else np.float64
    out = tmp_path / "out"
    out.mkdir()
    canary = tmp_path / "unpickled"
    if case == "pickle":  # an object array whose unpickling would create the canary
        class Payload:
            def __reduce__(self):
                return (open, (str(canary), "w"))

        np.save(out / "val_pred.npy", np.array([Payload()] * n, dtype=object), allow_pickle=True)
    elif case == "nan":
        np.save(out / "val_pred.npy", np.full(n, np.nan))
    elif BAD_OUTPUTS[case] is not None:
        np.save(out / "val_pred.npy", BAD_OUTPUTS[case](n, kind))
    r = run([sys.executable, "evaluate.py", "val"], task, check=False, AUTORESEARCH_OUTPUT=str(out))
    assert r.returncode != 0 and r.stdout.strip() == "", r.stdout
    assert r.stderr.startswith("evaluate: "), r.stderr
    assert not canary.exists(), "the evaluator unpickled what the experiment wrote"


# ---------------------------------------------------------------------------
# Through the loop
# ---------------------------------------------------------------------------


def search_loop(task: Path, ws: Path, experiments: int, *extra: str) -> list[dict]:
    r = autoresearch("init", str(ws), "--task", str(task), cwd=task.parent)
    assert not (ws / "data" / "val_y.npy").exists() and not (ws / "data" / "test_y.npy").exists(), r.stdout
    autoresearch("run", "--tag", "t", "--policy", "greedy", "--noise-runs", "0", "--max-experiments",
                 str(experiments), *extra, cwd=ws)
    return results(ws)


def test_a_short_search_on_digits_keeps_what_also_improves_the_holdout(prepared, tmp_path):
    task = task_copy(EXAMPLES / "digits", tmp_path / "digits")
    ws = tmp_path / "ws"
    rows = search_loop(task, ws, 4, "--agent", "search")
    assert list(rows[0]) == ["commit", "accuracy", "memory_gb", "status", "description"]  # the task's metric second
    assert len(rows) == 4 and rows[0]["status"] == "keep", rows
    kept = [r for r in rows[1:] if r["status"] == "keep"]
    assert kept, f"three experiments of search kept nothing: {rows}"
    metric = [float(r["accuracy"]) for r in rows if r["status"] == "keep"]
    assert metric == sorted(metric) and metric[-1] > metric[0], rows  # maximize: each keep is higher
    best_py = run(["git", "show", "autoresearch/t:train.py"], ws).stdout
    assert best_py != (task / "train.py").read_text()
    scratch = prepared("digits", tmp_path / "scratch")
    base_test = by_hand(scratch, (task / "train.py").read_text(), "test")["accuracy"]
    best_test = by_hand(scratch, best_py, "test")["accuracy"]
    assert best_test > base_test, f"the keeps improved val {metric} but not the holdout: {base_test} -> {best_test}"


def test_the_scripted_llm_server_drives_the_diabetes_example(prepared, tmp_path, fake_llm, monkeypatch):  # noqa: F811
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    task = task_copy(EXAMPLES / "diabetes", tmp_path / "diabetes")
    src = (task / "train.py").read_text()
    lr = next(x for x in src.splitlines() if x.startswith("LR = "))
    epochs = next(x for x in src.splitlines() if x.startswith("EPOCHS = "))
    fake_llm.push(Reply(f"<<<<<<< SEARCH\n{lr}\n=======\n{lr.replace('0.0005', '0.002')}\n>>>>>>> REPLACE\n"
                        f"<<<<<<< SEARCH\n{epochs}\n=======\n{epochs.replace('6 ', '20')}\n>>>>>>> REPLACE\n"
                        "Description: train longer at a higher learning rate"))
    ws = tmp_path / "ws"
    rows = search_loop(task, ws, 2, "--agent", "anthropic:test-model", "--base-url", fake_llm.url)
    assert [(r["status"], r["description"]) for r in rows] == [
        ("keep", "baseline"), ("keep", "train longer at a higher learning rate")], rows
    assert float(rows[1]["rmse"]) < float(rows[0]["rmse"]), rows  # minimize: RMSE went down
    prompt = json.dumps(fake_llm.requests[0].body)
    assert "rmse" in prompt and "minimize" in prompt.lower() and "val_bpb" not in prompt
    assert "diabetes" in prompt  # the task's program.md reached the model
    scratch = prepared("diabetes", tmp_path / "scratch")
    holdout = [by_hand(scratch, run(["git", "show", f"{r['commit']}:train.py"], ws).stdout, "test")["rmse"]
               for r in rows]
    assert holdout[1] < holdout[0], f"the keep did not improve the holdout: {holdout}"
    assert not any(f"{h:.4f}"[:5] in prompt for h in holdout), "a holdout figure reached the model"


def test_a_task_written_from_the_readme_alone_runs_through_init_and_search(tmp_path):
    """tests/tasks/breast_cancer: numpy logistic regression, CSV predictions, log loss, fixed work (no budget)."""
    task = task_copy(NEWCOMER, tmp_path / "breast_cancer")
    ws = tmp_path / "ws"
    rows = search_loop(task, ws, 4, "--agent", "search")
    assert len(rows) == 4 and rows[0]["status"] == "keep", rows
    assert list(rows[0])[1] == "logloss", rows
    loss = [float(r["logloss"]) for r in rows if r["status"] == "keep"]
    assert 0.2 < loss[0] < 0.7 and loss == sorted(loss, reverse=True), rows  # minimize: each keep is lower
