"""The evaluator process: each broken evaluator gives its reason and no figure; a tampered judge is not run."""

from __future__ import annotations

import numpy as np
import pytest
from taskkit import make_task

from autoresearch.run.evaluator import evaluate
from autoresearch.task.store import init_task_workspace, judge_dir, workspace_task


def _workspace(tmp_path, evaluate_py=None):
    extra = {"evaluate_py": evaluate_py} if evaluate_py else {}
    ws, _ = init_task_workspace(tmp_path / "ws", make_task(tmp_path / "t", **extra))
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "val_pred.npy", np.load(judge_dir(ws) / "data/val_y.npy"))
    return ws, workspace_task(ws), out


@pytest.mark.timeout(120)
def test_a_good_evaluator_gives_the_figure_in_the_sandbox(tmp_path):
    ws, task, out = _workspace(tmp_path)
    e = evaluate(task, ws, out, task.evaluate)
    assert e.ok and e.value == 1.0 and e.figures["n"] == 100, e.reason


@pytest.mark.timeout(120)
@pytest.mark.parametrize("script, reason", [
    ("raise SystemExit('boom')\n", "crashed"),
    ("import time\ntime.sleep(60)\n", "hung"),
    ("pass\n", "printed nothing"),
    ("print('{\"accuracy\": NaN}')\n", "not a finite number"),
    ("print('{\"acc\": 0.9}')\n", "printed no 'accuracy'"),
    ("print('accuracy: 0.9')\n", "not a JSON object"),
])
def test_each_broken_evaluator_gives_its_reason(tmp_path, script, reason):
    ws, task, out = _workspace(tmp_path, evaluate_py=script)
    e = evaluate(task, ws, out, task.evaluate, timeout=5)
    assert not e.ok and e.value is None and reason in e.reason


@pytest.mark.timeout(120)
def test_a_tampered_judge_is_not_run(tmp_path):
    ws, task, out = _workspace(tmp_path)
    (judge_dir(ws) / "data/val_y.npy").write_bytes(b"forged")
    e = evaluate(task, ws, out, task.evaluate)
    assert not e.ok and "changed since init" in e.reason and "data/val_y.npy" in e.reason
