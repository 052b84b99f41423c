"""The built-in search agent against the real template and a synthetic objective: no model, no training, < 10 s."""

from __future__ import annotations

import ast
import difflib
import math
import re

import pytest

from autoresearch.agents.base import Agent, AgentError, Context, Failure, HistoryEntry, Usage
from autoresearch.agents.search import SearchAgent
from autoresearch.agents.search_rules import RULES, tunable
from autoresearch.settings import PROFILES
from autoresearch.workspace import CONSTANT_RE, read_constants, set_constants, template_text

TEMPLATE = template_text("train.py")
CPU = set_constants(TEMPLATE, PROFILES["cpu"].train_constants)  # what `init --profile cpu` writes
CPU_SEQ = PROFILES["cpu"].max_seq_len
CPU_CONSTANTS = read_constants(CPU)


def ctx(train_py: str, history: tuple[HistoryEntry, ...] = (), experiment: int = 1, **kw) -> Context:
    return Context(program="", train_py=train_py, harness_surface="", history=history, experiment=experiment, **kw)


def entry(number: int, status: str, base: str, source: str, description: str = "", **kw) -> HistoryEntry:
    """A history entry as the loop records it: the source tried and its diff against the best at the time."""
    diff = "".join(difflib.unified_diff(base.splitlines(True), source.splitlines(True), "a/train.py", "b/train.py"))
    return HistoryEntry(number, status, description, diff=diff, train_py=source, **kw)


def described(description: str) -> dict[str, tuple[str, str]]:
    """`NAME old -> new, NAME old -> new` (values may hold commas, as tuples do)."""
    parts = re.findall(r"([A-Z][A-Z0-9_]*) (.+?) -> (.+?)(?=, [A-Z][A-Z0-9_]* |$)", description)
    return {name: (old, new) for name, old, new in parts}


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    a, b = old.splitlines(), new.splitlines()
    assert len(a) == len(b), "a proposal must not add or remove lines"
    return [(x, y) for x, y in zip(a, b) if x != y]


def check_proposal(old: str, new: str, seq_len: int | None = None) -> dict:
    """Only CAPS constant lines changed, types and ranges kept, the file parses, the invariants hold."""
    ast.parse(new)
    before, after = read_constants(old), read_constants(new)
    assert set(before) == set(after)
    diffs = changed_lines(old, new)
    assert diffs
    for x, y in diffs:
        mx, my = CONSTANT_RE.match(x), CONSTANT_RE.match(y)
        assert mx and my and mx["name"] == my["name"], (x, y)
        assert (mx["comment"] or "").strip() == (my["comment"] or "").strip()
    for name, v in after.items():
        assert type(v) is type(before[name]), name
        if isinstance(v, tuple):
            assert len(v) == len(before[name])
    assert after["SEED"] == before["SEED"] and after["COMPILE"] == before["COMPILE"]
    for name in ("EMBEDDING_LR", "UNEMBEDDING_LR", "MATRIX_LR", "SCALAR_LR"):
        assert 1e-5 <= after[name] <= 10
        assert after[name] == float(f"{after[name]:.3g}")  # 3 significant digits
    for name in ("WEIGHT_DECAY", "WARMUP_RATIO", "WARMDOWN_RATIO", "FINAL_LR_FRAC"):
        assert 0 <= after[name] <= 1
    assert after["WARMUP_RATIO"] + after["WARMDOWN_RATIO"] <= 1
    assert all(0.5 <= b <= 0.999 for b in after["ADAM_BETAS"])
    assert 1 <= after["DEPTH"] <= 48
    assert after["ASPECT_RATIO"] % 16 == 0
    assert after["HEAD_DIM"] in (16, 32, 64, 128)
    assert after["WINDOW_PATTERN"] and set(after["WINDOW_PATTERN"]) <= {"S", "L"}
    model_dim = after["DEPTH"] * after["ASPECT_RATIO"]
    assert model_dim % after["HEAD_DIM"] == 0 and model_dim >= after["HEAD_DIM"]
    t, b = after["TOTAL_BATCH_SIZE"], after["DEVICE_BATCH_SIZE"]
    assert t & (t - 1) == 0 and b & (b - 1) == 0
    if seq_len:
        assert t % (b * seq_len) == 0
        r0 = None
    else:  # the ratio the start had stays a divisor, so whatever sequence length worked still does
        r0 = CPU_CONSTANTS["TOTAL_BATCH_SIZE"] // CPU_CONSTANTS["DEVICE_BATCH_SIZE"]
        assert t % b == 0 and (t // b) % r0 == 0
    return after


def objective(c: dict) -> float | None:
    """A synthetic val_bpb: a bowl in log-lr space plus shape/schedule terms; None = out of memory (a crash)."""
    if c["DEVICE_BATCH_SIZE"] * c["DEPTH"] * c["ASPECT_RATIO"] > 2**12:
        return None
    return (1.0 + (math.log2(c["MATRIX_LR"] / 0.08)) ** 2 + 0.5 * math.log2(c["EMBEDDING_LR"] / 0.6) ** 2
            + 0.5 * math.log2(c["UNEMBEDDING_LR"] / 0.01) ** 2 + 0.1 * math.log2(c["SCALAR_LR"] / 0.5) ** 2
            + 0.2 * (c["DEPTH"] - 4) ** 2 + 4 * (c["WARMDOWN_RATIO"] - 0.7) ** 2 + 2 * c["WARMUP_RATIO"] ** 2
            + 0.3 * math.log2(c["TOTAL_BATCH_SIZE"] / 2**13) ** 2 + (c["WEIGHT_DECAY"] - 0.1) ** 2
            + 0.2 * math.log2(c["ASPECT_RATIO"] / 64) ** 2)


def run_search(start: str, rounds: int, seed: int = 0, seq_len: int | None = None, baseline: bool = True):
    """The loop in miniature: propose, score, keep if better else stay on the best; results go into the history."""
    agent = SearchAgent(seed)
    best, best_score = start, objective(read_constants(start))
    history: list[HistoryEntry] = []
    if baseline:
        history.append(HistoryEntry(0, "keep", "baseline", val_bpb=best_score, train_py=start))
    proposals = []
    for n in range(1, rounds + 1):
        p = agent.propose(ctx(best, tuple(history), n, best_val_bpb=best_score, max_seq_len=seq_len))
        check_proposal(best, p.train_py, seq_len)
        proposals.append(p)
        score = objective(read_constants(p.train_py))
        status = "crash" if score is None else "keep" if score < best_score else "discard"
        history.append(entry(n, status, best, p.train_py, p.description, val_bpb=score,
                             reason="out of memory" if score is None else ""))
        if status == "keep":
            best, best_score = p.train_py, score
    return proposals, history, best_score


def test_is_an_agent_with_zero_usage():
    agent = SearchAgent()
    assert isinstance(agent, Agent) and agent.name == "search"
    p = agent.propose(ctx(TEMPLATE))
    assert p.usage == Usage() and p.description and p.rationale.endswith(".")
    check_proposal(TEMPLATE, p.train_py, seq_len=2048)


def test_proposals_change_only_constants_and_keep_types_ranges_and_invariants():
    for source, seq_len in ((TEMPLATE, 2048), (CPU, CPU_SEQ), (CPU, None)):
        before = read_constants(source)
        for n in range(15):
            p = SearchAgent().propose(ctx(source, experiment=n, max_seq_len=seq_len))
            after = check_proposal(source, p.train_py, seq_len)
            moved = {name for name, v in after.items() if v != before[name]}
            assert set(described(p.description)) == moved, p.description


def test_search_never_repeats_and_improves_the_objective():
    start = objective(read_constants(CPU))
    proposals, history, best = run_search(CPU, 60, seq_len=CPU_SEQ)
    keys = [tuple(sorted(read_constants(p.train_py).items(), key=str)) for p in proposals]
    assert len(set(keys)) == len(keys)
    assert tuple(sorted(read_constants(CPU).items(), key=str)) not in keys
    assert sum(e.status == "keep" for e in history[1:]) >= 5
    assert best < 1 + 0.25 * (start - 1), (start, best)  # at most a quarter of the excess over the optimum left


def test_search_without_sequence_length_or_baseline_entry_keeps_the_batch_ratio():
    proposals, history, best = run_search(CPU, 30, seed=3, baseline=False)  # check_proposal asserts the ratio
    assert best < objective(read_constants(CPU))


def test_deterministic_for_ctx_and_seed_and_varies_with_the_experiment():
    _, history, _ = run_search(CPU, 10, seq_len=CPU_SEQ)
    c = ctx(CPU, tuple(history), 11, max_seq_len=CPU_SEQ)
    assert SearchAgent(0).propose(c) == SearchAgent(0).propose(c)
    texts = {SearchAgent(0).propose(ctx(CPU, experiment=n)).train_py for n in range(10)}
    assert len(texts) >= 5
    seeds = {SearchAgent(s).propose(ctx(CPU, experiment=1)).train_py for s in range(10)}
    assert len(seeds) >= 5


def _with(source: str, **values) -> str:
    return set_constants(source, values)


def test_learns_the_direction_from_the_history():
    up = _with(CPU, MATRIX_LR=0.042)
    discarded = (entry(1, "discard", CPU, up, "MATRIX_LR 0.03 -> 0.042", val_bpb=2.0),)
    seen = []
    for n in range(2, 100):
        p = SearchAgent().propose(ctx(CPU, discarded, n))
        if "MATRIX_LR" in p.description:
            seen.append(read_constants(p.train_py)["MATRIX_LR"])
            assert re.search(r"[Rr]aising MATRIX_LR did not help last time \(#1 discarded\)", p.rationale)
    assert seen and all(v < 0.03 for v in seen), seen
    assert 0.021 in seen  # x0.7

    # kept: the same direction again, one step larger (x2 after x1.4)
    kept = (entry(1, "keep", CPU, up, "MATRIX_LR 0.03 -> 0.042", val_bpb=1.5),)
    baseline_then_kept = (HistoryEntry(0, "keep", "baseline", val_bpb=2.0, train_py=CPU),  # no diffs needed
                          HistoryEntry(1, "keep", "MATRIX_LR 0.03 -> 0.042", val_bpb=1.5, train_py=up))
    for history in (kept, baseline_then_kept):
        moves = [read_constants(SearchAgent().propose(ctx(up, history, n)).train_py)["MATRIX_LR"]
                 for n in range(2, 100)]
        moves = [v for v in moves if v != 0.042]
        assert moves and all(v == 0.084 for v in moves), moves

    # a bigger step after that overshot: back to the smaller step in the same direction
    overshot = kept + (entry(2, "discard", up, _with(up, MATRIX_LR=0.084), "MATRIX_LR 0.042 -> 0.084"),)
    moves = [read_constants(SearchAgent().propose(ctx(up, overshot, n)).train_py)["MATRIX_LR"]
             for n in range(3, 100)]
    assert {v for v in moves if v != 0.042} == {0.0588}


def test_a_crash_counts_as_tried_and_bad():
    base = "TOTAL_BATCH_SIZE = 2**13\nDEVICE_BATCH_SIZE = 16\nMATRIX_LR = 0.03\nDEPTH = 2\n"  # room for 32
    big = _with(base, DEVICE_BATCH_SIZE=32)
    crashed = (entry(1, "crash", base, big, "DEVICE_BATCH_SIZE 16 -> 32", reason="out of memory"),)
    # the same through ctx.failure (the loop asks the agent to fix its crashed change)
    failure = Failure("DEVICE_BATCH_SIZE 16 -> 32", "crash", "out of memory", "CUDA out of memory", big)
    for history, fail in ((crashed, None), ((), failure)):
        batch = []
        for n in range(2, 60):
            p = SearchAgent().propose(ctx(base, history, n, failure=fail, max_seq_len=CPU_SEQ))
            after = read_constants(p.train_py)
            assert after != read_constants(big)
            if after["DEVICE_BATCH_SIZE"] != 16:
                batch.append(after["DEVICE_BATCH_SIZE"])
                assert "crashed" in p.rationale
        assert batch and all(b < 16 for b in batch), batch

    # as the loop asks for a fix: ctx.train_py is the failed file; the search moves from the best (last keep) instead
    assert SearchAgent.can_fix is False  # the loop does not ask, but a search agent asked anyway must cope
    baseline = (HistoryEntry(1, "keep", "baseline", val_bpb=2.0, train_py=base),)
    for n in range(2, 20):
        p = SearchAgent().propose(ctx(big, baseline, n, failure=failure, max_seq_len=CPU_SEQ))
        assert read_constants(p.train_py)["DEVICE_BATCH_SIZE"] <= 16  # moved from the best, away from the crash


def test_natural_spelling_of_values():
    source = ("TOTAL_BATCH_SIZE = 2**12     # tokens per step\nDEVICE_BATCH_SIZE = 16\nLR = 0.03\n"
              "WINDOW_PATTERN = 'SL'\nADAM_BETAS = (0.8, 0.95)\nSEED = 42\n")
    texts = [SearchAgent().propose(ctx(source, experiment=n)).train_py for n in range(60)]
    lines = {line for t in texts for line in t.splitlines()}
    assert any(line.startswith("TOTAL_BATCH_SIZE = 2**13 ") for line in lines)
    assert not any(line.startswith("TOTAL_BATCH_SIZE = 8192") for line in lines)
    assert "LR = 0.042" in lines and "LR = 0.021" in lines
    assert any(line.startswith("WINDOW_PATTERN = 'S") for line in lines - {"WINDOW_PATTERN = 'SL'"})
    assert all(line == "SEED = 42" for line in lines if line.startswith("SEED"))
    assert all(line.startswith("TOTAL_BATCH_SIZE = 2**1") and line.endswith("# tokens per step")
               for line in lines if line.startswith("TOTAL_BATCH_SIZE"))


def test_width_repair_keeps_heads_dividing_the_model():
    source = "DEPTH = 8\nASPECT_RATIO = 64\nHEAD_DIM = 128\n"
    descriptions = {SearchAgent().propose(ctx(source, experiment=n)).description for n in range(80)}
    assert "DEPTH 8 -> 9, HEAD_DIM 128 -> 64" in descriptions


@pytest.mark.parametrize("source, most", [('WINDOW_PATTERN = "SL"\nSEED = 1\n', 5), ("WARMUP_RATIO = 0.0\n", 4),
                                          ("DEPTH = 2\n", 5)])
def test_exhaustion_is_fatal(source, most):
    agent, history, best = SearchAgent(), [], source
    seen = set()
    with pytest.raises(AgentError, match="exhausted") as e:
        for n in range(1, 60):
            p = agent.propose(ctx(best, tuple(history), n))
            key = repr(read_constants(p.train_py))
            assert key not in seen
            seen.add(key)
            history.append(HistoryEntry(n, "discard", p.description, val_bpb=9.0, train_py=p.train_py))
    assert e.value.fatal and len(seen) <= most


def test_no_constants_is_fatal():
    with pytest.raises(AgentError, match="no tunable") as e:
        SearchAgent().propose(ctx("import torch\nprint('hello')\n"))
    assert e.value.fatal
    with pytest.raises(AgentError) as e:  # only constants the search never touches
        SearchAgent().propose(ctx("SEED = 42\nCOMPILE = None\nNAME = 'x'\nFLAG = True\n"))
    assert e.value.fatal


def test_every_template_constant_but_seed_and_compile_has_a_rule():
    consts = read_constants(TEMPLATE)
    names = {dim[0] for dim in tunable(consts)}
    assert names == set(consts) - {"SEED", "COMPILE"}
    assert names <= set(RULES)
