"""The embedded offline corpus: a seeded stochastic generator whose exact entropy is known.

Documents are short stories in a synthetic language with an English skeleton. The words are invented
(corpus_vocab.py: thousands of them, Zipf-like frequencies, favourites per topic), but the structure is the kind a
language model has to learn, at several ranges:

- agreement: "she sells" / "they sell", "is" / "are", "a lamp" / "an old lamp", "1 lamp" / "2 lamps";
- reference: characters introduced by name come back as "she", "he" or "they" (the gender of the name must be
  remembered); "the lamp" only names a thing introduced earlier; the title's place recurs;
- exact arithmetic: "Mara had 7 lamps. She sold 3. Now she has 4 lamps.", list totals, "What is 7 plus 5?" -
  "It is 12.", and a character asked how many lamps she has answers with the count from an earlier paragraph;
- layout: titles, paragraphs of prose, numbered lists, dialogue with alternating speakers, a closing line.

Every document carries its exact information content, bits = -log2 P(text). That is well defined because the
text determines every choice that produced it (no two choice sequences give the same text), which corpus_parse.py
checks independently by parsing the text back. A document ends with END, a line that occurs nowhere else, so no
document is a proper prefix of another and the end of a document is predictable from its text alone: the
evaluation never scores the boundary token, so the choice to stop must be paid for in bytes that are scored.

Document i of a seed is a pure function of (seed, i): any index range can be generated in any process.
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from collections.abc import Iterable, Iterator

from autoresearch.data.corpus_draw import Document, _Draw
from autoresearch.data.corpus_parse import parse
from autoresearch.data.corpus_vocab import (
    BE,
    BOUGHT,
    DIALOGUE,
    END,
    FOUND,
    GAVE,
    GIVE,
    LEDGER,
    LIST_INLINE,
    LIST_VERTICAL,
    LIVE,
    NARRATIVE,
    NP_NEW,
    NP_REF,
    SOLD,
    TV,
    U_COUNT,
    U_HAVE,
    U_I,
    U_SUM,
    U_THE,
    VOWELS,
    Config,
    Table,
    grammar,
)
from autoresearch.paths import CORPUS_VERSION  # noqa: F401  (the generator's version: kept beside the cache key)

_log2 = math.log2



class _Gen(_Draw):
    """One document being generated. Emits text in reading order and charges each choice as it is made.

    Charged bits accumulate in `pend` and are recorded by mark() once the text written so far (plus the
    character that follows) determines them; the parser's look-ahead is the reference for where that is.
    The choice primitives (unif .. mix) are the only source of randomness, so a test can replace them.
    """

    def document(self) -> Document:
        g, c = self.g, self.c
        self.put("# ")
        self.topic = self.unif(c.n_topics)
        self.say(g.topics[self.topic])
        self.put(" of ")
        home = self.pick(g.place_t)
        self.say(g.places[home])
        self.home_mix = ((c.p_home, Table([home], [1.0])), (1.0 - c.p_home, g.place_t))
        paras = 0
        while True:
            self.put("\n\n")
            self._PARAGRAPHS[self.choose(c.kind_w)](self)
            paras += 1
            if paras == c.max_paras or (paras >= c.min_paras and self.bern(c.p_end)):
                break
        self.put(END)
        if self.pend:
            self.ends.append(self.pos)
            self.bits.append(self.pend)
        return Document("".join(self.out), sum(self.bits), tuple(self.ends), tuple(self.bits))
    # ---------------------------------------------------------------------------------------------- phrases
    def np(self) -> None:
        c = self.c
        k = self.choose((c.np_w[NP_NEW], c.np_w[NP_REF] if self.things else 0.0, c.np_w[2]))
        if k == NP_NEW:
            self.np_new()
        elif k == NP_REF:
            self.say("the " + self.g.nouns[self.things[self.unif(len(self.things))]])
        else:
            self.say(c.count_words[self.unif(len(c.count_words))])
            if self.bern(c.p_adj):
                self.say(" " + self.adj())
            self.say(" " + self.g.plurals[self.noun()])

    def np_new(self) -> None:
        """ "a lamp", "an old lamp": a new thing, which "the lamp" may refer to from now on."""
        if self.bern(self.c.p_adj):
            a = self.adj()
            self.say(("an " if a[0] in VOWELS else "a ") + a)
            v = self.noun()
            self.put(" " + self.g.nouns[v])
        else:
            v = self.noun()
            w = self.g.nouns[v]
            self.put(("an " if w[0] in VOWELS else "a ") + w)
        self.mark()
        if v not in self.known:
            self.known.add(v)
            self.things.append(v)

    def vp(self, subj: tuple[int, ...]) -> None:
        g, c = self.g, self.c
        pl = len(subj) > 1
        others = [j for j in range(len(self.cast)) if j not in subj]
        k = self.choose(c.vp_w[:GIVE] + (c.vp_w[GIVE] if others else 0.0,) + c.vp_w[GIVE + 1:])
        if k == TV:
            v = self.mix(g.verb_mix[self.topic])
            self.say((g.verbs if pl else g.verbs3)[v])
            self.put(" ")
            self.np()
            # nothing, "in <place>" or "with <name>"
            pp = self.choose((c.pp_w[0], c.pp_w[1], c.pp_w[2] if others else 0.0))
            if pp == 1:
                self.put(" in ")
                self.place()
            elif pp == 2:
                self.say(" with " + self.name(others[self.unif(len(others))]))
        elif k == BE:
            self.say(("are " if pl else "is ") + self.adj())
        elif k == LIVE:
            self.put("live in " if pl else "lives in ")
            self.place()
        elif k == GIVE:
            self.put("give " if pl else "gives ")
            self.np()
            self.say(" to " + self.name(others[self.unif(len(others))]))
        else:
            n = 2 + self.unif(c.has_max - 1)
            v = self.noun()
            self.say(f"{'have' if pl else 'has'} {n} {g.plurals[v]}")
            if not pl:
                self.inv[subj[0]] = (v, n)

    # ---------------------------------------------------------------------------------------------- paragraphs
    def narrative(self) -> None:
        sentences = 0
        while True:
            self.sentence()
            sentences += 1
            if sentences == self.c.max_sents or not self.bern(self.c.p_more_sents):
                return
            self.put(" ")

    def sentence(self) -> None:
        c = self.c
        if self.bern(c.p_there):
            self.say("There")
            self.put(" is ")
            self.np_new()
            self.put(" in ")
            self.place()
            self.put(".")
            return
        cap = True
        if self.bern(c.p_opener):
            self.say(c.openers[self.unif(len(c.openers))])
            self.put(", ")
            cap = False
        subj = self.subject(cap, pairs=True)
        self.put(" ")
        self.vp(subj)
        self.put(".")
        self.focus = subj

    def ledger(self) -> None:
        c = self.c
        self.say("At " + c.settings[self.unif(len(c.settings))])
        self.put(", ")
        (x,) = self.subject(False, pairs=False)
        inv = self.inv.get(x)
        v = self.noun(inv[0] if inv else -1)
        n = inv[1] if inv and v == inv[0] else 2 + self.unif(c.ledger_max - 1)  # a known count is not chosen again
        self.say(f" had {self.count(n, v)}")
        self.put(".")
        pron = self.pronoun((x,), True)
        others = [j for j in range(len(self.cast)) if j != x]
        ops = 0
        while True:
            k = self.choose((c.op_w[SOLD] if n else 0.0, c.op_w[GAVE] if n and others else 0.0,
                             c.op_w[BOUGHT], c.op_w[FOUND]))
            if k == SOLD:
                m = 1 + self.unif(n)
                self.put(f" {pron} sold {m}")
                n -= m
            elif k == GAVE:
                m = 1 + self.unif(n)
                j = others[self.unif(len(others))]
                self.put(f" {pron} gave {m} to {self.name(j)}")
                n -= m
                if j in self.inv and self.inv[j][0] == v:
                    self.inv[j] = (v, self.inv[j][1] + m)
            else:
                m = 1 + self.unif(c.buy_max if k == BOUGHT else c.found_max)
                self.put(f" {pron} {'bought' if k == BOUGHT else 'found'} {m} more")
                n += m
            self.mark()
            self.put(".")
            ops += 1
            if ops == c.max_ops or not self.bern(c.p_more_ops):
                break
        self.say(" Now")
        self.put(f" {pron.lower()} has {self.count(n, v)}.")
        self.inv[x] = (v, n)
        self.focus = (x,)

    def item(self) -> int:
        """One list item; returns how many things it counts."""
        if self.bern(self.c.p_item_plural):
            n = 2 + self.unif(self.c.item_max - 1)
            self.say(f"{n} {self.g.plurals[self.noun()]}")
            return n
        self.np_new()
        return 1

    def list_inline(self) -> None:
        c = self.c
        self.say("For the " + c.purposes[self.unif(len(c.purposes))])
        self.put(", ")
        (x,) = self.subject(False, pairs=False)
        self.put(" packed ")
        total, j = self.item(), 1
        while True:
            last = j + 1 == c.max_items or self.bern(c.p_last)
            self.put(" and " if last and j == 1 else ", and " if last else ", ")
            total += self.item()
            j += 1
            if last:
                break
        self.put(f". That makes {total} things.")
        self.focus = (x,)

    def list_vertical(self) -> None:
        c = self.c
        self.say("Things to " + c.headers[self.unif(len(c.headers))])
        self.put(":")
        total = j = 0
        while True:
            j += 1
            self.put(f"\n{j}. ")
            total += self.item()
            if j >= 2 and (j == c.max_items or self.bern(c.p_last)):
                break
        self.say("\nTotal")
        self.put(f": {total} things.")

    def dialogue(self) -> None:
        c = self.c
        spk = [-1, -1]  # the two speakers alternate; each is named on their first line
        line, question = 0, None
        while True:
            s = line & 1
            if line:
                self.put("\n")
            self.put('"')
            if question is not None:
                self.answer(question, spk[s])
                asked = None
            else:
                room = line + 1 < c.max_lines  # a question needs a line for its answer
                k = self.choose((c.utt_w[U_I], c.utt_w[U_THE] if self.things else 0.0,
                                 c.utt_w[U_HAVE] if room else 0.0, c.utt_w[U_SUM] if room else 0.0,
                                 c.utt_w[U_COUNT] if room and line else 0.0))  # the one asked is known by line 2
                asked = self.utterance(k, spk[1 - s])
            verb = "said" if asked is None else "asked"
            self.put('," ' if asked is None else '?" ')
            if line < 2:
                self.put(verb + " ")
                spk[s] = self.speaker(spk[0] if line else -1)
            else:
                i = spk[s]
                by_pronoun = self.bern(c.p_pron_attr)
                self.say(f"{self.pronoun((i,), False)} {verb}" if by_pronoun else f"{verb} {self.name(i)}")
            self.put(".")
            self.focus = (spk[s],)
            line += 1
            question = asked
            if asked is None and line >= 2 and (line == c.max_lines or not self.bern(c.p_more_lines)):
                return

    def utterance(self, k: int, answerer: int) -> tuple[int, int] | None:
        """The words of one line; returns (kind, data) when the line is a question that the next line answers."""
        g, c = self.g, self.c
        if k == U_I:
            self.say("I")
            self.say(" " + g.verbs[self.mix(g.verb_mix[self.topic])])
            self.put(" ")
            self.np()
            return None
        if k == U_THE:
            self.say("The " + g.nouns[self.things[self.unif(len(self.things))]])
            self.say(" is " + self.adj())
            return None
        if k == U_HAVE:
            w = g.nouns[self.noun()]
            self.say(f"Do you have {'an' if w[0] in VOWELS else 'a'} {w}")
            return (U_HAVE, 0)
        if k == U_SUM:
            a = 1 + self.unif(c.sum_max)
            self.say(f"What is {a}")
            minus = self.bern(0.5)
            b = 1 + self.unif(a if minus else c.sum_max)
            self.say(f" {'minus' if minus else 'plus'} {b}")
            return (U_SUM, a - b if minus else a + b)
        inv = self.inv.get(answerer)
        v = self.noun(inv[0] if inv else -1)
        self.say(f"How many {g.plurals[v]}")
        self.put(" do you have")
        return (U_COUNT, v)

    def answer(self, question: tuple[int, int], who: int) -> None:
        kind, data = question
        if kind == U_HAVE:
            yes = self.bern(0.5)
            self.say("Yes" if yes else "No")
            self.put(", I do" if yes else ", I do not")
        elif kind == U_SUM:
            self.put(f"It is {data}")
        else:
            inv = self.inv.get(who)
            if inv and inv[0] == data:
                n = inv[1]  # said before: the answer is determined
            else:
                n = self.unif(self.c.count_max + 1)
                self.inv[who] = (data, n)
            self.say("I have " + self.count(n, data))

    _PARAGRAPHS = {NARRATIVE: narrative, LEDGER: ledger, LIST_INLINE: list_inline, LIST_VERTICAL: list_vertical,
                   DIALOGUE: dialogue}


# -------------------------------------------------------------------------------------------------- public API
def _rng(seed: int, i: int) -> random.Random:
    """The random stream of document i of a seed: independent of every other document, of order and of process."""
    digest = hashlib.blake2b(f"corpus:{seed}:{i}".encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "little"))


def generate(seed: int, start: int, count: int, *, config: Config | None = None) -> Iterator[Document]:
    """Documents start .. start+count-1 of a seed (config: a smaller grammar, for tests)."""
    g = grammar(config)
    for i in range(start, start + count):
        yield _Gen(g, _rng(seed, i).random).document()


def score(text: str, *, config: Config | None = None) -> float:
    """-log2 P(text), computed by parsing the text back into choices (not by replaying the generator).

    Raises ValueError, saying where, if the generator cannot produce this text.
    """
    return parse(text, grammar(config)).bits


def prefix_bits(doc: Document, n_bytes: int) -> float:
    """A lower bound on -log2 P(a document starts with doc.text[:n_bytes]): the bits of the choices settled there.

    0 for n_bytes <= 0 (every choice is settled at offset >= 1), doc.bits for n_bytes >= len(doc.text),
    non-decreasing in between.
    """
    return sum(doc.choice_bits[: bisect_right(doc.choice_ends, n_bytes)])


def entropy_floor(docs: Iterable[Document]) -> float:
    """Bits per byte of the generator on these documents: no model can do better on average."""
    bits = nbytes = 0.0
    for d in docs:
        bits += d.bits
        nbytes += len(d.text)
    if not nbytes:
        raise ValueError("entropy_floor needs at least one document")
    return bits / nbytes
