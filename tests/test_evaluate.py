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

    class Learner(Bigram):  # test-time training: sharpens its table toward what it saw (after the first scoring call
        calls = 0  # and its probe, which would otherwise catch it as looking ahead)

        def forward(self, idx):
            self.calls += 1
            out = self.table[idx].clone()
            if self.calls > 2:
                with torch.no_grad():
                    self.table[idx[:, :-1], idx[:, 1:]] += 1.0
            return out

    # Refused either way: by the re-score of the first batch, or by a later probe (its state moves between calls).
    with pytest.raises(RefusedToScore, match="learns from the validation data|looks ahead"):
        evaluate_bpb(Learner(tok.get_vocab_size()), tok, 4)
    assert events()[-1]["kind"] in ("stateful", "non_causal")


# -- calls of one shape, read once; the test split on the launcher's word; the harness's own device figures --------


class Recording(Bigram):
    """Records the shape of every call it gets (scoring, probe and re-score calls alike)."""

    def __init__(self, vocab: int) -> None:
        super().__init__(vocab)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, idx):
        self.shapes.append(tuple(idx.shape))
        return super().forward(idx)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5, 8])
def test_every_call_has_one_shape_and_the_padding_is_not_scored(workspace, events, batch_size):
    settings, tok, splits = workspace
    n_rows = settings.eval_tokens // settings.max_seq_len  # 5: batch sizes 2 and 3 need a padded last call
    model = Recording(tok.get_vocab_size())
    val = evaluate_bpb(model, tok, batch_size)
    rows = min(batch_size, n_rows)
    assert set(model.shapes) == {(rows, settings.max_seq_len)}  # scoring, probe and re-score calls: one shape
    r = result_of(events)
    assert r["val_calls"] == r["test_calls"] == math.ceil(n_rows / rows) and r["rows_per_call"] == rows
    assert val == pytest.approx(hand_bpb(model, tok, splits["val"], settings), rel=1e-6)
    assert r["test_bpb"] == pytest.approx(hand_bpb(model, tok, splits["test"], settings), rel=1e-6)


def test_the_logits_budget_caps_the_rows_of_a_call(monkeypatch):
    import autoresearch.harness.evaluate as ev

    assert ev.rows_per_call(16, 256, 2048, 512) == 16  # train.py's batch size
    assert ev.rows_per_call(16, 256, 2048, 5) == 5  # no more rows than the split has
    monkeypatch.setattr(ev, "LOGITS_BUDGET", 3 * 256 * 2048 + 1)
    assert ev.rows_per_call(16, 256, 2048, 512) == 3  # as many rows as three rows' logits
    with pytest.raises(ValueError, match="at least 1"):
        ev.rows_per_call(0, 256, 2048, 512)


HOST_READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")


def test_the_sums_are_read_once_whatever_the_number_of_calls(workspace, monkeypatch):
    """A host read makes the host wait for the device: at most one per split, however many calls score it."""
    settings, tok, _ = workspace
    from autoresearch.harness.dataloader import evaluation_loader
    from autoresearch.harness.evaluate import score_split

    model = Bigram(tok.get_vocab_size())
    token_bytes = torch.from_numpy(tok.token_bytes).long()
    reads = {"n": 0}
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, **k):
            reads["n"] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)

    counts = {}
    for n_rows in (2, 23):  # 1 call, then 12 calls (the last one padded)
        reads["n"] = 0
        loader = evaluation_loader(tok, 2, settings.max_seq_len, "val", "cpu")
        score = score_split(model, token_bytes, loader, n_rows, 2, torch.device("cpu"))
        counts[n_rows] = reads["n"]
        assert score.calls == math.ceil(n_rows / 2) and score.tokens > 0
    assert counts[2] == counts[23] == 1, counts


def answered(events, answer: bytes | None):
    """Connect the channel with an answer pipe holding `answer` (None: the runner never answers)."""
    r, w = os.pipe()
    if answer is not None:
        os.write(w, answer)
    channel.connect(channel._fd, r)
    return r, w


@pytest.mark.parametrize(("answer", "scored"), [(b'{"test": false}\n', False), (b'{"test": true}\n', True),
                                                (b"garbage\n", True)])
def test_the_test_split_is_scored_when_the_launcher_wants_it(workspace, events, answer, scored):
    _, tok, _ = workspace
    r, w = answered(events, answer)
    try:
        val = evaluate_bpb(Bigram(tok.get_vocab_size()), tok, 4)
    finally:
        os.close(r)
        os.close(w)
    sent = events()
    asks = [e for e in sent if e["event"] == "ask_test"]
    assert len(asks) == 1 and asks[0]["val_bpb"] == val  # asked once, after val, about the official figure
    result = next(e for e in sent if e["event"] == "result")
    assert ("test_bpb" in result) is scored
    assert result["splits"] == (["val", "test"] if scored else ["val"])


def test_without_an_answer_the_test_split_is_scored(workspace, events):
    _, tok, _ = workspace
    r, w = answered(events, None)
    os.close(w)  # the launcher went away without answering
    try:
        evaluate_bpb(Bigram(tok.get_vocab_size()), tok, 4)
    finally:
        os.close(r)
    assert result_of(events)["test_bpb"] > 0
    r, w = answered(events, None)  # a launcher that never answers: the question times out
    try:
        assert channel.ask("ask_test", timeout=0.2, val_bpb=1.0) is None
        os.write(w, b'{"test": false}\n{"test": true}\n')
        assert channel.ask("ask_test", val_bpb=1.0) == {"test": False}  # one answer per question, in order
        assert channel.ask("ask_test", val_bpb=1.0) == {"test": True}
    finally:
        os.close(r)
        os.close(w)


def test_the_result_carries_the_harness_s_own_device_figures(workspace, events):
    _, tok, _ = workspace
    evaluate_bpb(Bigram(tok.get_vocab_size()), tok, 4)
    r = result_of(events)
    import resource

    assert r["device"] == "cpu"
    assert r["peak_memory_mb"] == pytest.approx(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rel=0.05)
    assert r["eval_seconds"] >= r["val_seconds"] + r["test_seconds"] > 0
