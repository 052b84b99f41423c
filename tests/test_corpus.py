"""The embedded corpus: determinism, exact probabilities, unambiguous text, visible ends, sane statistics.

The exactness checks do not trust the generator's own bookkeeping:
- the parser (corpus_parse.py) recovers the choices from the text alone and must agree on -log2 P;
- an enumerator drives the generator through every choice sequence of a tiny grammar and checks that distinct
  sequences give distinct texts and that the probabilities add up;
- a Monte-Carlo run checks that the sampler draws documents as often as their charged probability says.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import re
import subprocess
import sys

import pytest

from autoresearch.data import corpus
from autoresearch.data.corpus_parse import parse
from autoresearch.data.corpus_vocab import END, Config, grammar

SAMPLE = list(corpus.generate(0, 0, 2000))

# A grammar small enough to enumerate: every construction is there, with one or two words to choose from.
TINY = Config(n_nouns=2, n_adjs=1, n_verbs=1, n_names=(2, 1), n_places=2, n_topics=2, topic_size=(1, 1, 1),
              min_paras=1, max_paras=2, max_cast=2, max_sents=2, openers=("One day",), count_words=("two",),
              settings=("the market", "home"), has_max=3, ledger_max=3, max_ops=2, buy_max=2, found_max=1,
              purposes=("trip",), headers=("buy",), max_items=3, item_max=3, max_lines=3, sum_max=2, count_max=2)
KINDS = ("narrative", "ledger", "list_inline", "list_vertical", "dialogue")


def only(*kinds: str, **changes) -> Config:
    return dataclasses.replace(TINY, kind_w=tuple(float(k in kinds) for k in KINDS), **changes)


# ------------------------------------------------------------------------------------------------ determinism
def test_documents_are_a_function_of_seed_and_index() -> None:
    first = list(corpus.generate(0, 0, 8))
    assert first == SAMPLE[:8] == list(corpus.generate(0, 0, 8))
    assert list(corpus.generate(0, 5, 3)) == first[5:8]
    other = list(corpus.generate(1, 0, 8))
    assert all(a.text != b.text for a, b in zip(first, other))
    assert len({d.text for d in SAMPLE}) == len(SAMPLE)


def test_same_documents_in_a_fresh_process_with_another_hash_seed() -> None:
    # autoresearch.data imports no torch, so the fresh process starts fast.
    code = "from autoresearch.data import corpus; print(repr([d.text for d in corpus.generate(3, 40, 4)]))"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == repr([d.text for d in corpus.generate(3, 40, 4)])


# ------------------------------------------------------------------------------------------------ exactness
def test_parser_recovers_the_exact_information_content() -> None:
    docs = SAMPLE[:300] + list(corpus.generate(987654321, 10**9, 100))
    for d in docs:
        assert corpus.score(d.text) == pytest.approx(d.bits, rel=1e-9)
        assert d.bits == pytest.approx(sum(d.choice_bits), rel=1e-12)


def test_choice_ends_are_where_the_text_settles_the_choices() -> None:
    """prefix_bits is a lower bound only if each choice is determined by the text up to its recorded end.

    The parser records, for each choice, how far it had to look to recover it; the generator must never
    claim bits earlier than that.
    """
    g = grammar()
    for d in SAMPLE[:300]:
        p = parse(d.text, g)
        for end in set(d.choice_ends):
            assert corpus.prefix_bits(d, end) <= _step(p.choice_ends, p.choice_bits, end) * (1 + 1e-12) + 1e-9


def _step(ends: tuple[int, ...], bits: tuple[float, ...], n: int) -> float:
    return sum(b for e, b in zip(ends, bits) if e <= n)


def test_prefix_bits() -> None:
    for d in SAMPLE[:40]:
        assert corpus.prefix_bits(d, 0) == 0.0
        assert corpus.prefix_bits(d, len(d.text)) == pytest.approx(d.bits, rel=1e-12)
        values = [corpus.prefix_bits(d, n) for n in range(len(d.text) + 1)]
        assert all(a <= b for a, b in zip(values, values[1:]))
        assert list(d.choice_ends) == sorted(d.choice_ends)
        assert 1 <= d.choice_ends[0] and d.choice_ends[-1] <= len(d.text)
        assert all(b > 0 for b in d.choice_bits)


def test_no_document_is_a_prefix_of_another() -> None:
    texts = sorted(d.text for d in SAMPLE)
    # In sorted order a prefix of any text is also a prefix of its successor.
    assert not any(b.startswith(a) for a, b in zip(texts, texts[1:]))
    for t in texts:
        assert t.endswith(END) and t.count("THE END") == 1 and t.isascii()


class _Fork(Exception):
    def __init__(self, options: list[tuple[object, float]]) -> None:
        self.options = options


class _Scripted(corpus._Gen):
    """The generator with each random draw replaced by the next entry of a script of option indices.

    Each primitive lists its options with their probabilities (worked out here, not taken from the generator);
    at the end of the script it raises _Fork with the options, so the caller can extend the script each way.
    """

    def __init__(self, g, script: tuple[int, ...]) -> None:
        super().__init__(g, lambda: pytest.fail("the scripted generator drew a random number"))
        self.script, self.k, self.logp = script, 0, 0.0

    def take(self, options: list[tuple[object, float]]):
        options = [(v, p) for v, p in options if p > 0]
        assert math.isclose(sum(p for _, p in options), 1.0, rel_tol=1e-12)
        if len(options) == 1:
            return options[0][0]
        if self.k == len(self.script):
            raise _Fork(options)
        v, p = options[self.script[self.k]]
        self.k += 1
        self.pend -= math.log2(p)
        self.logp += math.log2(p)
        return v

    def unif(self, n):
        return self.take([(i, 1 / n) for i in range(n)])

    def bern(self, p):
        return self.take([(True, p), (False, 1 - p)])

    def choose(self, w):
        return self.take([(k, x / sum(w)) for k, x in enumerate(w)])

    def pick(self, t):
        return self.take([(v, t.p[v]) for v in t.vals])

    def pick_excl(self, t, excl):
        rest = sum(t.p[v] for v in t.vals if v not in excl)
        return self.take([(v, t.p[v] / rest) for v in t.vals if v not in excl])

    def mix(self, comps):
        p: dict[int, float] = collections.defaultdict(float)
        for w, t in comps:
            for v in t.vals:
                p[v] += w * t.p[v]
        return self.take(sorted(p.items()))


def _enumerate(cfg: Config, min_p: float) -> tuple[list[tuple[corpus.Document, float]], float]:
    """Every document of probability >= min_p with its log2 probability, and the probability of the rest."""
    g = grammar(cfg)
    leaves, rest, stack = [], 0.0, [()]
    while stack:
        script = stack.pop()
        gen = _Scripted(g, script)
        try:
            doc = gen.document()
        except _Fork as fork:
            for j, (_, p) in enumerate(fork.options):
                if 2 ** gen.logp * p < min_p:
                    rest += 2 ** gen.logp * p
                else:
                    stack.append(script + (j,))
            continue
        leaves.append((doc, gen.logp))
    return leaves, rest


@pytest.mark.slow
@pytest.mark.parametrize("cfg, min_p", [
    (only("ledger", max_paras=1), 0.0),  # exhaustive: every document of the grammar
    (only("list_inline", max_paras=1), 0.0),
    (only("list_vertical", max_paras=1), 0.0),
    (only("narrative", max_paras=1), 3e-5),  # pruned: only documents at least this likely
    (only("dialogue", max_paras=1), 3e-5),
    (only("ledger", "dialogue"), 1e-4),  # state carried across paragraphs (counts asked again)
    (TINY, 1e-4),
], ids=["ledger", "list_inline", "list_vertical", "narrative", "dialogue", "ledger+dialogue", "all"])
def test_enumerated_grammar_is_unambiguous_and_normalised(cfg: Config, min_p: float) -> None:
    leaves, rest = _enumerate(cfg, min_p)
    assert len(leaves) > 40
    texts = [d.text for d, _ in leaves]
    assert len(set(texts)) == len(texts), "two choice sequences wrote the same text"
    assert math.fsum(2**lp for _, lp in leaves) + rest == pytest.approx(1.0, abs=1e-9)
    if min_p == 0:
        assert rest == 0
    ordered = sorted(texts)
    assert not any(b.startswith(a) for a, b in zip(ordered, ordered[1:])), "a document is a prefix of another"
    for d, lp in leaves:
        assert d.bits == pytest.approx(-lp, rel=1e-9, abs=1e-12)
        assert corpus.score(d.text, config=cfg) == pytest.approx(-lp, rel=1e-9, abs=1e-12)


def test_sampler_draws_documents_as_often_as_charged() -> None:
    """Chi-square of observed counts against N * 2^-bits over every frequent document of a small grammar."""
    cfg = dataclasses.replace(TINY, max_paras=1, max_sents=1, max_lines=2, max_items=2, max_ops=1)
    n = 30000
    docs = list(corpus.generate(7, 0, n, config=cfg))
    counts = collections.Counter(d.text for d in docs)
    expected = {d.text: n * 2**-d.bits for d in docs}
    frequent = [t for t in counts if expected[t] >= 20]
    assert len(frequent) > 100 and sum(expected[t] for t in frequent) > 0.4 * n
    stat = sum((counts[t] - expected[t]) ** 2 / expected[t] for t in frequent)
    other_obs = n - sum(counts[t] for t in frequent)
    other_exp = n - sum(expected[t] for t in frequent)
    stat += (other_obs - other_exp) ** 2 / other_exp
    dof = len(frequent)
    assert stat < dof + 4 * math.sqrt(2 * dof), f"chi2 {stat:.0f} on {dof} degrees of freedom"


# ------------------------------------------------------------------------------------------------ statistics
def test_statistics_of_the_default_corpus() -> None:
    text = "".join(d.text for d in SAMPLE)
    words = collections.Counter(re.findall(r"[A-Za-z]+", text))
    assert len(words) > 3000, "a vocabulary in the thousands"
    floor = corpus.entropy_floor(SAMPLE)
    assert 0.4 < floor < 1.2
    lengths = sorted(len(d.text) for d in SAMPLE)
    assert 600 < sum(lengths) / len(lengths) < 1500 and lengths[20] > 150 and lengths[-1] < 8000
    # Character bigrams (even fitted to this very sample) leave far more uncertainty than the floor.
    sample = "".join(d.text for d in SAMPLE[:500])
    pairs = collections.Counter(zip(sample, sample[1:]))
    firsts = collections.Counter(sample[:-1])
    bigram = -sum(c * math.log2(c / firsts[a]) for (a, _), c in pairs.items()) / (len(sample) - 1)
    assert bigram > 2.5 * floor


def test_arithmetic_in_the_text_is_right() -> None:
    text = "\n\n".join(d.text for d in SAMPLE[:1000])
    checked = collections.Counter()
    for m in re.finditer(r"had (no|\d+) [a-z]+\.((?: (?:She|He) [^.]*\.)+) Now (?:she|he) has (no|\d+) ", text):
        n = 0 if m[1] == "no" else int(m[1])
        for op, k in re.findall(r"(sold|gave|bought|found) (\d+)", m[2]):
            n += int(k) if op in ("bought", "found") else -int(k)
            assert n >= 0
        assert n == (0 if m[3] == "no" else int(m[3]))
        checked["ledger"] += 1
    for m in re.finditer(r"packed (.*?)\. That makes (\d+) things\.", text):
        items = re.split(r", and |, | and ", m[1])
        assert sum(int(i.split()[0]) if i[0].isdigit() else 1 for i in items) == int(m[2])
        checked["list"] += 1
    for m in re.finditer(r"\n((?:\d+\. [^\n]*\n)+)Total: (\d+) things\.", text):
        items = [line.split(" ", 1)[1] for line in m[1].splitlines()]
        assert sum(int(i.split()[0]) if i[0].isdigit() else 1 for i in items) == int(m[2])
        checked["numbered list"] += 1
    for m in re.finditer(r'"What is (\d+) (plus|minus) (\d+)\?" asked [^\n]*\n"It is (\d+),"', text):
        a, b = int(m[1]), int(m[3])
        assert (a + b if m[2] == "plus" else a - b) == int(m[4])
        checked["sum"] += 1
    assert min(checked.values()) >= 30 and len(checked) == 4, checked


# ------------------------------------------------------------------------------------------------ rejection
def _find(pattern: str) -> tuple[str, re.Match]:
    for d in SAMPLE:
        m = re.search(pattern, d.text)
        if m:
            return d.text, m
    raise AssertionError(f"no document matches {pattern!r}")


def _swap(pattern: str, new) -> str:
    text, m = _find(pattern)
    return text[: m.start(1)] + (new(m[1]) if callable(new) else new) + text[m.end(1):]


@pytest.mark.parametrize("make", [
    lambda: _swap(r" Now (?:she|he) has (\d+) ", lambda n: str(int(n) + 1)),  # wrong arithmetic
    lambda: _swap(r"That makes (\d+) things", lambda n: str(int(n) - 1)),
    lambda: _swap(r'"It is (\d+),"', lambda n: str(int(n) + 2)),
    lambda: _swap(r" a ([a-z]+)\.", lambda w: w + "q"),  # a misspelled noun
    lambda: _swap(r" (a) [b-df-hj-np-tv-z]", "an"),  # wrong article
    lambda: _swap(r"(She) [a-z]+s ", "They"),  # wrong agreement
    lambda: _swap(r"\. (She) ", "He"),  # wrong gender for the focus... or a pronoun with no antecedent
    lambda: SAMPLE[0].text[:-len(END)],  # no visible end
    lambda: SAMPLE[0].text[:-1],
    lambda: SAMPLE[0].text + SAMPLE[1].text,
    lambda: SAMPLE[0].text.replace("\n\n", "\n", 1),
    lambda: "Hello, world.\n",
    lambda: "",
], ids=["ledger", "list", "sum", "spelling", "article", "agreement", "pronoun", "no end", "cut", "two docs",
        "layout", "english", "empty"])
def test_text_the_generator_cannot_write_is_rejected(make) -> None:
    with pytest.raises(ValueError):
        corpus.score(make())
