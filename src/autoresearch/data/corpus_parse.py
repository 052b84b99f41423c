"""Parse a corpus document back into the generator's choices: the independent check of corpus.py.

The grammar is deterministic to parse with at most one word of look-ahead, so the parser never backtracks: each
decision it takes is forced by the text, which is the proof that no two choice sequences give the same text. It
mirrors the generator's rules (written separately, from the text's point of view) and charges -log2 p for each
choice it recovers, at the offset up to which it had to look to recover it. Anything the generator could not
have written (a misspelled word, "she sell", "a apple", a wrong sum, "the lamp" before any lamp) is a ValueError.
"""
from __future__ import annotations

from autoresearch.data.corpus_read import _Read
from autoresearch.data.corpus_vocab import (
    ADJ,
    BE,
    BOUGHT,
    DIALOGUE,
    END,
    FOUND,
    GAVE,
    GIVE,
    HAS,
    LEDGER,
    LIST_INLINE,
    LIST_VERTICAL,
    LIVE,
    NARRATIVE,
    NOUN,
    NP_NEW,
    NP_PLURAL,
    NP_REF,
    PLACE,
    PLURAL,
    SOLD,
    TOPIC,
    TV,
    U_COUNT,
    U_HAVE,
    U_I,
    U_SUM,
    U_THE,
    VERB,
    VERB3,
    VOWELS,
    Grammar,
)


class Parse:
    """The parser's account of a text: what it recovered and where it became certain of it."""

    def __init__(self, ends: list[int], bits: list[float]) -> None:
        self.choice_ends, self.choice_bits = tuple(ends), tuple(bits)
        self.bits = sum(bits)


def parse(text: str, g: Grammar) -> Parse:
    p = _Parser(text, g)
    p.document()
    return Parse(p.ends, p.bits)


class _Parser(_Read):
    """One document being parsed: the grammar's productions, each decision forced by the text."""

    # ------------------------------------------------------------------------------------------- phrases
    def article(self) -> str:
        art = self.peek()
        if art not in ("a", "an"):
            self.fail("'a' or 'an'")
        self.i += len(art)
        self.lit(" ")
        return art

    def agree(self, art: str, w: str) -> None:
        if art != ("an" if w[0] in VOWELS else "a"):
            self.fail(f"{'an' if art == 'a' else 'a'} {w!r}")

    def np_new(self) -> None:
        c = self.c
        art = self.article()
        first = self.peek()
        if self.flag(self.g.lex.get(first, (-1,))[0] == ADJ, c.p_adj):
            self.adj()
            self.lit(" ")
        self.agree(art, first)
        v = self.noun()
        if v not in self.things:
            self.things.append(v)

    def np(self) -> None:
        c = self.c
        w = (c.np_w[NP_NEW], c.np_w[NP_REF] if self.things else 0.0, c.np_w[NP_PLURAL])
        first = self.peek()
        if first in ("a", "an"):
            self.choice(w, NP_NEW)
            self.np_new()
        elif first == "the":
            self.choice(w, NP_REF)
            self.lit("the ")
            self.noun_ref()
        elif first in c.count_words:
            self.choice(w, NP_PLURAL)
            self.charge(1 / len(c.count_words))
            self.i += len(first)
            self.lit(" ")
            if self.flag(self.g.lex.get(self.peek(), (-1,))[0] == ADJ, c.p_adj):
                self.adj()
                self.lit(" ")
            self.noun(plural=True)
        else:
            self.fail("a noun phrase")

    def noun_ref(self) -> None:
        """ "the <noun>": one of the things introduced so far."""
        if self.word(NOUN, "a noun") not in self.things:
            self.fail("a thing introduced before")
        self.charge(1 / len(self.things))

    def count_phrase(self) -> tuple[int, int]:
        """ "no lamps", "1 lamp", "7 lamps" -> (count, noun); charges nothing (the caller knows the context)."""
        if self.see("no "):
            self.i += 3
            n = 0
        else:
            n = self.number(1, 10**9)
            self.lit(" ")
        return n, self.word(NOUN if n == 1 else PLURAL, "a noun agreeing with the count")

    def vp(self, subj: tuple[int, ...]) -> None:
        c = self.c
        pl = len(subj) > 1
        others = [j for j in range(len(self.cast)) if j not in subj]
        w = c.vp_w[:GIVE] + (c.vp_w[GIVE] if others else 0.0,) + c.vp_w[GIVE + 1:]
        first = self.peek()
        keywords = {"are" if pl else "is": BE, "live" if pl else "lives": LIVE, "give" if pl else "gives": GIVE,
                    "have" if pl else "has": HAS}
        k = keywords.get(first, TV)
        self.choice(w, k)
        if k == TV:
            v = self.word(VERB if pl else VERB3, "a verb agreeing with its subject")
            self.charge(self.mixture(self.g.verb_mix[self.topic], v))
            self.lit(" ")
            self.np()
            pp = 1 if self.see(" in ") else 2 if self.see(" with ") else 0  # nothing, "in <place>", "with <name>"
            self.choice((c.pp_w[0], c.pp_w[1], c.pp_w[2] if others else 0.0), pp)
            if pp == 1:
                self.lit(" in ")
                self.place()
            elif pp == 2:
                self.lit(" with ")
                self.other(others)
            return
        self.i += len(first)
        self.lit(" ")
        if k == BE:
            self.adj()
        elif k == LIVE:
            self.lit("in ")
            self.place()
        elif k == GIVE:
            self.np()
            self.lit(" to ")
            self.other(others)
        else:
            n = self.number(2, c.has_max)
            self.charge(1 / (c.has_max - 1))
            self.lit(" ")
            v = self.noun(plural=True)
            if not pl:
                self.inv[subj[0]] = (v, n)

    # ------------------------------------------------------------------------------------------- paragraphs
    def document(self) -> None:
        c = self.c
        self.lit("# ")
        self.topic = self.word(TOPIC, "a topic")
        self.charge(1 / c.n_topics)
        self.lit(" of ")
        self.home = self.word(PLACE, "a place")
        self.charge(self.g.place_t.p[self.home])
        paras = 0
        while True:
            self.lit("\n\n")
            first = '"' if self.see('"') else self.peek()
            kind = {'"': DIALOGUE, "At": LEDGER, "For": LIST_INLINE, "Things": LIST_VERTICAL}.get(first, NARRATIVE)
            self.choice(c.kind_w, kind)
            (self.narrative, self.ledger, self.list_inline, self.list_vertical, self.dialogue)[kind]()
            paras += 1
            if paras == c.max_paras:
                self.lit(END)
                break
            if paras >= c.min_paras and self.flag(self.see(END), c.p_end):
                self.i += len(END)
                break
        if self.i != len(self.t):
            self.fail("the end of the text")

    def narrative(self) -> None:
        c = self.c
        sentences = 0
        while True:
            self.sentence()
            sentences += 1
            if sentences == c.max_sents or not self.flag(self.see(" "), c.p_more_sents):
                return
            self.i += 1

    def sentence(self) -> None:
        c = self.c
        first = self.peek()
        if self.flag(first == "There", c.p_there):
            self.lit("There is ")
            self.np_new()
            self.lit(" in ")
            self.place()
            self.lit(".")
            return
        firsts = [o.split()[0] for o in c.openers]
        cap = not self.flag(first in firsts, c.p_opener)
        if not cap:
            self.charge(1 / len(c.openers))
            self.lit(c.openers[firsts.index(first)] + ", ")
        subj = self.subject(cap, pairs=True)
        self.lit(" ")
        self.vp(subj)
        self.lit(".")
        self.focus = subj

    def one_of(self, options: tuple[str, ...], after: str) -> None:
        """One of a few fixed phrases, recognised with the character that follows it."""
        for s in options:
            if self.see(s + after):
                self.charge(1 / len(options))
                self.i += len(s)
                return
        self.fail(" or ".join(map(repr, options)))

    def ledger(self) -> None:
        c = self.c
        self.lit("At ")
        self.one_of(c.settings, ",")
        self.lit(", ")
        (x,) = self.subject(False, pairs=False)
        self.lit(" had ")
        n, v = self.count_phrase()
        inv = self.inv.get(x)
        self.charge(self.mixture(self.g.noun_mix[self.topic], v, inv[0] if inv else -1))
        if inv and v == inv[0]:
            if n != inv[1]:
                self.fail(f"the count said before ({inv[1]})")
        elif not 2 <= n <= c.ledger_max:
            self.fail(f"a count from 2 to {c.ledger_max}")
        else:
            self.charge(1 / (c.ledger_max - 1))
        self.lit(".")
        pron = self.pronoun((x,), True)
        others = [j for j in range(len(self.cast)) if j != x]
        ops = 0
        while True:
            self.lit(f" {pron} ")
            w = (c.op_w[SOLD] if n else 0.0, c.op_w[GAVE] if n and others else 0.0, c.op_w[BOUGHT], c.op_w[FOUND])
            k = {"sold": SOLD, "gave": GAVE, "bought": BOUGHT, "found": FOUND}.get(self.peek(), -1)
            if k < 0:
                self.fail("sold, gave, bought or found")
            self.choice(w, k)
            self.i += len(("sold", "gave", "bought", "found")[k])
            self.lit(" ")
            if k in (SOLD, GAVE):
                m = self.number(1, n)
                self.charge(1 / n)
                n -= m
                if k == GAVE:
                    self.lit(" to ")
                    j = self.other(others)
                    if j in self.inv and self.inv[j][0] == v:
                        self.inv[j] = (v, self.inv[j][1] + m)
            else:
                top = c.buy_max if k == BOUGHT else c.found_max
                n += self.number(1, top)
                self.charge(1 / top)
                self.lit(" more")
            self.lit(".")
            ops += 1
            if ops == c.max_ops or not self.flag(not self.see(" Now"), c.p_more_ops):
                break
        self.lit(f" Now {pron.lower()} has {self.count(n, v)}.")
        self.inv[x] = (v, n)
        self.focus = (x,)

    def item(self) -> int:
        c = self.c
        self.hi = max(self.hi, self.i + 1)
        if not self.flag(self.t[self.i:self.i + 1].isdigit(), c.p_item_plural):
            self.np_new()
            return 1
        n = self.number(2, c.item_max)
        self.charge(1 / (c.item_max - 1))
        self.lit(" ")
        self.noun(plural=True)
        return n

    def list_inline(self) -> None:
        c = self.c
        self.lit("For the ")
        self.one_of(c.purposes, ",")
        self.lit(", ")
        (x,) = self.subject(False, pairs=False)
        self.lit(" packed ")
        total, j = self.item(), 1
        while True:
            sep = " and " if j == 1 else ", and "  # before the last item
            last = j + 1 == c.max_items or self.flag(self.see(sep), c.p_last)
            self.lit(sep if last else ", ")
            total += self.item()
            j += 1
            if last:
                break
        self.lit(f". That makes {total} things.")
        self.focus = (x,)

    def list_vertical(self) -> None:
        c = self.c
        self.lit("Things to ")
        self.one_of(c.headers, ":")
        self.lit(":")
        total = j = 0
        while True:
            j += 1
            self.lit(f"\n{j}. ")
            total += self.item()
            if j >= 2 and (j == c.max_items or self.flag(self.see("\nTotal"), c.p_last)):
                break
        self.lit(f"\nTotal: {total} things.")

    def dialogue(self) -> None:
        c = self.c
        spk = [-1, -1]
        line, question = 0, None
        while True:
            s = line & 1
            if line:
                self.lit("\n")
            self.lit('"')
            if question is not None:
                self.answer(question, spk[s])
                asked = None
            else:
                room = line + 1 < c.max_lines
                w = (c.utt_w[U_I], c.utt_w[U_THE] if self.things else 0.0, c.utt_w[U_HAVE] if room else 0.0,
                     c.utt_w[U_SUM] if room else 0.0, c.utt_w[U_COUNT] if room and line else 0.0)
                k = {"I": U_I, "The": U_THE, "Do": U_HAVE, "What": U_SUM, "How": U_COUNT}.get(self.peek(), -1)
                if k < 0:
                    self.fail("the start of a line of dialogue")
                self.choice(w, k)
                asked = self.utterance(k, spk[1 - s])
            verb = "said" if asked is None else "asked"
            self.lit('," ' if asked is None else '?" ')
            if line < 2:
                self.lit(verb + " ")
                spk[s] = self.speaker(spk[0] if line else -1)
            else:
                pron = self.pronoun((spk[s],), False)
                by_pronoun = self.flag(self.see(pron + " "), c.p_pron_attr)
                self.lit(f"{pron} {verb}" if by_pronoun else f"{verb} {self.name_of(spk[s])}")
            self.lit(".")
            self.focus = (spk[s],)
            line += 1
            question = asked
            if asked is None and line >= 2 and (line == c.max_lines or not self.flag(self.see('\n"'),
                                                                                       c.p_more_lines)):
                return

    def name_of(self, i: int) -> str:
        gender, v = self.cast[i]
        return self.g.names[gender][v]

    def utterance(self, k: int, answerer: int) -> tuple[int, int] | None:
        c = self.c
        if k == U_I:
            self.lit("I ")
            self.charge(self.mixture(self.g.verb_mix[self.topic], self.word(VERB, "a verb (base form)")))
            self.lit(" ")
            self.np()
            return None
        if k == U_THE:
            self.lit("The ")
            self.noun_ref()
            self.lit(" is ")
            self.adj()
            return None
        if k == U_HAVE:
            self.lit("Do you have ")
            art = self.article()
            self.agree(art, self.peek())
            self.noun()
            return (U_HAVE, 0)
        if k == U_SUM:
            self.lit("What is ")
            a = self.number(1, c.sum_max)
            self.charge(1 / c.sum_max)
            minus = self.see(" minus ")
            self.lit(" minus " if minus else " plus ")
            self.charge(0.5)
            b = self.number(1, a if minus else c.sum_max)
            self.charge(1 / (a if minus else c.sum_max))
            return (U_SUM, a - b if minus else a + b)
        self.lit("How many ")
        inv = self.inv.get(answerer)
        v = self.noun(plural=True, boost=inv[0] if inv else -1)
        self.lit(" do you have")
        return (U_COUNT, v)

    def answer(self, question: tuple[int, int], who: int) -> None:
        kind, data = question
        if kind == U_HAVE:
            yes = self.flag(self.see("Yes"), 0.5)
            self.lit("Yes, I do" if yes else "No, I do not")
        elif kind == U_SUM:
            self.lit(f"It is {data}")
        else:
            self.lit("I have ")
            n, v = self.count_phrase()
            if v != data:
                self.fail(f"an answer about {self.g.plurals[data]!r}")
            inv = self.inv.get(who)
            if inv and inv[0] == v:
                if n != inv[1]:
                    self.fail(f"the count said before ({inv[1]})")
            elif n > self.c.count_max:
                self.fail(f"a count up to {self.c.count_max}")
            else:
                self.charge(1 / (self.c.count_max + 1))
                self.inv[who] = (v, n)
