"""prepare --dataset climbmix measures what the original autoresearch measures: small generated parquet shards
served by the loopback hub (tests/hubserver.py), checked against the original's rules written out here and in
bench/reference_loader.py."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hubserver import HubServer, hub_server  # noqa: F401 - hub_server is a fixture
from reference_loader import bos_encoder, document_batches, reference_rows
from test_data import CLIMBMIX, isolated_hf, parquet_bytes  # noqa: F401 - isolated_hf: autouse fixture

from autoresearch.data.prepare import DOC_CHAR_CAP, prepare
from autoresearch.harness.constants import PREPARED_FORMAT, load_meta, prepared_dir
from autoresearch.harness.dataloader import TokenSplit, iter_row_arrays
from autoresearch.harness.tokenizer import ORIGINAL_SPECIAL_TOKENS, Tokenizer
from autoresearch.settings import Settings

WORDS = "the of and a to in is was for on that with as by at from his her it an were are which this".split()


def texts(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) + f" #{seed}.{i}" for i in range(n)]


TRAIN = {0: texts(0, 150) + ["long " * 3000], 1: texts(1, 150)}  # one document past the per-document cap
VAL = texts(6542, 250)
VAL[17] = ""  # a blank row: the original's loader reads it as a document (BOS alone)
TEST = texts(6541, 120)


@pytest.fixture
def climbmix(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> HubServer:  # noqa: F811
    for i, docs in TRAIN.items():
        hub_server.add(CLIMBMIX, f"shard_{i:05d}.parquet", parquet_bytes(docs, row_group_size=64))
    hub_server.add(CLIMBMIX, "shard_06542.parquet", parquet_bytes(VAL, row_group_size=37))  # uneven groups
    hub_server.add(CLIMBMIX, "shard_06541.parquet", parquet_bytes(TEST, row_group_size=50))
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    return hub_server


def settings(**overrides) -> Settings:
    return Settings(**{**dict(profile="cpu", dataset="climbmix", max_seq_len=64, eval_tokens=64 * 8, vocab_size=300,
                              train_shards=2, tokenizer_chars=20_000), **overrides})


def run_prepare(s: Settings, cache: Path) -> Path:
    prepare(s, cache, progress=lambda _: None, workers=1)
    return prepared_dir(s, cache)


def decoded(tok: Tokenizer, split: TokenSplit) -> list[str]:
    return [tok.decode(split.doc(i)[1:]) for i in range(len(split))]


def test_val_is_the_whole_pinned_shard_and_test_the_shard_before(climbmix: HubServer, tmp_path: Path) -> None:
    out = run_prepare(settings(), tmp_path / "cache")
    tok = Tokenizer.load(out)
    val, test, train = (TokenSplit.open(out, split) for split in ("val", "test", "train"))
    assert decoded(tok, val) == VAL  # every document of shard_06542, in order, the blank one included
    assert val.lengths[17] == 1  # the blank row is a BOS alone, as the original's loader packs it
    assert decoded(tok, test) == TEST  # all of shard_06541
    assert decoded(tok, train) == TRAIN[0] + TRAIN[1]  # in shard order, not shuffled (as the original)
    # the packing's refills follow the parquet row groups, as the original reads them
    assert val.groups.tolist() == [37] * 6 + [28] and test.groups.tolist() == [50, 50, 20]
    assert train.groups.tolist() == [64, 64, 23, 64, 64, 22]
    meta = load_meta(out)
    assert meta["splits"]["val"]["docs"] == len(VAL) and meta["splits"]["test"]["docs"] == len(TEST)
    assert out.name.endswith(f"-p{PREPARED_FORMAT}")  # directories of an older format are rebuilt, not reused


def test_tokenizer_is_the_originals(climbmix: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The original's text_iterator: train documents in order, capped at 10,000 characters, until the capped
    characters reach the budget; its four reserved special tokens; its bytes per token."""
    sampled: list[str] = []
    train = Tokenizer.train.__func__

    def spy(cls, docs, *args, **kwargs):
        docs = list(docs)
        sampled.extend(docs)
        return train(cls, docs, *args, **kwargs)

    monkeypatch.setattr(Tokenizer, "train", classmethod(spy))
    budget = sum(len(doc) for doc in TRAIN[0][:-1]) + 5_000  # crossed by the capped long document
    out = run_prepare(settings(tokenizer_chars=budget), tmp_path / "cache")

    expected, n = [], 0
    for doc in TRAIN[0] + TRAIN[1]:  # written out from the original's text_iterator
        doc = doc[:DOC_CHAR_CAP]
        n += len(doc)
        expected.append(doc)
        if n >= budget:
            break
    assert sampled == expected and expected[-1] == "long " * 2000  # the long one is capped, and crosses the budget
    tok = Tokenizer.load(out)
    assert tok.special_tokens == ORIGINAL_SPECIAL_TOKENS and tok.byte_rule == "decoded"
    assert tok.get_vocab_size() == 300 and tok.get_bos_token_id() == 296
    assert load_meta(out)["tokenizer_chars"] == budget


def test_tokenizer_budget_defaults_to_the_originals() -> None:
    assert Settings(profile="cuda", dataset="climbmix").tokenizer_train_chars == 1_000_000_000
    assert Settings(profile="cuda", dataset="embedded").tokenizer_train_chars == 100_000_000
    a, b = Settings(profile="cuda", dataset="climbmix"), Settings(profile="cuda", dataset="climbmix",
                                                                  tokenizer_chars=10**8)
    assert prepared_dir(a, Path("/c")) != prepared_dir(b, Path("/c"))  # a lowered budget is prepared apart
    assert prepared_dir(a, Path("/c")) == prepared_dir(a.replace(tokenizer_chars=10**9), Path("/c"))


def test_val_rows_are_the_original_loaders(climbmix: HubServer, tmp_path: Path) -> None:
    """Rows of the prepared val split, token for token, as the original's loader builds them from the raw shard:
    its row groups in slices of 128, encoded on the fly, best-fit from a 1000-document buffer."""
    s = settings()
    out = run_prepare(s, tmp_path / "cache")
    tok = Tokenizer.load(out)
    shard = pq.ParquetFile(io.BytesIO(climbmix.files[CLIMBMIX]["shard_06542.parquet"]))
    row_groups = [shard.read_row_group(i).column("text").to_pylist() for i in range(shard.num_row_groups)]

    ours = iter_row_arrays(TokenSplit.open(out, "val"), 1, s.max_seq_len)
    ref = reference_rows(document_batches(row_groups), s.max_seq_len + 1, encode=bos_encoder(tok))
    for _ in range(600):  # several passes over the shard: refills cross the wrap
        (row, epoch), (want, want_epoch) = next(ours), next(ref)
        assert (row[0].tolist(), epoch) == (want, want_epoch)
    assert epoch > 2
