"""The corpus parser's primitives: the cursor over the text, the look-ahead that decides where a choice is
settled, the probabilities it charges, and the characters it tracks. The grammar's productions are
corpus_parse.py's _Parser, built on these."""

from __future__ import annotations

import math
import re

from autoresearch.data.corpus_vocab import (
    ADJ,
    EXIST,
    NAME,
    NEW,
    NOUN,
    PLACE,
    PLURAL,
    PRON,
    Grammar,
)

_WORD = re.compile(r"[A-Za-z]+")
_NUMBER = re.compile(r"0|[1-9][0-9]*")


class _Read:
    def __init__(self, text: str, g: Grammar) -> None:
        self.t, self.g, self.c = text, g, g.cfg
        self.i = 0  # cursor
        self.hi = 0  # how far the parser has looked: every decision so far is a function of t[:hi]
        self.ends: list[int] = []
        self.bits: list[float] = []
        self.cast: list[tuple[int, int]] = []  # (gender, name index)
        self.who: dict[str, int] = {}  # name -> cast index
        self.focus: tuple[int, ...] = ()
        self.things: list[int] = []
        self.inv: dict[int, tuple[int, int]] = {}
        self.topic = self.home = -1

    # ------------------------------------------------------------------------------------------- reading
    def fail(self, expected: str) -> None:
        raise ValueError(f"not a document of this corpus: expected {expected} at byte {self.i}, "
                         f"found {self.t[self.i:self.i + 30]!r}")

    def charge(self, p: float, what: str = "a possible choice") -> None:
        if not p > 0:
            self.fail(what)
        if p < 1:
            self.ends.append(self.hi)
            self.bits.append(-math.log2(p))

    def see(self, s: str) -> bool:
        """Whether s comes next; looks exactly as far as needed to tell."""
        t, i = self.t, self.i
        if t.startswith(s, i):
            self.hi = max(self.hi, i + len(s))
            return True
        j = 0
        while i + j < len(t) and t[i + j] == s[j]:
            j += 1
        self.hi = max(self.hi, min(i + j + 1, len(t)))
        return False

    def lit(self, s: str) -> None:
        if not self.see(s):
            self.fail(repr(s))
        self.i += len(s)

    def peek(self) -> str:
        """The next word (letters only), without consuming it; a word is known once the character after it is."""
        m = _WORD.match(self.t, self.i)
        end = m.end() if m else self.i
        self.hi = max(self.hi, min(end + 1, len(self.t)))
        return m.group() if m else ""

    def word(self, cat: int, what: str) -> int:
        """Consume a word of a category; returns its index."""
        w = self.peek()
        c, v = self.g.lex.get(w, (-1, -1))
        if c != cat:
            self.fail(what)
        self.i += len(w)
        return v

    def number(self, lo: int, hi: int) -> int:
        m = _NUMBER.match(self.t, self.i)
        if not m or self.t[m.end():m.end() + 1].isdigit():
            self.fail("a number")
        self.hi = max(self.hi, min(m.end() + 1, len(self.t)))
        n = int(m.group())
        if not lo <= n <= hi:
            self.fail(f"a number from {lo} to {hi}")
        self.i = m.end()
        return n

    # ------------------------------------------------------------------------------------------- probabilities
    def mixture(self, topic_mix, v: int, boost: int = -1) -> float:
        (wt, topic_t), (wg, every) = topic_mix
        p = wt * topic_t.p.get(v, 0.0) + wg * every.p[v]
        if boost >= 0:
            p = self.c.p_boost * (v == boost) + (1.0 - self.c.p_boost) * p
        return p

    def noun(self, plural: bool = False, boost: int = -1) -> int:
        v = self.word(PLURAL if plural else NOUN, "a plural noun" if plural else "a noun")
        self.charge(self.mixture(self.g.noun_mix[self.topic], v, boost))
        return v

    def adj(self) -> None:
        self.charge(self.mixture(self.g.adj_mix[self.topic], self.word(ADJ, "an adjective")))

    def place(self) -> None:
        v = self.word(PLACE, "a place")
        self.charge(self.c.p_home * (v == self.home) + (1.0 - self.c.p_home) * self.g.place_t.p[v])

    def choice(self, weights: tuple[float, ...], k: int) -> None:
        self.charge(weights[k] / sum(weights), "a construction possible here")

    def flag(self, yes: bool, p: float) -> bool:
        """A yes/no choice of probability p for yes, read from the text."""
        self.charge(p if yes else 1.0 - p)
        return yes

    def count(self, n: int, v: int) -> str:
        g = self.g
        return f"no {g.plurals[v]}" if n == 0 else f"1 {g.nouns[v]}" if n == 1 else f"{n} {g.plurals[v]}"

    # ------------------------------------------------------------------------------------------- characters
    def pronoun(self, who: tuple[int, ...], cap: bool) -> str:
        p = "they" if len(who) > 1 else "he" if self.cast[who[0]][0] else "she"
        return p.capitalize() if cap else p

    def free(self, gender: int) -> bool:
        return sum(1 for gd, _ in self.cast if gd == gender) < len(self.g.names[gender])

    def can_new(self) -> bool:
        return len(self.cast) < self.c.max_cast and (self.free(0) or self.free(1))

    def name(self) -> tuple[str, int, int]:
        w = self.peek()
        cat, code = self.g.lex.get(w, (-1, -1))
        if cat != NAME:
            self.fail("a name")
        self.i += len(w)
        return w, code >> 20, code & 0xFFFFF

    def new_char(self, w: str, gender: int, v: int) -> int:
        self.charge(0.5 / ((0.5 if self.free(0) else 0.0) + (0.5 if self.free(1) else 0.0)))
        taken = [u for gd, u in self.cast if gd == gender]
        t = self.g.name_t[gender]
        self.charge(t.p[v] / (1.0 - sum(t.p[u] for u in taken)))
        self.cast.append((gender, v))
        self.who[w] = len(self.cast) - 1
        return len(self.cast) - 1

    def subject(self, cap: bool, pairs: bool) -> tuple[int, ...]:
        c, focus, n = self.c, self.focus, len(self.cast)
        w = (c.subj_w[PRON] if focus and (pairs or len(focus) == 1) else 0.0,
             c.subj_w[EXIST] if n else 0.0, c.subj_w[NEW] if self.can_new() else 0.0)
        if w[PRON] and self.peek() == self.pronoun(focus, cap):
            self.choice(w, PRON)
            self.i += len(self.pronoun(focus, cap))
            return focus
        name, gender, v = self.name()
        if name not in self.who:
            self.choice(w, NEW)
            return (self.new_char(name, gender, v),)
        self.choice(w, EXIST)
        i = self.who[name]
        self.charge(1 / n)
        if not (pairs and n >= 2 and self.flag(self.see(" and "), c.p_pair)):
            return (i,)
        self.i += 5
        other = self.name()[0]
        if self.who.get(other, i) == i:
            self.fail("the name of another known character")
        self.charge(1 / (n - 1))
        return (i, self.who[other])

    def speaker(self, exclude: int) -> int:
        others = [j for j in range(len(self.cast)) if j != exclude]
        w = (self.c.subj_w[EXIST] if others else 0.0, self.c.subj_w[NEW] if self.can_new() else 0.0)
        name, gender, v = self.name()
        if name not in self.who:
            self.choice(w, 1)
            return self.new_char(name, gender, v)
        if self.who[name] == exclude:
            self.fail("the other speaker")
        self.choice(w, 0)
        self.charge(1 / len(others))
        return self.who[name]

    def other(self, others: list[int]) -> int:
        j = self.who.get(self.name()[0], -1)
        if j not in others:
            self.fail("a known character other than the subject")
        self.charge(1 / len(others))
        return j
