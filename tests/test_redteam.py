"""Red team of the training clock, the token budget, the test-split protocol and the load re-measure.

Each test runs one attack that works today (static check passing) through the real runner or loop, and asserts
what a fix should give. They are xfail(strict=True): they document a hole, and turn red once it is fixed (then
drop the mark, and the attack module's OPEN). Figures measured on 2 busy cores are in each attack module.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from attacks import (
    _heldout,
    float_batch_size,
    leak_test_via_memory,
    leak_test_via_summary,
    malformed_progress,
    negative_seq_len,
    train_before_clock,
    train_during_eval,
    uncounted_rows,
)
from loopkit import fast_source
from test_load import LOAD_TRAIN

from autoresearch.run import guard
from autoresearch.run.supervisor import EVAL_FLOOR_SECONDS, Experiment, _Watch, run_experiment
from autoresearch.settings import Settings
from autoresearch.workspace import set_constants

FIRST = 64 * 64  # fast_source's own first batch


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def run(ws, tmp_path, source: str, on_progress=None, bypass_guard=False, **settings_changes):
    assert bypass_guard or guard.check_source(source) == [], "the attack must pass the static check"
    settings = Settings.load(ws / "autoresearch.toml").replace(**settings_changes)
    exp = Experiment(source=source, workspace=ws, settings=settings, run_dir=tmp_path / "run", timeout=300,
                     cache=Path(os.environ["AUTORESEARCH_CACHE"]))
    return run_experiment(exp, on_progress=on_progress)


def template(ws) -> str:
    return (ws / "train.py").read_text()


# -- (1) untimed training ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_training_inside_the_evaluation_is_not_free(tiny_workspace, tmp_path):
    """Measured (1 s budget, 8 s in the evaluation, PREFETCH 400): val_bpb 1.698, against 2.564 for the template
    at 1 s and 1.738 at 9 s; the runner clocked 1.15 s of training and scored it."""
    source = set_constants(train_during_eval.apply(template(tiny_workspace)), {"EXTRA_SECONDS": 3.0})
    result = run(tiny_workspace, tmp_path, source, bypass_guard=True, time_budget=1.0, time_allowance=2.0)
    assert "more steps inside the evaluation" in Path(result.log_path).read_text()
    assert result.status in train_during_eval.EXPECT, (result.status, result.training_seconds, result.eval_seconds)
    assert "parameters or buffers changed during the evaluation" in result.reason


def test_the_evaluation_limit_cannot_be_stretched_by_a_slow_looking_run():
    """A run that is served its data before the clock (or counts none, see uncounted_rows) and one tiny batch after
    it looks like 32 tokens/s: the evaluation limit becomes hours, all of it free for train_during_eval."""
    s = Settings.from_profile("cpu", time_budget=60.0, eval_tokens=100_000)
    w = _Watch(Experiment(source="", workspace=Path("."), settings=s, run_dir=Path(".")))
    big = 8 * 4096 * 256  # 8 wide batches before the clock
    w.events = [(1.0, {"event": "train_start"}), (2.0, {"event": "train_clock", "tokens": big}),
                (4.0, {"event": "eval_start", "tokens": big + 64})]
    w.samples = [(2.0, big), (4.0, big + 64)]
    w.totals = {"tokens": big + 64}
    limit = w._eval_limit()
    assert limit <= EVAL_FLOOR_SECONDS + 5 * s.time_budget, f"evaluation limit {limit:,.0f}s"


@pytest.mark.slow
def test_training_before_the_clock_is_bounded_in_tokens(tiny_workspace, tmp_path):
    """Measured (1 s budget, 6 s of warm-up window used): 111 steps before the clock + 19 timed, val_bpb 1.939
    against 2.564 for the template at 1 s; the runner clocked 1.2 s and scored it."""
    source = train_before_clock.apply(template(tiny_workspace))
    result = run(tiny_workspace, tmp_path, source, **train_before_clock.LIMITS)
    # The first wide batch takes the count past warmup_tokens: the clock runs, and stops the hidden warm-up.
    assert result.status in train_before_clock.EXPECT, (result.status, result.training_seconds, result.train_tokens)
    assert "by the runner's clock" in result.reason and "warm-up:" not in Path(result.log_path).read_text()


# -- (2) the token budget ------------------------------------------------------------------------------------------

def served(source_tail: str) -> str:
    return fast_source().replace("time.sleep(SLEEP)\n", source_tail)


@pytest.mark.slow
def test_an_int_subclass_batch_size_is_counted_as_rows(tiny_workspace, tmp_path):
    """Template version measured (token budget 20,480): 160 steps (4x the budget), val_bpb 1.791 against 2.331
    for the template's 40 steps; the runner saw 0 training tokens."""
    source = served(
        "class Rows(int):\n"
        "    def __mul__(self, other):\n"
        "        return 0\n"
        "_loader = make_dataloader(tok, Rows(2), MAX_SEQ_LEN, 'train', device='cpu')\n"
        "_rows = sum(b[0].size(0) for _, b in zip(range(50), _loader))\n"
        "print('rows served:', _rows)\n")
    budget = FIRST + 5 * 2 * 64 + 100  # room for 5 batches of 2 rows
    result = run(tiny_workspace, tmp_path, source, token_budget=budget)
    assert "rows served: 10" in Path(result.log_path).read_text()  # the loader counted real rows: 5 batches
    assert result.status == "ok" and result.train_tokens == FIRST + 5 * 2 * 64, (result.status, result.reason)


@pytest.mark.slow
def test_a_negative_sequence_length_does_not_refund_tokens(tiny_workspace, tmp_path):
    """Template version measured (token budget 20,480): 80 steps (2x), val_bpb 2.014 against 2.331; the runner
    saw exactly the budget."""
    source = served(
        "next(make_dataloader(tok, 100000, -1, 'train', device='cpu'))\n"
        "_loader = make_dataloader(tok, 2, MAX_SEQ_LEN, 'train', device='cpu')\n"
        "print('batches served:', sum(1 for _ in zip(range(500), _loader)))\n")
    result = run(tiny_workspace, tmp_path, source, token_budget=FIRST + 5 * 2 * 64 + 100)
    assert result.status == "crash" and "T must be at least 1, got -1" in result.reason, result.reason


# -- the metric itself ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_evaluation_scores_the_whole_split_whatever_the_batch_size(tiny_workspace, tmp_path):
    """The same unigram model: 4.0986 on the whole split, 3.6359 on the first row; scored, status ok."""
    source = fast_source().replace("val_bpb = evaluate_bpb(Unigram(), tok, 8)", (
        "class Rows(float):\n"
        "    calls = 0\n"
        "    def __index__(self):\n"
        "        Rows.calls += 1\n"
        "        return 10**9 if Rows.calls % 3 == 1 else 1\n"
        "    def __lt__(self, other):\n"
        "        return False\n"
        "    def __gt__(self, other):\n"
        "        return other <= 1\n"
        "    def __ne__(self, other):\n"
        "        return False\n"
        "val_bpb = evaluate_bpb(Unigram(), tok, Rows(8.0))"))
    result = run(tiny_workspace, tmp_path, source)
    assert result.status == "crash" and "batch_size must be an int, got Rows" in result.reason, result.reason


# -- (4) the load re-measure -------------------------------------------------------------------------------------

PREFETCHED = LOAD_TRAIN.replace(
    "t0, seen = None, 0\n",
    "t0, seen = None, 0\n"
    "pool = next(make_dataloader(tok, 4 * 200, MAX_SEQ_LEN, 'train', device='cpu'))  # one wide batch, up front\n",
).replace("    x, y, _ = next(loader)\n", "    x, y = pool[0][4 * seen:4 * seen + 4], pool[1][4 * seen:4 * seen + 4]\n")


def announced(source: str) -> str:
    """`source` printing one progress line at its first step, when the runner's clock starts."""
    out = source.replace("    t0 = t0 or time.monotonic()\n", "    if t0 is None:\n        print('step 00000 (0.0%) | loss: "
                         "5.0 | lrm: 1.00 | dt: 1ms | tok/sec: 1 | mfu: 0.0% | epoch: 1 | remaining: 1s', flush=True)\n"
                         "    t0 = t0 or time.monotonic()\n")
    assert out != source and guard.check_source(out) == []
    return out


@pytest.mark.slow
def test_a_change_that_prefetches_its_data_cannot_hide_the_load_it_met(tiny_workspace, tmp_path, monkeypatch):
    """A change that takes its data in one wide batch before the clock serves no token while the clock runs: its
    speed is None, which blinded the old check (tokens/s). The load signal is the run's threads' wait for a core
    (run/load_meter.py): beside one more spinning job than the machine has cores, the prefetching run and the plain
    one both report it. (A change whose signal is unknown is still re-checked before a keep: tests/test_load.py.)"""
    import subprocess
    import sys

    import psutil

    assert PREFETCHED != LOAD_TRAIN and guard.check_source(PREFETCHED) == []
    monkeypatch.setenv("FAKE_DELAY", "0")  # the loop spins: it has work for its threads all the time budget
    cores = psutil.cpu_count() or 1
    # One more spinning job than cores, from the run's first step (its clock) to its end: the start-up runs
    # unhindered. They are forked by a process started before the run, as other jobs of the machine would be: the
    # runner kills whatever the orchestrator itself starts during a run as the run's leftovers.
    spinners = ("import subprocess, sys\nsys.stdin.readline()\n"
                f"jobs = [subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range({cores + 1})]\n"
                "sys.stdin.read()\n[j.kill() for j in jobs]\n[j.wait() for j in jobs]\n")

    def measured(name: str, source: str):
        ctl = subprocess.Popen([sys.executable, "-c", spinners], stdin=subprocess.PIPE, text=True,
                               start_new_session=True)
        went: list[bool] = []

        def go(_progress) -> None:
            if not went:
                went.append(True)
                ctl.stdin.write("go\n")
                ctl.stdin.flush()

        try:
            return run(tiny_workspace, tmp_path / name, announced(source), on_progress=go)
        finally:
            ctl.stdin.close()
            try:
                ctl.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(ctl.pid, 9)
                ctl.wait(timeout=10)
            assert went, f"{name}: no progress line reached the test"

    plain = measured("plain", LOAD_TRAIN)
    prefetched = measured("prefetched", PREFETCHED)
    assert plain.ok and prefetched.ok, (plain.reason, prefetched.reason)
    assert prefetched.tokens_per_second is None  # how the old check was blinded
    if not sys.platform.startswith("linux"):
        pytest.skip("no schedstat off Linux")
    assert plain.load is not None and prefetched.load is not None
    assert min(plain.load, prefetched.load) > 0.5 / cores  # both saw the busy machine


# -- (5) records ------------------------------------------------------------------------------------------------

def test_a_malformed_progress_line_does_not_stop_the_log(tiny_workspace, tmp_path):
    source = fast_source().replace("time.sleep(SLEEP)\n", "print('step 00001 (.%) | loss: 1.0')\nprint('after')\n")
    result = run(tiny_workspace, tmp_path, source, on_progress=lambda p: None)
    log = Path(result.log_path).read_text()
    assert "after" in log and "val_bpb:" in log and result.summary, (result.status, log[-300:])


def test_a_malformed_result_on_train_py_s_channel_is_ignored_not_raised(tiny_workspace, tmp_path):
    """Needs the static check bypassed (it imports harness internals): the runner never raises, and the figures
    are the scorer's, whatever train.py sends on its own channel."""
    source = fast_source().replace("val_bpb = evaluate_bpb(Unigram(), tok, 8)\n", (
        "val_bpb = evaluate_bpb(Unigram(), tok, 8)\n"
        "from autoresearch.harness import channel\n"
        "channel.send('result', val_bpb=val_bpb, settings={'no_such_setting': 1})\n"))
    settings = Settings.load(tiny_workspace / "autoresearch.toml")
    result = run_experiment(Experiment(source=source, workspace=tiny_workspace, settings=settings, timeout=120,
                                       run_dir=tmp_path / "run", cache=Path(os.environ["AUTORESEARCH_CACHE"])))
    assert result.status == "ok" and "settings" not in result.harness, result.reason


def test_the_attacks_pass_the_static_check(tiny_workspace):
    for m in (train_before_clock, uncounted_rows, negative_seq_len, float_batch_size, malformed_progress):
        assert guard.check_source(m.apply(template(tiny_workspace))) == [], m.NAME
    # Refused before it runs now (the grad-mode switches), and caught at run time too (the test above).
    assert "torch.autograd.enable_grad" in " ".join(guard.check_source(train_during_eval.apply(template(tiny_workspace))))


# -- (5) what train.py says after it was served the held-out rows ------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("attack", [leak_test_via_memory, leak_test_via_summary], ids=lambda m: m.NAME)
def test_nothing_train_py_says_after_the_test_rows_reaches_an_agent(attack, tiny_workspace, tmp_path):
    """The model measures its own figure on the test rows it is served and hands it on: as its peak memory
    (memory_gb, in every agent's history) or as a summary line of a failed run (the tail an agent is shown to fix
    it). What the records keep of either was said before the test split was served."""
    result = run(tiny_workspace, tmp_path, attack.apply(template(tiny_workspace)), bypass_guard=True)
    assert result.status in getattr(attack, "RUNTIME", attack.EXPECT), result.reason
    test_bpb = result.harness.get("test_bpb")  # the scorer's, a failed run's too
    assert test_bpb is not None  # the runner wanted the test split (no keep policy here): it was served
    log = Path(result.log_path).read_text()
    estimate = float(_heldout.ESTIMATE.findall(log)[-1])  # what it measured on the rows served after val
    read = attack.LEAK(result.memory_gb, result.error_tail)
    assert read is None or abs(read - estimate) > _heldout.LEAK_TOLERANCE, (
        f"an agent reads {read:.4f}: the model's own figure on the held-out rows, {estimate:.4f} "
        f"(the scorer's: {test_bpb:.4f})")
    assert 0 < result.memory_gb < 64  # an honest figure: the process's memory before the test split
    if attack is leak_test_via_summary:  # what it printed is in run.log, for humans
        assert "peak_vram_mb:" in log.split("---")[-1]
