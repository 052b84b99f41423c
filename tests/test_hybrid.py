"""The hybrid agent end to end (`--agent anthropic:MODEL+search`), against the scripted LLM server: the LLM's
structural change is kept, the tuner spends its experiments on the constants of the new best, and the LLM's next
prompt says what the tuner learned."""

from __future__ import annotations

import json

import pytest

from click.testing import CliRunner
from fakellm import Reply, fake_llm  # noqa: F401  (fixture)
from loopkit import assert_consistent, fast_source

from autoresearch import vcs
from autoresearch.agents.base import HistoryEntry
from autoresearch.agents.hybrid import TUNE_STEPS, HybridAgent, findings
from autoresearch.cli import cli
from autoresearch.loop.journal import Journal

# The fast stand-in (a unigram, ~2 s a run), its knob renamed to a constant the search agent tunes, and a
# handicap in the code (not a constant) that the LLM's structural change deletes.
TUNABLE = fast_source().replace("QUALITY = 0.3           # sharpness of the unigram prior; 1.0 is best",
                                "MATRIX_LR = 0.03        # sharpness of the unigram prior, over 10; 0.1 is best")
TUNABLE = TUNABLE.replace("# ---------------------------------------------------------------------------\n",
                          "# ---------------------------------------------------------------------------\n"
                          "QUALITY = 10 * MATRIX_LR\n", 1)
HANDICAP = "QUALITY = 0.2 * QUALITY  # the structural fix: delete this line\n"


@pytest.mark.slow
def test_llm_then_tuner_then_llm_with_the_findings(tiny_workspace, fake_llm, monkeypatch):  # noqa: F811
    ws = tiny_workspace
    fixed = TUNABLE
    (ws / "train.py").write_text(fixed.replace("QUALITY = 10 * MATRIX_LR\n", "QUALITY = 10 * MATRIX_LR\n" + HANDICAP))
    vcs.commit_all(ws, "a handicapped start")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    fake_llm.push(Reply(f"Description: let the weights train\n\n```python\n{fixed}```\n"),
                  Reply(f"Description: a comment, to see the prompt\n\n```python\n# next\n{fixed}```\n"))
    r = CliRunner().invoke(cli, ["run", "--tag", "t", "--agent", "anthropic:test-model+search", "--base-url",
                                 fake_llm.url, "--policy", "greedy", "--max-experiments", str(3 + TUNE_STEPS)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert_consistent(ws, "t")
    j = Journal(ws / ".autoresearch" / "journal.db")
    recs = j.final_attempts("t")
    assert j.run("t").agent == "anthropic:test-model+search"
    j.close()
    assert [e.agent for e in recs] == ["baseline", "anthropic:test-model", *["search"] * TUNE_STEPS,
                                       "anthropic:test-model"]
    assert recs[1].status == "keep"  # the structural change
    tuned = {name for e in recs[2:-1] for name in json.dumps(e.diff).split() if name.isupper()}
    last_prompt = json.dumps(fake_llm.requests[-1].body)
    assert "What the tuner learned" in last_prompt
    assert any(name.strip('"+-=') in last_prompt for name in tuned)
    assert "What the tuner learned" not in json.dumps(fake_llm.requests[0].body)


def test_findings_name_what_each_constant_was_worth():
    history = (HistoryEntry(1, "keep", "baseline", 1.50, agent="baseline"),
               HistoryEntry(2, "keep", "structural", 1.40, agent="llm"),
               HistoryEntry(3, "discard", "lr", 1.43, diff="-MATRIX_LR = 0.04\n+MATRIX_LR = 0.08\n", agent="search"),
               HistoryEntry(4, "keep", "depth", 1.37, diff="-DEPTH = 4\n+DEPTH = 6\n", agent="search"),
               HistoryEntry(5, "crash", "heads", diff="-HEAD_DIM = 64\n+HEAD_DIM = 96\n", agent="search"))
    text = findings(history, "search")
    assert text.index("DEPTH") < text.index("MATRIX_LR")  # what helped most first
    assert "DEPTH: 1 tries, best 6 (-0.0300" in text and "MATRIX_LR: 1 tries, best 0.08 (+0.0300" in text
    assert "HEAD_DIM: 1 tries, all failed" in text

    class Named:
        def __init__(self, name):
            self.name = name

    hybrid = HybridAgent(Named("llm"), Named("search"), tune_steps=3)
    assert hybrid.tuning(history[:2]) and hybrid.tuning(history[:4]) and not hybrid.tuning(history)
    assert not hybrid.tuning(history[:1])  # no structural keep yet: the LLM's turn
