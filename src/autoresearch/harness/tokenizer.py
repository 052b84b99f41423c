"""BPE tokenizer: trained with rustbpe, encoded with tiktoken (as in the original autoresearch).

Each token's length in UTF-8 bytes is kept alongside, because bits per byte divides the model's loss by the
bytes the tokens stand for; special tokens have zero bytes and are never scored.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

# GPT-4's split pattern with numbers split into runs of at most two digits (as nanochat): small vocabularies
# should not spend merges on long numbers.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
BOS = "<|bos|>"
SPECIAL_TOKENS = (BOS,)
FILE_NAME = "tokenizer.pkl"


class Tokenizer:
    """A tiktoken encoding plus the byte length of every token id."""

    def __init__(self, mergeable_ranks: dict[bytes, int], pattern: str = SPLIT_PATTERN) -> None:
        import tiktoken

        n = len(mergeable_ranks)
        self._ranks = mergeable_ranks
        self._pattern = pattern
        self.enc = tiktoken.Encoding(
            name="autoresearch",
            pat_str=pattern,
            mergeable_ranks=mergeable_ranks,
            special_tokens={tok: n + i for i, tok in enumerate(SPECIAL_TOKENS)},
        )
        lengths = np.zeros(n + len(SPECIAL_TOKENS), dtype=np.int32)
        for token, rank in mergeable_ranks.items():
            lengths[rank] = len(token)
        self.token_bytes = lengths  # (vocab,) bytes per token id; 0 for special tokens

    # -- construction ------------------------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> Tokenizer:
        """Train BPE merges so that the vocabulary, special tokens included, has exactly `vocab_size` ids."""
        import rustbpe

        n_ranks = vocab_size - len(SPECIAL_TOKENS)
        if n_ranks < 256:
            raise ValueError(f"vocab_size {vocab_size} is too small: need at least {256 + len(SPECIAL_TOKENS)}")
        bpe = rustbpe.Tokenizer()
        bpe.train_from_iterator(iter(texts), n_ranks, pattern=SPLIT_PATTERN)
        ranks = {bytes(tok): rank for tok, rank in bpe.get_mergeable_ranks()}
        return cls(ranks)

    @classmethod
    def load(cls, directory: str | Path | None = None) -> Tokenizer:
        """This workspace's tokenizer (or the one saved in `directory`)."""
        if directory is None:
            from autoresearch.harness.constants import prepared_dir

            directory = prepared_dir()
        path = Path(directory) / FILE_NAME
        if not path.exists():
            raise FileNotFoundError(f"no tokenizer at {path}: run `autoresearch prepare` in the workspace first")
        with open(path, "rb") as f:
            state = pickle.load(f)
        return cls(state["mergeable_ranks"], state["pattern"])

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE_NAME
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump({"mergeable_ranks": self._ranks, "pattern": self._pattern}, f)
        tmp.replace(path)
        return path

    # -- use -----------------------------------------------------------------------------------------------------

    def get_vocab_size(self) -> int:
        return self.enc.n_vocab

    def get_bos_token_id(self) -> int:
        return self.enc.encode_single_token(BOS)

    @property
    def vocab_size(self) -> int:
        return self.get_vocab_size()

    @property
    def bos_id(self) -> int:
        return self.get_bos_token_id()

    def encode(self, text: str, prepend_bos: bool = False) -> list[int]:
        ids = self.enc.encode_ordinary(text)
        return [self.bos_id, *ids] if prepend_bos else ids

    def encode_batch(self, texts: list[str], prepend_bos: bool = False, num_threads: int = 8) -> list[list[int]]:
        out = self.enc.encode_ordinary_batch(texts, num_threads=num_threads)
        if prepend_bos:
            bos = self.bos_id
            out = [[bos, *ids] for ids in out]
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return self.enc.decode(list(ids))

    def iter_token_bytes(self, ids: Iterable[int]) -> Iterator[bytes]:
        for i in ids:
            yield self.enc.decode_single_token_bytes(i)
