"""Load must not pick the winner: a change that only met a quieter machine is not kept (see loop/load.py)."""

from __future__ import annotations

import os

import pytest
from loopkit import ScriptedAgent, assert_consistent

from autoresearch import vcs
from autoresearch.loop import load
from autoresearch.loop.core import Limits, Loop, LoopConfig
from autoresearch.settings import Settings

# Trains nothing real: a unigram model from its first batch, which gets sharper the more batches it sees in
# TIME_BUDGET seconds (up to 40), sleeping $FAKE_DELAY after each (the machine's load). Like real training under a
# time budget, a quieter machine means more batches and a better val_bpb for the very same code.
LOAD_TRAIN = '''\
import os
import time

import torch

from autoresearch.harness import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, evaluate_bpb, make_dataloader

SEED = 42               # seed of the logits' jitter: run-to-run noise

tok = Tokenizer.load()
V = tok.get_vocab_size()
loader = make_dataloader(tok, 4, MAX_SEQ_LEN, "train", device="cpu")
counts = torch.ones(V)
opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
delay = float(os.environ.get("FAKE_DELAY", "0"))
t0, seen = None, 0
while t0 is None or time.monotonic() - t0 < TIME_BUDGET:
    x, y, _ = next(loader)
    if not seen:  # the model comes from the first batch alone: only the number of batches depends on the load
        counts += torch.bincount(y.flatten(), minlength=V)[:V].float()
    opt.step()  # the first step starts the runner's clock
    t0 = t0 or time.monotonic()
    seen += 1
    time.sleep(delay)
quality = min(1.0, seen / 40)
jitter = 0.01 * torch.randn(V, generator=torch.Generator().manual_seed(SEED))
logp = torch.log(counts / counts.sum())


class Unigram(torch.nn.Module):
    def forward(self, idx):  # (B, T) -> (B, T, V)
        return (quality * logp + jitter).expand(*idx.shape, V)


print("seen", seen, "batches")
val_bpb = evaluate_bpb(Unigram(), tok, 8)
print("---")
print(f"val_bpb:          {val_bpb:.6f}")
'''


class LoadChangingAgent(ScriptedAgent):
    """Proposes changes that do nothing (a comment); the load drops before the first of them runs."""

    def propose(self, ctx):
        os.environ["FAKE_DELAY"] = "0.01"
        return super().propose(ctx)


@pytest.fixture
def load_ws(tiny_workspace, monkeypatch):
    (tiny_workspace / "train.py").write_text(LOAD_TRAIN)
    vcs.commit_all(tiny_workspace, "load-sensitive train.py")
    monkeypatch.setenv("FAKE_DELAY", "0.5")  # the baseline meets a busy machine
    return tiny_workspace


@pytest.mark.slow
def test_a_change_that_only_met_a_quieter_machine_is_not_kept(load_ws):
    changes = [(LOAD_TRAIN + f"# comment {i}\n", f"a comment ({i})") for i in range(2)]
    loop = Loop(load_ws, Settings.load(load_ws / "autoresearch.toml"), LoadChangingAgent(changes),
                LoopConfig(tag="t", policy="noise", noise_runs=2, limits=Limits(max_experiments=3)))
    loop.start()
    loop.run_until_limit()
    rows = assert_consistent(load_ws, "t")
    assert [r["status"] for r in rows] == ["keep", "discard", "discard"]
    first, second = loop.journal.final_attempts("t")[1:]
    again = first.evidence["remeasured"]
    assert again["after"]["tokens_per_second"] > 5 * again["before"]["tokens_per_second"]  # the load went away
    assert again["after"]["val_bpb"] < again["before"]["val_bpb"]  # so the same code scores better now
    assert first.evidence["gain"] == pytest.approx(0.0, abs=1e-9)  # the change against the best, both measured now
    assert "remeasured" not in second.evidence  # the re-measured best is the reference from then on
    assert second.evidence["best"] == pytest.approx(again["after"]["val_bpb"])


def test_tolerance_comes_from_the_baseline_repeats():
    assert load.tolerance([]) == load.TOLERANCE_DEFAULT
    assert load.tolerance([1000.0, 1001.0, 999.0]) == load.TOLERANCE_FLOOR  # steady machine: the floor
    assert load.tolerance([1000.0, 1200.0, 800.0]) == pytest.approx(3 * 200 / 1000)  # noisy one: 3 CVs
    assert load.shifted(1000.0, 1700.0, 0.6) and not load.shifted(1000.0, 1500.0, 0.6)
    assert load.shifted(None, 1000.0, 0.1) and load.shifted(1000.0, None, 0.1)  # a hidden speed is checked too
    assert not load.shifted(None, None, 0.1)
