"""The research loop end to end: decisions, records, rejections, crash repair, limits, secrets."""

from __future__ import annotations

import json

import pytest
from loopkit import ScriptedAgent, assert_consistent, fast_source

from autoresearch import vcs
from autoresearch.agents.search import SearchAgent
from autoresearch.loop.core import Limits, Loop, LoopConfig, LoopError
from autoresearch.loop.policy import Decision, NoisePolicy
from autoresearch.settings import Settings


@pytest.fixture
def fast_ws(tiny_workspace):
    """The tiny workspace with the fast stand-in for train.py committed as its baseline."""
    (tiny_workspace / "train.py").write_text(fast_source())
    vcs.commit_all(tiny_workspace, "fast train.py for loop tests")
    return tiny_workspace


def make_loop(ws, agent, tag="t", **kw) -> Loop:
    kw.setdefault("policy", "greedy")  # the noise policy has tests of its own below
    limits = Limits(**{k: kw.pop(k) for k in ("max_experiments", "max_hours", "max_cost") if k in kw})
    loop = Loop(ws, Settings.load(ws / "autoresearch.toml"), agent, LoopConfig(tag=tag, limits=limits, **kw))
    loop.start()
    return loop


@pytest.mark.slow
def test_search_agent_end_to_end_on_the_real_template(tiny_workspace):
    """Baseline + 2 search proposals on the real train.py: records agree, the branch holds exactly the keeps. On a
    token budget (20 steps of 512 tokens): the template's time budget has tests of its own (test_clock.py)."""
    toml = tiny_workspace / "autoresearch.toml"
    toml.write_text(toml.read_text().replace("token_budget = 0", "token_budget = 10240"))
    vcs.commit_all(tiny_workspace, "a token budget")
    loop = make_loop(tiny_workspace, SearchAgent(seed=0), max_experiments=3)
    reason = loop.run_until_limit()
    assert "max-experiments 3" in reason
    rows = assert_consistent(tiny_workspace, "t")
    assert len(rows) == 3 and rows[0]["description"] == "baseline" and rows[0]["status"] == "keep"
    journal = loop.journal
    for e in journal.final_attempts("t"):
        assert e.outcome == "ok" and e.run_seconds > 0
        # Greedy: the test split only where val gained; such a run may still be discarded, when the load moved and
        # the best, re-measured under it, scored as well (see loop/load.py).
        assert (e.test_bpb is not None) == (e.status == "keep" or "remeasured" in e.evidence), e.evidence
        assert e.metrics["summary"]["num_steps"] >= 1
    assert all(e.diff for e in journal.final_attempts("t")[1:])


@pytest.mark.slow
def test_keeps_improvements_resets_regressions(fast_ws):
    agent = ScriptedAgent([(fast_source(QUALITY=0.6), "sharper"), (fast_source(QUALITY=0.1), "flatter"),
                           (fast_source(QUALITY=0.9), "sharper still")])
    loop = make_loop(fast_ws, agent, max_experiments=4)
    loop.run_until_limit()
    rows = assert_consistent(fast_ws, "t")
    assert [r["status"] for r in rows] == ["keep", "keep", "discard", "keep"]
    assert "QUALITY = 0.9" in (fast_ws / "train.py").read_text()
    # the agent saw the history, with figures, and always the current best source
    last = agent.contexts[-1]
    assert [h.description for h in last.history] == ["baseline", "sharper", "flatter"]
    assert last.history[2].status == "discard" and last.history[2].val_bpb > last.history[1].val_bpb
    assert "QUALITY = 0.6" in last.train_py
    assert "test" not in json.dumps([h.__dict__ for h in last.history if h.val_bpb]).replace("test_", "")


@pytest.mark.slow
def test_crash_is_repaired_by_the_agent(fast_ws):
    broken = fast_source(QUALITY=0.8).replace("val_bpb = evaluate_bpb", "raise RuntimeError('boom')\nval_bpb = evaluate_bpb")
    agent = ScriptedAgent([(broken, "sharper, broken"), (fast_source(QUALITY=0.8), "sharper, fixed")])
    loop = make_loop(fast_ws, agent, max_experiments=2)
    loop.run_until_limit()
    rows = assert_consistent(fast_ws, "t")
    assert [r["status"] for r in rows] == ["keep", "keep"]
    fix_ctx = agent.contexts[1]
    assert fix_ctx.failure is not None and "RuntimeError: boom" in fix_ctx.failure.error_tail
    attempts = loop.journal.experiments("t")
    assert [(e.number, e.attempt, e.status) for e in attempts] == [(1, 0, "keep"), (2, 0, "crash"), (2, 1, "keep")]


@pytest.mark.slow
def test_crash_recorded_after_fix_attempts_run_out(fast_ws):
    broken = fast_source().replace("import os", "import os\nraise SystemExit(3)")
    agent = ScriptedAgent([(broken, "broken 1"), (broken + "\n", "broken 2")])
    loop = make_loop(fast_ws, agent, max_experiments=2, fix_attempts=1)
    loop.run_until_limit()
    rows = assert_consistent(fast_ws, "t")
    assert rows[1]["status"] == "crash" and rows[1]["val_bpb"] == "0.000000"
    assert "exit code 3" in loop.journal.final_attempts("t")[1].reason


@pytest.mark.slow
def test_rejections_cost_no_run_and_tell_the_agent_why(fast_ws):
    agent = ScriptedAgent([("def broken(:\n", "syntax error"), (fast_source(), "no change"),
                           (fast_source(QUALITY=0.5), "fine")])
    loop = make_loop(fast_ws, agent, max_experiments=3, fix_attempts=1)
    loop.run_until_limit()
    rows = assert_consistent(fast_ws, "t")
    attempts = loop.journal.experiments("t")
    assert [(e.number, e.status, e.outcome) for e in attempts] == [
        (1, "keep", "ok"), (2, "rejected", "rejected"), (2, "rejected", "rejected"), (3, "keep", "ok")]
    assert "does not parse" in attempts[1].reason and "no change" in attempts[2].reason
    assert attempts[1].run_dir == "" and attempts[1].commit_sha is None  # never committed, never ran
    assert rows[1]["status"] == "crash"  # results.tsv keeps the original's three statuses
    assert "does not parse" in agent.contexts[1].failure.reason


@pytest.mark.slow
def test_agent_touching_other_files_is_rejected_and_cleaned_up(fast_ws):
    class Vandal(ScriptedAgent):
        def propose(self, ctx):
            (ctx.workspace / "program.md").write_text("I rewrote the rules")
            (ctx.workspace / "stray.txt").write_text("junk")
            return super().propose(ctx)

    (fast_ws / "notes.txt").write_text("the user's own untracked notes")
    agent = Vandal([(fast_source(QUALITY=0.5), "sneaky")])
    agent.can_fix = False
    loop = make_loop(fast_ws, agent, max_experiments=2)
    loop.run_until_limit()
    rec = loop.journal.final_attempts("t")[1]
    assert rec.status == "rejected" and "program.md" in rec.reason and "stray.txt" in rec.reason
    assert "I rewrote" not in (fast_ws / "program.md").read_text()
    assert not (fast_ws / "stray.txt").exists()
    assert (fast_ws / "notes.txt").exists()  # the user's untracked files are never touched
    (fast_ws / "notes.txt").unlink()
    assert_consistent(fast_ws, "t")


@pytest.mark.slow
def test_new_tag_refuses_an_existing_branch_and_resume_needs_one(fast_ws):
    make_loop(fast_ws, ScriptedAgent([]), tag="a", max_experiments=1).run_until_limit()
    with pytest.raises(LoopError, match="already exists.*--resume"):
        make_loop(fast_ws, ScriptedAgent([]), tag="a")
    with pytest.raises(LoopError, match="nothing to resume"):
        make_loop(fast_ws, ScriptedAgent([]), tag="b", resume=True)


@pytest.mark.slow
def test_uncommitted_changes_block_a_new_run(fast_ws):
    (fast_ws / "train.py").write_text(fast_source(QUALITY=0.4))
    with pytest.raises(LoopError, match="uncommitted changes"):
        make_loop(fast_ws, ScriptedAgent([]))


@pytest.mark.slow
def test_max_cost_stops_the_loop(fast_ws):
    class Pricey(ScriptedAgent):
        def propose(self, ctx):
            p = super().propose(ctx)
            p.usage.cost_usd = 0.6
            return p

    agent = Pricey([(fast_source(QUALITY=q), f"q {q}") for q in (0.4, 0.5, 0.6, 0.7)])
    loop = make_loop(fast_ws, agent, max_cost=1.0)
    reason = loop.run_until_limit()
    assert "max-cost" in reason and len(loop.journal.final_attempts("t")) == 3  # baseline + 2 x $0.60
    assert_consistent(fast_ws, "t")


@pytest.mark.slow
def test_max_hours_stops_before_the_next_experiment(fast_ws):
    loop = make_loop(fast_ws, ScriptedAgent([(fast_source(QUALITY=0.5), "x")]), max_hours=1e-9)
    assert "max-hours" in loop.run_until_limit()


@pytest.mark.slow
def test_non_fatal_agent_errors_are_waited_out(fast_ws, monkeypatch):
    from autoresearch.agents.base import AgentError

    sleeps: list[float] = []

    class Flaky(ScriptedAgent):
        calls = 0

        def propose(self, ctx):
            self.calls += 1
            if self.calls < 3:
                raise AgentError("503 from provider")
            return super().propose(ctx)

    loop = make_loop(fast_ws, Flaky([(fast_source(QUALITY=0.5), "after outage")]), max_experiments=2)
    loop.sleep = sleeps.append
    loop.run_until_limit()
    assert sleeps == [10.0, 30.0]
    assert_consistent(fast_ws, "t")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_agent_errors_reach_the_view_set_after_the_loop_was_made(fast_ws):
    """The `run` command makes the loop, then puts its live view in: what the proposer says must reach that one."""
    from autoresearch.agents.base import AgentError
    from autoresearch.loop.core import View

    class Told(View):
        def __init__(self):
            self.messages = []

        def message(self, text):
            self.messages.append(text)

    class Flaky(ScriptedAgent):
        calls = 0

        def propose(self, ctx):
            self.calls += 1
            if self.calls == 1:
                raise AgentError("my-agent: the service said no")
            return super().propose(ctx)

    loop = make_loop(fast_ws, Flaky([(fast_source(QUALITY=0.5), "after a refusal")]), max_experiments=2)
    told = Told()
    loop.view = told
    loop.sleep = lambda seconds: None
    loop.run_until_limit()
    assert any("my-agent: the service said no" in m for m in told.messages), told.messages


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_same_agent_error_again_and_again_stops_the_run_with_its_message(fast_ws):
    """An error that repeats word for word (a 400 "prompt too long", a command that exits 3) will not pass by
    waiting: after AGENT_SAME_ERRORS in a row the run stops and says why. An outage (transient) is waited out."""
    from autoresearch.agents.base import AgentError
    from autoresearch.loop import proposer

    class Stuck(ScriptedAgent):
        calls = 0

        def propose(self, ctx):
            self.calls += 1
            raise AgentError("HTTP 400: prompt is too long")

    agent = Stuck([])
    loop = make_loop(fast_ws, agent, max_experiments=3)
    loop.sleep = lambda seconds: None
    reason = loop.run_until_limit()
    assert agent.calls == proposer.AGENT_SAME_ERRORS
    assert "prompt is too long" in reason and f"{proposer.AGENT_SAME_ERRORS} times in a row" in reason, reason
    assert loop.exit_code == 1
    assert_consistent(fast_ws, "t")

    class Outage(ScriptedAgent):
        calls = 0

        def propose(self, ctx):
            self.calls += 1
            if self.calls <= 2 * proposer.AGENT_SAME_ERRORS:
                raise AgentError("HTTP 529 (overloaded) (after 7 attempts)", transient=True)
            return super().propose(ctx)

    outage = Outage([(fast_source(QUALITY=0.5), "after the outage")])
    loop = make_loop(fast_ws, outage, tag="t2", max_experiments=2)
    loop.sleep = lambda seconds: None
    assert loop.run_until_limit().startswith("reached --max-experiments")
    assert [e.description for e in loop.journal.final_attempts("t2")] == ["baseline", "after the outage"]


@pytest.mark.slow
def test_fatal_agent_error_stops_cleanly(fast_ws):
    from autoresearch.agents.base import AgentError

    class Broken(ScriptedAgent):
        def propose(self, ctx):
            raise AgentError("invalid API key", fatal=True)

    loop = make_loop(fast_ws, Broken([]))
    assert "invalid API key" in loop.run_until_limit()
    assert_consistent(fast_ws, "t")


def noisy(quality: float, **constants) -> str:
    return fast_source(QUALITY=quality, NOISE=0.3, **constants)


@pytest.mark.slow
def test_noise_policy_measures_the_floor_and_keeps_only_what_clears_it(fast_ws):
    (fast_ws / "train.py").write_text(noisy(0.3))
    vcs.commit_all(fast_ws, "noisy")
    agent = ScriptedAgent([(noisy(0.3, SLEEP=0.01), "no real change"), (noisy(0.9), "much sharper")])
    loop = make_loop(fast_ws, agent, policy="noise", noise_runs=2, confirm_runs=1, max_experiments=3)
    loop.run_until_limit()
    rows = assert_consistent(fast_ws, "t")
    noise = loop.journal.run("t").info["noise"]
    assert len(noise["runs"]) == 3 and noise["std"] > 0  # the baseline, twice more with other seeds
    base, hair, much = loop.journal.final_attempts("t")
    assert base.val_bpb == pytest.approx(noise["mean"])
    assert hair.status == "discard" and hair.evidence["gain"] <= hair.evidence["threshold"]
    assert much.status == "keep" and much.evidence["margin"] > much.evidence["sigmas"]
    assert [r["status"] for r in rows] == ["keep", "discard", "keep"]
    from io import StringIO

    from rich.console import Console

    from autoresearch.see.ui import status_table

    out = StringIO()
    Console(file=out, width=200).print(status_table(loop.journal.final_attempts("t")))
    assert f"{much.evidence['margin']:+.1f}σ" in out.getvalue()  # status shows the margin each keep cleared


class Recording(NoisePolicy):
    """Calls every first result marginal (at module level: a run's Experiment, with its policy, is pickled)."""

    calls: list = []

    def decide(self, runs, best, best_runs=1, sigma=None, final=True, df=None):
        self.calls.append((list(runs), final))
        if best is not None and not final:
            return Decision(False, {}, rerun=True)
        return super().decide(runs, best, best_runs, sigma, final, df)


@pytest.mark.slow
def test_marginal_winner_is_measured_again_before_the_decision(fast_ws):
    loop = make_loop(fast_ws, ScriptedAgent([(fast_source(QUALITY=0.9), "sharper")]), policy="noise",
                     noise_runs=1, confirm_runs=2, max_experiments=2)
    loop.policy = Recording(noise_runs=1, confirm_runs=2)
    loop.run_until_limit()
    assert [(len(runs), final) for runs, final in Recording.calls] == [(2, True), (1, False), (3, True)]
    rec = loop.journal.final_attempts("t")[1]
    assert rec.status == "keep" and len(rec.evidence["runs"]) == 3
    assert rec.val_bpb == pytest.approx(sum(rec.evidence["runs"]) / 3)
    assert (fast_ws / ".autoresearch" / "runs" / "t" / "0002-0-seed2").is_dir()  # the confirmation runs


def test_noise_policy_rule():
    from autoresearch.loop.policy import NoisePolicy

    p = NoisePolicy(sigmas=2.0)
    assert p.decide([1.0, 1.1, 0.9], None).keep  # the baseline
    clear = p.decide([0.90], best=1.0, best_runs=3, sigma=0.02)  # gain 0.1 > 2 * 0.02 * sqrt(4/3)
    assert clear.keep and clear.evidence["margin"] == pytest.approx(5.0)
    marginal = p.decide([0.97], best=1.0, best_runs=3, sigma=0.02, final=False)
    assert marginal.rerun and not marginal.keep
    assert not p.decide([0.97], best=1.0, best_runs=3, sigma=0.02, final=True).keep
    assert not p.decide([1.01], best=1.0, best_runs=3, sigma=0.02, final=False).rerun  # worse: no second look


@pytest.mark.slow
def test_the_test_split_is_scored_only_where_the_policy_could_keep_the_run(fast_ws):
    agent = ScriptedAgent([(fast_source(QUALITY=0.6), "sharper"), (fast_source(QUALITY=0.1), "flatter")])
    loop = make_loop(fast_ws, agent, max_experiments=3)
    loop.run_until_limit()
    base, sharper, flatter = loop.journal.final_attempts("t")
    assert [e.status for e in (base, sharper, flatter)] == ["keep", "keep", "discard"]
    assert base.test_bpb is not None and sharper.test_bpb is not None  # the baseline, and a gain
    assert flatter.test_bpb is None and flatter.metrics["harness"]["splits"] == ["val"]  # no gain: not needed
    assert_consistent(fast_ws, "t")


def test_noise_policy_scores_the_test_split_of_the_baseline_repeats_and_of_gains_only():
    from autoresearch.loop.core import TestWanted
    from autoresearch.loop.policy import GreedyPolicy, NoisePolicy

    noise = NoisePolicy()
    assert TestWanted(noise, None)(5.0) and TestWanted(noise, None, (1.0, 1.2))(5.0)  # baseline and its repeats
    assert TestWanted(noise, 1.0)(0.999) and not TestWanted(noise, 1.0)(1.0)  # a gain, however small; no gain
    assert TestWanted(noise, 1.0, (0.98,))(1.01) and not TestWanted(noise, 1.0, (0.98,))(1.03)  # on the mean
    assert TestWanted(GreedyPolicy(), 1.0)(0.999) and not TestWanted(GreedyPolicy(), 1.0)(1.001)
    import pickle

    assert pickle.loads(pickle.dumps(TestWanted(noise, 1.0, (0.98,))))(1.01)  # an Experiment can still be shipped
