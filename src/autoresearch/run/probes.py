"""What the scorer serves besides the real rows: probe rows, and how a probe is compared with its row.

Each split is served as its evaluation rows in an order drawn from the OS, with probe rows among them: a twin
shares the first `shared` tokens of a real row and continues with another row's tokens from there (or repeats it
whole). A model that looks ahead, or that changes as it is evaluated, gives a twin different outputs over the
shared prefix than its original, wherever the two are placed.
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
RELATIVE_TOLERANCE = 1e-3  # of a log-probability's magnitude: far above the noise of identical computations


@dataclass(frozen=True)
class Row:
    real: int  # index of the real row it is, or is a probe of
    shared: int  # leading tokens of x shared with that real row (T: a whole repeat)
    donor: int = -1  # real row whose tokens fill x from `shared` on (-1: none)
    probe: bool = False


def probe_count(n_real: int, rows: int) -> int:
    """Probe rows of a split: PROBE_SHARE of the rows, at least MIN_PROBES, and the last call's free rows."""
    wanted = max(MIN_PROBES, math.ceil(PROBE_SHARE * n_real))
    return math.ceil((n_real + wanted) / rows) * rows - n_real


def schedule(n_real: int, rows: int, T: int, rng: random.Random,  # noqa: N803
             windows: np.ndarray | None = None) -> list[Row]:
    """Every real row once, in an order drawn from `rng`, and probe rows among them, filling whole calls.

    Probe places are drawn among all places; each probe goes to one at least SLOTS calls from its real row's.
    """
    order = [Row(i, T) for i in range(n_real)]
    rng.shuffle(order)
    probes = []
    for k in range(probe_count(n_real, rows)):
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
