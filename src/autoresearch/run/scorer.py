"""The scorer: the process that alone holds val and test and computes the official figures.

The runner starts it beside train.py, under a sandbox of its own (no network; it may read the prepared data, it
writes nothing), and connects the two with a socket pair (harness/wire.py). train.py's process cannot read val or
test: at evaluation, evaluate_bpb asks this process for input batches, runs the model on them, and hands back the
logits through shared memory. The scorer computes the cross-entropy and the bytes itself and reports the figures
to the runner on a pipe only it holds. It runs no code of train.py's, unpickles nothing the other side sends, and
makes itself non-dumpable, so a process of the same user cannot read or write its memory.

Each split is served as its evaluation rows in an order drawn from the OS, with probe rows among them (run/probes.py):
twins and repeats of real rows, which a model that looks ahead or changes as it is evaluated answers differently
from their rows, and blind probes, rows of unscored text whose token at a cut was drawn at random, which a model
that looks ahead ranks above chance even when it replays what it answered for a prefix seen before. Such a run
gets no figure.

    python -m autoresearch.run.scorer --socket-fd N [--report-fd N --answer-fd N] [--reveal]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import select
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from autoresearch.harness import wire
from autoresearch.harness.constants import eval_rows, prepared_dir, workspace_settings
from autoresearch.harness.dataloader import TokenSplit, pack_rows
from autoresearch.run.probes import (
    BLIND_ALPHA,
    BLIND_POOL_TOKENS,
    blind_count,
    blind_probes,
    blind_u,
    fisher_p,
    mismatch,
    row_tokens,
    schedule,
)

LOGITS_BUDGET = 2**27  # logits elements per forward call: bounds evaluation memory whatever batch_size is
MIN_CALLS = 8  # calls per split at the least, whatever train.py's batch size: what the model holds at any moment
               # (SLOTS calls) is a small share of the split, and a probe is never held with its row (see schedule)
CALL_FLOOR_SECONDS = 5.0  # an answer may take this long, or CALL_FACTOR x the fastest one so far, whichever is more
CALL_FACTOR = 20.0
SIGNATURE_IDS = 16  # vocabulary entries, drawn from the OS, compared between a twin and its original
ANSWER_TIMEOUT = 60.0
SPARE_MISSES = 64  # rows in a row that repeat a document: the split holds no more unscored text


def rows_per_call(batch_size: int, T: int, vocab: int, n_rows: int) -> int:  # noqa: N803
    """Rows of every scoring call: train.py's batch size (its model has run at that size), at most what one call's
    logits may hold, and few enough that the split takes MIN_CALLS calls."""
    if batch_size < 1:
        raise ValueError(f"evaluate_bpb: batch_size must be at least 1, got {batch_size}")
    return max(1, min(batch_size, LOGITS_BUDGET // (T * vocab), math.ceil(n_rows / MIN_CALLS)))


# ---------------------------------------------------------------------------
# Scoring one call's logits
# ---------------------------------------------------------------------------


def row_stats(logits, targets: np.ndarray, ids: np.ndarray):
    """Per position of each row: nats of the target, and a signature (the log-probabilities of `ids`) that a probe
    must reproduce over its shared prefix. Log-probabilities, not logits: adding a constant to every logit changes
    nothing a model is scored on, so it must not be able to change what a probe tolerates either.
    `logits` (R, T, V) float32: numpy here, torch on a GPU. Returns numpy float64: nats (R, T), signature
    (R, T, len(ids))."""
    if isinstance(logits, np.ndarray):
        top = logits.max(axis=-1, keepdims=True)  # (R, T, 1)
        with np.errstate(over="ignore", invalid="ignore"):
            lse = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]  # (R, T)
            picked = np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]  # (R, T)
            nats = lse.astype(np.float64) - picked
            signature = logits[..., ids].astype(np.float64) - lse[..., None]
        return nats, signature
    import torch

    y = torch.as_tensor(targets, device=logits.device)
    lse = torch.logsumexp(logits, dim=-1)  # (R, T)
    picked = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)  # (R, T)
    nats = lse.double() - picked.double()
    signature = logits[..., torch.as_tensor(ids, device=logits.device)].double() - lse.double().unsqueeze(-1)
    return nats.cpu().numpy(), signature.cpu().numpy()  # small: (R, T) and (R, T, 16), not the logits


def position_logprobs(logits, row: int, position: int) -> np.ndarray:
    """The log-probabilities of every class at one position, float64 numpy (V,): compared where two rows part."""
    out = logits[row, position]
    if not isinstance(out, np.ndarray):
        return (out.double() - out.double().logsumexp(-1)).cpu().numpy()
    out = out.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        top = out.max()
        return out - (np.log(np.exp(out - top).sum()) + top)


@dataclass
class SplitScore:
    bpb: float = float("nan")
    nats: float = 0.0
    bytes: int = 0
    tokens: int = 0
    calls: int = 0
    probes: int = 0
    blind: int = 0  # blind probes judged
    blind_p: float = 1.0  # Fisher's p of their ranks: how likely a causal model is to rank them so
    seconds: float = 0.0


class Split:
    """One split's rows and its running sums, fed call by call."""

    def __init__(self, name: str, windows: np.ndarray, rows: int, token_bytes: np.ndarray, rng: random.Random,
                 ids: np.ndarray, spare: np.ndarray | None = None) -> None:
        self.name, self.windows, self.rows, self.token_bytes, self.ids = name, windows, rows, token_bytes, ids
        self.rng = rng
        n_real, t1 = windows.shape
        self.T = t1 - 1
        self.blind = [] if spare is None else blind_probes(spare, blind_count(n_real), len(token_bytes), rng)
        self.blind_u: list[float] = []
        self.plan = schedule(n_real, rows, self.T, rng, windows, n_blind=len(self.blind))
        self.calls = len(self.plan) // rows
        self.score = SplitScore(calls=self.calls)
        self.sums = np.zeros(3)  # nats, bytes, scored tokens
        self.probes_of: dict[int, list[int]] = {}  # real row -> plan indices of its probes
        for q, r in enumerate(self.plan):
            if r.probe and r.blind < 0:
                self.probes_of.setdefault(r.real, []).append(q)
        self.real_seen: dict[int, tuple[np.ndarray, dict[int, np.ndarray]]] = {}  # signature, logits by position
        self.probe_seen: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # probe -> its signature, logits at the cut
        self.max_diff = 0.0

    def inputs(self, call: int) -> tuple[np.ndarray, np.ndarray]:
        """(x (rows, T), targets (rows, T)) of call number `call`."""
        tokens = np.stack([self.blind[r.blind].tokens if r.blind >= 0 else row_tokens(r, self.windows)
                           for r in self.plan[call * self.rows : (call + 1) * self.rows]])
        return tokens[:, :-1], tokens[:, 1:]

    def take(self, call: int, logits, targets: np.ndarray) -> str:
        """Score call `call` from its logits; '' or why the run is refused."""
        nats, signature = row_stats(logits, targets, self.ids)
        for k in range(self.rows):
            q = call * self.rows + k
            row = self.plan[q]
            if not row.probe:
                nbytes = self.token_bytes[targets[k]]  # (T,)
                scored = nbytes > 0  # special tokens (no bytes) are not scored
                with np.errstate(invalid="ignore"):
                    self.sums += (float(np.where(scored, nats[k], 0.0).sum()), float(nbytes.sum()),
                                  float(scored.sum()))
                if row.real in self.probes_of:
                    cuts = {self.plan[p].shared - 1 for p in self.probes_of[row.real]}
                    self.real_seen[row.real] = (signature[k], {t: position_logprobs(logits, k, t) for t in cuts})
                    pairs = [p for p in self.probes_of[row.real] if p in self.probe_seen]
                else:
                    pairs = []
            elif row.blind >= 0:
                probe = self.blind[row.blind]
                self.blind_u.append(blind_u(position_logprobs(logits, k, probe.cut - 1), probe, self.rng))
                pairs = []
            else:
                self.probe_seen[q] = (signature[k][: row.shared], position_logprobs(logits, k, row.shared - 1))
                pairs = [q] if row.real in self.real_seen else []
            for p in pairs:
                why = self._compare(p)
                if why:
                    return why
        return ""

    def _compare(self, q: int) -> str:
        """A probe against its real row: over the shared prefix, the same outputs, or the run is refused."""
        probe = self.plan[q]
        signature, cut = self.probe_seen.pop(q)
        real_signature, real_cuts = self.real_seen[probe.real]
        diff = max(mismatch(real_signature[: probe.shared], signature), mismatch(real_cuts[probe.shared - 1], cut))
        self.score.probes += 1
        self.max_diff = max(self.max_diff, diff)
        if diff <= 1.0:
            return ""
        what = "a repeat of a row" if probe.shared == self.T else f"a row sharing its first {probe.shared} tokens"
        return (f"the model's outputs for the same tokens differ by {diff:.3g} times the tolerance between a row "
                f"and {what}: it looks ahead at later tokens, or it changes while it is evaluated")

    def blind_verdict(self) -> str:
        """After the last call: '' or why the blind probes refuse the run (a model that looks ahead, replaying or
        not, ranks the tokens drawn for them above what a causal model does)."""
        s = self.score
        s.blind, s.blind_p = len(self.blind_u), fisher_p(self.blind_u)
        if s.blind_p >= BLIND_ALPHA:
            return ""
        return (f"the model ranks the tokens drawn at random for {s.blind} rows of unscored text above what a model "
                f"that reads only earlier tokens can (p = {s.blind_p:.2g}): it looks ahead at later tokens")

    def finish(self, seconds: float) -> SplitScore:
        nats, nbytes, tokens = self.sums.tolist()
        s = self.score
        s.nats, s.bytes, s.tokens, s.seconds = nats, int(nbytes), int(tokens), seconds
        s.bpb = nats / (math.log(2) * nbytes) if nbytes else float("nan")
        return s


def load_windows(split: str, T: int, spare_rows: int = 0, directory: Path | None = None,  # noqa: N803
                 n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation rows of `split` as prepare fixed them, (n_rows, T + 1) int64, and up to `spare_rows` rows
    that the same packing yields after them, each of documents no other row holds (text that is never scored;
    fewer, or none, in a split that holds little more than the evaluation). The workspace's prepared data, or
    `directory` and its `n` evaluation rows."""
    n = eval_rows(split) if n is None else n
    data = TokenSplit.open(directory or prepared_dir(), split)
    out: list[np.ndarray] = []
    seen: set[int] = set()
    misses = 0
    for layout, _ in pack_rows(data.lengths, T + 1, groups=data.groups):
        docs = [doc for doc, _ in layout]
        if len(out) == n + spare_rows or misses == SPARE_MISSES:
            break
        if len(out) >= n and seen.intersection(docs):  # the packing wrapped round: a document already served
            misses += 1
            continue
        seen.update(docs)
        misses = 0
        out.append(np.concatenate([data.tokens[data.offsets[d] : data.offsets[d] + take] for d, take in layout])
                   .astype(np.int64))
    rows = np.stack(out)
    return rows[:n], rows[n:]


def spare_rows_for(n_real: int, T: int) -> int:  # noqa: N803
    """Rows of unscored text the blind probes of a split of `n_real` rows draw on: a start each, and a pool."""
    count = blind_count(n_real)
    return count + max(count, BLIND_POOL_TOKENS // (T + 1))


# ---------------------------------------------------------------------------
# The process
# ---------------------------------------------------------------------------


class Scorer:
    def __init__(self, sock, report_fd: int | None, answer_fd: int | None, reveal: bool) -> None:
        from autoresearch.harness.tokenizer import Tokenizer

        self.sock, self.report_fd, self.answer_fd, self.reveal = sock, report_fd, answer_fd, reveal
        self.settings = workspace_settings()
        self.T = self.settings.max_seq_len
        self.token_bytes = np.asarray(Tokenizer.load().token_bytes, dtype=np.int64)
        self.V = len(self.token_bytes)
        self.windows, self.spare = {}, {}
        for s in ("val", "test"):
            self.windows[s], self.spare[s] = load_windows(s, self.T, spare_rows_for(eval_rows(s), self.T))
        self.rng = random.Random(os.urandom(32))
        self.first_answer_limit: float | None = None  # set by main() from the runner's --first-answer-limit
        self.first_answer: float | None = None  # seconds the first answer took (it includes compiling)
        self.fastest: float | None = None  # the fastest answer after the first
        self.ids = np.array(sorted(self.rng.sample(range(self.V), min(SIGNATURE_IDS, self.V))))

    def report(self, event: str, **data) -> None:
        if self.report_fd is None:
            return
        try:
            os.write(self.report_fd, (json.dumps({"event": event, **data}, allow_nan=True) + "\n").encode())
        except OSError:
            pass

    def wants_test(self, val_bpb: float) -> bool:
        """The runner's call (it asks its keep policy); without a runner, always."""
        if self.report_fd is None or self.answer_fd is None:
            return True
        self.report("ask_test", val_bpb=val_bpb)
        line = b""
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([self.answer_fd], [], [], ANSWER_TIMEOUT)
            chunk = os.read(self.answer_fd, 1) if ready else b""
            if not chunk:
                return True
            line += chunk
        try:
            return json.loads(line).get("test") is not False
        except (ValueError, AttributeError):
            return True

    def run(self) -> int:
        hello = wire.receive(self.sock)
        t0 = time.monotonic()
        if hello["op"] != "hello":
            raise wire.WireError(f"expected hello, got {hello['op']}")
        self.report("connected", at=time.monotonic())  # before any row is served
        batch_size = hello.get("batch_size")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            return self.refuse("protocol", f"evaluate_bpb: batch_size must be a positive int, got {batch_size!r}")
        n_max = max(len(w) for w in self.windows.values())
        rows = rows_per_call(batch_size, self.T, self.V, n_max)
        transport = self.connect(rows, str(hello.get("device", "cpu")))
        scores: dict[str, SplitScore] = {}
        max_diff = 0.0
        for name in ("val", "test"):
            if name == "test" and not self.wants_test(scores["val"].bpb):
                continue
            split = Split(name, self.windows[name], rows, self.token_bytes, self.rng, self.ids, self.spare[name])
            why = self.stream(split, transport)
            if why and why[0] == "model":  # the model failed: train.py's process raises, the run has no figure
                self.report("incomplete", reason=why[1])
                return 0
            if why:
                return self.refuse(*why)
            scores[name] = split.score
            max_diff = max(max_diff, split.max_diff)
        payload = {f"{k}_{f}": v for k, s in scores.items() for f, v in asdict(s).items()}
        payload.update(splits=list(scores), rows_per_call=rows, eval_seconds=time.monotonic() - t0,
                       transport=transport.kind,
                       probe={"max_diff": max_diff, "probes": sum(s.probes for s in scores.values()),
                              "blind": sum(s.blind for s in scores.values()),
                              "blind_p": min(s.blind_p for s in scores.values())},
                       first_answer_seconds=self.first_answer, fastest_answer_seconds=self.fastest)
        self.report("result", **payload)
        end = {"val_bpb": scores["val"].bpb}
        if self.reveal:  # started by train.py itself (run by hand): nothing here is secret from it anyway
            end["result"] = payload
        wire.send(self.sock, "end", **end)
        return 0

    def refuse(self, kind: str, reason: str) -> int:
        self.report("violation", kind=kind, reason=reason)
        try:
            wire.send(self.sock, "refused", reason=reason)
        except wire.WireError:
            pass
        return 0

    def connect(self, rows: int, device: str):
        from autoresearch.run.transport import open_transport

        return open_transport(self.sock, rows, self.T, self.V, device)

    def stream(self, split: Split, transport) -> tuple[str, str] | None:
        """Serve every call of `split`, two in flight; None, or (kind, reason) when the run is refused."""
        t0 = time.monotonic()
        pending: dict[int, tuple[np.ndarray, float]] = {}  # call -> its targets, when it was sent
        sent = 0
        answered = 0.0
        for call in range(split.calls):
            while sent < split.calls and sent < call + wire.SLOTS:
                x, y = split.inputs(sent)
                transport.put_inputs(sent % wire.SLOTS, x)
                wire.send(self.sock, "batch", slot=sent % wire.SLOTS, seq=sent)
                pending[sent] = (y, time.monotonic())
                sent += 1
            since = max(pending[call][1], answered)  # the model works on one call at a time
            limit = self.call_limit()
            wait = None if limit is None else max(0.0, since + limit - time.monotonic())
            try:
                message = wire.receive(self.sock, timeout=wait)
            except wire.WireTimeout:
                return "slow", self.too_slow(limit)
            answered = time.monotonic()
            self.timed(answered - since)
            if message["op"] == "error":
                # The model's message stays in scorer.log: train.py's process holds evaluation rows by now, and
                # what it says could carry them into the records an agent reads.
                wire.log(f"the model failed: {str(message.get('message'))[:2000]}")
                return "model", "the model raised an exception during the evaluation (its message is in scorer.log)"
            if message["op"] != "done" or message.get("seq") != call:
                return "protocol", (f"the evaluation client answered {message['op']} {message.get('seq')}, "
                                    f"not done {call}")
            why = split.take(call, transport.take_logits(call % wire.SLOTS), pending.pop(call)[0])
            if why:
                return "non_causal", why
        if why := split.blind_verdict():
            return "non_causal", why
        split.finish(time.monotonic() - t0)
        return None


    def call_limit(self) -> float | None:
        """How long the model may take for the next answer: the first, as long as the runner allows (from the
        workspace's human-written runs: their first answers include the compilation for evaluation); the others,
        CALL_FACTOR x the fastest so far, at least CALL_FLOOR_SECONDS. Time a model takes beyond that is time it
        could train in, on the rows it holds."""
        if self.first_answer is None:
            return self.first_answer_limit
        return max(CALL_FLOOR_SECONDS, CALL_FACTOR * (self.fastest or self.first_answer))

    def timed(self, seconds: float) -> None:
        if self.first_answer is None:
            self.first_answer = seconds
        else:
            self.fastest = seconds if self.fastest is None else min(self.fastest, seconds)

    def too_slow(self, limit: float) -> str:
        which = "first" if self.first_answer is None else "next"
        return (f"the model took over {limit:.1f}s to answer the {which} evaluation call (this workspace's runs "
                f"answer in {self.fastest or self.first_answer_limit or 0:.2f}s or so): time spent inside the "
                "evaluation could be spent training on the rows it holds")


def _non_dumpable() -> None:
    """No ptrace, no /proc/<pid>/mem for processes of the same user (train.py's among them)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


def main(argv: list[str] | None = None) -> int:
    import socket

    parser = argparse.ArgumentParser(prog="python -m autoresearch.run.scorer")
    parser.add_argument("--socket-fd", type=int, required=True)
    parser.add_argument("--report-fd", type=int)
    parser.add_argument("--answer-fd", type=int)
    parser.add_argument("--reveal", action="store_true")
    parser.add_argument("--first-answer-limit", type=float, help="seconds the model may take for its first answer")
    args = parser.parse_args(argv)
    _non_dumpable()
    sock = socket.socket(fileno=args.socket_fd)
    report = args.report_fd
    try:
        scorer = Scorer(sock, report, args.answer_fd, args.reveal)
        scorer.first_answer_limit = args.first_answer_limit
    except Exception as e:  # noqa: BLE001 - the runner needs the reason, the experiment a closed socket
        wire.log(f"cannot start: {type(e).__name__}: {e}")
        if report is not None:
            line = json.dumps({"event": "scorer_failed", "reason": f"{type(e).__name__}: {e}"}) + "\n"
            os.write(report, line.encode())
        return 1
    try:
        return scorer.run()
    except wire.WireError as e:
        wire.log(f"the evaluation ended without a figure: {e}")
        scorer.report("incomplete", reason=str(e))
        return 0


if __name__ == "__main__":
    sys.exit(main())
