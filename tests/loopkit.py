"""Helpers for loop tests: a fast stand-in for train.py, scripted agents, and the consistency check."""

from __future__ import annotations

import subprocess
from pathlib import Path

from autoresearch.agents.base import Context, Proposal
from autoresearch.loop.journal import Journal, read_results_tsv
from autoresearch.workspace import set_constants

# Trains nothing: a unigram model whose sharpness is a CAPS constant, scored by the real harness. val_bpb is
# lowest at QUALITY = 1.0, so a search over QUALITY makes real, deterministic progress in ~2 s per run.
FAST_TRAIN = '''\
import os
import time

import torch

from autoresearch.harness import MAX_SEQ_LEN, Tokenizer, evaluate_bpb, make_dataloader

QUALITY = 0.3           # sharpness of the unigram prior; 1.0 is best
SLEEP = 0.0             # seconds to pretend to train
NOISE = 0.0             # seed-dependent jitter of the logits: run-to-run noise like a real training run
SEED = 42               # seed of that jitter

# ---------------------------------------------------------------------------
tok = Tokenizer.load()
V = tok.get_vocab_size()
counts = torch.ones(V)
x, y, _ = next(make_dataloader(tok, 64, MAX_SEQ_LEN, "train", device="cpu"))
counts += torch.bincount(y.flatten(), minlength=V)[:V].float()
logp = torch.log(counts / counts.sum())


jitter = NOISE * torch.randn(V, generator=torch.Generator().manual_seed(SEED))


class Unigram(torch.nn.Module):
    def forward(self, idx):  # (B, T) -> (B, T, V)
        return (QUALITY * logp + jitter).expand(*idx.shape, V)


if os.environ.get("FAST_TRAIN_HANG") and QUALITY != 0.3:  # the first experiment after the baseline hangs
    time.sleep(120)
print("step 00000 (0.0%) | loss: 5.000000 | lrm: 1.00 | dt: 1ms | tok/sec: 1 | mfu: 0.0% | epoch: 1 | remaining: 1s")
time.sleep(SLEEP)
val_bpb = evaluate_bpb(Unigram(), tok, 8)
print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print("training_seconds: 0.1")
print("total_seconds:    0.2")
print("peak_vram_mb:     10.0")
print("mfu_percent:      0.00")
print("total_tokens_M:   0.0")
print("num_steps:        1")
print("num_params_M:     0.0")
print("depth:            0")
'''


def fast_source(**constants) -> str:
    return set_constants(FAST_TRAIN, constants) if constants else FAST_TRAIN


class ScriptedAgent:
    """Returns prepared proposals in order: (source, description) pairs; can_fix like an LLM."""

    name = "scripted"
    can_fix = True

    def __init__(self, proposals: list[tuple[str, str]]) -> None:
        self.proposals = list(proposals)
        self.contexts: list[Context] = []

    def propose(self, ctx: Context) -> Proposal:
        self.contexts.append(ctx)
        source, description = self.proposals.pop(0)
        return Proposal(train_py=source, description=description, rationale="scripted")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def assert_consistent(ws: Path, tag: str) -> list[dict]:
    """results.tsv, the journal and the branch history agree; the workspace sits clean at the best commit."""
    journal = Journal(ws / ".autoresearch" / "journal.db")
    try:
        run = journal.run(tag)
        assert run is not None
        final = journal.final_attempts(tag)
        assert journal.unfinished(tag) is None
        rows = read_results_tsv(ws / "results.tsv")
        assert [r["description"] for r in rows] == [" ".join(e.description.split()) for e in final]
        assert [r["status"] for r in rows] == [e.tsv_status for e in final]
        for r, e in zip(rows, final):
            assert r["commit"] == (e.commit_sha or e.parent_commit)[:7]
            if e.status in ("keep", "discard"):
                assert float(r["val_bpb"]) == round(e.val_bpb, 6)
        assert [e.number for e in final] == list(range(1, len(final) + 1))  # no idea lost or counted twice
        # In the order they were decided (workers side by side can keep a later number first).
        kept = sorted((e for e in final if e.status == "keep"), key=lambda e: e.finished_at)
        branch_commits = [line.split()[0] for line in
                          git(ws, "log", "--reverse", "--format=%H", f"{run.base_commit}..{run.branch}").splitlines()]
        assert branch_commits == [e.commit_sha for e in kept if e.number > 1]  # every keep, and nothing else
        assert git(ws, "rev-parse", "HEAD").strip() == (kept[-1].commit_sha if kept else run.base_commit)
        assert git(ws, "rev-parse", "--abbrev-ref", "HEAD").strip() == run.branch
        assert git(ws, "status", "--porcelain").strip() == ""
        for e in kept:  # what the branch holds is what was measured
            assert git(ws, "show", f"{e.commit_sha}:train.py") == e.train_py
        vals = [e.val_bpb for e in kept]
        assert vals == sorted(vals, reverse=True)  # each keep beat the one before
        return rows
    finally:
        journal.close()


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (PID 1 may be slow to reap in containers)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pid_working_in(directory: Path) -> int | None:
    """The process whose working directory is `directory` (an experiment runs in its run directory)."""
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if cwd.resolve() == directory.resolve() and alive(int(cwd.parent.name)):
                return int(cwd.parent.name)
        except OSError:
            continue
    return None


def resume_with_counter(counter: str) -> list[dict]:
    """`run --resume` in this process, for a command agent that counts its proposals in `counter`, after a kill -9
    with two experiments in flight: both are re-run (and said so), and the records agree. Returns results.tsv."""
    import os

    from click.testing import CliRunner

    from autoresearch.cli import cli

    os.environ["AGENT_COUNTER"] = counter
    try:
        r = CliRunner().invoke(cli, ["run", "--resume", "--no-agent-sandbox"], catch_exceptions=False)
    finally:
        del os.environ["AGENT_COUNTER"]
    assert r.exit_code == 0, r.output
    assert r.output.count("was interrupted") == 2, r.output
    return assert_consistent(Path.cwd(), "t")
