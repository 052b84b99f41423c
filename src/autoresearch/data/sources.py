"""Raw text documents for `prepare`: Hugging Face hub datasets and local files, split into train/val/test.

Split rules (all deterministic, none depends on time, randomness or machine):
- climbmix: as the original autoresearch: train = the first N parquet shards (default 10), val = all of the
  pinned last shard `shard_06542.parquet`, every row a document (blank ones too, as the original's loader
  reads them). test = all of `shard_06541.parquet`, the shard before it (the original has no test split): we
  never train on it (train shards stop at shard_06540), and the original trains on it only when it downloads
  every shard, so a test figure never comes from text either run has trained on at the default settings.
- tinystories: train = `TinyStoriesV2-GPT4-train.txt`; `TinyStoriesV2-GPT4-valid.txt` alternates the same way.
- local files: each document goes where the blake2b hash of its text falls: [0, 1%) -> val, [1%, 2%) -> test,
  the rest -> train. A document's split depends on its content alone, so adding files never moves old ones.
  Small corpora where that leaves val or test empty fall back to ranks: the document with the lowest hash is
  val, the next is test, all others train (so at least 3 distinct documents are needed).

Downloads go through huggingface_hub, which honours HF_ENDPOINT (read here at call time) and resumes a
transfer cut mid-body with a Range request. Finished files are never fetched again; an interrupted run
keeps them, so rerunning `prepare` resumes shard by shard.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")
EOT = "<|endoftext|>"  # document separator inside .txt files (TinyStories uses it too)
LOCAL_SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")
DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 3.0  # one short reachability probe instead of huggingface_hub's long retry loop
DOWNLOAD_ATTEMPTS = 4  # per file, for transient errors (5xx, resets); waits 1, 2, 4 s between them
RETRY_BASE_S = 1.0
MAX_PARALLEL = 4  # shards downloaded at once
LOCAL_HOLDOUT = 0.01  # fraction of local documents in val, and again in test
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}

OFFLINE_HINT = (
    "To work offline, use the embedded corpus (--dataset embedded) or your own text files "
    "(--dataset /path/to/dir holding .txt/.md/.jsonl/.parquet files)."
)


class DataError(Exception):
    """A dataset cannot be fetched or read. The message says how to fix it."""


@dataclass(frozen=True)
class HubDataset:
    repo_id: str
    train_file: str  # file name, formatted with i = 0, 1, ... for sharded datasets
    num_train_files: int
    eval_file: str  # held out: val; without a test_file, its documents alternate val (even) / test (odd)
    test_file: str | None = None  # held out: test, whole
    every_row: bool = False  # blank documents are documents too (the original's reader keeps them)
    revision: str = "main"

    def heldout_files(self) -> list[str]:
        return [self.eval_file] + ([self.test_file] if self.test_file else [])

    def train_files(self, n: int) -> list[str]:
        # Single-file datasets ignore n; sharded ones clamp it to what exists.
        return [self.train_file.format(i=i) for i in range(max(1, min(n, self.num_train_files)))]


HUB_DATASETS: dict[str, HubDataset] = {
    "climbmix": HubDataset(
        repo_id="karpathy/climbmix-400b-shuffle",
        train_file="shard_{i:05d}.parquet",
        num_train_files=6541,  # shard_00000 .. shard_06540: shard_06541 is our test shard
        eval_file="shard_06542.parquet",  # the original's pinned validation shard
        test_file="shard_06541.parquet",
        every_row=True,
    ),
    "tinystories": HubDataset(
        repo_id="roneneldan/TinyStories",
        train_file="TinyStoriesV2-GPT4-train.txt",
        num_train_files=1,
        eval_file="TinyStoriesV2-GPT4-valid.txt",
    ),
}


# ----------------------------------------------------------------------------------------------------
# Public API


def is_hub_dataset(dataset: str) -> bool:
    return dataset in HUB_DATASETS


def describe(dataset: str) -> str:
    """One line for logs."""
    if spec := HUB_DATASETS.get(dataset):
        heldout = (f"val = {spec.eval_file}, test = {spec.test_file}" if spec.test_file
                   else f"val/test = even/odd documents of {spec.eval_file}")
        return (
            f"{dataset}: HF dataset {spec.repo_id}, train = {spec.train_file.format(i=0)}"
            f"{' ...' if spec.num_train_files > 1 else ''}, {heldout}"
        )
    try:
        files = _local_files(dataset)
    except DataError as e:
        return f"{dataset}: unusable ({e})"
    return f"local files {dataset} ({len(files)} files; split by content hash, ~1% val, ~1% test)"


def fetch(
    dataset: str,
    raw_dir: Path,
    *,
    train_shards: int = 10,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Download what `dataset` needs into raw_dir; files already there are kept. No-op for local paths."""
    spec = HUB_DATASETS.get(dataset)
    if spec is None:
        _local_files(dataset)  # fail now, before tokenizer training, if the path is wrong
        return
    if train_shards < 1:
        raise DataError(f"train_shards must be at least 1, got {train_shards}.")
    say = progress or (lambda message: None)
    raw_dir = Path(raw_dir)
    wanted = [*spec.train_files(train_shards), *spec.heldout_files()]
    missing = [name for name in wanted if not (raw_dir / name).is_file()]
    if not missing:
        say(f"{dataset}: all {len(wanted)} files present in {raw_dir}")
        return
    if _env_true("HF_HUB_OFFLINE"):
        raise DataError(
            f"HF_HUB_OFFLINE is set and {len(missing)} {dataset} files are not in {raw_dir} "
            f"(first: {missing[0]}). Unset HF_HUB_OFFLINE to download them. {OFFLINE_HINT}"
        )
    endpoint = _endpoint()
    _probe(endpoint, spec.repo_id)
    raw_dir.mkdir(parents=True, exist_ok=True)
    say(f"{dataset}: downloading {len(missing)} of {len(wanted)} files from {endpoint} into {raw_dir}")
    _download_all(dataset, spec, missing, raw_dir, endpoint, say)


def iter_documents(dataset: str, split: str, raw_dir: Path, *, train_shards: int | None = None) -> Iterator[str]:
    """Documents of one split, in a fixed order. train_shards=None reads every train shard present."""
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    if spec := HUB_DATASETS.get(dataset):
        return _iter_hub(dataset, spec, split, Path(raw_dir), train_shards)
    return _iter_local(_local_files(dataset), split)


def row_groups(dataset: str, split: str, raw_dir: Path, *, train_shards: int | None = None) -> list[int] | None:
    """Documents per parquet row group of a split, in iter_documents order, where the original's loader reads
    row group by row group (climbmix); None elsewhere. Read from the files' metadata only."""
    spec = HUB_DATASETS.get(dataset)
    if spec is None or not spec.every_row:
        return None
    import pyarrow.parquet as pq

    sizes: list[int] = []
    for path in _hub_paths(dataset, spec, split, Path(raw_dir), train_shards):
        meta = pq.ParquetFile(path).metadata
        sizes.extend(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    return sizes


# ----------------------------------------------------------------------------------------------------
# Hub downloads


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _endpoint() -> str:
    # huggingface_hub copies HF_ENDPOINT into its constants at import; read it now and pass it explicitly.
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _offline_error(endpoint: str, reason: object) -> DataError:
    if isinstance(reason, BaseException):
        reason = f"{type(reason).__name__}: {reason}"
    reason = " ".join(str(reason).split())  # one line: library errors carry newlines
    return DataError(
        f"Cannot reach the Hugging Face hub at {endpoint} ({reason}). {OFFLINE_HINT} "
        "Behind a proxy, set HTTPS_PROXY; for a mirror, set HF_ENDPOINT."
    )


def _probe(endpoint: str, repo_id: str) -> None:
    """Raise DataError within ~PROBE_TIMEOUT_S unless the hub answers HTTP at all (any status will do)."""
    from huggingface_hub import get_session  # the client downloads use: same proxies and certificates

    errors: list[BaseException] = []

    def head() -> None:
        try:
            get_session().head(f"{endpoint}/api/datasets/{repo_id}", timeout=PROBE_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - any failure to get an answer means unreachable
            errors.append(e)

    # A daemon thread bounds the wait even where name resolution ignores the socket timeout.
    thread = threading.Thread(target=head, daemon=True, name="hub-probe")
    thread.start()
    thread.join(PROBE_TIMEOUT_S + 0.5)
    if thread.is_alive():
        raise _offline_error(endpoint, f"no answer within {PROBE_TIMEOUT_S:g} s")
    if errors:
        raise _offline_error(endpoint, errors[0])


def _download_all(
    dataset: str, spec: HubDataset, names: list[str], raw_dir: Path, endpoint: str, say: Callable[[str], None]
) -> None:
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(names)), thread_name_prefix="hub-dl") as pool:
        futures = {pool.submit(_download_one, spec, name, raw_dir, endpoint): name for name in names}
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                future.result()
                say(f"{dataset}: {futures[future]} ({done}/{len(names)})")
        except BaseException:
            for future in futures:  # don't start more after a failure; running ones finish and are kept
                future.cancel()
            raise


def _download_one(spec: HubDataset, name: str, raw_dir: Path, endpoint: str) -> None:
    from huggingface_hub import hf_hub_download

    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            hf_hub_download(
                spec.repo_id, name, repo_type="dataset", revision=spec.revision, local_dir=raw_dir, endpoint=endpoint
            )
            return
        except Exception as e:  # noqa: BLE001 - classified below
            if _is_unreachable(e):  # the host went away: retrying only delays the error
                raise _offline_error(endpoint, e) from e
            if not _is_transient(e) or attempt == DOWNLOAD_ATTEMPTS:
                reason = " ".join(str(e).split())  # one line: hub errors carry newlines
                raise DataError(
                    f"Downloading {name} of {spec.repo_id} from {endpoint} failed after {attempt} attempt(s): "
                    f"{type(e).__name__}: {reason}. Rerun prepare to retry (finished files are kept). {OFFLINE_HINT}"
                ) from e
            time.sleep(RETRY_BASE_S * 2 ** (attempt - 1))


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__  # type: ignore[assignment]


def _class_names(error: BaseException) -> set[str]:
    # By name, not by class: huggingface_hub 1.x raises httpx errors, 2.x httpx2 errors of the same names.
    return {cls.__name__ for e in _chain(error) for cls in type(e).__mro__}


_UNREACHABLE = {"ConnectError", "ConnectTimeout", "ConnectionRefusedError", "gaierror", "OfflineModeIsEnabled"}


def _is_unreachable(error: BaseException) -> bool:
    return bool(_class_names(error) & _UNREACHABLE)


def _is_transient(error: BaseException) -> bool:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status in _RETRY_STATUS:
        return True
    if "Consistency check failed" in str(error):  # size mismatch after a cut transfer
        return True
    return bool(_class_names(error) & {"NetworkError", "TimeoutException", "RemoteProtocolError"})


# ----------------------------------------------------------------------------------------------------
# Reading hub datasets


def _iter_hub(dataset: str, spec: HubDataset, split: str, raw_dir: Path, train_shards: int | None) -> Iterator[str]:
    paths = _hub_paths(dataset, spec, split, raw_dir, train_shards)
    if split == "train" or spec.test_file:
        return _hub_files(paths, spec.every_row)
    return _alternate(paths[0], parity=0 if split == "val" else 1)


def _hub_paths(dataset: str, spec: HubDataset, split: str, raw_dir: Path, train_shards: int | None) -> list[Path]:
    if split == "train":
        names = spec.train_files(train_shards or spec.num_train_files)
        if train_shards is None:  # whatever fetch brought, in shard order
            names = [name for name in names if (raw_dir / name).is_file()] or names[:1]
    else:
        names = [spec.test_file if split == "test" and spec.test_file else spec.eval_file]
    missing = [name for name in names if not (raw_dir / name).is_file()]
    if missing:
        raise DataError(
            f"{dataset}: {missing[0]} is missing from {raw_dir}. Run `autoresearch prepare --dataset {dataset}` "
            f"to download it. {OFFLINE_HINT}"
        )
    return [raw_dir / name for name in names]


def _hub_files(paths: list[Path], every_row: bool) -> Iterator[str]:
    for path in paths:
        yield from _read_parquet(path, every_row=True) if every_row else _read_file(path)


def _alternate(path: Path, parity: int) -> Iterator[str]:
    for index, doc in enumerate(_read_file(path)):
        if index % 2 == parity:
            yield doc


# ----------------------------------------------------------------------------------------------------
# Reading files


def _read_file(path: Path) -> Iterator[str]:
    """The documents of one file, by suffix. Empty documents are skipped."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".jsonl":
        return _read_jsonl(path)
    return _read_text(path)


def _read_parquet(path: Path, every_row: bool = False) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataError(f"{path} is not a readable parquet file ({e}); delete it and rerun prepare.") from e
    if "text" not in parquet.schema_arrow.names:
        raise DataError(f"{path} has no 'text' column (columns: {parquet.schema_arrow.names}).")
    # Batches, not the whole table: real shards are ~100 MB.
    for batch in parquet.iter_batches(batch_size=1024, columns=["text"]):
        for text in batch.column(0).to_pylist():
            if every_row:
                yield text or ""  # a null would stop the original; as a document it is only a BOS
            elif text and text.strip():
                yield text


def _read_jsonl(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f'{path}:{lineno}: expected a JSON object with a "text" field ({e}).') from e
            if isinstance(text, str) and text.strip():
                yield text


def _read_text(path: Path, chunk_chars: int = 1 << 20) -> Iterator[str]:
    """A whole file is one document, unless EOT separates several; streamed, as files may be GBs."""
    with path.open(encoding="utf-8", errors="replace") as f:
        buffer = ""
        while chunk := f.read(chunk_chars):
            buffer += chunk
            if EOT not in buffer[-(len(chunk) + len(EOT)) :]:  # only the new tail can hold a new separator
                continue
            *docs, buffer = buffer.split(EOT)
            yield from (doc.strip() for doc in docs if doc.strip())
        if buffer.strip():
            yield buffer.strip()


# ----------------------------------------------------------------------------------------------------
# Local files


def check_dataset(dataset: str) -> str:
    """The dataset as a workspace should record it, or a DataError naming what exists. Checked at `init` (and by
    `prepare --dataset`), so that a typo is found in a second, not when preparing fails in another directory.

    A local path or glob becomes absolute: the workspace's commands run from its own directory, not from where
    `init` was typed."""
    if dataset == "embedded" or dataset in HUB_DATASETS:
        return dataset
    names = ["embedded", *HUB_DATASETS]
    if not any(c in dataset for c in "*?[") and not Path(dataset).expanduser().exists():
        import difflib

        close = difflib.get_close_matches(dataset, names, n=1, cutoff=0.6)
        hint = f"Did you mean --dataset {close[0]}? " if close else ""
        raise DataError(f"Unknown dataset {dataset!r}: not one of {', '.join(names)}, and no file or directory of "
                        f"that name exists. {hint}Pass one of {', '.join(names)}, or a directory, file or glob of "
                        f"{'/'.join(LOCAL_SUFFIXES)} files.")
    _local_files(dataset)  # raises when it names no supported file
    return os.path.abspath(os.path.expanduser(dataset))


def _local_files(dataset: str) -> list[Path]:
    """The supported files a local dataset names (directory, glob or single file), sorted."""
    path = Path(dataset).expanduser()
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path))]
    elif path.is_file():
        files = [path]
    elif any(c in dataset for c in "*?["):
        files = [Path(p) for p in glob.glob(os.path.expanduser(dataset), recursive=True) if Path(p).is_file()]
    else:
        choices = ", ".join(["embedded", *HUB_DATASETS])
        raise DataError(
            f"Unknown dataset {dataset!r}: not one of {choices}, and no file, directory or glob match of that "
            f"name exists. Pass --dataset with one of {choices}, or a path to .txt/.md/.jsonl/.parquet files."
        )
    files = sorted(p for p in files if p.suffix.lower() in LOCAL_SUFFIXES)
    if not files:
        raise DataError(f"No {'/'.join(LOCAL_SUFFIXES)} files in {dataset!r}; add some or point --dataset elsewhere.")
    return files


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)  # .git, .cache, editor droppings


def _file_documents(files: list[Path]) -> Iterator[str]:
    for path in files:
        yield from _read_file(path)


def _hash_unit(doc: str) -> tuple[float, bytes]:
    """Where a document falls in [0, 1), and its digest (surrogatepass: JSON may carry lone surrogates)."""
    digest = hashlib.blake2b(doc.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64, digest


def _natural_split(unit: float) -> str:
    return "val" if unit < LOCAL_HOLDOUT else "test" if unit < 2 * LOCAL_HOLDOUT else "train"


def _rank_fallback(files: list[Path]) -> tuple[bytes, bytes] | None:
    """None if hashing fills every split; else the digests of the (val, test) documents of the rank rule.

    Stops reading as soon as all three splits have a document, which for a real corpus is within a few
    hundred documents, so the extra pass costs little.
    """
    seen: set[str] = set()
    lowest: list[tuple[float, bytes]] = []  # the two lowest distinct (unit, digest)
    distinct: set[bytes] = set()  # up to 3, to tell "too small" apart
    for doc in _file_documents(files):
        unit, digest = _hash_unit(doc)
        seen.add(_natural_split(unit))
        if len(seen) == 3:
            return None
        if len(distinct) < 3:
            distinct.add(digest)
        if digest not in (d for _, d in lowest):
            lowest = sorted([*lowest, (unit, digest)])[:2]
    if len(distinct) < 3:
        raise DataError(
            f"The local corpus ({len(files)} files) has {len(distinct)} distinct document(s); at least 3 are "
            f"needed, one each for train, val and test. Add files, or separate documents in a .txt with {EOT}."
        )
    return lowest[0][1], lowest[1][1]


def _iter_local(files: list[Path], split: str) -> Iterator[str]:
    fallback = _rank_fallback(files)
    for doc in _file_documents(files):
        unit, digest = _hash_unit(doc)
        if fallback is None:
            doc_split = _natural_split(unit)
        else:
            doc_split = "val" if digest == fallback[0] else "test" if digest == fallback[1] else "train"
        if doc_split == split:
            yield doc
