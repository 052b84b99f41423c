"""BPE tokenizer: trained with rustbpe, encoded with tiktoken (as in the original autoresearch).

Each token's length in bytes is kept alongside, because bits per byte divides the model's loss by the bytes the
tokens stand for; special tokens have zero bytes and are never scored. Two rules count a token's bytes:
- "utf8": the bytes it stands for (what bits per byte means);
- "decoded": the UTF-8 length of the token decoded on its own, as the original autoresearch counts. A token
  that is not whole UTF-8 (a piece of a character BPE never merged whole) decodes to U+FFFD, 3 bytes, whatever
  its true length. climbmix uses this rule so that its val_bpb is the original's figure.
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
SPECIAL_TOKENS = (BOS,)  # the first special token is the BOS
# The original's layout: four reserved tokens, the first one the BOS. At the same vocabulary size it leaves the
# BPE three merges fewer than ours, so the climbmix tokenizer uses it to be the original's tokenizer.
ORIGINAL_SPECIAL_TOKENS = tuple(f"<|reserved_{i}|>" for i in range(4))
BYTE_RULES = ("utf8", "decoded")
FILE_NAME = "tokenizer.pkl"


class Tokenizer:
    """A tiktoken encoding plus the byte length of every token id."""

    def __init__(self, mergeable_ranks: dict[bytes, int], pattern: str = SPLIT_PATTERN,
                 special_tokens: tuple[str, ...] = SPECIAL_TOKENS, byte_rule: str = "utf8") -> None:
        import tiktoken

        if byte_rule not in BYTE_RULES:
            raise ValueError(f"unknown byte_rule {byte_rule!r}; use one of {BYTE_RULES}")
        n = len(mergeable_ranks)
        self._ranks = mergeable_ranks
        self._pattern = pattern
        self.special_tokens = tuple(special_tokens)
        self.byte_rule = byte_rule
        self.enc = tiktoken.Encoding(
            name="autoresearch",
            pat_str=pattern,
            mergeable_ranks=mergeable_ranks,
            special_tokens={tok: n + i for i, tok in enumerate(self.special_tokens)},
        )
        lengths = np.zeros(n + len(self.special_tokens), dtype=np.int32)
        for token, rank in mergeable_ranks.items():
            if byte_rule == "decoded":  # as the original: len(enc.decode([id]).encode("utf-8"))
                lengths[rank] = len(token.decode("utf-8", errors="replace").encode("utf-8"))
            else:
                lengths[rank] = len(token)
        self.token_bytes = lengths  # (vocab,) bytes per token id; 0 for special tokens

    # -- construction ------------------------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, special_tokens: tuple[str, ...] = SPECIAL_TOKENS,
              byte_rule: str = "utf8") -> Tokenizer:
        """Train BPE merges so that the vocabulary, special tokens included, has exactly `vocab_size` ids."""
        import rustbpe

        n_ranks = vocab_size - len(special_tokens)
        if n_ranks < 256:
            raise ValueError(f"vocab_size {vocab_size} is too small: need at least {256 + len(special_tokens)}")
        bpe = rustbpe.Tokenizer()
        bpe.train_from_iterator(iter(texts), n_ranks, pattern=SPLIT_PATTERN)
        ranks = {bytes(tok): rank for tok, rank in bpe.get_mergeable_ranks()}
        return cls(ranks, SPLIT_PATTERN, special_tokens, byte_rule)

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
        return cls(state["mergeable_ranks"], state["pattern"], tuple(state.get("special_tokens", SPECIAL_TOKENS)),
                   state.get("byte_rule", "utf8"))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE_NAME
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump({"mergeable_ranks": self._ranks, "pattern": self._pattern,
                         "special_tokens": self.special_tokens, "byte_rule": self.byte_rule}, f)
        tmp.replace(path)
        return path

    # -- use -----------------------------------------------------------------------------------------------------

    def get_vocab_size(self) -> int:
        return self.enc.n_vocab

    def get_bos_token_id(self) -> int:
        return self.enc.encode_single_token(self.special_tokens[0])

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
