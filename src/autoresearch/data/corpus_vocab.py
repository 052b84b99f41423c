"""Vocabulary, settings and probability tables of the embedded corpus (the generator is in corpus.py).

The words are synthetic but pronounceable: syllables drawn from a fixed seed, so the vocabulary is the same on
every machine and no word list ships with the package. Every word form (noun singular and plural, verb forms,
names, places, topic names) differs from every other form and from the English words of the templates, compared
in lower case: that is what lets the parser recover each choice of the generator from the text alone.
Frequencies are Zipf-like (rank r has weight 1/(r+2.7)^0.85), globally and within each topic.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from itertools import accumulate

# The kinds of things the generator chooses between; corpus.py and corpus_parse.py share these numbers.
NARRATIVE, LEDGER, LIST_INLINE, LIST_VERTICAL, DIALOGUE = range(5)  # paragraph kinds
PRON, EXIST, NEW = range(3)  # how a subject is named: pronoun of the focus, a known character, a new one
TV, BE, LIVE, GIVE, HAS = range(5)  # verb phrases
NP_NEW, NP_REF, NP_PLURAL = range(3)  # object noun phrases: "a lamp", "the lamp", "three lamps"
SOLD, GAVE, BOUGHT, FOUND = range(4)  # ledger operations
U_I, U_THE, U_HAVE, U_SUM, U_COUNT = range(5)  # dialogue utterances (the last three are questions)
TOPIC, PLACE, NOUN, PLURAL, ADJ, VERB, VERB3, NAME = range(8)  # word categories of the lexicon

END = "\n\nTHE END\n"  # the only place an upper-case "TH" occurs: a document visibly ends there
VOWELS = "aeiou"  # "an" before these, "a" otherwise


@dataclass(frozen=True)
class Config:
    """Everything that defines the distribution of documents. The default is the corpus; tests shrink it."""

    seed: int = 20240917  # of the vocabulary, not of the documents
    n_nouns: int = 3000
    n_adjs: int = 600
    n_verbs: int = 600
    n_names: tuple[int, int] = (250, 250)  # female, male
    n_places: int = 200
    n_topics: int = 48
    topic_size: tuple[int, int, int] = (60, 20, 20)  # nouns, verbs, adjectives favoured by each topic
    zipf: float = 0.85
    # document: "# <Topic> of <Place>", paragraphs, END
    min_paras: int = 3
    max_paras: int = 14
    p_end: float = 0.15  # after each paragraph from the min_paras-th on
    kind_w: tuple[float, ...] = (0.55, 0.11, 0.08, 0.08, 0.18)  # NARRATIVE .. DIALOGUE
    max_cast: int = 5
    p_topic: float = 0.55  # nouns, verbs, adjectives: from the topic's favourites, else from the whole vocabulary
    p_home: float = 0.6  # places: the one in the title, else any
    p_boost: float = 0.6  # the noun a character is known to hold, when asked or counted again
    # narrative
    max_sents: int = 8
    p_more_sents: float = 0.75
    p_there: float = 0.12
    p_opener: float = 0.2
    openers: tuple[str, ...] = ("Then", "Later", "Soon", "Meanwhile", "One day", "That night", "Next")
    subj_w: tuple[float, float, float] = (0.45, 0.35, 0.2)  # PRON, EXIST, NEW
    p_pair: float = 0.15  # an existing character's name is followed by "and <another>"
    vp_w: tuple[float, ...] = (0.4, 0.15, 0.08, 0.15, 0.12)  # TV .. HAS
    np_w: tuple[float, float, float] = (0.45, 0.35, 0.2)  # NP_NEW, NP_REF, NP_PLURAL
    pp_w: tuple[float, float, float] = (0.6, 0.2, 0.2)  # after verb + object: nothing, "in <place>", "with <name>"
    p_adj: float = 0.4
    has_max: int = 12
    count_words: tuple[str, ...] = ("two", "three", "four", "five", "six", "seven", "eight", "nine")
    # ledger: "At the market, Mara had 7 lamps. She sold 3. Now she has 4 lamps."
    settings: tuple[str, ...] = ("the market", "the fair", "home", "the harbor")
    ledger_max: int = 20
    op_w: tuple[float, float, float, float] = (0.35, 0.2, 0.3, 0.15)  # SOLD, GAVE, BOUGHT, FOUND
    max_ops: int = 4
    p_more_ops: float = 0.5
    buy_max: int = 10
    found_max: int = 5
    # lists: "For the trip, Mara packed a lamp, 3 cups, and an old spoon. That makes 5 things."
    purposes: tuple[str, ...] = ("trip", "winter", "feast", "journey")
    headers: tuple[str, ...] = ("buy", "pack", "sell", "mend")  # "Things to buy:" then numbered lines
    max_items: int = 6
    p_last: float = 0.4
    p_item_plural: float = 0.45
    item_max: int = 9
    # dialogue: one quoted line per speaker turn, two speakers alternating
    max_lines: int = 8
    p_more_lines: float = 0.6
    utt_w: tuple[float, ...] = (0.3, 0.15, 0.15, 0.15, 0.25)  # U_I .. U_COUNT
    sum_max: int = 20
    count_max: int = 12
    p_pron_attr: float = 0.5  # '"...," she said.' instead of '"...," said Mara.' from the third line on


# Words of the templates; synthetic words must never coincide with them (nor with their capitalised forms).
TEMPLATE_WORDS = frozenset("""
a an the of there is are in she he they and live lives give gives to have has had at sold gave bought found more
now no for with packed that makes things total i do you what plus minus it how many yes not said asked end
""".split())


class Table:
    """A discrete distribution over distinct values: cumulative weights to sample, probabilities to charge."""

    __slots__ = ("vals", "cum", "total", "p", "bits")

    def __init__(self, vals: list[int], weights: list[float]) -> None:
        self.vals = list(vals)
        self.cum = list(accumulate(weights))
        self.total = self.cum[-1]
        self.p = {v: w / self.total for v, w in zip(self.vals, weights)}
        self.bits = [-math.log2(w / self.total) for w in weights]
        assert len(self.p) == len(self.vals), "table values must be distinct"


def zipf_table(vals: list[int], s: float) -> Table:
    return Table(vals, [1.0 / (r + 2.7) ** s for r in range(len(vals))])


@dataclass(frozen=True, eq=False)
class Grammar:
    """The word lists and tables built from one Config."""

    cfg: Config
    topics: list[str]
    places: list[str]
    nouns: list[str]
    plurals: list[str]
    adjs: list[str]
    verbs: list[str]  # base form: "they sell"
    verbs3: list[str]  # third person singular: "she sells"
    names: tuple[list[str], list[str]]  # female, male; capitalised
    place_t: Table
    name_t: tuple[Table, Table]
    noun_mix: list[tuple[tuple[float, Table], ...]]  # per topic: (weight, table) components of a mixture
    verb_mix: list[tuple[tuple[float, Table], ...]]
    adj_mix: list[tuple[tuple[float, Table], ...]]
    lex: dict[str, tuple[int, int]]  # word form -> (category, index); names -> (NAME, gender * 2**20 + index)


_ONSETS = ("b bl br c ch cr d dr f fl fr g gl gr h j k kl l m n p pl pr qu r s sc sh sk sl sn sp st t th tr v w z"
           " _ _ _ _").split()  # "_" = no onset, so some words start with a vowel (and take "an")
_NUCLEI = "a e i o u a e i o u ai ea ee oo ou ie".split()
_CODAS = "_ _ _ _ _ n r l m t k nd rn st sk lt mp ng".split()


def _syllable(r: random.Random) -> str:
    return (r.choice(_ONSETS) + r.choice(_NUCLEI) + r.choice(_CODAS)).replace("_", "")


def _suffix_s(w: str) -> str:
    return w + "es" if w.endswith(("s", "x", "sh", "ch")) else w + "s"


def _words(r: random.Random, used: set[str], n: int, syllables: tuple[int, ...], forms=lambda w: (w,)) -> list[str]:
    """n new words; each word's forms (lower case) are reserved in `used` so no two forms ever coincide."""
    out: list[str] = []
    while len(out) < n:
        w = "".join(_syllable(r) for _ in range(r.choice(syllables)))
        fs = forms(w)
        if len(w) < 3 or len(w) > 12 or any(f in used for f in fs):
            continue
        used.update(fs)
        out.append(w)
    return out


def grammar(cfg: Config | None = None) -> Grammar:
    """The grammar of a Config (the default corpus when None), built once per process."""
    return _build(cfg or Config())


@functools.lru_cache(maxsize=8)
def _build(cfg: Config) -> Grammar:
    firsts = [o.split()[0] for o in cfg.openers]
    # The parser tells constructions apart by their first word: keep those words distinct.
    assert len(set(firsts)) == len(firsts), "openers must differ in their first word"
    assert not set(firsts) & {"There", "She", "He", "They", "At", "For", "Things", "THE"}, "opener like a construction"
    assert not set(cfg.count_words) & {"a", "an", "the"}
    assert not any(ch in p for p in cfg.settings + cfg.purposes + cfg.headers for ch in ",:"), "',' or ':' in a phrase"
    assert cfg.max_cast >= 2 and sum(cfg.n_names) >= 2, "a dialogue needs two distinct speakers"
    r = random.Random(cfg.seed)
    used = set(TEMPLATE_WORDS)
    for phrase in cfg.openers + cfg.settings + cfg.purposes + cfg.headers + cfg.count_words:
        used.update(phrase.lower().split())
    topics = [w.capitalize() for w in _words(r, used, cfg.n_topics, (2, 3))]
    places = [w.capitalize() for w in _words(r, used, cfg.n_places, (2, 3))]
    names = tuple([w.capitalize() for w in _words(r, used, n, (2, 2, 3))] for n in cfg.n_names)
    nouns = _words(r, used, cfg.n_nouns, (1, 2, 2), lambda w: (w, _suffix_s(w)))
    adjs = _words(r, used, cfg.n_adjs, (1, 2, 2))
    verbs = _words(r, used, cfg.n_verbs, (1, 2), lambda w: (w, _suffix_s(w)))

    def mixtures(n: int, size: int) -> list[tuple[tuple[float, Table], ...]]:
        every = zipf_table(list(range(n)), cfg.zipf)
        # Each topic favours its own random subset, so a word rare overall can be common in one topic.
        return [((cfg.p_topic, zipf_table(r.sample(range(n), min(size, n)), cfg.zipf)), (1 - cfg.p_topic, every))
                for _ in range(cfg.n_topics)]

    lex: dict[str, tuple[int, int]] = {}
    for cat, words in ((TOPIC, topics), (PLACE, places), (NOUN, nouns), (PLURAL, [_suffix_s(w) for w in nouns]),
                       (ADJ, adjs), (VERB, verbs), (VERB3, [_suffix_s(w) for w in verbs])):
        lex.update((w, (cat, i)) for i, w in enumerate(words))
    for gender, words in enumerate(names):
        lex.update((w, (NAME, gender << 20 | i)) for i, w in enumerate(words))
    return Grammar(
        cfg=cfg, topics=topics, places=places, nouns=nouns, plurals=[_suffix_s(w) for w in nouns], adjs=adjs,
        verbs=verbs, verbs3=[_suffix_s(w) for w in verbs], names=names,
        place_t=zipf_table(list(range(len(places))), cfg.zipf),
        name_t=tuple(zipf_table(list(range(len(n))), cfg.zipf) for n in names),
        noun_mix=mixtures(len(nouns), cfg.topic_size[0]), verb_mix=mixtures(len(verbs), cfg.topic_size[1]),
        adj_mix=mixtures(len(adjs), cfg.topic_size[2]), lex=lex)
