"""The runner's clock, by phase: start-up (launch -> first optimizer step), training, evaluation; and the token
budget. Every limit is enforced from outside train.py, from the harness's marks on its channel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopkit import fast_source

from autoresearch.run.supervisor import EVAL_FACTOR, EVAL_FLOOR_SECONDS, Experiment, _Watch, run_experiment
from autoresearch.settings import Settings

FIRST = 64 * 64  # fast_source's own first batch: 64 rows of MAX_SEQ_LEN = 64 tokens


def run(ws, tmp_path, source: str, **settings_changes):
    settings = Settings.load(ws / "autoresearch.toml").replace(**settings_changes)
    exp = Experiment(source=source, workspace=ws, settings=settings, run_dir=tmp_path / "run", timeout=300,
                     cache=Path(os.environ["AUTORESEARCH_CACHE"]))
    return run_experiment(exp)


def training(before_clock: str = "", after_clock: str = "", batches: int = 3) -> str:
    """fast_source, with a training loop: `batches` batches, one SGD step each; code before the first step's
    return (where a compile would happen) and after it."""
    loop = (
        "_p = torch.nn.Parameter(torch.zeros(1))\n"
        "class _Opt(torch.optim.SGD):\n"
        "    first = True\n"
        "    def step(self, closure=None):\n"
        "        if _Opt.first:\n"
        "            _Opt.first = False\n"
        f"            {before_clock or 'pass'}\n"
        "        return super().step(closure)\n"
        "_opt = _Opt([_p], lr=0.1)\n"
        "_loader = make_dataloader(tok, 2, MAX_SEQ_LEN, 'train', device='cpu')\n"
        f"for _ in range({batches}):\n"
        "    next(_loader)\n"
        "    _opt.step()\n"
        f"{after_clock}\n"
    )
    return fast_source().replace("time.sleep(SLEEP)\n", loop)


@pytest.mark.slow
def test_a_slow_first_optimizer_step_is_not_charged(tiny_workspace, tmp_path):
    """The first optimizer step compiles (muon_step, once per shape): the clock starts when it returns."""
    result = run(tiny_workspace, tmp_path, training(before_clock="time.sleep(3)"), time_budget=1.0,
                 time_allowance=1.0)  # charged, the sleep alone would run past the 2 s limit
    assert result.status == "ok", result.reason
    assert result.startup_seconds >= 3  # the sleep was start-up ...
    assert result.training_seconds < 3  # ... not training (budget 1 s + 1 s allowance)
    assert result.steps == 3 and result.train_tokens == FIRST + 3 * 2 * 64


@pytest.mark.slow
def test_time_after_the_first_optimizer_step_is_charged(tiny_workspace, tmp_path):
    result = run(tiny_workspace, tmp_path, training(after_clock="time.sleep(60)"), time_budget=1.0, time_allowance=1.0)
    assert result.status == "timeout" and "by the runner's clock" in result.reason
    assert result.returncode < 0  # stopped by the runner, not finished


@pytest.mark.slow
def test_without_an_optimizer_the_clock_starts_after_a_few_steps_of_tokens(tiny_workspace, tmp_path):
    """Training hidden before the clock (no torch optimizer, so no step mark) sees at most warmup_tokens, however it
    sizes its batches: the batch that takes the count past them starts the clock."""
    cap = Settings.load(tiny_workspace / "autoresearch.toml").warmup_tokens  # 4 steps of the cpu profile: 16,384
    hidden = fast_source().replace("time.sleep(SLEEP)\n", (
        "_loader = make_dataloader(tok, 64, MAX_SEQ_LEN, 'train', device='cpu')  # 4,096 tokens a batch\n"
        f"for _ in range({cap // 4096 - 1}):  # fast_source took the first: exactly the cap, not past it\n"
        "    next(_loader)\n"
        "time.sleep(3)  # untimed: still within the cap (charged, it would run past the 2 s limit)\n"
        "next(_loader)  # past the cap: this one starts the clock\n"
        "time.sleep(60)\n"))
    result = run(tiny_workspace, tmp_path, hidden, time_budget=1.0, time_allowance=1.0)
    assert result.status == "timeout" and "by the runner's clock" in result.reason
    assert result.startup_seconds >= 3 and result.train_tokens == cap + 4096


@pytest.mark.slow
def test_start_up_has_its_own_limit_and_says_how_to_raise_it(tiny_workspace, tmp_path):
    result = run(tiny_workspace, tmp_path, "import time\ntime.sleep(60)\n", startup_limit=3.0)
    assert result.status == "timeout" and "start-up took over 3s without asking for a training batch" in result.reason
    assert "startup_limit" in result.reason


def test_the_loader_ends_at_the_token_budget(tiny_workspace, tmp_path):
    counting = fast_source().replace("time.sleep(SLEEP)\n", (
        "_n = sum(1 for _ in make_dataloader(tok, 2, MAX_SEQ_LEN, 'train', device='cpu'))\n"
        "print('batches served:', _n)\n"))
    result = run(tiny_workspace, tmp_path, counting, token_budget=FIRST + 5 * 2 * 64 + 100)  # room for 5, not 6
    assert result.status == "ok", result.reason
    assert result.train_tokens == FIRST + 5 * 2 * 64
    assert "batches served: 5" in Path(result.log_path).read_text()


def test_no_training_batch_after_evaluation_starts(tiny_workspace, tmp_path):
    """Evaluation time is not training time: a run that starts evaluating (here with a model that fails on
    purpose, caught) and then trains on is refused."""
    sneaky = fast_source().replace("time.sleep(SLEEP)\n", (
        "class _Broken(torch.nn.Module):\n"
        "    def forward(self, idx):\n"
        "        raise RuntimeError('not yet')\n"
        "try:\n"
        "    evaluate_bpb(_Broken(), tok, 8)\n"
        "except RuntimeError:\n"
        "    pass\n"
        "try:\n"
        "    next(make_dataloader(tok, 2, MAX_SEQ_LEN, 'train', device='cpu'))\n"
        "except PermissionError:\n"
        "    pass\n"))
    result = run(tiny_workspace, tmp_path, sneaky)
    assert result.status == "rejected" and "after evaluate_bpb started" in result.reason


def test_a_second_evaluation_is_refused(tiny_workspace, tmp_path):
    twice = fast_source().replace("val_bpb = evaluate_bpb(Unigram(), tok, 8)",
                                  "try:\n    evaluate_bpb(torch.nn.Identity(), tok, 8)\nexcept Exception:\n    pass\n"
                                  "val_bpb = evaluate_bpb(Unigram(), tok, 8)")
    result = run(tiny_workspace, tmp_path, twice)
    assert result.status == "rejected" and "called a second time" in result.reason


# -- the phase limits, on the runner's own view of the marks (no process) ----------------------------------------

def watch(events, totals=None, timeout=None, eval_rate=None, **settings) -> _Watch:
    s = Settings.from_profile("cpu", time_budget=60.0, eval_tokens=100_000, **settings)
    w = _Watch(Experiment(source="", workspace=Path("."), settings=s, run_dir=Path("."), timeout=timeout,
                          eval_rate=eval_rate))
    w.events = [(t, {"event": name, **data}) for t, name, data in events]
    w.eval_at = next((t for t, name, _ in events if name == "eval_start"), None)  # the scorer's "connected"
    w.totals = totals or {}
    return w


def test_limits_by_phase():
    s = Settings.from_profile("cpu", time_budget=60.0)
    starting = watch([])  # importing, preparing: no batch yet
    assert starting.over_limit(s.startup_seconds - 1) == ""
    assert starting.over_limit(s.startup_seconds + 1) == "startup"
    clocked = watch([(500.0, "train_start", {}), (650.0, "train_clock", {"tokens": 0})])  # slow start, cold compile
    assert clocked.over_limit(650.0 + s.training_limit - 1) == "" and s.training_limit == 60 + s.allowance
    assert clocked.over_limit(650.0 + s.training_limit + 1) == "train_time"
    assert watch([], timeout=30).over_limit(31) == "timeout"


def test_the_warm_up_window_is_capped():
    """From the first batch, a run has warmup_seconds to reach its first optimizer step (compilation); after that
    the clock starts anyway."""
    s = Settings.from_profile("cpu", time_budget=60.0)
    assert s.warmup_seconds == 300.0
    warming = watch([(1.0, "train_start", {})])
    assert not warming.clocked(250.0) and warming.over_limit(250.0) == ""
    assert warming.clocked(302.0) and warming.clock_at(302.0) == 301.0
    assert warming.over_limit(301.0 + s.training_limit + 1) == "train_time"
    early = watch([(1.0, "train_start", {}), (30.0, "train_clock", {"tokens": 0})])
    assert early.clock_at(500.0) == 30.0


@pytest.mark.slow
def test_time_before_the_first_optimizer_step_is_charged_past_the_warm_up_window(tiny_workspace, tmp_path):
    """Hidden training on the first batch, before any optimizer step: free for warmup_seconds, charged after."""
    hidden = training(before_clock="time.sleep(12)")  # 'trains' 12 s on its first batches before stepping
    result = run(tiny_workspace, tmp_path, hidden, time_budget=1.0, time_allowance=1.0, warmup_limit=2.0)
    assert result.status == "timeout" and "by the runner's clock" in result.reason


def test_a_token_budget_caps_time_at_ten_budgets():
    s = Settings.from_profile("cpu", time_budget=60.0, token_budget=10**6)
    assert s.training_limit == 600 + s.allowance
    w = watch([(1.0, "train_clock", {"tokens": 0})], token_budget=10**6)
    assert w.over_limit(1.0 + 500) == "" and w.over_limit(1.0 + s.training_limit + 1) == "train_time"


def test_the_evaluation_limit_follows_the_workspace_s_evaluation_speed_not_the_run_s():
    """2 x 100k evaluation tokens at the 1,000 tokens/s measured on this workspace: 200 s expected. The run's own
    speed changes nothing (it chooses how many tokens it is served); before any measurement, the budget."""
    events = [(0.0, "train_clock", {"tokens": 0}), (100.0, "eval_start", {"tokens": 100})]
    for totals in ({"tokens": 100}, {"tokens": 10**9}):  # a run that looks slow, one that looks fast
        w = watch(events, totals=totals, eval_rate=1000.0)
        assert w.over_limit(100 + EVAL_FLOOR_SECONDS + EVAL_FACTOR * 200 - 1) == ""
        assert w.over_limit(100 + EVAL_FLOOR_SECONDS + EVAL_FACTOR * 200 + 1) == "eval"
    first = watch(events, totals={"tokens": 100})  # no measured evaluation yet: 60 s budget
    assert first.over_limit(100 + EVAL_FLOOR_SECONDS + EVAL_FACTOR * 60 + 1) == "eval"
