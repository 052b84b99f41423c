"""prepare: splits, evaluation window, entropy floor, idempotence, local corpora."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import TINY

from autoresearch.data import corpus
from autoresearch.data.prepare import heldout_salt, prepare, split_seed
from autoresearch.harness.constants import eval_rows, load_meta, prepared_dir
from autoresearch.harness.dataloader import TokenSplit, pack_rows
from autoresearch.harness.tokenizer import Tokenizer
from autoresearch.settings import Settings


def test_splits_are_tokenized_documents_starting_with_bos(tiny_cache):
    s = Settings(**TINY)
    out = prepared_dir(s, tiny_cache)
    tok = Tokenizer.load(out)
    assert tok.get_vocab_size() == s.vocab_size
    meta = load_meta(out)
    for split in ("train", "val", "test"):
        data = TokenSplit.open(out, split)
        assert meta["splits"][split]["docs"] == len(data) > 0
        starts = data.tokens[data.offsets[:-1]]
        assert (starts == tok.get_bos_token_id()).all()
        assert int((data.tokens == tok.get_bos_token_id()).sum()) == len(data)  # BOS only at document starts
    # the stored val documents are the generator's documents, in order
    val = TokenSplit.open(out, "val")
    first = next(corpus.generate(split_seed(s.seed, "val", heldout_salt(out)), 0, 1))
    assert tok.decode(val.doc(0)[1:]) == first.text
    # ...of a stream salted with the directory's secret: the workspace's seed alone does not give them
    unsalted = next(corpus.generate(split_seed(s.seed, "val"), 0, 1))
    assert tok.decode(val.doc(0)[1:]) != unsalted.text
    from autoresearch.run.supervisor import training_files

    readable = {Path(p).name for p in training_files(out)}
    assert "tokenizer.pkl" in readable and "train.tokens.npy" in readable
    assert not {n for n in readable if n.startswith(("val", "test", "heldout"))}
    # train holds about the configured amount of text
    assert abs(meta["splits"]["train"]["bytes"] - s.embedded_train_mb * 1e6) < 5000


def test_val_test_and_train_are_disjoint(tiny_cache):
    out = prepared_dir(Settings(**TINY), tiny_cache)
    tok = Tokenizer.load(out)

    def texts(split, n=300):
        data = TokenSplit.open(out, split)
        return {tok.decode(data.doc(i)[1:]) for i in range(min(n, len(data)))}

    train, val, test = texts("train", 2000), texts("val"), texts("test")
    assert not (train & val) and not (train & test) and not (val & test)


def test_evaluation_window_never_repeats_a_document(tiny_cache):
    s = Settings(**TINY)
    out = prepared_dir(s, tiny_cache)
    for split in ("val", "test"):
        rows = eval_rows(split, s, out)
        assert rows == s.eval_tokens // s.max_seq_len  # the embedded splits are big enough for the whole window
        data = TokenSplit.open(out, split)
        layouts = [layout for layout, _ in zip(pack_rows(data.lengths, s.max_seq_len + 1), range(rows))]
        docs = [doc for layout, _ in layouts for doc, _ in layout]
        assert len(docs) == len(set(docs))


def test_floor_is_the_exact_information_of_the_evaluated_bytes(tiny_cache):
    """Recompute the floor independently: corpus.score() of each whole document, prefix bounds for crops."""
    s = Settings(**TINY)
    out = prepared_dir(s, tiny_cache)
    tok = Tokenizer.load(out)
    data = TokenSplit.open(out, "val")
    rows = eval_rows("val", s, out)
    bits = nbytes = 0.0
    for (layout, _), _ in zip(pack_rows(data.lengths, s.max_seq_len + 1), range(rows)):
        for doc_index, take in layout:
            text = tok.decode(data.doc(doc_index)[1:take])
            nbytes += len(text.encode())
            if take == len(data.doc(doc_index)):
                bits += corpus.score(text)  # independent parser of the document
            else:
                doc = next(corpus.generate(split_seed(s.seed, "val", heldout_salt(out)), doc_index, 1))
                assert doc.text.startswith(text)
                bits += corpus.prefix_bits(doc, len(text.encode()))
    floor = load_meta(out)["eval"][f"T{s.max_seq_len}-E{s.eval_tokens}"]["val"]["floor_bpb"]
    assert floor == __import__("pytest").approx(bits / nbytes, rel=1e-9)
    assert 0.1 < floor < 3.0


def test_second_prepare_reuses_everything(tiny_cache):
    messages: list[str] = []
    report = prepare(Settings(**TINY), tiny_cache, progress=messages.append, workers=1)
    assert report.reused and any("reusing" in m for m in messages)
    assert report.floor_bpb["val"] > 0


def test_new_evaluation_window_is_added_without_retokenizing(tiny_cache):
    s = Settings(**{**TINY, "eval_tokens": 1024})
    report = prepare(s, tiny_cache, progress=lambda _: None, workers=1)
    assert report.reused and report.eval_rows["val"] == 1024 // s.max_seq_len


def test_local_corpus(tmp_path):
    docs_dir = tmp_path / "docs"
    docs_dir.mkdir()
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    for i in range(300):
        (docs_dir / f"d{i:03d}.txt").write_text(" ".join(rng.choice(words, size=int(rng.integers(20, 200)))) + ".")
    s = Settings(profile="cpu", dataset=str(docs_dir), max_seq_len=32, eval_tokens=256, vocab_size=300)
    report = prepare(s, tmp_path / "cache", progress=lambda _: None, workers=1)
    assert report.splits["val"]["docs"] >= 1 and report.splits["test"]["docs"] >= 1
    assert report.splits["train"]["docs"] + report.splits["val"]["docs"] + report.splits["test"]["docs"] == 300
    assert report.floor_bpb == {}  # only the embedded corpus knows its floor
    assert report.eval_rows["val"] >= 1
