"""A task's declaration: every key checked, errors that name the key and the fix, raised before anything exists."""

from __future__ import annotations

import pytest
from taskkit import TOML, make_task

from autoresearch.task.declaration import TaskError, load_task
from autoresearch.task.metric import Metric


def test_a_declaration_reads_into_a_task(tmp_path):
    task = load_task(make_task(tmp_path / "t"))
    assert task.name == "line" and task.metric == Metric("accuracy", "maximize")
    assert task.editable == ("train.py",) and task.hidden == ("data/val_y.npy", "data/test_y.npy")
    assert task.timeout == 120 and task.seed_env == "AUTORESEARCH_SEED"
    assert task.editable_files() == ["train.py"]
    assert "evaluate.py" in task.fixed_files() and "task.toml" in task.fixed_files()


def test_a_task_table_in_autoresearch_toml_is_read_too(tmp_path):
    root = make_task(tmp_path / "t")
    (root / "task.toml").rename(root / "autoresearch.toml")
    assert load_task(root).metric.name == "accuracy"


@pytest.mark.parametrize("change, key, fix", [
    (lambda s: s.replace('metric = "accuracy"\n', ""), "metric", "missing"),
    (lambda s: s.replace('goal = "maximize"', 'goal = "max"'), "goal", '"minimize" or "maximize"'),
    (lambda s: s.replace('editable = ["train.py"]', 'editable = ["model.py"]'), "editable", "matches no file"),
    (lambda s: s.replace('hidden = ["data/val_y.npy"', 'hidden = ["train.py"'), "hidden", "not both"),
    (lambda s: s.replace('evaluate = "python evaluate.py val"', 'evaluate = "python judge.py val"')
        .replace('prepare = "python prepare.py"\n', "").replace('readable = ["data/train_*.npy", "data/val_x.npy", '
                                                                 '"data/test_x.npy"]\n', "")
        .replace('hidden = ["data/val_y.npy", "data/test_y.npy"]\n', ""), "evaluate", "does not exist"),
    (lambda s: s.replace('editable = ["train.py"]', 'editable = ["*.py"]'), "editable", "evaluate.py is the "
     "evaluator's script"),  # with several editable files a glob is natural, and it must not take the evaluator
    (lambda s: s.replace("timeout = 120", "timeout = -3"), "timeout", "positive number of seconds"),
    (lambda s: s.replace("timeout = 120", 'colour = "blue"'), "unknown key(s) colour", "the keys are"),
    (lambda s: s.replace('readable = ["data/train_*.npy"', 'readable = ["../elsewhere/*"'), "readable",
     "leaves the task's directory"),
])
def test_each_bad_key_is_named_with_its_fix(tmp_path, change, key, fix):
    root = make_task(tmp_path / "t", toml=change(TOML))
    with pytest.raises(TaskError) as e:
        load_task(root)
    assert key in str(e.value) and fix in str(e.value)


def test_no_declaration_says_what_to_write(tmp_path):
    (tmp_path / "t").mkdir()
    with pytest.raises(TaskError, match=r"no \[task\] table"):
        load_task(tmp_path / "t")
    with pytest.raises(TaskError, match="does not exist"):
        load_task(tmp_path / "nowhere")


def test_the_metric_s_direction():
    up, down = Metric("accuracy", "maximize"), Metric("loss", "minimize")
    assert up.better(0.9, 0.8) and not up.better(0.8, 0.9) and down.better(0.8, 0.9)
    assert up.better(0.1, None) and not up.better(float("nan"), 0.1) and not up.better(None, 0.1)
    assert up.best([0.7, 0.9, 0.8]) == 0.9 and down.best([0.7, 0.9, 0.8]) == 0.7
    assert up.gain(0.9, 0.8) == pytest.approx(0.1) and down.gain(0.7, 0.8) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        Metric("x", "up")
