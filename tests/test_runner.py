"""The runner classifies every outcome and never raises for a failed run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from loopkit import alive, fast_source, pid_working_in

from autoresearch.harness.constants import prepared_dir
from autoresearch.run.supervisor import Experiment, parse_progress, parse_summary, run_experiment
from autoresearch.settings import Settings


def run(ws, tmp_path, source: str, timeout: float | None = None, wants_test=None, **settings_changes):
    settings = Settings.load(ws / "autoresearch.toml").replace(**settings_changes)
    exp = Experiment(source=source, workspace=ws, settings=settings, run_dir=tmp_path / "run", timeout=timeout,
                     cache=Path(os.environ["AUTORESEARCH_CACHE"]), wants_test=wants_test)
    lines: list[str] = []
    return run_experiment(exp, on_line=lines.append), lines


@pytest.mark.slow
def test_ok_takes_the_official_figures_from_the_harness(tiny_workspace, tmp_path):
    result, lines = run(tiny_workspace, tmp_path, fast_source())
    assert result.status == "ok" and result.ok
    assert result.val_bpb == result.harness["val_bpb"] == pytest.approx(result.summary["val_bpb"], abs=1e-6)
    assert result.test_bpb is not None and result.harness["probe"]["probes"] > 0
    assert result.training_seconds is not None and result.eval_seconds is not None
    assert (tmp_path / "run" / "run.log").read_text().count("\n") == len(lines)


@pytest.mark.slow
def test_a_printed_figure_that_is_not_the_harness_s_gets_no_score(tiny_workspace, tmp_path):
    liar = fast_source().replace('print(f"val_bpb:          {val_bpb:.6f}")', 'print("val_bpb:          0.000100")')
    result, _ = run(tiny_workspace, tmp_path, liar)
    assert result.status == "rejected" and result.val_bpb is None
    assert "printed val_bpb 0.0001 but the harness measured" in result.reason


def test_crash_keeps_the_traceback_tail(tiny_workspace, tmp_path):
    result, _ = run(tiny_workspace, tmp_path, "import sys\nprint('loading')\nraise ValueError('bad shape (3, 4)')\n")
    assert result.status == "crash" and result.val_bpb is None
    assert "ValueError: bad shape (3, 4)" in result.error_tail and "Traceback" in result.error_tail
    assert "bad shape" in result.reason


def test_finishing_without_evaluation_gets_no_score(tiny_workspace, tmp_path):
    result, _ = run(tiny_workspace, tmp_path, "print('---')\nprint('val_bpb:          0.5')\n")
    assert result.status == "rejected" and "evaluate_bpb" in result.reason and result.val_bpb is None


@pytest.mark.slow
def test_training_past_the_budget_is_stopped_by_the_runner_s_clock(tiny_workspace, tmp_path):
    """train.py's own timer says nothing here: the runner clocks from the first optimizer step."""
    slow = fast_source().replace("time.sleep(SLEEP)", "torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1).step()\n"
                                                     "time.sleep(60)")
    result, _ = run(tiny_workspace, tmp_path, slow, time_budget=1.0, time_allowance=1.0)
    assert result.status == "timeout" and "by the runner's clock" in result.reason
    assert result.returncode is not None and result.returncode < 0  # stopped by us, long before its sleep ended


def test_memory_limit(tiny_workspace, tmp_path):
    hog = "import time\nblocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n    time.sleep(0.05)\n"
    result, _ = run(tiny_workspace, tmp_path, hog, memory_limit_mb=400)
    assert result.status == "oom" and "memory limit of 400 MB" in result.reason


@pytest.mark.slow
def test_a_process_left_running_is_killed_and_the_run_gets_no_score(tiny_workspace, tmp_path):
    stray = fast_source().replace(
        "import time\n",
        "import time\nimport subprocess, sys\n"
        "_p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n", 1)
    result, _ = run(tiny_workspace, tmp_path, stray)
    assert result.status == "rejected" and "left 1 process" in result.reason
    time.sleep(0.5)
    assert pid_working_in(tmp_path / "run") is None  # nothing of the run is left


@pytest.mark.slow
def test_timeout_kills_the_whole_group(tiny_workspace, tmp_path):
    source = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "open('child.pid', 'w').write(str(p.pid))\n"
        "time.sleep(600)\n")
    pidfile = tmp_path / "run" / "child.pid"
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


@pytest.mark.slow
@pytest.mark.parametrize("error", ["torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')",
                                   "MemoryError()"])
def test_out_of_memory(tiny_workspace, tmp_path, error):
    result, _ = run(tiny_workspace, tmp_path, f"import torch\nraise {error}\n")
    assert result.status == "oom"


@pytest.mark.slow
def test_non_finite_official_figure_is_nan(tiny_workspace, tmp_path):
    source = fast_source().replace("return (QUALITY * logp + jitter)", "return float('nan') * (QUALITY * logp)")
    assert source != fast_source()
    result, _ = run(tiny_workspace, tmp_path, source)
    assert result.status == "nan"


def test_progress_and_summary_parsing():
    p = parse_progress("step 00042 (12.3%) | loss: 3.456789 | lrm: 1.00 | dt: 123ms | tok/sec: 12,345 | "
                       "mfu: 1.2% | epoch: 1 | remaining: 250s")
    assert (p.step, p.percent, p.loss, p.tokens_per_second, p.mfu, p.remaining) == (42, 12.3, 3.456789, 12345, 1.2, 250)
    assert parse_progress("hello") is None
    assert parse_summary(["x", "---", "val_bpb:          0.9979", "depth:            8", "junk"]) == {
        "val_bpb": 0.9979, "depth": 8.0}



@pytest.mark.slow
def test_secrets_never_reach_train_py(tiny_workspace, tmp_path, monkeypatch):
    """Run straight through the runner: the static check would refuse this spy before it ever ran."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA")
    monkeypatch.setenv("HARMLESS_SETTING", "visible")
    harness = "from autoresearch.harness import MAX_SEQ_LEN, Tokenizer, evaluate_bpb, make_dataloader\n"
    spy = fast_source().replace(harness, harness + "import json\njson.dump(dict(os.environ), open('env.json', 'w'))\n")
    assert spy != fast_source()
    result, _ = run(tiny_workspace, tmp_path, spy)
    seen = json.loads((tmp_path / "run" / "env.json").read_text())
    assert result.status == "ok"
    assert not {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "MY_SERVICE_TOKEN", "AWS_ACCESS_KEY_ID"} & set(seen)
    assert seen["HARMLESS_SETTING"] == "visible" and os.environ["OPENAI_API_KEY"] == "sk-secret"
    assert not {"AUTORESEARCH_WORKSPACE", "AUTORESEARCH_CHANNEL_FD", "AUTORESEARCH_SCORER_FD"} & set(seen)


@pytest.mark.slow
@pytest.mark.parametrize("want", [True, False])
def test_the_test_split_is_scored_as_the_runner_answers(tiny_workspace, tmp_path, want):
    asked: list[float] = []

    def wants_test(val_bpb: float) -> bool:
        asked.append(val_bpb)
        return want

    result, _ = run(tiny_workspace, tmp_path, fast_source(), wants_test=wants_test)
    assert result.status == "ok" and result.test_wanted is want
    assert asked == [result.val_bpb]  # asked once, after val was measured, about the official figure
    assert (result.test_bpb is not None) is want
    assert result.harness["splits"] == (["val", "test"] if want else ["val"])


@pytest.mark.slow
def test_a_result_forged_on_train_py_s_channel_changes_nothing(tiny_workspace, tmp_path):
    """train.py reaches the harness's channel and sends a made-up result: the figures are the scorer's alone."""
    forged = fast_source().replace("val_bpb = evaluate_bpb(", (
        "from autoresearch.harness import channel\n"
        "channel.send('result', val_bpb=0.01, test_bpb=0.01, splits=['val', 'test'])\n"
        "val_bpb = evaluate_bpb("))
    assert forged != fast_source()
    result, _ = run(tiny_workspace, tmp_path, forged)
    assert result.status == "ok" and result.val_bpb > 0.5 and result.test_bpb > 0.5


SNOOP = """
import glob
from autoresearch.harness.constants import prepared_dir
d = str(prepared_dir())
targets = [d + "/" + split + part for split in ("val", "test") for part in (".tokens.npy", ".offsets.npy")]
opened = []
def attempt(how, fn):
    try:
        fn()
        opened.append(how)
    except OSError:
        pass
for t in targets:
    name = os.path.basename(t)
    attempt("absolute " + name, lambda: open(t, "rb").read(1))
    attempt("relative " + name, lambda: open(os.path.relpath(t), "rb").read(1))
    attempt("proc root " + name, lambda: open("/proc/self/root" + t, "rb").read(1))
    attempt("dir fd " + name, lambda: os.read(os.open(name, os.O_RDONLY, dir_fd=os.open(d, os.O_RDONLY)), 1))
    attempt("symlink " + name, lambda: (os.symlink(t, "s-" + name), open("s-" + name, "rb").read(1)))
    attempt("hardlink " + name, lambda: (os.link(t, "h-" + name), open("h-" + name, "rb").read(1)))
    attempt("numpy " + name, lambda: __import__("numpy").load(t, mmap_mode="r")[:1].tolist())
for fd in glob.glob("/proc/[0-9]*/fd/*"):
    try:
        hit = os.path.realpath(fd) in targets
    except OSError:
        continue
    if hit:
        attempt("through " + fd, lambda: open(fd, "rb").read(1))
print("OPENED:", opened)
"""


@pytest.mark.slow
def test_train_py_cannot_open_the_val_or_test_files_by_any_path(tiny_workspace, tmp_path):
    snoop = fast_source().replace("val_bpb = evaluate_bpb(", SNOOP + "val_bpb = evaluate_bpb(")
    assert snoop != fast_source()
    result, lines = run(tiny_workspace, tmp_path, snoop)
    assert result.status == "ok", result.reason + result.error_tail
    prepared = prepared_dir(Settings.load(tiny_workspace / "autoresearch.toml"), Path(os.environ["AUTORESEARCH_CACHE"]))
    assert all((prepared / f"{split}.tokens.npy").exists() for split in ("val", "test"))  # there, and not opened
    assert "OPENED: []" in lines, [line for line in lines if line.startswith("OPENED")]


@pytest.mark.slow
def test_memory_is_the_harness_s_measurement_not_what_train_py_prints(tiny_workspace, tmp_path):
    liar = fast_source().replace('print("peak_vram_mb:     10.0")', 'print("peak_vram_mb:     0.1")')
    assert liar != fast_source()
    result, _ = run(tiny_workspace, tmp_path, liar)
    assert result.status == "ok" and result.summary["peak_vram_mb"] == 0.1
    measured = result.harness["peak_memory_mb"]
    assert measured > 50  # the peak RSS of a python process that imported torch
    assert result.memory_gb == measured / 1024 and result.harness["device"] == "cpu"


@pytest.mark.slow
def test_processes_the_orchestrator_ran_before_are_not_the_run_s_leftovers(tiny_workspace, tmp_path):
    """A dashboard, a benchmark's load, another job: children of ours from before the run are spared, and the run
    is not blamed for them; what the run itself leaves behind is still killed (the test above)."""
    import subprocess
    import sys

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        result, _ = run(tiny_workspace, tmp_path, fast_source())
        assert result.status == "ok", result.reason
        assert bystander.poll() is None  # still running
    finally:
        bystander.kill()
        bystander.wait(timeout=10)


@pytest.mark.slow
def test_what_train_py_prints_during_the_evaluation_is_not_in_the_records(tiny_workspace, tmp_path):
    """The evaluation's input rows are validation text: printed then, they reach run.log but never the error tail
    or the reason an agent is shown; the summary block's figures still do."""
    leak = fast_source().replace("        return (QUALITY * logp + jitter)", (
        "        print('LEAK', idx[0, :8].tolist())\n"
        "        return (QUALITY * logp + jitter)"))
    assert leak != fast_source()
    crash = leak.replace("print(f\"val_bpb:", "raise RuntimeError(f'LEAK {val_bpb}')\nprint(f\"val_bpb:")
    assert crash != leak
    for source, status in ((leak, "ok"), (crash, "crash")):
        result, lines = run(tiny_workspace, tmp_path, source)
        assert result.status == status, result.reason
        assert any(line.startswith("LEAK") for line in lines)  # the live view and run.log have it
        assert "LEAK" in Path(result.log_path).read_text()
        assert "LEAK" not in result.error_tail + result.reason, (result.error_tail, result.reason)
    assert "in run.log only" in result.error_tail


@pytest.mark.slow
@pytest.mark.parametrize(("limit", "status"), [(1.0, "rejected"), (None, "ok")])
def test_time_before_the_first_answer_is_limited_for_an_agent_s_run(tiny_workspace, tmp_path, limit, status):
    """A run whose model takes long over the scorer's first call could be training on the rows it holds: an
    agent's run gets the limit the loop derives from the human-written runs (a baseline gets none)."""
    settings = Settings.load(tiny_workspace / "autoresearch.toml")
    slow = fast_source().replace("        return (QUALITY * logp + jitter)", (
        "        if not getattr(self, 'waited', False):\n"
        "            self.waited = True\n"
        "            time.sleep(3.0)\n"
        "        return (QUALITY * logp + jitter)"))
    assert slow != fast_source()
    exp = Experiment(source=slow, workspace=tiny_workspace, settings=settings, run_dir=tmp_path / "run",
                     cache=Path(os.environ["AUTORESEARCH_CACHE"]), first_answer_limit=limit)
    result = run_experiment(exp)
    assert result.status == status, result.reason
    if limit:
        assert "to answer the first evaluation call" in result.reason
    else:
        # the model's 3 s wait, measured by the scorer (2.996 s once: the two processes read the clock apart)
        assert result.harness["first_answer_seconds"] >= 2.9
