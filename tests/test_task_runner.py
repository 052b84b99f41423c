"""A task's experiment in the sandbox: it scores through the evaluator only; an edit that opens a hidden file does
not score; a proposal touching a fixed file is refused; what the script prints decides nothing."""

from __future__ import annotations

import pytest
from taskkit import TRAIN, make_task

from autoresearch.run.task_runner import run_task, run_task_files
from autoresearch.task.store import init_task_workspace, judge_dir, workspace_task

pytestmark = pytest.mark.slow  # trains, or runs the loop on real runs


def _ws(tmp_path):
    ws, _ = init_task_workspace(tmp_path / "ws", make_task(tmp_path / "t"))
    return ws, workspace_task(ws)


@pytest.mark.timeout(180)
def test_a_task_experiment_scores_through_its_evaluator(tmp_path):
    ws, task = _ws(tmp_path)
    status, reason, val, test = run_task(task, ws, {"train.py": TRAIN}, tmp_path / "run", holdout=True)
    assert status == "ok", reason
    assert 0.9 < val.value <= 1.0 and test is not None and test.value > 0.9
    worse = TRAIN.replace("BIAS = 0.0", "BIAS = 5.0")
    status, reason, bad, _ = run_task(task, ws, {"train.py": worse}, tmp_path / "run2")
    assert status == "ok" and bad.value < val.value  # it printed "accuracy: 1.0" too: that decides nothing


@pytest.mark.timeout(180)
def test_an_edit_that_opens_a_hidden_file_does_not_score(tmp_path):
    ws, task = _ws(tmp_path)
    cheat = TRAIN.replace('xs = np.load(f"data/{split}_x.npy")', 'xs = np.load(f"data/{split}_x.npy")\n    '
                          f'np.save(os.path.join(os.environ["AUTORESEARCH_OUTPUT"], f"{{split}}_pred.npy"), '
                          f'np.load("{judge_dir(ws)}/data/" + split + "_y.npy")); raise SystemExit(0)')
    status, reason, val, _ = run_task(task, ws, {"train.py": cheat}, tmp_path / "run")
    assert status != "ok" and val.value is None


def test_a_proposal_touching_a_fixed_file_is_refused(tmp_path):
    ws, task = _ws(tmp_path)
    for f in ("evaluate.py", "data/val_x.npy", "task.toml"):
        status, reason, _, _ = run_task(task, ws, {"train.py": TRAIN, f: "x"}, tmp_path / "run")
        assert status == "rejected" and f in reason


@pytest.mark.timeout(180)
def test_a_task_experiment_s_memory_is_the_runner_s_measurement_of_its_processes(tmp_path):
    """results.tsv's memory_gb of a task: the peak resident memory of the experiment's processes, as sampled by the
    runner (it was 0.0); what the script or its evaluator prints does not set it."""
    ws, task = _ws(tmp_path)
    hog = TRAIN.replace("import numpy as np\n", "import numpy as np\nimport time\n"
                        "held = np.ones(40_000_000)  # 305 MiB, held while the runner samples\ntime.sleep(1.0)\n")
    small = run_task_files(task, ws, {"train.py": TRAIN}, tmp_path / "small")
    big = run_task_files(task, ws, {"train.py": hog}, tmp_path / "big")
    assert small.ok and big.ok, (small.reason, big.reason)
    assert 0.0 < small.memory_gb < 0.25, small.memory_gb  # python and numpy
    assert big.memory_gb > small.memory_gb + 0.25, (small.memory_gb, big.memory_gb)


@pytest.mark.timeout(180)
def test_the_user_s_thread_counts_reach_a_task_experiment_and_a_worker_s_share_comes_first(tmp_path, monkeypatch):
    """OMP_NUM_THREADS and MKL_NUM_THREADS go to a task's script as they go to a GPT run (they were dropped with
    the rest of the environment); a CPU worker's share (the runner's `env`) replaces the user's."""
    ws, task = _ws(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("MKL_NUM_THREADS", "5")
    spy = TRAIN.replace("import numpy as np\n", "import numpy as np\n"
                        "print('THREADS', os.environ.get('OMP_NUM_THREADS'), os.environ.get('MKL_NUM_THREADS'))\n", 1)
    own = run_task_files(task, ws, {"train.py": spy}, tmp_path / "own")
    shared = run_task_files(task, ws, {"train.py": spy}, tmp_path / "shared",
                            env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert own.ok and shared.ok, (own.reason, shared.reason)
    assert "THREADS 3 5" in (tmp_path / "own" / "run.log").read_text()
    assert "THREADS 1 1" in (tmp_path / "shared" / "run.log").read_text()
