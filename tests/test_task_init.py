"""`init --task`: the workspace holds no hidden file (nor does its git history); the judge's copy does; the
evaluator's careless habits are warned about; a failing prepare leaves nothing behind."""

from __future__ import annotations

import pytest
from taskkit import EVALUATE, make_task

from autoresearch import vcs
from autoresearch.task.declaration import TaskError
from autoresearch.task.store import judge_dir, init_task_workspace, tampered, workspace_task


def test_init_keeps_hidden_files_out_of_the_workspace_and_its_history(tmp_path):
    ws, warnings = init_task_workspace(tmp_path / "ws", make_task(tmp_path / "t"))
    assert warnings == []
    assert (ws / "train.py").is_file() and (ws / "data/val_x.npy").is_file()
    assert not (ws / "data/val_y.npy").exists() and not (ws / "data/test_y.npy").exists()
    tracked = vcs.git(ws, "ls-files").split()
    assert "train.py" in tracked and not any(t.endswith("_y.npy") and "train" not in t for t in tracked)
    assert (judge_dir(ws) / "data/val_y.npy").is_file() and not (judge_dir(ws) / "train.py").exists()
    assert tampered(ws) == []
    (judge_dir(ws) / "evaluate.py").write_text("print('{\"accuracy\": 1.0}')\n")
    assert tampered(ws) == ["evaluate.py (changed)"]
    task = workspace_task(ws)
    assert task.metric.goal == "maximize" and task.is_editable("train.py") and not task.is_editable("evaluate.py")


def test_init_warns_of_an_evaluator_that_unpickles_or_imports_the_agent_s_code(tmp_path):
    careless = EVALUATE + "import pickle\nimport torch\nimport train\ntorch.load('m.pt')\n"
    _, warnings = init_task_workspace(tmp_path / "ws", make_task(tmp_path / "t", evaluate_py=careless))
    text = "\n".join(warnings)
    assert "imports pickle" in text and "torch.load without weights_only=True" in text and "imports train" in text


def test_a_failing_prepare_creates_nothing(tmp_path):
    root = make_task(tmp_path / "t", prepare_py="raise SystemExit(3)\n")
    with pytest.raises(TaskError, match="prepare"):
        init_task_workspace(tmp_path / "ws", root)
    assert not (tmp_path / "ws").exists()


def test_the_cli_makes_a_task_workspace_and_names_a_bad_key(tmp_path):
    from click.testing import CliRunner

    from autoresearch.cli import cli as main

    root = make_task(tmp_path / "t")
    out = CliRunner().invoke(main, ["init", str(tmp_path / "ws"), "--task", str(root)])
    assert out.exit_code == 0, out.output
    assert "created task workspace" in out.output and (tmp_path / "ws/train.py").is_file()
    (root / "task.toml").write_text((root / "task.toml").read_text().replace('"maximize"', '"upward"'))
    out = CliRunner().invoke(main, ["init", str(tmp_path / "ws2"), "--task", str(root)])
    assert out.exit_code != 0 and "goal" in out.output and not (tmp_path / "ws2").exists()
