"""The embedded corpus generator's primitives: random choices charged with their exact bits as the text settles
them, the text being written, words and characters. The productions (phrases, paragraphs, the document) are
corpus.py's _Gen, built on these."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from autoresearch.data.corpus_vocab import (
    EXIST,
    NEW,
    PRON,
    Grammar,
    Table,
)

_log2 = math.log2


@dataclass(frozen=True, slots=True)
class Document:
    text: str  # ASCII, ends with END
    bits: float  # -log2 P(text) under the generator, exact: sum(choice_bits)
    # One entry per point where the text settles one or more choices: the byte offset in `text` after which those
    # choices are determined by the text before it (a word is settled by the character after it), and their
    # -log2 p summed. Offsets are >= 1 and non-decreasing; choices of probability 1 are not recorded.
    choice_ends: tuple[int, ...]
    choice_bits: tuple[float, ...]


class _Draw:
    """The state of one document being generated, and the primitives its productions use: they emit text in
    reading order and charge each choice as it is made.

    Charged bits accumulate in `pend` and are recorded by mark() once the text written so far (plus the
    character that follows) determines them; the parser's look-ahead is the reference for where that is.
    The choice primitives (unif .. mix) are the only source of randomness, so a test can replace them.
    """

    def __init__(self, g: Grammar, rand: Callable[[], float]) -> None:
        self.g, self.c, self.rand = g, g.cfg, rand
        self.out: list[str] = []
        self.pos = 0
        self.ends: list[int] = []
        self.bits: list[float] = []
        self.pend = 0.0
        self.cast: list[tuple[int, int]] = []  # characters in order of introduction: (gender, name index)
        self.focus: tuple[int, ...] = ()  # who "she"/"he"/"they" refers to: cast indices of the last subject
        self.things: list[int] = []  # nouns introduced with "a"/"an", in order: "the <noun>" picks among them
        self.known: set[int] = set()
        self.inv: dict[int, tuple[int, int]] = {}  # cast index -> (noun, count) the text last said they hold
        self.topic = 0
        self.home_mix: tuple[tuple[float, Table], ...] = ()

    # ---------------------------------------------------------------------------------------------- choices
    def unif(self, n: int) -> int:
        if n == 1:
            return 0
        self.pend += _log2(n)
        return int(self.rand() * n)

    def bern(self, p: float) -> bool:
        if self.rand() < p:
            self.pend -= _log2(p)
            return True
        self.pend -= _log2(1.0 - p)
        return False

    def choose(self, w: tuple[float, ...]) -> int:
        """Index k with probability w[k] / sum(w); a zero weight marks an option unavailable here."""
        total = sum(w)
        x = self.rand() * total
        k = last = 0
        for k, wk in enumerate(w):
            if wk > 0:
                last = k
                if x < wk:
                    break
                x -= wk
        else:  # rounding ran past the end
            k = last
        self.pend += _log2(total / w[k])
        return k

    def pick(self, t: Table) -> int:
        i = bisect_right(t.cum, self.rand() * t.total)
        self.pend += t.bits[i]
        return t.vals[i]

    def pick_excl(self, t: Table, excl: set[int]) -> int:
        """A draw from t conditioned on not being in excl (rejection sampling; excl is small)."""
        while (v := t.vals[bisect_right(t.cum, self.rand() * t.total)]) in excl:
            pass
        self.pend -= _log2(t.p[v] / (1.0 - sum(t.p[e] for e in excl)))
        return v

    def mix(self, comps: tuple[tuple[float, Table], ...]) -> int:
        """A draw from a mixture: component by weight, then value; charged the value's total probability."""
        x = self.rand()
        for w, t in comps:
            if x < w:
                break
            x -= w
        v = t.vals[bisect_right(t.cum, self.rand() * t.total)]
        self.pend -= _log2(sum(w * t.p.get(v, 0.0) for w, t in comps))
        return v

    # ---------------------------------------------------------------------------------------------- output
    def put(self, s: str) -> None:
        self.out.append(s)
        self.pos += len(s)

    def mark(self) -> None:
        """Record the pending bits as settled by the text so far plus the next character."""
        if self.pend:
            self.ends.append(self.pos + 1)
            self.bits.append(self.pend)
            self.pend = 0.0

    def say(self, s: str) -> None:
        """Write text that settles the choices charged so far (a word is settled by the character after it)."""
        self.put(s)
        self.mark()

    # ---------------------------------------------------------------------------------------------- words
    def name(self, i: int) -> str:
        gender, v = self.cast[i]
        return self.g.names[gender][v]

    def pronoun(self, who: tuple[int, ...], cap: bool) -> str:
        p = "they" if len(who) > 1 else ("she", "he")[self.cast[who[0]][0]]
        return p.capitalize() if cap else p

    def noun(self, boost: int = -1) -> int:
        comps = self.g.noun_mix[self.topic]
        if boost >= 0:  # the noun a character holds, else the usual mixture
            q = 1.0 - self.c.p_boost
            comps = ((self.c.p_boost, Table([boost], [1.0])),) + tuple((q * w, t) for w, t in comps)
        return self.mix(comps)

    def adj(self) -> str:
        return self.g.adjs[self.mix(self.g.adj_mix[self.topic])]

    def count(self, n: int, v: int) -> str:
        return f"no {self.g.plurals[v]}" if n == 0 else f"1 {self.g.nouns[v]}" if n == 1 else f"{n} {self.g.plurals[v]}"

    def place(self) -> None:
        self.say(self.g.places[self.mix(self.home_mix)])

    # ---------------------------------------------------------------------------------------------- characters
    def free(self, gender: int) -> bool:
        return sum(1 for gd, _ in self.cast if gd == gender) < len(self.g.names[gender])

    def can_new(self) -> bool:
        return len(self.cast) < self.c.max_cast and (self.free(0) or self.free(1))

    def new_char(self) -> int:
        gender = self.choose((0.5 if self.free(0) else 0.0, 0.5 if self.free(1) else 0.0))
        v = self.pick_excl(self.g.name_t[gender], {v for gd, v in self.cast if gd == gender})
        self.say(self.g.names[gender][v])
        self.cast.append((gender, v))
        return len(self.cast) - 1

    def subject(self, cap: bool, pairs: bool) -> tuple[int, ...]:
        c, focus, n = self.c, self.focus, len(self.cast)
        k = self.choose((c.subj_w[PRON] if focus and (pairs or len(focus) == 1) else 0.0,
                         c.subj_w[EXIST] if n else 0.0, c.subj_w[NEW] if self.can_new() else 0.0))
        if k == PRON:
            self.say(self.pronoun(focus, cap))
            return focus
        if k == NEW:
            return (self.new_char(),)
        i = self.unif(n)
        self.say(self.name(i))
        if pairs and n >= 2 and self.bern(c.p_pair):  # decided after the first name: that is the reading order
            j = self.unif(n - 1)
            j += j >= i
            self.say(" and " + self.name(j))
            return (i, j)
        return (i,)

    def speaker(self, exclude: int) -> int:
        others = [j for j in range(len(self.cast)) if j != exclude]
        if self.choose((self.c.subj_w[EXIST] if others else 0.0, self.c.subj_w[NEW] if self.can_new() else 0.0)):
            return self.new_char()
        j = others[self.unif(len(others))]
        self.say(self.name(j))
        return j
