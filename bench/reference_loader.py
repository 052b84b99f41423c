"""The straightforward loader the benchmark and tests compare ours with: the original autoresearch's algorithm.

Documents are encoded on the fly (tiktoken, as the original), kept in a 1000-document buffer, and each row is
filled by scanning the whole buffer for the largest document that fits, else cropping the shortest one.
"""

from __future__ import annotations

from collections.abc import Iterator


def reference_rows(docs: Iterator[list[int]], capacity: int, buffer_size: int = 1000) -> Iterator[list[int]]:
    """Rows of exactly `capacity` tokens; `docs` yields token lists that already start with BOS."""
    buffer: list[list[int]] = []
    while True:
        row: list[int] = []
        while len(row) < capacity:
            while len(buffer) < buffer_size:
                buffer.append(next(docs))
            remaining = capacity - len(row)
            best_idx, best_len = -1, 0
            for i, doc in enumerate(buffer):
                if best_len < len(doc) <= remaining:
                    best_idx, best_len = i, len(doc)
            if best_idx >= 0:
                row.extend(buffer.pop(best_idx))
            else:
                shortest = min(range(len(buffer)), key=lambda i: len(buffer[i]))
                row.extend(buffer.pop(shortest)[:remaining])
        yield row


def encoded_docs(tokenizer, texts: list[str]) -> Iterator[list[int]]:
    """On-the-fly encoding, looping over the texts forever (as the original streams parquet shards)."""
    bos = tokenizer.get_bos_token_id()
    while True:
        for start in range(0, len(texts), 128):
            for ids in tokenizer.encode_batch(texts[start : start + 128]):
                yield [bos, *ids]
