"""The runner classifies every outcome and never raises for a failed run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from loopkit import alive, fast_source

from autoresearch.runner import Experiment, parse_progress, parse_summary, run_experiment
from autoresearch.settings import Settings


def run(ws, tmp_path, source: str, timeout: float | None = None):
    settings = Settings.load(ws / "autoresearch.toml")
    exp = Experiment(source=source, workspace=ws, settings=settings, run_dir=tmp_path / "run", timeout=timeout,
                     cache=Path(os.environ["AUTORESEARCH_CACHE"]))
    lines: list[str] = []
    return run_experiment(exp, on_line=lines.append), lines


def test_ok_takes_the_official_figures_from_the_harness(tiny_workspace, tmp_path):
    liar = fast_source().replace('print(f"val_bpb:          {val_bpb:.6f}")', 'print("val_bpb:          0.000100")')
    result, lines = run(tiny_workspace, tmp_path, liar)
    assert result.status == "ok" and result.ok
    assert result.summary["val_bpb"] == 0.0001  # what train.py claimed...
    assert result.val_bpb > 1.0 and result.val_bpb == result.harness["val_bpb"]  # ...is not what counts
    assert result.test_bpb is not None and (tmp_path / "run" / "run.log").read_text().count("\n") == len(lines)


def test_crash_keeps_the_traceback_tail(tiny_workspace, tmp_path):
    result, _ = run(tiny_workspace, tmp_path, "import sys\nprint('loading')\nraise ValueError('bad shape (3, 4)')\n")
    assert result.status == "crash" and result.val_bpb is None
    assert "ValueError: bad shape (3, 4)" in result.error_tail and "Traceback" in result.error_tail
    assert "bad shape" in result.reason


def test_finishing_without_evaluation_is_a_crash(tiny_workspace, tmp_path):
    result, _ = run(tiny_workspace, tmp_path, "print('---')\nprint('val_bpb:          0.5')\n")
    assert result.status == "crash" and "evaluate_bpb" in result.reason and result.val_bpb is None


def test_timeout_kills_the_whole_group(tiny_workspace, tmp_path):
    pidfile = tmp_path / "child.pid"
    source = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(600)\n")
    t0 = time.monotonic()
    result, _ = run(tiny_workspace, tmp_path, source, timeout=3)
    assert result.status == "timeout" and time.monotonic() - t0 < 30
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child), "a child of the experiment outlived it"


def test_nan_loss(tiny_workspace, tmp_path):
    result, _ = run(tiny_workspace, tmp_path, "import sys\nprint('step 00003 (1.0%) | loss: nan')\nprint('FAIL')\nsys.exit(1)\n")
    assert result.status == "nan"


@pytest.mark.parametrize("error", ["torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')",
                                   "MemoryError()"])
def test_out_of_memory(tiny_workspace, tmp_path, error):
    result, _ = run(tiny_workspace, tmp_path, f"import torch\nraise {error}\n")
    assert result.status == "oom"


def test_non_finite_official_figure_is_nan(tiny_workspace, tmp_path):
    source = fast_source().replace("return (QUALITY * logp)", "return float('nan') * (QUALITY * logp)")
    result, _ = run(tiny_workspace, tmp_path, source)
    assert result.status == "nan"


def test_progress_and_summary_parsing():
    p = parse_progress("step 00042 (12.3%) | loss: 3.456789 | lrm: 1.00 | dt: 123ms | tok/sec: 12,345 | "
                       "mfu: 1.2% | epoch: 1 | remaining: 250s")
    assert (p.step, p.percent, p.loss, p.tokens_per_second, p.mfu, p.remaining) == (42, 12.3, 3.456789, 12345, 1.2, 250)
    assert parse_progress("hello") is None
    assert parse_summary(["x", "---", "val_bpb:          0.9979", "depth:            8", "junk"]) == {
        "val_bpb": 0.9979, "depth": 8.0}

