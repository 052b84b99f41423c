from __future__ import annotations

import random

import pytest

from autoresearch.harness.tokenizer import ORIGINAL_SPECIAL_TOKENS, Tokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Numbers like 12345 and 3.14159 split into short runs.",
    "Unicode too: naïve café, Grüße, 東京, emoji 🎉 and tabs\tand\nnewlines.",
    "def f(x):\n    return x ** 2  # code\n",
] * 40


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    rng = random.Random(0)
    extra = ["".join(rng.choice("abcdefgh ") for _ in range(200)) for _ in range(50)]
    return Tokenizer.train(TEXTS + extra, vocab_size=300)


def test_vocab_size_is_exact_and_bos_is_last(tok):
    assert tok.get_vocab_size() == 300
    assert tok.get_bos_token_id() == 299


@pytest.mark.parametrize("text", [*TEXTS[:4], "", " ", "never seen: zyxwvu QQQ 999 ✓"])
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.get_bos_token_id() for i in ids)


def test_token_bytes_sum_to_utf8_length(tok):
    for text in TEXTS[:4]:
        ids = tok.encode(text)
        assert int(tok.token_bytes[ids].sum()) == len(text.encode("utf-8"))
    assert tok.token_bytes[tok.get_bos_token_id()] == 0


def test_bos_prepend_and_batch(tok):
    ids = tok.encode_batch(TEXTS[:3], prepend_bos=True)
    assert [x[0] for x in ids] == [tok.bos_id] * 3
    assert [x[1:] for x in ids] == [tok.encode(t) for t in TEXTS[:3]]


def test_merges_compress(tok):
    text = TEXTS[0]
    assert len(tok.encode(text)) < len(text.encode()) / 2


def test_save_load(tok, tmp_path):
    tok.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.encode(TEXTS[2]) == tok.encode(TEXTS[2])
    assert (again.token_bytes == tok.token_bytes).all()


def test_load_missing_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="autoresearch prepare"):
        Tokenizer.load(tmp_path)


def test_too_small_vocab():
    with pytest.raises(ValueError, match="too small"):
        Tokenizer.train(["abc"], vocab_size=200)


def test_the_original_layout_four_reserved_tokens_and_its_byte_counts(tmp_path):
    """climbmix's tokenizer: the original's four reserved special tokens (the first is the BOS) and its bytes per
    token, len(decode([id]).encode()): a token that is not whole UTF-8 counts as U+FFFD, 3 bytes."""
    orig = Tokenizer.train(TEXTS, vocab_size=300, special_tokens=ORIGINAL_SPECIAL_TOKENS, byte_rule="decoded")
    assert orig.get_vocab_size() == 300
    assert orig.get_bos_token_id() == orig.enc.encode_single_token("<|reserved_0|>") == 296  # 296 merges+bytes
    for name in ORIGINAL_SPECIAL_TOKENS:
        assert orig.token_bytes[orig.enc.encode_single_token(name)] == 0
    for i in range(296):  # written out the original's way, through tiktoken's own decode
        assert orig.token_bytes[i] == len(orig.enc.decode([i]).encode("utf-8"))
    assert orig.token_bytes[orig.enc.encode_single_token(b"\xe6")] == 3  # first byte of a 3-byte character
    assert orig.token_bytes[orig.enc.encode_single_token(b"a")] == 1
    orig.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.special_tokens == ORIGINAL_SPECIAL_TOKENS and again.byte_rule == "decoded"
    assert (again.token_bytes == orig.token_bytes).all()
