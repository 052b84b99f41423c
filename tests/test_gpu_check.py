"""bench/gpu_check.py: its CPU dry run is the CPU test of the compiled template (COMPILE = True, inductor's C++
backend) through the real runner and sandbox, and keeps the GPU check's code paths working in CI. The table is
printed, and the exit code set, whatever part fails."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gpu_check  # bench/ is on sys.path (conftest.py)

ROOT = Path(__file__).resolve().parents[1]
ROW_LABELS = ("attention", "compile", "sandbox", "steps", "training tokens/s", "MFU", "peak memory", "val_bpb",
              "evaluation", "startup", "outside training")


@pytest.mark.slow
def test_cpu_dry_run_trains_the_compiled_template_through_the_runner_and_sandbox(tmp_path):
    out = tmp_path / "out"
    # The script bounds itself (--limit, 600 s by default); this timeout only catches a hang of the script itself.
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--cpu-dry-run", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = (out / "table.txt").read_text()
    assert table.strip() in proc.stdout and "result: ok" in table
    result = json.loads((out / "result.json").read_text())
    parts = result["parts"]

    run = parts["training run"]
    assert run["status"] == "ok", run["why"]
    figures = run["figures"]
    assert figures["status"] == "ok" and figures["compile"] == "on" and figures["attention"] == "sdpa"
    assert figures["steps"] > 0 and math.isfinite(figures["val_bpb"])
    assert figures["tokens_per_second"] > 0 and figures["startup_seconds"] > 0 and figures["eval_seconds"] > 0
    assert 0 < figures["outside_share"] < 1
    labels = [label for label, _ in run["rows"]]
    assert all(label in labels for label in ROW_LABELS), labels
    sandbox = dict(run["rows"])["sandbox"]
    assert sandbox.startswith("network") and "n/a" not in sandbox  # the launcher's own line, from run.log

    tests = parts["CUDA tests"]  # no CUDA here: the CUDA template test was collected and skipped
    assert tests["status"] == "skipped" and "needs CUDA" in tests["why"]
    assert tests["figures"]["skipped"] == 1 and tests["figures"]["failed"] == 0
    step = parts["train_step.py"]  # the cpu profile, to check that the script runs and its line parses
    assert step["status"] == "skipped" and step["figures"]["tokens_per_second"] > 0
    assert parts["prepare"]["status"] == parts["environment"]["status"] == "ok"
    assert {p.name for p in out.iterdir()} == {"table.txt", "result.json", "run.log", "scorer.log", "pytest.log",
                                               "prepare.log", "train_step.log"}


def test_a_failing_part_still_prints_the_table_says_why_and_exits_nonzero(tmp_path, monkeypatch, capsys):
    for name in ("AUTORESEARCH_DEVICE", "PYTHONPATH"):  # main() sets both; monkeypatch restores them afterwards
        monkeypatch.setenv(name, os.environ.get(name, ""))

    def broken_parts(check: gpu_check.Check, work: Path) -> None:
        check.part("environment").status = "ok"
        check.part("CUDA tests").skip("needs CUDA")
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(gpu_check, "run_parts", broken_parts)
    assert gpu_check.main(["--cpu-dry-run", "--out", str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    assert "prepare              FAILED: RuntimeError: the disk is full" in printed
    assert "result: FAILED: prepare, training run, train_step.py" in printed  # parts never reached count as failed
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["ok"] is False and result["parts"]["training run"]["status"] == "not run"


def test_junit_counts_each_outcome(tmp_path):
    report = tmp_path / "pytest.xml"
    report.write_text("""<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="4">
        <testcase classname="tests.test_a" name="test_ok" time="0.1"/>
        <testcase classname="tests.test_a" name="test_bad" time="0.1"><failure message="boom">boom</failure></testcase>
        <testcase classname="tests.test_a" name="test_gpu" time="0"><skipped message="needs CUDA"/></testcase>
        <testcase classname="tests.test_b" name="test_fixture" time="0"><error message="fixture">x</error></testcase>
        </testsuite></testsuites>""")
    counts, outcomes = gpu_check.junit_counts(report)
    assert counts == dict(passed=1, failed=1, errors=1, skipped=1)
    assert outcomes["test_gpu"] == "skipped" and outcomes["test_bad"] == "failed"

