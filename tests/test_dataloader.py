from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
import torch
from reference_loader import document_batches, reference_rows

from autoresearch.harness.dataloader import TokenSplit, iter_row_arrays, make_dataloader, pack_rows, refill_batches

BOS = 9999


def make_split(lengths: list[int]) -> TokenSplit:
    """Documents whose tokens encode (doc index, position) so every placed token can be traced back."""
    docs = [np.array([BOS] + [d * 1000 + p for p in range(1, n)], dtype=np.uint32) for d, n in enumerate(lengths)]
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in docs], out=offsets[1:])
    return TokenSplit(np.concatenate(docs), offsets)


@pytest.fixture
def lengths() -> list[int]:
    rng = np.random.default_rng(0)
    return [int(x) for x in rng.integers(2, 300, size=3000)]


def test_rows_are_full_start_with_bos_and_hold_documents_in_order(lengths):
    split = make_split(lengths)
    capacity = 129
    seen_docs: set[int] = set()
    for row, epoch in islice(pack_rows(split.lengths, capacity, buffer_size=100), 300):
        assert epoch == 1
        assert sum(take for _, take in row) == capacity  # no padding
        for i, (doc, take) in enumerate(row):
            assert doc not in seen_docs  # a document is used at most once per epoch
            seen_docs.add(doc)
            assert 0 < take <= split.lengths[doc]
            if take < split.lengths[doc]:
                assert i == len(row) - 1  # only the last document of a row is cropped
    rows = next(iter_row_arrays(split, 8, capacity - 1))[0]
    assert rows.shape == (8, capacity)
    assert (rows[:, 0] == BOS).all()  # every row starts with a document's BOS
    for r in rows:  # tokens after each BOS are that document's first tokens, in order
        starts = np.flatnonzero(r == BOS)
        for s, e in zip(starts, [*starts[1:], capacity]):
            doc = r[s + 1] // 1000 if e > s + 1 else None
            if doc is not None:
                assert list(r[s + 1 : e]) == [doc * 1000 + p for p in range(1, e - s)]


def make_grouped_split(lengths: list[int], groups: list[int]) -> TokenSplit:
    split = make_split(lengths)
    return TokenSplit(split.tokens, split.offsets, np.array(groups))


@pytest.mark.parametrize("groups", [None, [500, 57, 1, 400, 242]])  # row groups of parquet shards, uneven
def test_identical_to_the_original_loader(lengths, groups):
    """Same rows and epochs, token for token, as the original's loader transcribed in bench/reference_loader.py:
    refills of 128 documents that stop at row-group ends, ties to the earliest document."""
    lengths = lengths[:1200]
    split = make_grouped_split(lengths, groups) if groups else make_split(lengths)
    capacity = 257
    docs = [list(split.doc(i)) for i in range(len(split))]
    bounds = np.cumsum([0, *(groups or [len(docs)])])
    row_groups = [docs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    ours = iter_row_arrays(split, 1, capacity - 1)
    ref = reference_rows(document_batches(row_groups), capacity)
    epochs = set()
    for _ in range(2000):  # past two epochs: the buffer refills across the wraps
        (row, epoch), (want_row, want_epoch) = next(ours), next(ref)
        assert (list(row[0]), epoch) == (want_row, want_epoch)
        epochs.add(epoch)
    assert {1, 2, 3} <= epochs


def test_refill_batches_stop_at_group_ends():
    assert refill_batches(300, None).tolist() == [128, 256, 300]
    assert refill_batches(300, np.array([130, 0, 170])).tolist() == [128, 130, 258, 300]
    with pytest.raises(ValueError, match="groups count 10"):
        make_grouped_split([5] * 12, [4, 6])


def test_ties_go_to_the_earliest_document():
    split = make_split([50, 50, 50, 30, 30])
    row, _ = next(pack_rows(split.lengths, 101, buffer_size=5))
    assert row == [(0, 50), (1, 50), (3, 1)]  # equal lengths in arrival order; then the earliest shortest, cropped


def test_epochs_count_wraps():
    split = make_split([10] * 30)
    epochs = [e for _, e in islice(pack_rows(split.lengths, 21, buffer_size=4), 40)]
    assert epochs[0] == 1 and max(epochs) >= 3 and epochs == sorted(epochs)


def test_long_documents_are_cropped_to_fill():
    split = make_split([500, 600, 700])
    row, _ = next(pack_rows(split.lengths, 100, buffer_size=3))
    assert row == [(0, 100)]  # nothing fits: the shortest is cropped


def test_make_dataloader_shapes_and_shift(tmp_path, lengths):
    class Tok:
        def get_vocab_size(self):
            return 2**20

    split = make_split(lengths)
    split.save(tmp_path, "train")
    x, y, epoch = next(make_dataloader(Tok(), 4, 32, "train", device="cpu", directory=tmp_path))
    assert x.shape == y.shape == (4, 32) and x.dtype == torch.int64 and epoch == 1
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert (x[:, 0] == BOS).all()


def test_missing_split_says_prepare(tmp_path):
    with pytest.raises(FileNotFoundError, match="autoresearch prepare"):
        TokenSplit.open(tmp_path, "val")
