"""`autoresearch prepare`: raw documents -> BPE tokenizer -> tokenized train/val/test splits (+ entropy floor).

Everything is written under the cache (see settings.cache_dir) and is idempotent: a finished preparation is
recognised by its meta.json and reused. The evaluation window (how many rows of each split evaluate_bpb scores)
is fixed here, once, so that every experiment is measured on exactly the same tokens, and so that the entropy
floor of the embedded corpus can be computed for exactly those tokens.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from autoresearch.data import corpus
from autoresearch.data import sources as data
from autoresearch.harness.constants import META_FILE, eval_key, load_meta, prepared_dir, raw_dir
from autoresearch.harness.dataloader import BUFFER_SIZE, REFILL_DOCS, SPLITS, TokenSplit, pack_rows
from autoresearch.harness.tokenizer import ORIGINAL_SPECIAL_TOKENS, SPECIAL_TOKENS, Tokenizer
from autoresearch.settings import Settings

DOC_CHAR_CAP = 10_000  # per document, for tokenizer training only (as the original); the budget counts capped text
TRAIN_CACHE_CHARS = 100_000_000  # tokenizer training keeps the train split for tokenization up to this size
CHUNK_DOCS = 2_000  # documents per generation/tokenization chunk
EVAL_MARGIN = 2.0  # embedded val/test hold twice the tokens one evaluation scores

Progress = Callable[[str], None]


@dataclass
class PrepareReport:
    directory: Path
    splits: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> docs, tokens, bytes
    eval_rows: dict[str, int] = field(default_factory=dict)
    floor_bpb: dict[str, float] = field(default_factory=dict)  # embedded corpus only: val/test evaluation window
    seconds: float = 0.0
    reused: bool = False


def prepare(s: Settings, cache: Path, progress: Progress = print, workers: int | None = None) -> PrepareReport:
    t0 = time.perf_counter()
    out = prepared_dir(s, cache)
    out.mkdir(parents=True, exist_ok=True)
    meta = load_meta(out)
    report = PrepareReport(directory=out)
    workers = workers or max(1, min(8, os.cpu_count() or 1))

    if not meta.get("complete"):
        source = _source(s, cache, progress, workers)
        progress(f"prepare: {source.describe}")
        tokenizer = _train_tokenizer(source, s, out, progress)
        meta = {"dataset": s.dataset, "vocab_size": s.vocab_size, "tokenizer_chars": s.tokenizer_train_chars,
                "special_tokens": list(tokenizer.special_tokens), "byte_rule": tokenizer.byte_rule,
                "splits": {}, "eval": {}}
        for split in SPLITS:
            tokens, offsets, nbytes = _tokenize_split(source, split, tokenizer, s, workers, progress)
            TokenSplit(tokens, offsets, source.groups(split, len(offsets) - 1)).save(out, split)
            meta["splits"][split] = {"docs": len(offsets) - 1, "tokens": int(len(tokens)), "bytes": nbytes}
            progress(f"prepare: {split}: {len(offsets) - 1:,} documents, {len(tokens):,} tokens, {nbytes:,} bytes")
        meta["complete"] = True
        _write_meta(out, meta)
    else:
        report.reused = True
        progress(f"prepare: reusing {out}")

    key = eval_key(s)
    if key not in meta["eval"]:
        meta["eval"][key] = _evaluation_window(s, out, progress)
        _write_meta(out, meta)
    for split in ("val", "test"):
        window = meta["eval"][key][split]
        report.eval_rows[split] = window["rows"]
        if "floor_bpb" in window:
            report.floor_bpb[split] = window["floor_bpb"]
    report.splits = meta["splits"]
    report.seconds = time.perf_counter() - t0
    return report


def is_prepared(s: Settings, cache: Path) -> bool:
    """Whether the data these settings need is ready: the splits, and the evaluation window of their eval size."""
    meta = load_meta(prepared_dir(s, cache))
    return bool(meta.get("complete")) and eval_key(s) in meta.get("eval", {})


def prepare_once(s: Settings, cache: Path, progress: Progress = print, workers: int | None = None) -> bool:
    """Prepare the data unless it is ready; True when this call prepared it.

    Processes that share a cache (experiments on one Ray node) may all find the data missing at once: an exclusive
    lock beside the prepared directory lets one of them prepare, and the others wait and then find it ready.
    """
    if is_prepared(s, cache):
        return False
    import fcntl

    out = prepared_dir(s, cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"prepare: another process is preparing {out}: waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, and by the kernel if that process dies
        if is_prepared(s, cache):
            return False
        prepare(s, cache, progress, workers)
        return True


# -- sources -----------------------------------------------------------------------------------------------------


@dataclass
class _Source:
    describe: str
    texts: Callable[[str], Iterator[str]]  # split -> documents
    embedded: bool = False
    shuffle_train: bool = False  # local corpora are often ordered by topic or file
    row_groups: Callable[[str], list[int] | None] = lambda split: None  # split -> documents per parquet row group
    # climbmix's tokenizer is the original's: its special tokens (three merges fewer) and its bytes per token.
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS
    byte_rule: str = "utf8"
    train_cache: list[str] | None = None  # the whole training split, when tokenizer training already read it all

    def documents(self, split: str) -> Iterator[str]:
        if split == "train" and self.train_cache is not None:
            return iter(self.train_cache)
        return self.texts(split)

    def groups(self, split: str, n_docs: int) -> np.ndarray | None:
        """The split's row groups, which the packing's refills follow; None for one group."""
        sizes = self.row_groups(split)
        if sizes is None:
            return None
        if sum(sizes) != n_docs:
            raise data.DataError(f"the {split} split's parquet row groups hold {sum(sizes)} rows but {n_docs} "
                                 "documents were read: a shard changed during prepare; rerun prepare")
        return np.array(sizes, dtype=np.int64)


def _source(s: Settings, cache: Path, progress: Progress, workers: int) -> _Source:
    if s.dataset == "embedded":
        return _Source(f"embedded corpus (seed {s.seed}, {s.embedded_train_mb:g} MB of training text)",
                       texts=lambda split: _embedded_texts(s, split, workers, heldout_salt(prepared_dir(s, cache))),
                       embedded=True)
    raw = raw_dir(s, cache)
    raw.mkdir(parents=True, exist_ok=True)
    data.fetch(s.dataset, raw, train_shards=s.train_shards, progress=progress)
    as_original = s.dataset == "climbmix"  # trained on in shard order, as the original (the shards are shuffled)
    return _Source(
        data.describe(s.dataset),
        texts=lambda split: data.iter_documents(s.dataset, split, raw, train_shards=s.train_shards),
        shuffle_train=not as_original,
        row_groups=lambda split: data.row_groups(s.dataset, split, raw, train_shards=s.train_shards),
        special_tokens=ORIGINAL_SPECIAL_TOKENS if as_original else SPECIAL_TOKENS,
        byte_rule="decoded" if as_original else "utf8",
    )


SALT_FILE = "heldout.salt"  # not a training file: train.py's sandbox cannot read it (run/supervisor.py)


def split_seed(seed: int, split: str, salt: str = "") -> int:
    """Independent generator streams per split, so val and test never share a document with train. The val and
    test streams are salted with a secret of the prepared directory (heldout_salt): the generator and the seed are
    in every experiment's reach, and without the salt train.py could regenerate the evaluation documents."""
    key = f"{seed}:{split}" + (f":{salt}" if salt and split != "train" else "")
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def heldout_salt(out: Path) -> str:
    """The prepared directory's secret for the embedded corpus's val and test streams, made once, from the OS."""
    path = out / SALT_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(16).hex())
    return path.read_text().strip()


def _embedded_texts(s: Settings, split: str, workers: int = 1, salt: str = "") -> Iterator[str]:
    """Training text up to the configured size; val/test are open-ended (the tokenizer decides how much).

    Chunks of documents are generated in worker processes, a bounded number ahead of the consumer.
    """
    seed = split_seed(s.seed, split, salt)
    budget = int(s.embedded_train_mb * 1e6) if split == "train" else None
    produced = 0
    starts = itertools.count(0, CHUNK_DOCS)
    with ProcessPoolExecutor(workers) if workers > 1 else _InlineExecutor() as pool:
        pending = deque(pool.submit(_generate_texts, seed, next(starts)) for _ in range(2 * workers))
        while pending:
            for text in pending.popleft().result():
                yield text
                produced += len(text)
                if budget is not None and produced >= budget:
                    for f in pending:
                        f.cancel()
                    return
            pending.append(pool.submit(_generate_texts, seed, next(starts)))


def _generate_texts(seed: int, start: int) -> list[str]:
    return [doc.text for doc in corpus.generate(seed, start, CHUNK_DOCS)]


class _InlineExecutor:
    """The executor interface without processes (one worker: no pickling, no start-up)."""

    def __enter__(self) -> _InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn, *args):
        from concurrent.futures import Future

        f: Future = Future()
        f.set_result(fn(*args))
        return f


# -- tokenizer ---------------------------------------------------------------------------------------------------


def _train_tokenizer(source: _Source, s: Settings, out: Path, progress: Progress) -> Tokenizer:
    if (out / "tokenizer.pkl").exists():
        return Tokenizer.load(out)
    t0 = time.perf_counter()
    budget = s.tokenizer_train_chars
    kept: list[str] | None = []
    seen = 0

    def sample() -> Iterator[str]:
        """The original's text_iterator: training documents in order, each capped, until the capped characters
        reach the budget (the document that crosses it is the last)."""
        nonlocal kept, seen
        kept_chars = 0
        for text in source.texts("train"):
            if kept is not None:
                kept.append(text)
                kept_chars += len(text)
                if kept_chars > TRAIN_CACHE_CHARS:
                    kept = None  # too big to keep: tokenization reads the split again
            doc = text[:DOC_CHAR_CAP]
            seen += len(doc)
            yield doc
            if seen >= budget:
                return
        source.train_cache = kept  # read whole: no need to generate or read it twice

    tokenizer = Tokenizer.train(sample(), s.vocab_size, source.special_tokens, source.byte_rule)
    tokenizer.save(out)
    progress(f"prepare: trained a {s.vocab_size}-token BPE tokenizer on {seen:,} characters (budget {budget:,}) "
             f"in {time.perf_counter() - t0:.1f}s")
    return tokenizer


# -- tokenization ------------------------------------------------------------------------------------------------


def _tokenize_split(source: _Source, split: str, tok: Tokenizer, s: Settings, workers: int,
                    progress: Progress) -> tuple[np.ndarray, np.ndarray, int]:
    dtype = np.uint16 if tok.get_vocab_size() <= 2**16 else np.uint32
    bos = tok.get_bos_token_id()
    need_tokens = need_docs = None
    if source.embedded and split != "train":
        # Enough that the evaluation window never reaches a document twice: best-fit reads a full buffer ahead
        # and passes over documents longer than a row, so count documents as well as tokens.
        need_tokens = int(s.eval_tokens * EVAL_MARGIN)
        need_docs = BUFFER_SIZE + REFILL_DOCS + 4 * max(1, s.eval_tokens // s.max_seq_len)
    texts = source.documents(split)
    if source.shuffle_train and split == "train":
        texts = iter(_shuffled(list(texts)))
    chunks: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    total_tokens = total_bytes = 0
    n_docs = 0
    while need_tokens is None or total_tokens < need_tokens or n_docs < need_docs:
        batch = list(islice(texts, CHUNK_DOCS))
        if not batch:
            break
        ids = tok.encode_batch(batch, num_threads=workers)
        total_bytes += sum(len(t.encode("utf-8")) for t in batch)
        for seq in ids:
            arr = np.empty(len(seq) + 1, dtype=dtype)
            arr[0] = bos
            arr[1:] = seq
            chunks.append(arr)
        lengths.append(np.fromiter((len(seq) + 1 for seq in ids), dtype=np.int64, count=len(ids)))
        total_tokens += sum(len(seq) + 1 for seq in ids)
        n_docs += len(ids)
    if not chunks:
        raise data.DataError(f"the {split} split of {s.dataset!r} is empty: add more documents to the corpus")
    offsets = np.zeros(sum(len(x) for x in lengths) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths), out=offsets[1:])
    return np.concatenate(chunks), offsets, total_bytes


def _shuffled(items: list[str]) -> list[str]:
    random.Random(0).shuffle(items)
    return items


# -- evaluation window and entropy floor -------------------------------------------------------------------------


def _evaluation_window(s: Settings, out: Path, progress: Progress) -> dict:
    """How many rows of val/test evaluate_bpb scores (at most one pass over the split), and their floor."""
    tok = Tokenizer.load(out)
    capacity = s.max_seq_len + 1
    wanted = max(1, s.eval_tokens // s.max_seq_len)
    window: dict[str, dict] = {}
    for split in ("val", "test"):
        data_split = TokenSplit.open(out, split)
        layouts, seen = [], set()
        for layout, _ in pack_rows(data_split.lengths, capacity, groups=data_split.groups):
            docs = [doc for doc, _ in layout]
            if len(layouts) == wanted or seen.intersection(docs):  # never score a document twice
                break
            seen.update(docs)
            layouts.append(layout)
        if not layouts:
            raise data.DataError(f"the {split} split is shorter than one row of {capacity} tokens: use a bigger corpus")
        if len(layouts) < wanted:
            progress(f"prepare: warning: {split} holds only {len(layouts)} rows of the {wanted} that eval_tokens "
                     f"asks for; evaluation uses those (add documents for a less noisy metric)")
        window[split] = {"rows": len(layouts)}
        if s.dataset == "embedded":
            window[split]["floor_bpb"] = _floor(s, split, data_split, layouts, tok.token_bytes, heldout_salt(out))
    return window


def _floor(s: Settings, split: str, data_split: TokenSplit, layouts: list, token_bytes: np.ndarray,
           salt: str) -> float:
    """Lowest bpb any model can reach on exactly the evaluated tokens.

    A document scored whole costs its exact information content (-log2 P). A document the packing cropped costs
    at least the information of the choices it shows in full (a lower bound; the crop hides the rest).
    """
    used = sorted({doc for layout in layouts for doc, _ in layout})
    docs = {}
    seed = split_seed(s.seed, split, salt)
    for start in range(0, used[-1] + 1, CHUNK_DOCS):  # regenerate: the generator is a pure function of (seed, i)
        wanted = [i for i in used if start <= i < start + CHUNK_DOCS]
        if wanted:
            for i, doc in enumerate(corpus.generate(seed, start, min(CHUNK_DOCS, used[-1] + 1 - start)), start):
                docs[i] = doc
    bits = 0.0
    nbytes = 0
    for layout in layouts:
        for doc_index, take in layout:
            ids = data_split.doc(doc_index)[1:take]  # the tokens scored as targets (BOS excluded)
            seg_bytes = int(token_bytes[ids].sum())
            doc = docs[doc_index]
            bits += doc.bits if take == len(data_split.doc(doc_index)) else corpus.prefix_bits(doc, seg_bytes)
            nbytes += seg_bytes
    return bits / nbytes


def _write_meta(out: Path, meta: dict) -> None:
    tmp = out / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(out / META_FILE)
