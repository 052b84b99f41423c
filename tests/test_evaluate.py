"""evaluate_bpb against a hand computation on a tiny bigram model."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from reference_loader import document_batches, reference_rows

from autoresearch.harness import channel, constants
from autoresearch.harness.dataloader import TokenSplit, make_dataloader
from autoresearch.harness.evaluate import RefusedToScore, evaluate_bpb
from autoresearch.harness.tokenizer import Tokenizer
from autoresearch.settings import Settings

TEXTS = [f"Story {i}: the {'red' if i % 3 else 'blue'} fox ran {i % 7} miles. Ünïcode ✓" * (1 + i % 4) for i in range(80)]


@pytest.fixture
def events():
    """The harness's channel, connected to a pipe this test reads."""
    r, w = os.pipe()
    channel.connect(w)

    def read() -> list[dict]:
        os.set_blocking(r, False)
        data = b""
        try:
            while chunk := os.read(r, 65536):
                data += chunk
        except BlockingIOError:
            pass
        return [json.loads(line) for line in data.decode().splitlines()]

    yield read
    channel.connect(None)
    os.close(r)
    os.close(w)


def result_of(events) -> dict:
    return next(e for e in reversed(events()) if e["event"] == "result")


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    settings = Settings(profile="cpu", max_seq_len=16, eval_tokens=80, vocab_size=300)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "autoresearch.toml").write_text(settings.to_toml())
    cache = tmp_path / "cache"
    out = constants.prepared_dir(settings, cache)
    out.mkdir(parents=True)
    tok = Tokenizer.train(TEXTS, 300)
    tok.save(out)
    splits = {"val": TEXTS[:40], "test": TEXTS[40:]}
    for name, texts in splits.items():
        docs = [np.array(ids, dtype=np.uint16) for ids in tok.encode_batch(texts, prepend_bos=True)]
        offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum([len(d) for d in docs], out=offsets[1:])
        TokenSplit(np.concatenate(docs), offsets).save(out, name)
    rows = settings.eval_tokens // settings.max_seq_len
    meta = {"complete": True, "eval": {constants.eval_key(settings): {"val": {"rows": rows}, "test": {"rows": rows}}}}
    (out / "meta.json").write_text(json.dumps(meta))
    monkeypatch.setenv("AUTORESEARCH_WORKSPACE", str(ws))
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(cache))
    constants.workspace_settings.cache_clear()
    return settings, tok, splits


class Bigram(torch.nn.Module):
    def __init__(self, vocab: int, extra: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab + extra, generator=g))

    def forward(self, idx):  # (B, T) -> (B, T, V)
        return self.table[idx]


def hand_bpb(model: Bigram, tok: Tokenizer, texts: list[str], settings: Settings) -> float:
    docs = [[tok.get_bos_token_id(), *tok.encode(t)] for t in texts]
    rows = reference_rows(document_batches([docs]), settings.max_seq_len + 1)
    table = model.table.detach().double().tolist()
    nats = 0.0
    nbytes = 0
    for _ in range(settings.eval_tokens // settings.max_seq_len):
        row, _ = next(rows)
        for t in range(settings.max_seq_len):
            x, y = row[t], row[t + 1]
            b = len(tok.enc.decode_single_token_bytes(y)) if y != tok.get_bos_token_id() else 0
            if b == 0:
                continue  # special tokens carry no bytes and are not scored
            logits = table[x][: tok.get_vocab_size()]
            m = max(logits)
            nats += -(logits[y] - m - math.log(sum(math.exp(v - m) for v in logits)))
            nbytes += b
    return nats / (math.log(2) * nbytes)


def test_matches_hand_computation_and_hands_over_both_splits(workspace, events):
    settings, tok, splits = workspace
    model = Bigram(tok.get_vocab_size())
    val = evaluate_bpb(model, tok, batch_size=3)
    assert val == pytest.approx(hand_bpb(model, tok, splits["val"], settings), rel=1e-6)
    official = result_of(events)
    assert official["val_bpb"] == val
    assert official["test_bpb"] == pytest.approx(hand_bpb(model, tok, splits["test"], settings), rel=1e-6)
    assert official["val_tokens"] > 0 and official["val_bytes"] > official["val_tokens"]


def test_batch_size_does_not_change_the_figure(workspace):
    _, tok, _ = workspace
    model = Bigram(tok.get_vocab_size())
    assert evaluate_bpb(model, tok, 1) == pytest.approx(evaluate_bpb(model, tok, 5), rel=1e-9)


def test_padded_vocabulary_logits_are_cut(workspace):
    settings, tok, splits = workspace
    model = Bigram(tok.get_vocab_size(), extra=12)
    assert evaluate_bpb(model, tok, 4) == pytest.approx(hand_bpb(model, tok, splits["val"], settings), rel=1e-6)


def test_uniform_model_costs_log2_vocab_bits_per_scored_token(workspace, events):
    _, tok, _ = workspace

    class Uniform(torch.nn.Module):
        def forward(self, idx):
            return torch.zeros(*idx.shape, tok.get_vocab_size())

    bpb = evaluate_bpb(Uniform(), tok, 4)
    r = result_of(events)
    assert bpb == pytest.approx(math.log2(tok.get_vocab_size()) * r["val_tokens"] / r["val_bytes"], rel=1e-6)


def test_wrong_output_shape_is_a_clear_error(workspace):
    _, tok, _ = workspace

    class Scalar(torch.nn.Module):
        def forward(self, idx):
            return torch.tensor(0.0)

    with pytest.raises(ValueError, match=r"logits of shape \(B, T, V\)"):
        evaluate_bpb(Scalar(), tok, 2)


def test_model_mode_is_restored(workspace):
    _, tok, _ = workspace
    model = Bigram(tok.get_vocab_size()).train()
    evaluate_bpb(model, tok, 2)
    assert model.training


def test_a_model_that_looks_ahead_gets_no_score(workspace, events):
    _, tok, _ = workspace

    class Peek(Bigram):  # predicts token t+1 from token t+1 itself: perfect, and impossible
        def forward(self, idx):
            nxt = torch.roll(idx, -1, dims=1)
            return 50.0 * torch.nn.functional.one_hot(nxt, self.table.size(1)).float()

    with pytest.raises(RefusedToScore, match="looks ahead"):
        evaluate_bpb(Peek(tok.get_vocab_size()), tok, 4)
    sent = events()
    assert [e["event"] for e in sent] == ["eval_start", "violation"]
    assert sent[1]["kind"] == "non_causal" and not sent[1]["probe"]["causal"]


def test_a_causal_model_passes_the_probe(workspace, events):
    _, tok, _ = workspace
    evaluate_bpb(Bigram(tok.get_vocab_size()), tok, 4)
    probe = result_of(events)["probe"]
    assert probe["causal"] and probe["max_diff"] == 0.0


def test_patching_the_harness_at_run_time_gets_no_score(workspace, events, monkeypatch):
    _, tok, _ = workspace
    import autoresearch.harness.evaluate as ev

    monkeypatch.setattr(ev, "score_split", lambda *a, **k: None)
    with pytest.raises(RefusedToScore, match="score_split"):
        evaluate_bpb(Bigram(tok.get_vocab_size()), tok, 4)
    monkeypatch.undo()
    channel.connect(channel._fd)  # a fresh run: one evaluation per process
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", lambda *a, **k: torch.zeros(1))
    with pytest.raises(RefusedToScore, match="F.cross_entropy"):
        evaluate_bpb(Bigram(tok.get_vocab_size()), tok, 4)
    assert events()[-1]["kind"] == "tampered"


def test_train_py_may_not_load_the_validation_split(workspace, events):
    _, tok, _ = workspace
    for split in ("val", "test"):
        with pytest.raises(PermissionError, match="train' split only"):
            make_dataloader(tok, 2, 16, split, device="cpu")
    assert [e["kind"] for e in events()] == ["split", "split"]


def test_a_model_that_learns_from_the_evaluation_gets_no_score(workspace, events):
    _, tok, _ = workspace

    class Learner(Bigram):  # test-time training: sharpens its table toward what it saw (after the probe's six calls,
        calls = 0  # which would otherwise catch it as looking ahead)

        def forward(self, idx):
            self.calls += 1
            out = self.table[idx].clone()
            if self.calls > 6:
                with torch.no_grad():
                    self.table[idx[:, :-1], idx[:, 1:]] += 1.0
            return out

    # Refused either way: by the re-score of the first batch, or by a later probe (its state moves between calls).
    with pytest.raises(RefusedToScore, match="learns from the validation data|looks ahead"):
        evaluate_bpb(Learner(tok.get_vocab_size()), tok, 4)
    assert events()[-1]["kind"] in ("stateful", "non_causal")
