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


class SpeedChangingAgent(ScriptedAgent):
    """Proposes changes that train faster by themselves (less sleep per batch, as a smaller DEPTH would)."""

    def propose(self, ctx):
        os.environ["FAKE_DELAY"] = "0.01"
        return super().propose(ctx)


@pytest.fixture
def load_ws(tiny_workspace, monkeypatch):
    (tiny_workspace / "train.py").write_text(LOAD_TRAIN)
    vcs.commit_all(tiny_workspace, "load-sensitive train.py")
    monkeypatch.setenv("FAKE_DELAY", "0.5")  # the baseline trains slowly: its own doing, not the machine's
    return tiny_workspace


def test_a_change_s_own_speed_is_not_taken_for_load(load_ws):
    """The load signal is the rest of the machine's CPU use, measured by the runner: a change that trains 5x faster
    by itself does not move it, so a re-measure happens only where that signal says the machine changed."""
    changes = [(LOAD_TRAIN + f"# comment {i}\n", f"a comment ({i})") for i in range(2)]
    loop = Loop(load_ws, Settings.load(load_ws / "autoresearch.toml"), SpeedChangingAgent(changes),
                LoopConfig(tag="t", policy="noise", noise_runs=2, limits=Limits(max_experiments=3)))
    loop.start()
    loop.run_until_limit()
    assert_consistent(load_ws, "t")
    base, first, second = loop.journal.final_attempts("t")
    assert all(isinstance(x, float) and x >= 0 for e in (base, first, second) for x in e.evidence["load"])
    assert first.evidence["tps"][0] > 5 * base.evidence["tps"][0]  # its own speed moved a lot
    tol = load.load_tolerance(base.evidence["load"])
    moved = load.load_moved(load.mean_known(base.evidence["load"]), load.mean_known(first.evidence["load"]), tol)
    # The old signal (tokens/s) re-measured here every time; now only a real change of the machine's load can.
    assert moved != 0 if "remeasured" in first.evidence else True
    assert "remeasured" not in first.evidence if moved == 0 else True


def test_load_tolerance_comes_from_the_baseline_repeats():
    assert load.load_tolerance([]) == load.LOAD_FLOOR
    assert load.load_tolerance([0.5, 0.52, 0.48]) == load.LOAD_FLOOR  # steady machine: the floor
    assert load.load_tolerance([0.5, 1.0, 1.5]) == pytest.approx(3 * 0.5)  # noisy one: 3 sd
    assert load.load_moved(0.2, 1.0, 0.25) == 1 and load.load_moved(1.0, 0.2, 0.25) == -1
    assert load.load_moved(1.0, 1.2, 0.25) == 0 and load.load_moved(None, 1.0, 0.25) == 0


def test_the_meter_counts_the_rest_of_the_machine_and_not_the_run_s_own_processes():
    """Two meters over the same seconds, one told the CPU hog is its run's own: they differ by the hog's CPU use,
    whatever else the machine is doing."""
    import subprocess
    import sys
    import time

    import psutil

    from autoresearch.run.load_meter import LoadMeter

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        ps = psutil.Process(hog.pid)
        time.sleep(0.3)
        used0, t0 = sum(ps.cpu_times()[:2]), time.monotonic()
        own, other = LoadMeter(lambda: [hog.pid], every=0.2).start(), LoadMeter(lambda: [], every=0.2).start()
        time.sleep(3.0)
        mine, theirs = own.stop(), other.stop()
        hog_rate = (sum(ps.cpu_times()[:2]) - used0) / (time.monotonic() - t0)
    finally:
        hog.kill()
        hog.wait(timeout=10)
    assert mine is not None and theirs is not None
    assert hog_rate > 0.2  # the hog got some CPU, even on a busy machine
    assert theirs - mine == pytest.approx(hog_rate, abs=0.15)
