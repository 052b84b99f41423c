"""Raw dataset sources: hub downloads against a local fake hub, offline errors, local files and splits."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hubserver import HubServer, closed_port_url, hub_server, silent_server  # noqa: F401 - hub_server is a fixture

from autoresearch.data import sources as data
from autoresearch.data.sources import DataError, describe, fetch, is_hub_dataset, iter_documents

CLIMBMIX = "karpathy/climbmix-400b-shuffle"
TINYSTORIES = "roneneldan/TinyStories"


@pytest.fixture(autouse=True)
def isolated_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep huggingface_hub away from the user's home, token and cache; make retries quick."""
    from huggingface_hub import constants

    hf_home = tmp_path / "hf_home"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(hf_home))
    for name in ("HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub copied these from the environment at import time.
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_XET_CACHE", str(hf_home / "xet"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(data, "RETRY_BASE_S", 0.01)


def parquet_bytes(texts: list[str], row_group_size: int = 3) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": texts, "id": list(range(len(texts)))}), sink, row_group_size=row_group_size)
    return sink.getvalue().to_pybytes()


def shard_texts(i: int) -> list[str]:
    return [f"shard {i} document {j}: " + "words " * j for j in range(7)]


VAL_TEXTS = [f"held-out document {j}" for j in range(9)] + [""]  # a blank row is a document of the original's
TEST_TEXTS = [f"test document {j}" for j in range(5)]


@pytest.fixture
def climbmix_hub(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    for i in range(3):
        hub_server.add(CLIMBMIX, f"shard_{i:05d}.parquet", parquet_bytes(shard_texts(i)))
    hub_server.add(CLIMBMIX, "shard_06542.parquet", parquet_bytes(VAL_TEXTS))
    hub_server.add(CLIMBMIX, "shard_06541.parquet", parquet_bytes(TEST_TEXTS, row_group_size=2))
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    return hub_server


# ----------------------------------------------------------------------------------------------------
# climbmix and tinystories through the fake hub


def test_climbmix_fetch_and_splits(climbmix_hub: HubServer, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    messages: list[str] = []
    fetch("climbmix", raw, train_shards=2, progress=messages.append)

    names = sorted(p.name for p in raw.glob("*.parquet"))
    assert names == ["shard_00000.parquet", "shard_00001.parquet", "shard_06541.parquet", "shard_06542.parquet"]
    assert climbmix_hub.count("GET", "shard_00002.parquet") == 0
    assert len(messages) == 5  # one "downloading" line, one per file
    assert list(iter_documents("climbmix", "train", raw)) == shard_texts(0) + shard_texts(1)
    assert list(iter_documents("climbmix", "train", raw, train_shards=1)) == shard_texts(0)
    # val is the original's pinned shard, every row of it; test is the shard before it, whole
    assert list(iter_documents("climbmix", "val", raw)) == VAL_TEXTS
    assert list(iter_documents("climbmix", "test", raw)) == TEST_TEXTS
    # the original's reader slices each parquet row group on its own: prepare records their sizes
    assert data.row_groups("climbmix", "val", raw) == [3, 3, 3, 1]
    assert data.row_groups("climbmix", "test", raw) == [2, 2, 1]
    assert data.row_groups("climbmix", "train", raw, train_shards=2) == [3, 3, 1] * 2
    assert data.row_groups("tinystories", "val", raw) is None


def test_climbmix_never_trains_on_the_test_shard() -> None:
    spec = data.HUB_DATASETS["climbmix"]
    assert spec.train_files(10**6)[-1] == "shard_06540.parquet"
    assert {spec.eval_file, spec.test_file} == {"shard_06542.parquet", "shard_06541.parquet"}


def test_second_fetch_makes_no_request(
    climbmix_hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    fetch("climbmix", raw, train_shards=2)
    before = len(climbmix_hub.requests)
    fetch("climbmix", raw, train_shards=2)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # present files need no hub at all
    fetch("climbmix", raw, train_shards=2)
    assert len(climbmix_hub.requests) == before

    monkeypatch.delenv("HF_HUB_OFFLINE")
    fetch("climbmix", raw, train_shards=3)  # one more shard: only it is downloaded
    downloaded = {r.filename for r in climbmix_hub.requests[before:] if r.method == "GET"}
    assert downloaded == {"shard_00002.parquet"}


def test_transient_500_is_retried(climbmix_hub: HubServer, tmp_path: Path) -> None:
    climbmix_hub.fail_next("shard_00000.parquet", 500)
    climbmix_hub.fail_next("shard_06542.parquet", 503)
    fetch("climbmix", tmp_path / "raw", train_shards=1)
    assert climbmix_hub.count("GET", "shard_00000.parquet") == 2
    assert climbmix_hub.count("GET", "shard_06542.parquet") == 2
    assert list(iter_documents("climbmix", "train", tmp_path / "raw")) == shard_texts(0)


def test_persistent_500_gives_up_with_advice(climbmix_hub: HubServer, tmp_path: Path) -> None:
    climbmix_hub.fail_next("shard_00000.parquet", 500, times=99)
    with pytest.raises(DataError, match=r"shard_00000\.parquet.*after 4 attempt.*Rerun prepare"):
        fetch("climbmix", tmp_path / "raw", train_shards=1)
    assert climbmix_hub.count("GET", "shard_00000.parquet") == data.DOWNLOAD_ATTEMPTS


def test_missing_remote_file_is_not_retried(climbmix_hub: HubServer, tmp_path: Path) -> None:
    del climbmix_hub.files[CLIMBMIX]["shard_06542.parquet"]
    with pytest.raises(DataError, match=r"shard_06542\.parquet"):
        fetch("climbmix", tmp_path / "raw", train_shards=1)
    assert climbmix_hub.count("HEAD", "shard_06542.parquet") == 1
    assert climbmix_hub.count("GET", "shard_06542.parquet") == 0


def test_interrupted_download_resumes_with_range(
    climbmix_hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # Small read chunks, so the bytes before the cut reach the disk and the retry can ask for the rest.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256)
    big = parquet_bytes([f"document {j} " + "x" * (j % 50) for j in range(2000)], row_group_size=500)
    climbmix_hub.add(CLIMBMIX, "shard_00000.parquet", big)
    cut = len(big) // 2
    climbmix_hub.drop_next("shard_00000.parquet", after_bytes=cut)

    raw = tmp_path / "raw"
    fetch("climbmix", raw, train_shards=1)
    assert (raw / "shard_00000.parquet").read_bytes() == big
    ranges = [r.range for r in climbmix_hub.requests if r.method == "GET" and r.filename == "shard_00000.parquet"]
    assert ranges[0] is None
    start = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= cut
    assert len(list(iter_documents("climbmix", "train", raw))) == 2000


def test_tinystories(hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train = [f"Once upon a time there was story {i}." for i in range(5)]
    valid = [f"Lily found valid story {i}.\nThe end." for i in range(5)]
    hub_server.add(TINYSTORIES, "TinyStoriesV2-GPT4-train.txt", "\n<|endoftext|>\n".join(train).encode())
    valid_txt = "<|endoftext|>\n".join(valid) + "<|endoftext|>\n"  # a trailing separator adds no document
    hub_server.add(TINYSTORIES, "TinyStoriesV2-GPT4-valid.txt", valid_txt.encode())
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url + "/")  # a trailing slash is tolerated
    raw = tmp_path / "raw"
    fetch("tinystories", raw)  # the default train_shards=10 means "the one train file" here
    assert list(iter_documents("tinystories", "train", raw)) == train
    assert list(iter_documents("tinystories", "val", raw)) == valid[0::2]
    assert list(iter_documents("tinystories", "test", raw)) == valid[1::2]


def test_reading_before_fetch_says_to_prepare(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"shard_06542\.parquet.*autoresearch prepare --dataset climbmix"):
        iter_documents("climbmix", "val", tmp_path)
    with pytest.raises(DataError, match=r"shard_00000\.parquet"):
        iter_documents("climbmix", "train", tmp_path)


# ----------------------------------------------------------------------------------------------------
# Offline: fail fast, name the alternatives


def assert_offline_error_fast(raw: Path, budget_s: float = 5.0) -> str:
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        fetch("climbmix", raw, train_shards=1)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert elapsed < budget_s, f"offline error took {elapsed:.1f} s"
    assert "--dataset embedded" in message and "--dataset /path/to/dir" in message
    return message


def test_offline_connection_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url()
    monkeypatch.setenv("HF_ENDPOINT", url)
    assert url in assert_offline_error_fast(tmp_path / "raw", budget_s=2.0)


@pytest.mark.slow
def test_offline_server_that_never_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with silent_server() as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        assert_offline_error_fast(tmp_path / "raw")


def test_offline_unresolvable_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")  # .invalid never resolves (RFC 6761)
    assert_offline_error_fast(tmp_path / "raw")


def test_hf_hub_offline_fails_at_once(climbmix_hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = assert_offline_error_fast(tmp_path / "raw", budget_s=1.0)
    assert "HF_HUB_OFFLINE" in message
    assert climbmix_hub.requests == []


# ----------------------------------------------------------------------------------------------------
# Local files


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "a.txt").write_text("alpha story one<|endoftext|>\nalpha story two\n<|endoftext|>\n")
    (root / "notes.md").write_text("# Notes\n\nA whole markdown file is one document.\n")
    (root / "sub" / "c.jsonl").write_text(
        json.dumps({"text": "json doc 1", "meta": 1}) + "\n\n" + json.dumps({"text": "json doc 2"}) + "\n"
    )
    (root / "sub" / "d.parquet").write_bytes(parquet_bytes(["parquet doc 1", "parquet doc 2", "", "parquet doc 3"]))
    (root / ".hidden" / "e.txt").write_text("hidden, ignored")
    (root / "ignored.csv").write_text("text\nnot read\n")
    return root


ALL_LOCAL_DOCS = {
    "alpha story one", "alpha story two", "# Notes\n\nA whole markdown file is one document.",
    "json doc 1", "json doc 2", "parquet doc 1", "parquet doc 2", "parquet doc 3",
}


def splits_of(dataset: str) -> dict[str, list[str]]:
    return {split: list(iter_documents(dataset, split, Path("unused"))) for split in data.SPLITS}


def test_local_directory_all_formats(corpus: Path) -> None:
    splits = splits_of(str(corpus))
    docs = [doc for split in splits.values() for doc in split]
    assert sorted(docs) == sorted(ALL_LOCAL_DOCS)  # every document once: splits are disjoint
    assert all(splits.values()), "a tiny corpus still gets a val and a test document"
    assert splits == splits_of(str(corpus))  # deterministic
    fetch(str(corpus), Path("unused"))  # a no-op for local data


def test_local_glob(corpus: Path) -> None:
    assert splits_of(str(corpus / "**" / "*.*")) == splits_of(str(corpus))  # glob skips dotfiles, too
    sub = splits_of(str(corpus / "sub" / "*"))
    assert sorted(doc for split in sub.values() for doc in split) == sorted(
        ["json doc 1", "json doc 2", "parquet doc 1", "parquet doc 2", "parquet doc 3"]
    )


def test_local_split_follows_content_hash(tmp_path: Path) -> None:
    docs = [f"document number {i} about topic {i % 17}" for i in range(3000)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))

    def unit(doc: str) -> float:  # the documented rule, written out independently
        return int.from_bytes(hashlib.blake2b(doc.encode(), digest_size=8).digest(), "big") / 2**64

    splits = splits_of(str(tmp_path))
    assert splits["val"] == [d for d in docs if unit(d) < 0.01]
    assert splits["test"] == [d for d in docs if 0.01 <= unit(d) < 0.02]
    assert 10 <= len(splits["val"]) <= 60 and 10 <= len(splits["test"]) <= 60
    # Adding a file leaves every old document where it was.
    (tmp_path / "b.txt").write_text("<|endoftext|>".join(f"new story {i}" for i in range(500)))
    grown = splits_of(str(tmp_path))
    for split in data.SPLITS:
        assert [d for d in grown[split] if not d.startswith("new story")] == splits[split]


def test_tiny_local_corpus(tmp_path: Path) -> None:
    (tmp_path / "three.txt").write_text("one<|endoftext|>two<|endoftext|>three")
    splits = splits_of(str(tmp_path / "three.txt"))
    assert sorted(len(docs) for docs in splits.values()) == [1, 1, 1]
    (tmp_path / "three.txt").write_text("one<|endoftext|>two<|endoftext|>one")
    with pytest.raises(DataError, match="at least 3"):
        list(iter_documents(str(tmp_path / "three.txt"), "val", tmp_path))


def test_text_separator_across_read_chunks(tmp_path: Path) -> None:
    path = tmp_path / "stories.txt"
    stories = [f"story {i}:" + "z" * i for i in range(12)]
    path.write_text("<|endoftext|>".join(stories))
    for chunk_chars in (1, 3, 7, 13, 1 << 20):  # separators straddle chunk boundaries in every way
        assert list(data._read_text(path, chunk_chars=chunk_chars)) == stories


def test_bad_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2.*\"text\""):
        list(iter_documents(str(tmp_path), "train", tmp_path))


def test_directory_without_supported_files(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"\.txt/\.md/\.jsonl/\.parquet"):
        fetch(str(tmp_path), tmp_path)


# ----------------------------------------------------------------------------------------------------
# Names


def test_unknown_dataset_lists_the_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for call in (lambda: iter_documents("no-such-data", "train", tmp_path), lambda: fetch("no-such-data", tmp_path)):
        with pytest.raises(DataError, match="embedded, climbmix, tinystories"):
            call()
    with pytest.raises(DataError, match="train, val, test"):
        iter_documents("climbmix", "dev", tmp_path)


def test_names_and_descriptions(corpus: Path) -> None:
    assert is_hub_dataset("climbmix") and is_hub_dataset("tinystories")
    assert not is_hub_dataset("embedded") and not is_hub_dataset(str(corpus))
    assert "karpathy/climbmix-400b-shuffle" in describe("climbmix")
    assert "roneneldan/TinyStories" in describe("tinystories")
    assert "4 files" in describe(str(corpus))
