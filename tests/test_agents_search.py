"""The built-in search agent (Optuna) against the real template and a synthetic objective: no training, < 30 s."""

from __future__ import annotations

import ast
import math
import re

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from autoresearch.agents import make_agent
from autoresearch.agents import search as search_module
from autoresearch.agents.base import Agent, AgentError, Context, Failure, HistoryEntry, InFlight, Usage
from autoresearch.agents.search import SearchAgent, setting_key
from autoresearch.agents.space import Space, project
from autoresearch.loop.options import RunOptions, merge, resume_command
from autoresearch.settings import PROFILES
from autoresearch.workspace import CONSTANT_RE, read_constants, set_constants, template_text

TEMPLATE = template_text("train.py")
CPU = set_constants(TEMPLATE, PROFILES["cpu"].train_constants)  # what `init --profile cpu` writes
CPU_SEQ = PROFILES["cpu"].max_seq_len
CPU_CONSTANTS = read_constants(CPU)


def ctx(train_py: str, history: tuple[HistoryEntry, ...] = (), experiment: int = 1, **kw) -> Context:
    return Context(program="", train_py=train_py, harness_surface="", history=history, experiment=experiment, **kw)


def described(description: str) -> dict[str, tuple[str, str]]:
    """`NAME old -> new, NAME old -> new` (values may hold commas, as tuples do)."""
    parts = re.findall(r"([A-Z][A-Z0-9_]*) (.+?) -> (.+?)(?=, [A-Z][A-Z0-9_]* |$)", description)
    return {name: (old, new) for name, old, new in parts}


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    a, b = old.splitlines(), new.splitlines()
    assert len(a) == len(b), "a proposal must not add or remove lines"
    return [(x, y) for x, y in zip(a, b) if x != y]


def check_proposal(old: str, new: str, seq_len: int | None = None, start: str | None = None) -> dict:
    """Only CAPS constant lines of `old` changed, types kept, values in the ranges of the space around `start`, the
    invariants hold."""
    ast.parse(new)
    before, after, first = read_constants(old), read_constants(new), read_constants(start or old)
    assert set(before) == set(after)
    diffs = changed_lines(old, new)
    assert diffs
    for x, y in diffs:
        mx, my = CONSTANT_RE.match(x), CONSTANT_RE.match(y)
        assert mx and my and mx["name"] == my["name"], (x, y)
        assert (mx["comment"] or "").strip() == (my["comment"] or "").strip()
    for name, v in after.items():
        assert type(v) is type(before[name]), name
    assert after["SEED"] == before["SEED"] and after["COMPILE"] == before["COMPILE"]
    for name in ("EMBEDDING_LR", "UNEMBEDDING_LR", "MATRIX_LR", "SCALAR_LR"):
        assert first[name] / 4.01 <= after[name] <= first[name] * 4.01
        assert after[name] == float(f"{after[name]:.2g}")  # 2 significant digits
    for name in ("WEIGHT_DECAY", "WARMUP_RATIO", "WARMDOWN_RATIO", "FINAL_LR_FRAC"):
        assert 0 <= after[name] <= 1 and after[name] == round(after[name], 2)
    assert after["WARMUP_RATIO"] + after["WARMDOWN_RATIO"] <= 1
    assert all(0.5 <= b < 1 for b in after["ADAM_BETAS"]) and len(after["ADAM_BETAS"]) == 2
    assert first["DEPTH"] // 2 <= after["DEPTH"] <= 2 * first["DEPTH"]
    assert after["ASPECT_RATIO"] % 16 == 0
    assert set(after["WINDOW_PATTERN"]) <= {"S", "L"}
    model_dim = after["DEPTH"] * after["ASPECT_RATIO"]
    assert model_dim % after["HEAD_DIM"] == 0 and model_dim >= after["HEAD_DIM"]
    t, b = after["TOTAL_BATCH_SIZE"], after["DEVICE_BATCH_SIZE"]
    assert t & (t - 1) == 0 and b & (b - 1) == 0 and b <= before["DEVICE_BATCH_SIZE"]
    assert t % (b * (seq_len or first["TOTAL_BATCH_SIZE"] // first["DEVICE_BATCH_SIZE"])) == 0
    return after


def objective(c: dict) -> float | None:
    """A synthetic val_bpb: a bowl in log-lr space plus shape/schedule terms; None = out of memory (a crash)."""
    if c["DEPTH"] * c["ASPECT_RATIO"] > 300:
        return None
    return (1.0 + 0.3 * math.log2(c["MATRIX_LR"] / 0.06) ** 2 + 0.1 * math.log2(c["EMBEDDING_LR"] / 0.4) ** 2
            + 0.1 * math.log2(c["UNEMBEDDING_LR"] / 0.008) ** 2 + 0.05 * (c["DEPTH"] - 3) ** 2
            + 0.5 * (c["WARMDOWN_RATIO"] - 0.6) ** 2 + c["WARMUP_RATIO"] ** 2
            + 0.1 * math.log2(c["TOTAL_BATCH_SIZE"] / 2**10) ** 2 + 0.2 * (c["WEIGHT_DECAY"] - 0.1) ** 2)


def run_search(agent: SearchAgent, start: str, rounds: int, seq_len: int | None = CPU_SEQ):
    """The loop in miniature: propose, score, keep if better else stay on the best; results go into the history."""
    best, best_score = start, objective(read_constants(start))
    history = [HistoryEntry(1, "keep", "baseline", val_bpb=best_score, train_py=start)]
    proposals = []
    for n in range(2, rounds + 2):
        p = agent.propose(ctx(best, tuple(history), n, best_val_bpb=best_score, max_seq_len=seq_len))
        after = check_proposal(best, p.train_py, seq_len, start)
        assert set(described(p.description)) == {k for k, v in after.items() if v != read_constants(best)[k]}
        proposals.append(p)
        score = objective(read_constants(p.train_py))
        status = "crash" if score is None else "keep" if score < best_score else "discard"
        history.append(HistoryEntry(n, status, p.description, val_bpb=score, train_py=p.train_py,
                                    reason="out of memory" if score is None else ""))
        if status == "keep":
            best, best_score = p.train_py, score
    return proposals, history, best_score


def test_is_an_agent_with_zero_usage():
    agent = SearchAgent()
    assert isinstance(agent, Agent) and agent.name == "search" and agent.can_fix is False
    p = agent.propose(ctx(TEMPLATE))
    assert p.usage == Usage() and p.description and p.rationale.startswith("Optuna TPE")
    check_proposal(TEMPLATE, p.train_py, seq_len=2048)


def test_the_space_of_the_template_is_relative_to_its_values():
    cpu, cuda = Space.around(CPU_CONSTANTS).distributions, Space.around(read_constants(TEMPLATE)).distributions
    names = {dim.partition("[")[0] for dim in cpu}
    assert names == set(CPU_CONSTANTS) - {"SEED", "COMPILE", "DEVICE_BATCH_SIZE"}  # the micro-batch is no knob
    assert {"ADAM_BETAS[0]", "ADAM_BETAS[1]"} <= set(cpu)
    assert cpu["MATRIX_LR"] == FloatDistribution(0.0075, 0.12, log=True)  # 0.03 / 4 .. 0.03 * 4
    assert cuda["MATRIX_LR"] == FloatDistribution(0.01, 0.16, log=True)
    assert cpu["DEPTH"] == IntDistribution(1, 4) and cuda["DEPTH"] == IntDistribution(4, 16)
    assert cpu["ASPECT_RATIO"] == IntDistribution(32, 128, step=16)
    assert cpu["TOTAL_BATCH_SIZE"] == CategoricalDistribution([2**9, 2**10, 2**11, 2**12, 2**13, 2**14])
    assert cpu["HEAD_DIM"] == CategoricalDistribution([16, 32, 64])
    assert set(cpu["WINDOW_PATTERN"].choices) == {"L", "SL", "SSL", "SSSL"}
    space = Space.around(CPU_CONSTANTS)
    assert all(space.inside(dim, v) for dim, v in space.params(CPU_CONSTANTS).items())  # the start is a point of it
    # unknown numbers are searched on a log scale; flags, strings and negative numbers are not
    odd = Space.around(read_constants("LR = 0.03\nSTEPS = 100\nFLAG = True\nNAME = 'x'\nSHIFT = -2.0\nSEED = 3\n"))
    assert set(odd.distributions) == {"LR", "STEPS"} and odd.distributions["STEPS"].log
    assert Space.from_json(Space.around(CPU_CONSTANTS).to_json()).distributions == cpu


def test_invariants_are_projections_kept_where_the_best_keeps_them():
    best = {"DEPTH": 2, "ASPECT_RATIO": 64, "HEAD_DIM": 128, "TOTAL_BATCH_SIZE": 4096, "DEVICE_BATCH_SIZE": 16,
            "WARMUP_RATIO": 0.0, "WARMDOWN_RATIO": 0.4}
    new = project({**best, "DEPTH": 3}, best, 256)  # 192 wide: 128-wide heads do not divide it
    assert new["HEAD_DIM"] == 64 and new["DEPTH"] == 3
    new = project({**best, "TOTAL_BATCH_SIZE": 1024}, best, 256)  # 4 rows a step: the micro-batch follows
    assert new["DEVICE_BATCH_SIZE"] == 4
    assert project({**best, "TOTAL_BATCH_SIZE": 16384}, best, 256)["DEVICE_BATCH_SIZE"] == 16  # never above the best
    assert project({**best, "TOTAL_BATCH_SIZE": 128}, best, 256) is None  # not one row
    ratio = project({**best, "TOTAL_BATCH_SIZE": 1024}, best, None)  # no sequence length: the best's ratio
    assert ratio["TOTAL_BATCH_SIZE"] // ratio["DEVICE_BATCH_SIZE"] == 256
    new = project({**best, "WARMUP_RATIO": 0.3, "WARMDOWN_RATIO": 0.8}, best, 256)
    assert (new["WARMUP_RATIO"], new["WARMDOWN_RATIO"]) == (0.3, 0.7)
    odd = {**best, "HEAD_DIM": 100, "WARMUP_RATIO": 0.6, "WARMDOWN_RATIO": 0.6}  # the best breaks both itself
    assert project({**odd, "DEPTH": 3}, odd, 256)["HEAD_DIM"] == 100 and project(odd, odd, 256) == odd


def test_proposals_change_only_constants_and_keep_types_ranges_and_invariants():
    for source, seq_len in ((TEMPLATE, 2048), (CPU, CPU_SEQ), (CPU, None)):
        run_search(SearchAgent(seed=1), source, 12, seq_len)  # which checks each proposal and its description


def test_the_first_proposals_are_small_bets_and_the_search_improves():
    start = objective(CPU_CONSTANTS)
    proposals, history, best = run_search(SearchAgent(seed=0), CPU, 30)
    for p in proposals[:2]:  # one or two constants of the best (and the micro-batch where the batch moved)
        assert len(set(described(p.description)) - {"DEVICE_BATCH_SIZE"}) <= 2
        assert "of the 15 constants" in p.rationale
    keys = [setting_key(p.train_py) for p in proposals]
    assert len(set(keys)) == len(keys) and setting_key(CPU) not in keys
    assert sum(e.status == "keep" for e in history[1:]) >= 3
    assert best < 1 + 0.6 * (start - 1), (start, best)


@pytest.mark.parametrize("sampler, label", [("cmaes", "CMA-ES"), ("random", "random search")])
def test_other_samplers(sampler, label):
    agent = make_agent("search", seed=2, sampler=sampler)
    assert isinstance(agent, SearchAgent) and agent.sampler == sampler
    proposals, history, best = run_search(agent, CPU, 12)
    assert all(p.rationale.startswith(f"Optuna {label}") for p in proposals)
    assert best <= objective(CPU_CONSTANTS)
    with pytest.raises(AgentError, match="unknown sampler") as e:
        SearchAgent(sampler="grid")
    assert e.value.fatal


def test_ask_and_tell_follow_the_journal():
    """Each finished experiment is told once: values for keeps and discards, a failed trial for a crash or a
    rejection; the baseline and other agents' changes join as trials of their own where they fit the space.
    Nothing tried, in flight or best is proposed again."""
    agent = SearchAgent(seed=0)
    baseline = HistoryEntry(1, "keep", "baseline", val_bpb=2.0, train_py=CPU)
    a = agent.propose(ctx(CPU, (baseline,), 2, max_seq_len=CPU_SEQ))
    b = agent.propose(ctx(CPU, (baseline,), 3, max_seq_len=CPU_SEQ,  # a second worker, a is in flight
                          in_flight=(InFlight(2, a.description, train_py=a.train_py),)))
    assert a.train_py != b.train_py
    llm = set_constants(CPU, {"MATRIX_LR": 0.05})  # inside the space
    outside = set_constants(CPU, {"MATRIX_LR": 0.9})
    history = (baseline, HistoryEntry(2, "discard", a.description, val_bpb=2.1, train_py=a.train_py),
               HistoryEntry(3, "crash", b.description, reason="out of memory", train_py=b.train_py),
               HistoryEntry(4, "keep", "llm: matrix lr", val_bpb=1.9, train_py=llm),
               HistoryEntry(5, "rejected", "llm: too far", train_py=outside),
               HistoryEntry(6, "discard", "no source"))
    flying = set_constants(llm, {"DEPTH": 3})
    seen = set()
    for n in range(7, 17):
        p = agent.propose(ctx(llm, history, n, max_seq_len=CPU_SEQ, in_flight=(InFlight(7, "d", train_py=flying),)))
        seen.add(setting_key(p.train_py))
        history += (HistoryEntry(n, "discard", p.description, val_bpb=2.5, train_py=p.train_py),)
    assert not seen & {setting_key(s) for s in (CPU, a.train_py, b.train_py, llm, outside, flying)}
    trials = agent._study.get_trials()
    told = {t.user_attrs["entry"].split(":")[0]: t for t in trials if "entry" in t.user_attrs}
    assert set(told) == {str(n) for n in (1, 2, 3, 4, *range(7, 16))}  # each once; 16 is still running
    assert told["1"].value == 2.0 and told["2"].value == 2.1 and told["4"].value == 1.9
    assert told["3"].state == TrialState.FAIL
    assert told["1"].params["MATRIX_LR"] == 0.03 and told["4"].params["MATRIX_LR"] == 0.05
    assert [t.state for t in trials].count(TrialState.RUNNING) == 1


def test_resume_continues_the_study_and_fails_trials_a_stopped_session_left(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    first = make_agent("search", seed=0, workspace=ws, tag="nov29")
    baseline = HistoryEntry(1, "keep", "baseline", val_bpb=2.0, train_py=CPU)
    p2 = first.propose(ctx(CPU, (baseline,), 2, max_seq_len=CPU_SEQ))
    first.propose(ctx(CPU, (baseline,), 3, max_seq_len=CPU_SEQ))  # stopped before it was recorded
    assert (ws / ".autoresearch" / "search.db").exists()

    monkeypatch.setattr(search_module, "_ASKED", {})  # a new process: nothing asked by it yet
    monkeypatch.setattr(search_module, "_STORAGES", {})
    again = SearchAgent(seed=0, workspace=ws, tag="nov29")
    history = (baseline, HistoryEntry(2, "discard", p2.description, val_bpb=2.2, train_py=p2.train_py))
    p3 = again.propose(ctx(CPU, history, 3, max_seq_len=CPU_SEQ))
    assert setting_key(p3.train_py) not in {setting_key(CPU), setting_key(p2.train_py)}
    study = optuna.load_study(study_name="nov29", storage=f"sqlite:///{ws}/.autoresearch/search.db")
    # the baseline, experiment 2 (told now), the proposal nothing ran (failed now), the new one
    assert [(t.state, t.value) for t in study.trials] == [(TrialState.COMPLETE, 2.0), (TrialState.COMPLETE, 2.2),
                                                           (TrialState.FAIL, None), (TrialState.RUNNING, None)]
    assert SearchAgent(seed=0, workspace=ws, tag="another run").propose(ctx(CPU, (baseline,), 2)).rationale.count(
        "1 finished trial")  # another run, another study


def test_workers_share_the_study_and_never_propose_the_same_setting(tmp_path):
    """One agent per worker, each with its own seed, one study: what one asked is taken for the others even
    before the journal lists it in flight."""
    agents = [SearchAgent(seed=k, workspace=tmp_path, tag="t") for k in range(3)]
    baseline = HistoryEntry(1, "keep", "baseline", val_bpb=2.0, train_py=CPU)
    keys = [setting_key(agents[n % 3].propose(ctx(CPU, (baseline,), n, max_seq_len=CPU_SEQ)).train_py)
            for n in range(2, 14)]
    assert len(set(keys)) == len(keys)
    assert len(agents[0]._study.get_trials(states=(TrialState.RUNNING,))) == 12


def test_a_fix_request_moves_from_the_best_not_the_crash():
    big = set_constants(CPU, {"DEPTH": 4, "ASPECT_RATIO": 128})
    failure = Failure("DEPTH 2 -> 4", "crash", "out of memory", "CUDA out of memory", big)
    baseline = (HistoryEntry(1, "keep", "baseline", val_bpb=2.0, train_py=CPU),)
    p = SearchAgent().propose(ctx(big, baseline, 2, failure=failure, max_seq_len=CPU_SEQ))
    check_proposal(CPU, p.train_py, CPU_SEQ)  # changed from the best (the loop does not ask: can_fix is False)


def test_natural_spelling_of_values():
    source = ("TOTAL_BATCH_SIZE = 2**12     # tokens per step\nDEVICE_BATCH_SIZE = 16\nLR = 0.03\n"
              "WINDOW_PATTERN = 'SL'\nADAM_BETAS = (0.8, 0.95)\nSEED = 42\n")
    agent, history = SearchAgent(), (HistoryEntry(1, "keep", "baseline", val_bpb=2.0, train_py=source),)
    texts = []
    for n in range(2, 40):
        texts.append(agent.propose(ctx(source, history, n)).train_py)
        history += (HistoryEntry(n, "discard", "x", val_bpb=2.5, train_py=texts[-1]),)
    lines = {line for t in texts for line in t.splitlines()}
    assert any(line.startswith("TOTAL_BATCH_SIZE = 2**13 ") for line in lines)
    assert not any(line.startswith("TOTAL_BATCH_SIZE = 8192") for line in lines)
    assert any(line.startswith("WINDOW_PATTERN = '") for line in lines - {"WINDOW_PATTERN = 'SL'"})
    assert not any(line.startswith('WINDOW_PATTERN = "') for line in lines)
    assert all(line == "SEED = 42" for line in lines if line.startswith("SEED"))
    assert all(line.endswith("# tokens per step") for line in lines if line.startswith("TOTAL_BATCH_SIZE"))


def test_exhaustion_is_fatal():
    source = 'WINDOW_PATTERN = "SL"\nSEED = 1\n'  # four patterns: three settings to try
    agent, history, seen = SearchAgent(), [HistoryEntry(1, "keep", "baseline", val_bpb=2.0, train_py=source)], set()
    with pytest.raises(AgentError, match="exhausted") as e:
        for n in range(2, 10):
            p = agent.propose(ctx(source, tuple(history), n))
            assert p.train_py not in seen
            seen.add(p.train_py)
            history.append(HistoryEntry(n, "discard", p.description, val_bpb=9.0, train_py=p.train_py))
    assert e.value.fatal and len(seen) == 3


def test_no_constants_is_fatal():
    for source in ("import torch\nprint('hello')\n", "SEED = 42\nCOMPILE = None\nNAME = 'x'\nFLAG = True\n"):
        with pytest.raises(AgentError, match="no tunable") as e:
            SearchAgent().propose(ctx(source))
        assert e.value.fatal


def test_the_sampler_is_a_run_option_restored_by_resume():
    stored = RunOptions(sampler="cmaes").to_dict()
    same, notes = merge(stored, RunOptions(), explicit=set())
    assert same.sampler == "cmaes" and notes == []
    assert "--sampler cmaes" in resume_command("t", same)
    with pytest.raises(ValueError, match="--sampler"):
        RunOptions(sampler="grid")


def test_an_agent_without_a_workspace_starts_a_study_of_its_own():
    # The agents of one process share a study per workspace; without one, each has its own, even where Python
    # gives a new agent the address of one that is gone (the first proposal is trial 0 every time).
    import gc

    for _ in range(10):  # CPython reuses a freed agent's address within a few rounds
        agent = SearchAgent(seed=0)
        p = agent.propose(ctx(CPU, max_seq_len=CPU_SEQ))
        assert "trial 0 of study" in p.rationale, p.rationale
        del agent, p
        gc.collect()
