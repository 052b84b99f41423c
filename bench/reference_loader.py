"""The straightforward loader the benchmark and tests compare ours with, transcribed from the original autoresearch.

Written from the original's `prepare.py` (`_document_batches` and `make_dataloader`), not from our loader:
- the reader walks the shards' parquet row groups in order and hands out each row group's documents in slices
  of 128 (the tokenizer batch), so a row group's last slice is short; after the last shard the epoch goes up;
- each slice is encoded on the fly with a BOS in front and appended to a document buffer, slice after slice,
  until the buffer holds at least 1000 documents; this happens before every placement;
- a row is filled by scanning the whole buffer for the largest document that fits (strictly larger wins, so
  the earliest of equal lengths is taken), else the shortest document (the earliest, as `min` returns) is
  cropped to fill the row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

TOKENIZER_BATCH_SIZE = 128
BUFFER_SIZE = 1000


def document_batches(row_groups: Sequence[Sequence[Any]], batch_size: int = TOKENIZER_BATCH_SIZE,
                     ) -> Iterator[tuple[list[Any], int]]:
    """(batch, epoch) forever, as the original's `_document_batches`: `row_groups` in order, one per parquet row
    group of every shard, each sliced on its own."""
    epoch = 1
    while True:
        for group in row_groups:
            group = list(group)
            for i in range(0, len(group), batch_size):
                yield group[i : i + batch_size], epoch
        epoch += 1


def reference_rows(batches: Iterator[tuple[list[Any], int]], capacity: int, buffer_size: int = BUFFER_SIZE,
                   encode: Callable[[list[Any]], list[list[int]]] = lambda docs: [list(d) for d in docs],
                   ) -> Iterator[tuple[list[int], int]]:
    """(row of exactly `capacity` tokens, epoch) forever. `encode` turns a batch into token lists that start with
    BOS (the default takes batches that already are such token lists)."""
    doc_buffer: list[list[int]] = []
    epoch = 1
    while True:
        row: list[int] = []
        pos = 0
        while pos < capacity:
            while len(doc_buffer) < buffer_size:
                doc_batch, epoch = next(batches)
                doc_buffer.extend(encode(doc_batch))
            remaining = capacity - pos
            best_idx = -1
            best_len = 0
            for i, doc in enumerate(doc_buffer):
                doc_len = len(doc)
                if doc_len <= remaining and doc_len > best_len:
                    best_idx = i
                    best_len = doc_len
            if best_idx >= 0:
                doc = doc_buffer.pop(best_idx)
                row.extend(doc)
                pos += len(doc)
            else:
                shortest_idx = min(range(len(doc_buffer)), key=lambda i: len(doc_buffer[i]))
                doc = doc_buffer.pop(shortest_idx)
                row.extend(doc[:remaining])
                pos += remaining
        yield row, epoch


def bos_encoder(tokenizer) -> Callable[[list[str]], list[list[int]]]:
    """On-the-fly encoding of one batch of texts, BOS first (the original's `tokenizer.encode(batch, prepend=bos)`)."""
    bos = tokenizer.get_bos_token_id()

    def encode(texts: list[str]) -> list[list[int]]:
        return [[bos, *ids] for ids in tokenizer.encode_batch(texts)]

    return encode
