"""The blind probes' power: how often they refuse a model that looks ahead (replaying or not), and an honest one.

A blind probe (src/autoresearch/run/probes.py) is a row of the split's unscored text whose token at a cut was drawn
at random; the scorer judges the model's output at the position before the cut. A replaying model has never seen
the probe's start, so there it gives its first-sight answer: a look-ahead. This bench builds the blind probes
exactly as the scorer does, from a prepared workspace's val split, and gives them to a stand-in model: a bigram
model of the training split (add-one counts), which is about as sharp as the template after a short budget. The
cheater mixes the next token into that model's distribution with weight MIX at a share F of positions (chosen by
content, as bench/attacks/peek_sparse_few_probes.py does). It prints, per (MIX, F), the share of splits refused and
the median p, over many draws; F = 0 is the honest model. It also prints how long building the probes takes.

    python bench/blind_power.py [--profile cpu] [--draws 200] [--probes N] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import numpy as np

from autoresearch.data.prepare import prepare
from autoresearch.harness import constants
from autoresearch.harness.dataloader import TokenSplit
from autoresearch.run import probes, scorer
from autoresearch.settings import Settings, cache_dir

MIXES = (0.02, 0.05, 0.15, 0.6)
SHARES = (0.0, 0.1, 0.25, 0.5, 1.0)


def bigram(train: np.ndarray, V: int) -> np.ndarray:  # noqa: N803
    """(V, V) log-probabilities of the next token given the last, from the training split (add-one)."""
    counts = np.ones((V, V))
    np.add.at(counts, (train[:-1], train[1:]), 1.0)
    return np.log(counts / counts.sum(1, keepdims=True))


def draw(blind: list[probes.Blind], table: np.ndarray, mix: float, share: float, rng: random.Random) -> float:
    """Fisher's p of one split's blind probes answered by the bigram model, looking ahead as told."""
    us = []
    for b in blind:
        logp = table[b.tokens[b.cut - 1]].copy()  # (V,): what the model says before the cut
        peeked = (int(b.tokens[b.cut - 1]) * 7919 + b.cut * 104729) % 1000 < share * 1000
        if peeked and mix > 0:
            p = (1 - mix) * np.exp(logp)
            p[b.tokens[b.cut]] += mix
            logp = np.log(p)
        us.append(probes.blind_u(logp, b, rng))
    return probes.fisher_p(us)


def gain(rows: np.ndarray, table: np.ndarray, token_bytes: np.ndarray, mix: float, share: float) -> tuple[float, float]:
    """(honest bpb, bpb looking ahead as told) of the stand-in model on the evaluation rows."""
    x, y = rows[:, :-1].ravel(), rows[:, 1:].ravel()
    nbytes = token_bytes[y]
    logp = table[x, y]
    pos = np.tile(np.arange(1, rows.shape[1]), rows.shape[0])
    peeked = (x * 7919 + pos * 104729) % 1000 < share * 1000
    cheat = np.where(peeked, np.log((1 - mix) * np.exp(logp) + mix), logp)
    scored = nbytes > 0
    bits = np.log(2) * nbytes.sum()
    return float(-logp[scored].sum() / bits), float(-cheat[scored].sum() / bits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--draws", type=int, default=200, help="splits per (MIX, F)")
    ap.add_argument("--probes", type=int, help="blind probes per split (default: what the scorer uses)")
    ap.add_argument("--cache-dir", type=Path)
    args = ap.parse_args()
    settings = Settings.from_profile(args.profile)
    cache = cache_dir(args.cache_dir)
    prepare(settings, cache, progress=lambda m: None)
    directory = constants.prepared_dir(settings, cache)
    T, V = settings.max_seq_len, settings.vocab_size  # noqa: N806
    n_real = constants.eval_rows("val", settings, directory)
    count = args.probes or probes.blind_count(n_real)
    t0 = time.perf_counter()
    rows, spare = scorer.load_windows("val", T, scorer.spare_rows_for(n_real, T), directory, n_real)
    t_load = time.perf_counter() - t0
    train = np.asarray(TokenSplit.open(directory, "train").tokens[: 4_000_000], dtype=np.int64)
    table = bigram(train, V)
    from autoresearch.harness.tokenizer import Tokenizer

    token_bytes = np.asarray(Tokenizer.load(directory).token_bytes, dtype=np.int64)
    rng = random.Random(0)
    t0 = time.perf_counter()
    splits = [probes.blind_probes(spare, count, V, rng) for _ in range(args.draws)]
    t_build = (time.perf_counter() - t0) / args.draws
    weights = [float(b.weights[np.searchsorted(b.ids, b.tokens[b.cut])]) for b in splits[0]]
    print(f"profile {args.profile}: T {T}, vocabulary {V}, {n_real} rows per split, {len(splits[0])} blind probes "
          f"per split (wanted {count}) from {len(spare)} unscored rows; loading the rows and the unscored text "
          f"{t_load:.2f}s, building the probes {t_build * 1000:.0f} ms per split; median weight of a drawn token "
          f"{statistics.median(weights):.3f}")
    print(f"\n{'MIX':>5} {'F':>5} {'refused':>8} {'median p':>9} {'val_bpb':>8}   (alpha {probes.BLIND_ALPHA:g}, "
          f"{args.draws} splits; val_bpb of the stand-in on the scored rows)")
    for mix in MIXES:
        for share in SHARES:
            if share == 0 and mix != MIXES[0]:
                continue
            ps = [draw(blind, table, mix, share, rng) for blind in splits]
            refused = sum(p < probes.BLIND_ALPHA for p in ps) / len(ps)
            label = "honest" if share == 0 else f"{mix:>5g} {share:>5g}"
            honest, cheat = gain(rows, table, token_bytes, mix, share)
            print(f"{label:>11} {refused:>8.1%} {statistics.median(ps):>9.2g} {cheat if share else honest:>8.3f}")


if __name__ == "__main__":
    main()
