"""What the scorer serves besides the real rows: probe rows, and how a probe's outputs are judged.

Each split is served as its evaluation rows in an order drawn from the OS, with probe rows among them.
- Twins and repeats: a twin shares the first `shared` tokens of a real row and continues with another row's tokens
  from there (a repeat is the row whole). A model that looks ahead, or that changes as it is evaluated, gives a
  twin different outputs over the shared prefix than its original, wherever the two are placed.
- Blind probes: rows made of text of the split that is never scored (the rows the packing yields after the
  evaluated ones). Each is the start of one such row, cut at a random position, continued with a token drawn at
  random from the tokens that follow the same token elsewhere in that text, and then with the text that follows
  the drawn one. A causal model's output at the cut sees only the start, so it ranks the drawn token like any
  random draw from that distribution (the PIT value `u` is exactly uniform); a model that reads the next token
  ranks it first. A model that remembers what followed each prefix and replays it (replay_cache in the attack
  catalogue) passes every twin and repeat, but a blind probe's start was never served before, so there is
  nothing to replay: Fisher's combination of the `u` of a split's blind probes refuses it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from autoresearch.harness import wire

MIN_PROBES = 16  # probe rows per split at the least; the last call's free rows hold more. A model that looks ahead
                 # at a share f of positions escapes each twin with chance 1 - f: 16 twins catch f = 15% with 93%
PROBE_SHARE = 0.02  # and at least this share of the real rows: 2% of 10,240 (the GPU profile) catch f = 1% with 87%
REPEAT_SHARE = 0.125  # of the probes, the share that repeats a row whole (the rest share a prefix)
MIN_BLIND = 32  # blind probes per split at the least (when the split has the spare text): see fisher_p for power
BLIND_SHARE = 0.02  # and at least this share of the real rows
BLIND_ALPHA = 1e-6  # a causal model is refused with this probability per split: the test is exact
BLIND_CONTEXT_SHARE = 0.5  # of the drawn tokens, the share drawn from those that follow the same token in the pool
                           # (the others: uniformly from the vocabulary)
BLIND_POOL_TOKENS = 2**18  # spare text the drawn tokens come from, at most: bounds the scorer's set-up time
LOGPROB_GRID = 1e-4  # log-probabilities are ranked on this grid, so that noise far below it decides no rank
RELATIVE_TOLERANCE = 1e-3  # of a log-probability's magnitude: far above the noise of identical computations


@dataclass(frozen=True)
class Row:
    real: int  # index of the real row it is, or is a probe of (-1: a blind probe)
    shared: int  # leading tokens of x shared with that real row (T: a whole repeat); a blind probe's cut
    donor: int = -1  # real row whose tokens fill x from `shared` on (-1: none)
    probe: bool = False
    blind: int = -1  # index of the blind probe it is (-1: not one)


def probe_count(n_real: int, rows: int, n_blind: int = 0) -> int:
    """Twins and repeats of a split: PROBE_SHARE of the rows, at least MIN_PROBES, and the last call's free rows
    (after the real rows and `n_blind` blind probes)."""
    wanted = max(MIN_PROBES, math.ceil(PROBE_SHARE * n_real))
    return math.ceil((n_real + n_blind + wanted) / rows) * rows - n_real - n_blind


def blind_count(n_real: int) -> int:
    """Blind probes a split wants: BLIND_SHARE of the rows, at least MIN_BLIND."""
    return max(MIN_BLIND, math.ceil(BLIND_SHARE * n_real))


def schedule(n_real: int, rows: int, T: int, rng: random.Random,  # noqa: N803
             windows: np.ndarray | None = None, n_blind: int = 0) -> list[Row]:
    """Every real row once, in an order drawn from `rng`, and probe rows among them, filling whole calls.

    Probe places are drawn among all places; each twin or repeat goes to one at least SLOTS calls from its real
    row's. The `n_blind` blind probes (rows of their own, Row.blind = 0..n_blind-1) take places like real rows.
    """
    order = [Row(i, T) for i in range(n_real)] + [Row(-1, 0, probe=True, blind=k) for k in range(n_blind)]
    rng.shuffle(order)
    probes = []
    for k in range(probe_count(n_real, rows, n_blind)):
        real = rng.randrange(n_real)
        if T < 3 or n_real < 2 or (k >= MIN_PROBES // 2 and rng.random() < REPEAT_SHARE):  # half twins at least
            probes.append(Row(real, T, probe=True))
        else:
            probes.append(_twin(real, n_real, T, rng, windows))
    total = len(order) + len(probes)
    places = list(range(total))
    rng.shuffle(places)
    probe_places, real_places = sorted(places[: len(probes)]), sorted(places[len(probes) :])
    plan: list[Row | None] = [None] * total
    call_of = {}
    for place, r in zip(real_places, order):
        plan[place] = r
        if r.blind < 0:
            call_of[r.real] = place // rows
    # Each probe takes a place at least SLOTS calls away from its real row's when one is left: a model holds SLOTS
    # calls at once, and holding both rows of a pair it could spot them (a shared prefix) and treat both alike.
    rng.shuffle(probes)
    for p in probes:
        pick = next((i for i, place in enumerate(probe_places) if abs(place // rows - call_of[p.real]) >= wire.SLOTS),
                    None)
        if pick is None:
            pick = next((i for i, place in enumerate(probe_places) if place // rows != call_of[p.real]), 0)
        plan[probe_places.pop(pick)] = p
    return plan  # type: ignore[return-value]


def _twin(real: int, n_real: int, T: int, rng: random.Random, windows: np.ndarray | None) -> Row:  # noqa: N803
    """A row that shares the first `shared` tokens of a real row and then takes another row's tokens. The two must
    differ at position `shared` itself (a look-ahead shows there first): a donor with the same token there would
    make the twin a longer repeat, so a few are tried; failing that, the twin is an honest repeat of that length."""
    for _ in range(8):
        shared, donor = rng.randrange(1, T), (real + rng.randrange(1, n_real)) % n_real
        if windows is None or windows[donor][shared] != windows[real][shared]:
            return Row(real, shared, donor, probe=True)
    parts = int(np.argmin(windows[donor][:T] == windows[real][:T]))  # the first position where they differ (0: none)
    return Row(real, parts, donor, probe=True) if parts >= 1 else Row(real, T, probe=True)


def row_tokens(row: Row, windows: np.ndarray) -> np.ndarray:
    """The (T + 1,) tokens of a served row: x is [:-1], the targets are [1:]."""
    if row.donor < 0:
        return windows[row.real]
    return np.concatenate([windows[row.real][: row.shared], windows[row.donor][row.shared :]])


def mismatch(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference between two arrays of log-probabilities, in units of its tolerance: RELATIVE_TOLERANCE
    of the larger magnitude of each pair, at least of 1. Above 1: they differ. inf where one is finite and the
    other is not. Element by element, so no output of the model can widen the tolerance of another."""
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore", over="ignore"):
        scale = RELATIVE_TOLERANCE * np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
        ratio = np.where(same, 0.0, np.abs(a - b) / scale)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    return float(ratio.max()) if ratio.size else 0.0


# ---------------------------------------------------------------------------
# Blind probes: text never scored, a token drawn at random, and the rank a causal model gives it
# ---------------------------------------------------------------------------


@dataclass
class Blind:
    tokens: np.ndarray  # (T + 1,) the served row: x is [:-1]
    cut: int  # position of the drawn token: the model's output at cut - 1, which sees only tokens[:cut], is judged
    ids: np.ndarray  # the tokens it was drawn from, ascending
    weights: np.ndarray  # the probability each was drawn with (sums to 1)


def blind_probes(spare: np.ndarray, count: int, vocab: int, rng: random.Random) -> list[Blind]:
    """Up to `count` blind probes from `spare`, (n, T + 1) rows of the split's text that is never scored.

    Each takes the start of a row of its own, up to a cut drawn uniformly, then the token at the cut, then the
    text of a pool of other rows. With chance BLIND_CONTEXT_SHARE the token and the text after it come from a place
    (row j, position p <= cut) of the pool drawn among those whose token before p is the start's last token: the
    splice reads like text, and the token is a plausible one, a draw from the tokens that follow that token in the
    pool. Otherwise the token is drawn uniformly from the vocabulary, and the text after it follows a place drawn
    among all: a model that looks ahead lifts that token from far down its ranking. Either way the probe records
    the distribution its token was drawn from, fixed before the draw and owing nothing to the model. A pool row
    gives one continuation at most, so no text is served twice."""
    n, t1 = spare.shape
    T = t1 - 1  # noqa: N806
    count = min(count, n // 2)
    if count < 1 or T < 2:
        return []
    order = list(range(n))
    rng.shuffle(order)
    starts, pool = order[:count], order[count : count + max(count, BLIND_POOL_TOKENS // t1)]
    pool_rows = spare[pool]  # (m, T + 1)
    free = np.ones(len(pool), dtype=bool)
    out = []
    for a in starts:
        cut = rng.randrange(1, T)
        anywhere = np.broadcast_to(free[:, None], (len(pool), cut))  # (m, cut): column = p - 1
        rows_at, cols = np.nonzero((pool_rows[:, :cut] == spare[a, cut - 1]) & anywhere)
        if len(rows_at) and rng.random() < BLIND_CONTEXT_SHARE:
            k = rng.randrange(len(rows_at))
            j, p = int(rows_at[k]), int(cols[k]) + 1
            token = int(pool_rows[j, p])
            counts = np.bincount(pool_rows[rows_at, cols + 1])
            ids = np.flatnonzero(counts)
            weights = counts[ids] / len(rows_at)
        else:
            j, p = (int(v) for v in np.argwhere(anywhere)[rng.randrange(int(free.sum()) * cut)])
            p, token = p + 1, rng.randrange(vocab)
            ids, weights = np.arange(vocab), np.full(vocab, 1.0 / vocab)
        free[j] = False
        tokens = np.concatenate([spare[a, :cut], [token], pool_rows[j, p + 1 : p + t1 - cut]])
        out.append(Blind(tokens, cut, ids, weights))
    return out


def blind_u(logprobs: np.ndarray, probe: Blind, rng: random.Random) -> float:
    """The probe's PIT value: the probability, under the distribution its token was drawn from, of the tokens the
    model ranks above the drawn one, plus a uniform share of those it ranks level with it. `logprobs` (V,): the
    model's output at cut - 1. Exactly uniform on (0, 1] when that output does not depend on the drawn token (a
    causal model, deterministic or not); about 0 when the model favours the token it is about to be shown."""
    ranked = np.floor(np.nan_to_num(logprobs[probe.ids].astype(np.float64), nan=-np.inf) / LOGPROB_GRID)
    mine = ranked[int(np.searchsorted(probe.ids, probe.tokens[probe.cut]))]
    above = float(probe.weights[ranked > mine].sum())
    level = float(probe.weights[ranked == mine].sum())
    return above + (1.0 - rng.random()) * level  # 1 - random(): never 0


def fisher_p(us: list[float]) -> float:
    """How likely a causal model's blind probes are to give PIT values at least this small, together: Fisher's
    method (-2 sum log u is chi-squared with 2n degrees of freedom when every u is uniform), exact. 1.0 for none.

    Its power: a model that ranks the drawn token first gives u = U * w (w: the weight it was drawn with), each
    such probe adding about 2 (1 - log w) to the statistic, against 2 expected; bench/blind_power.py measures how
    often a split's probes refuse a given look-ahead."""
    n = len(us)
    half = -sum(math.log(u) for u in us)  # the statistic / 2
    if n == 0 or half <= 0:
        return 1.0
    # chi2.sf(2 half, 2n) = exp(-half) sum_{k<n} half^k / k!, summed in logs (half may be in the thousands)
    logs = [k * math.log(half) - math.lgamma(k + 1) for k in range(n)]
    top = max(logs)
    return min(1.0, math.exp(top - half + math.log(sum(math.exp(v - top) for v in logs))))
