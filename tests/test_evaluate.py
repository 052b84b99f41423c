"""evaluate_bpb and the scorer process against a hand computation on a tiny bigram model.

Run without a runner, evaluate_bpb starts a scorer of its own, which tells it every figure (score()["result"]); the
runner's set-up (a scorer it starts, which asks it about the test split) is exercised with `runner_scorer`.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from reference_loader import document_batches, reference_rows

from autoresearch.harness import channel, constants, evaluate, wire
from autoresearch.harness.dataloader import TokenSplit, make_dataloader
from autoresearch.harness.evaluate import RefusedToScore, evaluate_bpb
from autoresearch.harness.tokenizer import Tokenizer
from autoresearch.run import probes, scorer
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


def scored(model, batch_size: int) -> dict:
    """Every figure of an evaluation by a scorer the client started itself."""
    return evaluate.score(model, batch_size)["result"]


def make_workspace(tmp_path, monkeypatch, splits: dict[str, list[str]]):
    settings = Settings(profile="cpu", max_seq_len=16, eval_tokens=80, vocab_size=300)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "autoresearch.toml").write_text(settings.to_toml())
    cache = tmp_path / "cache"
    out = constants.prepared_dir(settings, cache)
    out.mkdir(parents=True)
    tok = Tokenizer.train(TEXTS, 300)
    tok.save(out)
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


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """Val and test of 40 documents each: the evaluation's 5 rows use them all (no text for blind probes)."""
    return make_workspace(tmp_path, monkeypatch, {"val": TEXTS[:40], "test": TEXTS[40:]})


@pytest.fixture
def roomy_workspace(tmp_path, monkeypatch):
    """The same evaluation, in splits of 400 documents: the rows it does not score make the blind probes (words in
    a random order, so that a token does not settle the next: see test_a_model_that_replays_...)."""
    import random

    rng = random.Random(0)
    words = "the red blue fox owl ran sat miles days a green grey and of to in".split()
    more = [" ".join(rng.choice(words) for _ in range(12 + i % 20)) for i in range(720)]
    return make_workspace(tmp_path, monkeypatch, {"val": TEXTS[:40] + more[:360], "test": TEXTS[40:] + more[360:720]})


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


def test_matches_hand_computation_on_both_splits(workspace, events):
    settings, tok, splits = workspace
    model = Bigram(tok.get_vocab_size())
    r = scored(model, batch_size=3)
    assert r["val_bpb"] == pytest.approx(hand_bpb(model, tok, splits["val"], settings), rel=1e-6)
    assert r["test_bpb"] == pytest.approx(hand_bpb(model, tok, splits["test"], settings), rel=1e-6)
    assert r["val_tokens"] > 0 and r["val_bytes"] > r["val_tokens"]
    assert r["transport"] == "shm" and r["probe"]["probes"] >= 2 * probes.MIN_PROBES


def test_batch_size_does_not_change_the_figure(workspace):
    _, tok, _ = workspace
    model = Bigram(tok.get_vocab_size())
    assert evaluate_bpb(model, tok, 1) == pytest.approx(evaluate_bpb(model, tok, 5), rel=1e-9)


def test_padded_vocabulary_logits_are_cut(workspace):
    settings, tok, splits = workspace
    model = Bigram(tok.get_vocab_size(), extra=12)
    assert evaluate_bpb(model, tok, 4) == pytest.approx(hand_bpb(model, tok, splits["val"], settings), rel=1e-6)


def test_uniform_model_costs_log2_vocab_bits_per_scored_token(workspace):
    _, tok, _ = workspace

    class Uniform(torch.nn.Module):
        def forward(self, idx):
            return torch.zeros(*idx.shape, tok.get_vocab_size())

    r = scored(Uniform(), 4)
    assert r["val_bpb"] == pytest.approx(math.log2(tok.get_vocab_size()) * r["val_tokens"] / r["val_bytes"], rel=1e-6)


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


class Peek(Bigram):
    """Predicts token t+1 from token t+1 itself, at the positions in `where` (all by default): impossible."""

    where = None

    def forward(self, idx):
        out = self.table[idx].clone()
        cheat = 50.0 * torch.nn.functional.one_hot(torch.roll(idx, -1, dims=1), self.table.size(1)).float()
        mask = torch.zeros(idx.size(1), 1, dtype=torch.bool)
        mask[self.where if self.where is not None else slice(None)] = True
        return torch.where(mask, cheat, out)


def test_a_model_that_looks_ahead_gets_no_score(workspace, events):
    _, tok, _ = workspace
    with pytest.raises(RefusedToScore, match="looks ahead at later tokens"):
        evaluate_bpb(Peek(tok.get_vocab_size()), tok, 4)
    sent = events()
    assert [e["event"] for e in sent] == ["eval_start", "eval_done", "violation"]
    assert sent[-1]["kind"] == "scorer"


def test_a_causal_model_passes_the_probes_exactly(workspace):
    _, tok, _ = workspace
    probe = scored(Bigram(tok.get_vocab_size()), 4)["probe"]
    assert probe["max_diff"] == 0.0 and probe["probes"] > 0


def test_train_py_may_not_load_the_validation_split(workspace, events):
    _, tok, _ = workspace
    for split in ("val", "test"):
        with pytest.raises(PermissionError, match="train' split only"):
            make_dataloader(tok, 2, 16, split, device="cpu")
    assert [e["kind"] for e in events()] == ["split", "split"]


def test_a_model_that_learns_from_the_evaluation_gets_no_score(workspace, events):
    _, tok, _ = workspace

    class Learner(Bigram):  # test-time training: sharpens its table toward what it saw
        def forward(self, idx):
            out = self.table[idx].clone()
            with torch.no_grad():
                self.table[idx[:, :-1], idx[:, 1:]] += 1.0
            return out

    # Refused by the scorer (a repeated prefix scores differently later) or, failing that, by the client's check
    # of the weights (early feedback: the scorer's probes are what count).
    with pytest.raises(RefusedToScore, match="changes while it is evaluated|parameters or buffers changed"):
        evaluate_bpb(Learner(tok.get_vocab_size()), tok, 2)


def test_a_second_evaluation_is_refused(workspace, events):
    _, tok, _ = workspace
    evaluate_bpb(Bigram(tok.get_vocab_size()), tok, 2)
    with pytest.raises(RefusedToScore, match="second time"):
        evaluate_bpb(Bigram(tok.get_vocab_size()), tok, 2)


class Recording(Bigram):
    """Records the shape of every call it gets."""

    def __init__(self, vocab: int) -> None:
        super().__init__(vocab)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, idx):
        self.shapes.append(tuple(idx.shape))
        return super().forward(idx)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_every_call_has_one_shape_and_the_probes_are_not_scored(workspace, batch_size):
    settings, tok, splits = workspace
    n_rows = settings.eval_tokens // settings.max_seq_len  # 5
    model = Recording(tok.get_vocab_size())
    r = scored(model, batch_size)
    rows = scorer.rows_per_call(batch_size, settings.max_seq_len, tok.get_vocab_size(), n_rows)
    assert rows == 1  # 5 rows: eight calls at the least, whatever the batch size
    assert set(model.shapes) == {(rows, settings.max_seq_len)}
    calls = math.ceil((n_rows + probes.MIN_PROBES) / rows)
    assert r["val_calls"] == r["test_calls"] == calls and r["rows_per_call"] == rows
    assert len(model.shapes) == 2 * calls
    assert r["val_bpb"] == pytest.approx(hand_bpb(model, tok, splits["val"], settings), rel=1e-6)


def test_the_logits_budget_caps_the_rows_of_a_call(monkeypatch):
    assert scorer.rows_per_call(16, 256, 2048, 512) == 16  # train.py's batch size
    assert scorer.rows_per_call(16, 256, 2048, 64) == 8  # at least MIN_CALLS calls per split
    assert scorer.rows_per_call(16, 256, 2048, 5) == 1
    monkeypatch.setattr(scorer, "LOGITS_BUDGET", 3 * 256 * 2048 + 1)
    assert scorer.rows_per_call(16, 256, 2048, 512) == 3  # as many rows as three rows' logits
    with pytest.raises(ValueError, match="at least 1"):
        scorer.rows_per_call(0, 256, 2048, 512)


# -- the runner's set-up: a scorer it started, the test split on its word ------------------------------------------


@pytest.fixture
def runner_scorer(monkeypatch):
    """Start a scorer as the runner does: its report pipe read here, its questions answered with `answers`."""
    import socket
    import subprocess
    import sys

    started = []

    def start(answer: bytes | None):
        mine, theirs = socket.socketpair()
        report_r, report_w = os.pipe()
        answer_r, answer_w = os.pipe()
        if answer is not None:
            os.write(answer_w, answer)
        proc = subprocess.Popen([sys.executable, "-m", "autoresearch.run.scorer", "--socket-fd", str(theirs.fileno()),
                                 "--report-fd", str(report_w), "--answer-fd", str(answer_r)],
                                pass_fds=(theirs.fileno(), report_w, answer_r))
        theirs.close()
        os.close(report_w)
        os.close(answer_r)
        monkeypatch.setattr(evaluate, "_scorer_fd", os.dup(mine.fileno()))
        mine.close()
        started.append((proc, report_r, answer_w))

        def report() -> list[dict]:
            proc.wait(timeout=60)
            with os.fdopen(report_r, "rb") as f:
                return [json.loads(line) for line in f]

        report.proc = proc  # the scorer's process, for a test that waits on it
        return report

    yield start
    for proc, _, answer_w in started:
        os.close(answer_w)
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize(("answer", "tested"), [(b'{"test": false}\n', False), (b'{"test": true}\n', True),
                                                (b"garbage\n", True)])
def test_the_test_split_is_scored_when_the_runner_wants_it(workspace, events, runner_scorer, answer, tested):
    _, tok, _ = workspace
    report = runner_scorer(answer)
    end = evaluate.score(Bigram(tok.get_vocab_size()), 4)
    assert "result" not in end  # the runner's scorer tells train.py its val figure, and nothing else
    sent = report()
    assert [e["event"] for e in sent] == ["connected", "ask_test", "result"]
    assert sent[1]["val_bpb"] == end["val_bpb"] == sent[2]["val_bpb"]  # asked once, about the official figure
    assert ("test_bpb" in sent[2]) is tested
    assert sent[2]["splits"] == (["val", "test"] if tested else ["val"])


def test_a_refusal_reaches_the_runner(workspace, events, runner_scorer):
    _, tok, _ = workspace
    report = runner_scorer(b'{"test": true}\n')
    with pytest.raises(RefusedToScore):
        evaluate.score(Peek(tok.get_vocab_size()), 4)
    sent = report()
    assert sent[-1]["event"] == "violation" and "looks ahead at later tokens" in sent[-1]["reason"]
    assert not [e for e in sent if e["event"] == "result"]


def test_the_client_reports_its_device_figures(workspace, events):
    _, tok, _ = workspace
    evaluate_bpb(Bigram(tok.get_vocab_size()), tok, 4)
    done = next(e for e in events() if e["event"] == "eval_done")
    import resource

    assert done["device"] == "cpu"
    assert done["peak_memory_mb"] == pytest.approx(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rel=0.05)


# -- what is served ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_real", "rows"), [(5, 1), (5, 3), (64, 8), (1, 4), (300, 7)])
def test_the_schedule_serves_every_row_once_with_probes_in_other_calls(n_real, rows):
    import random

    T = 16  # noqa: N806
    plan = probes.schedule(n_real, rows, T, random.Random(1))
    real = [r.real for r in plan if not r.probe]
    served = [r for r in plan if r.probe]
    assert sorted(real) == list(range(n_real)) and len(plan) % rows == 0
    assert len(served) >= probes.MIN_PROBES and len(served) >= 0.02 * n_real
    if n_real >= 2:
        assert sum(p.shared < T for p in served) >= probes.MIN_PROBES // 2  # twins that part from their row
    call = {r.real: i // rows for i, r in enumerate(plan) if not r.probe}
    calls = len(plan) // rows
    if calls >= 2 * wire.SLOTS + 2 and n_real >= 4 * rows:
        near = sum(1 for i, p in enumerate(plan) if p.probe and abs(i // rows - call[p.real]) < wire.SLOTS)
        assert near <= 2  # a probe is held with its row only when no place far enough was left
    assert plan != probes.schedule(n_real, rows, T, random.Random(2)) or n_real == 1


def test_a_model_that_looks_ahead_at_a_few_positions_is_caught_by_enough_probes():
    """The probes' power: a look-ahead at a share f of positions escapes each twin with chance about 1 - f."""
    import random

    T, V, n_real, rows = 32, 40, 400, 16  # noqa: N806
    rng = np.random.default_rng(0)
    windows = rng.integers(1, V, size=(n_real, T + 1))
    caught = 0
    for trial in range(20):
        split = scorer.Split("val", windows, rows, np.ones(V, dtype=np.int64), random.Random(trial), np.arange(8))
        for call in range(split.calls):
            x, y = split.inputs(call)
            logits = np.zeros((rows, T, V), dtype=np.float32)
            logits[:, 7, :] = 0.0
            logits[np.arange(rows), 7, x[:, 8]] = 5.0  # looks at the next token at position 7 of 32
            if split.take(call, logits, y):
                caught += 1
                break
    assert caught >= 2  # 1 - (31/32)^n per split, n = the twins cutting anywhere: about 20-30% each


def test_probe_comparison_is_relative_to_each_value_and_flags_nan_mismatch():
    a = np.array([-1.0, np.nan, -3.0])
    assert probes.mismatch(a, a.copy()) == 0.0
    assert probes.mismatch(a, np.array([-1.0, -2.0, -3.0])) == float("inf")
    assert probes.mismatch(a, np.array([-1.0005, np.nan, -3.0])) == pytest.approx(0.5, rel=1e-3)
    assert probes.mismatch(np.array([-1000.0]), np.array([-1000.5])) < 1 < probes.mismatch(a[:1], a[:1] - 0.01)


def test_shifting_every_logit_cannot_widen_the_probes_tolerance(workspace):
    """A shift of all logits changes no score; a model that adds one to hide a look-ahead in the noise is caught."""
    _, tok, _ = workspace

    class ShiftedPeek(Peek):
        def forward(self, idx):
            out = self.table[idx] + 1e4
            nxt = torch.nn.functional.one_hot(torch.roll(idx, -1, dims=1), self.table.size(1)).float()
            return out + 20.0 * nxt

    with pytest.raises(RefusedToScore, match="looks ahead at later tokens"):
        evaluate_bpb(ShiftedPeek(tok.get_vocab_size(), extra=1), tok, 4)


# -- the transport: CUDA IPC when both sides can open it, host memory otherwise --------------------------------------


def _negotiate(scorer_device: str) -> tuple[str, str]:
    """(the scorer's transport, the client's) after the layout exchange over a socket pair."""
    import socket
    import threading

    from autoresearch.run import transport

    ours, theirs = socket.socketpair()
    got = {}
    t = threading.Thread(target=lambda: got.update(t=transport.open_transport(ours, 2, 4, 8, scorer_device)))
    t.start()
    try:
        slots = evaluate._open_slots(theirs, torch.device("cpu"))
    finally:
        t.join(timeout=30)
        ours.close()
        theirs.close()
    return got["t"].kind, slots.kind


def test_without_cuda_both_sides_fall_back_to_host_memory():
    assert _negotiate("cuda:0") == ("shm", "shm")
    assert _negotiate("cpu") == ("shm", "shm")


def test_a_cuda_layout_the_client_cannot_open_falls_back_to_host_memory(monkeypatch):
    """The scorer shares device memory; train.py's process cannot open the handle (here: no CUDA at all): both say
    so and use host memory, and the scorer's result names the transport."""
    from autoresearch.harness import wire
    from autoresearch.run import transport

    class Shared:
        kind = "cuda-ipc"

        def __init__(self, sock, rows, T, V, device):  # noqa: N803
            wire.send(sock, "layout", rows=rows, T=T, V=V, slots=wire.SLOTS, transport=self.kind,
                      cuda={"handle": "00" * 64, "device": device})

    monkeypatch.setattr(transport, "CudaTransport", Shared)
    assert _negotiate("cuda:0") == ("shm", "shm")


@pytest.mark.slow
def test_a_model_that_dawdles_over_an_answer_is_refused(workspace, runner_scorer):
    """Time inside the evaluation is time a model could train in, on the rows it holds: after the first answer,
    each may take CALL_FACTOR x the fastest (at least CALL_FLOOR_SECONDS)."""
    _, tok, _ = workspace
    import time

    class Slow(Bigram):
        calls = 0

        def forward(self, idx):
            self.calls += 1
            if self.calls == 6:  # trains on what it was shown, say: past the floor, until the scorer gives up
                deadline = time.monotonic() + scorer.CALL_FLOOR_SECONDS + 3
                while time.monotonic() < deadline and report.proc.poll() is None:
                    time.sleep(0.05)
            return super().forward(idx)

    report = runner_scorer(b'{"test": true}\n')
    with pytest.raises((RefusedToScore, RuntimeError)):
        evaluate.score(Slow(tok.get_vocab_size()), 4)
    sent = report()
    assert sent[-1]["event"] == "violation" and sent[-1]["kind"] == "slow", sent[-1]


# -- blind probes: unscored text, a token drawn at random there, and the rank the model gives it --------------------


def _text(n: int, T: int, V: int, seed: int) -> np.ndarray:  # noqa: N803
    """(n, T + 1) rows of random tokens 1..V-1: stands in for evaluation rows or for the unscored text."""
    return np.random.default_rng(seed).integers(1, V, size=(n, T + 1))


def test_a_blind_probe_is_unscored_text_with_a_token_drawn_at_its_cut():
    import random

    T, V = 32, 20  # noqa: N806
    spare = _text(200, T, V, 0)
    blind = probes.blind_probes(spare, 40, V, random.Random(0))
    assert len(blind) == 40
    kinds = []
    for b in blind:
        assert b.tokens.shape == (T + 1,) and 1 <= b.cut < T
        assert (spare[:, : b.cut] == b.tokens[: b.cut]).all(axis=1).any(), "the start of an unscored row"
        uniform = len(b.ids) == V and np.allclose(b.weights, 1 / V)
        kinds.append(uniform)
        # after the drawn token, the text that follows a place of another row (for a plausible token: the text from
        # that token on, after the same token as the start's last)
        tail = b.tokens[b.cut + 1 :] if uniform else b.tokens[b.cut :]
        first = b.cut + 1 if uniform else b.cut
        found = [(j, p) for j in range(len(spare)) for p in range(1, b.cut + 1)
                 if (spare[j, p + first - b.cut : p + T + 1 - b.cut] == tail).all()
                 and (uniform or spare[j, p - 1] == b.tokens[b.cut - 1])]
        assert found
        assert b.tokens[b.cut] in b.ids and b.weights.sum() == pytest.approx(1.0) and (b.weights > 0).all()
    assert 10 < sum(kinds) < 30, "both kinds, about half each"
    assert len({b.tokens[b.cut + 1 :].tobytes() for b in blind}) == len(blind), "no text is served twice"


def _causal(V: int, seed: int, noise: float = 0.0):  # noqa: N803
    """A causal stand-in for a model: log-probabilities from the last token (a bigram table), plus noise that owes
    nothing to what follows."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(V, V)) * 3

    def logprobs(start: np.ndarray) -> np.ndarray:
        out = table[start[-1]] + noise * rng.normal(size=V)
        return out - np.log(np.exp(out - out.max()).sum()) - out.max()

    return logprobs


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_a_causal_model_ranks_the_drawn_token_like_a_random_draw(noise):
    """u is exactly uniform for any model whose output at the cut does not depend on the drawn token (deterministic
    or not), so the test refuses an honest run with probability BLIND_ALPHA. Seeds are fixed: this cannot flake."""
    import random

    T, V = 32, 20  # noqa: N806
    us, ps = [], []
    for seed in range(50):
        rng = random.Random(seed)
        model = _causal(V, seed, noise)
        batch = [probes.blind_u(model(b.tokens[: b.cut]), b, rng)
                 for b in probes.blind_probes(_text(120, T, V, seed), 40, V, rng)]
        us += batch
        ps.append(probes.fisher_p(batch))
    us = np.sort(us)
    ks = np.abs(np.arange(1, len(us) + 1) / len(us) - us).max()
    assert ks < 1.63 / math.sqrt(len(us)), f"u is not uniform: KS distance {ks:.3f} over {len(us)} probes"
    assert min(ps) > 1e-5 and all(0 < u <= 1 for u in us)  # p is uniform too: 50 draws, none near BLIND_ALPHA


def test_fisher_p_is_the_chi_squared_tail():
    assert probes.fisher_p([]) == 1.0 and probes.fisher_p([1.0, 1.0]) == 1.0
    assert probes.fisher_p([0.3]) == pytest.approx(0.3)  # one probe: p is its u
    h = -math.log(0.2 * 0.5)
    assert probes.fisher_p([0.2, 0.5]) == pytest.approx(math.exp(-h) * (1 + h))
    assert probes.fisher_p([1e-300] * 400) < 1e-100  # no overflow at large statistics


class Replaying:
    """The replay cache (bench/attacks/replay_cache.py) over numpy rows: the first time a prefix is seen, the token
    that follows it in the row; every later time, that same token, mixed into a causal model's output."""

    def __init__(self, V: int, mix: float, seed: int = 0) -> None:  # noqa: N803
        self.table = np.random.default_rng(seed).normal(size=(V, V)) * 3
        self.mix, self.next_of = mix, {}

    def __call__(self, x: np.ndarray) -> np.ndarray:  # (rows, T) -> logits (rows, T, V)
        logits = self.table[x]
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        for r in range(x.shape[0]):
            for t in range(x.shape[1]):
                nxt = x[r, t + 1] if t + 1 < x.shape[1] else -1
                guess = self.next_of.setdefault(tuple(x[r, : t + 1]), nxt)
                if guess >= 0:
                    p = (1 - self.mix) * np.exp(logp[r, t])
                    p[guess] += self.mix
                    logp[r, t] = np.log(p)
        return logp.astype(np.float32)


def _evaluate(model, windows, spare, rows, rng) -> str:
    split = scorer.Split("val", windows, rows, np.ones(windows.max() + 1, dtype=np.int64), rng, np.arange(8), spare)
    for call in range(split.calls):
        x, y = split.inputs(call)
        if why := split.take(call, model(x), y):
            return "twins: " + why
    return split.blind_verdict()


def test_a_model_that_replays_what_followed_a_prefix_passes_the_twins_but_not_the_blind_probes():
    """The red team's replay cache: every twin and repeat agrees with its row (a prefix seen again gets the answer it
    got the first time), so without unscored text it is scored; the blind probes' starts were never served before,
    so it looks ahead at them, and ranks the drawn tokens first."""
    import random

    T, V, rows = 32, 40, 8  # noqa: N806
    for seed in range(5):
        windows, spare = _text(64, T, V, seed), _text(96, T, V, 100 + seed)
        assert _evaluate(Replaying(V, 0.15, seed), windows, None, rows, random.Random(seed)) == ""
        why = _evaluate(Replaying(V, 0.15, seed), windows, spare, rows, random.Random(seed))
        assert why.startswith("the model ranks the tokens drawn at random") and "looks ahead" in why, why
        assert _evaluate(lambda x: Replaying(V, 0.0, seed)(x), windows, spare, rows, random.Random(seed)) == ""


@pytest.mark.slow
def test_the_scorer_refuses_the_replay_cache_and_scores_a_causal_model_with_blind_probes(roomy_workspace):
    from attacks import replay_cache

    _, tok, _ = roomy_workspace
    honest = scored(Bigram(tok.get_vocab_size()), 4)
    assert honest["val_blind"] == honest["test_blind"] == probes.MIN_BLIND  # 5 rows want the minimum: all there
    assert honest["probe"]["blind_p"] >= probes.BLIND_ALPHA
    space = {"torch": torch, "math": math, "REPLAY_MIX": replay_cache.MIX}
    exec(replay_cache.REPLAY, space)

    class Replay(Bigram):
        def __init__(self, vocab: int) -> None:
            super().__init__(vocab)
            self.replay = space["Replay"]()

        def forward(self, idx):
            return self.replay(idx, self.table[idx])

    with pytest.raises(RefusedToScore, match="ranks the tokens drawn at random .* looks ahead"):
        evaluate_bpb(Replay(tok.get_vocab_size()), tok, 4)
