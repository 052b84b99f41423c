"""BOS-aligned best-fit packing over the tokenized splits.

Every row starts with a document's BOS token and is filled completely (no padding): the largest buffered
document that still fits goes in next; when none fits, the shortest one is cropped to fill the row and its rest
is dropped. This is the original autoresearch packing, rule for rule, so rows are identical to it:
- a buffer of 1000 documents, topped up before every placement, in batches of 128 documents (the original
  tokenizes that many at once), batches never spanning two parquet row groups (the original slices each row
  group on its own; a split remembers its groups, see TokenSplit.groups);
- ties go to the document that entered the buffer first, for "largest that fits" and "shortest" alike.
Two things make ours fast: the splits are tokenized once at prepare time and memory-mapped, and "largest that
fits" is a bisection over a sorted list of lengths instead of a scan of the whole buffer.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
BUFFER_SIZE = 1000  # documents the packer chooses from (the original's buffer_size)
REFILL_DOCS = 128  # documents added to the buffer at once (the original's tokenizer_batch_size)


class TokenSplit:
    """One tokenized split: documents (each starting with BOS) concatenated, plus their offsets.

    `groups` counts the documents of each source row group, in order (None: the split is one group). The
    buffer is refilled in batches that stop at group ends, as the original's reader does.
    """

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, groups: np.ndarray | None = None) -> None:
        self.tokens = tokens  # (n_tokens,) uint16/uint32
        self.offsets = offsets  # (n_docs + 1,) int64
        self.lengths = np.diff(offsets)  # (n_docs,)
        self.groups = groups  # (n_groups,) int64 summing to n_docs, or None
        if groups is not None and int(np.sum(groups)) != len(self.lengths):
            raise ValueError(f"groups count {int(np.sum(groups))} documents, the split holds {len(self.lengths)}")

    @classmethod
    def open(cls, directory: Path, split: str) -> TokenSplit:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        tok_path, off_path = directory / f"{split}.tokens.npy", directory / f"{split}.offsets.npy"
        if not tok_path.exists():
            raise FileNotFoundError(f"no {split} split in {directory}: run `autoresearch prepare` in the workspace")
        groups_path = directory / f"{split}.groups.npy"
        groups = np.load(groups_path) if groups_path.exists() else None
        return cls(np.load(tok_path, mmap_mode="r"), np.load(off_path), groups)

    def save(self, directory: Path, split: str) -> None:
        arrays = [(f"{split}.tokens.npy", self.tokens), (f"{split}.offsets.npy", self.offsets)]
        if self.groups is not None:
            arrays.append((f"{split}.groups.npy", np.asarray(self.groups, dtype=np.int64)))
        for name, arr in arrays:
            tmp = directory / (name + ".tmp")
            with open(tmp, "wb") as f:
                np.save(f, arr)
            tmp.replace(directory / name)

    def __len__(self) -> int:
        return len(self.lengths)

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


def refill_batches(n_docs: int, groups: np.ndarray | None = None, refill: int = REFILL_DOCS) -> np.ndarray:
    """End index (exclusive) of every refill batch of one pass: `refill` documents at a time, a group's last
    batch shorter when its size is not a multiple of `refill`."""
    sizes = np.asarray(groups if groups is not None else [n_docs], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ends = [np.minimum(np.arange(start + refill, start + size + refill, refill), start + size)
            for start, size in zip(starts.tolist(), sizes.tolist()) if size > 0]
    return np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)


def pack_rows(lengths: np.ndarray, capacity: int, buffer_size: int = BUFFER_SIZE, *,
              groups: np.ndarray | None = None, refill: int = REFILL_DOCS,
              ) -> Iterator[tuple[list[tuple[int, int]], int]]:
    """Yield (row, epoch) forever; a row is [(doc_index, n_tokens_taken), ...] summing to `capacity`.

    Only document lengths (and the split's groups) are needed, so the entropy floor of exactly what is evaluated
    can be computed from the same layout the loader produces.
    """
    if len(lengths) == 0:
        raise ValueError("cannot pack an empty split")
    ends = refill_batches(len(lengths), groups, refill).tolist()
    if ends[-1] != len(lengths):
        raise ValueError(f"groups count {ends[-1]} documents, lengths hold {len(lengths)}")
    batch, next_doc, epoch = 0, 0, 1
    sorted_lens: list[int] = []  # lengths of buffered documents, ascending, one entry per document
    by_len: dict[int, deque[int]] = {}  # length -> buffered documents of that length, oldest first
    buffered = 0

    while True:
        row: list[tuple[int, int]] = []
        pos = 0
        while pos < capacity:
            while buffered < buffer_size:  # top up before every placement, a whole batch at a time, as the original
                if batch == len(ends):
                    batch, next_doc, epoch = 0, 0, epoch + 1
                end = ends[batch]
                # One slice per batch: indexing a numpy array per document costs more than the packing.
                for doc, length in enumerate(lengths[next_doc:end].tolist(), next_doc):
                    bisect.insort(sorted_lens, length)
                    queue = by_len.get(length)
                    if queue is None:
                        by_len[length] = queue = deque()
                    queue.append(doc)
                buffered += end - next_doc
                batch, next_doc = batch + 1, end
            remaining = capacity - pos
            k = bisect.bisect_right(sorted_lens, remaining) - 1
            if k >= 0:  # the largest document that fits whole
                length = sorted_lens.pop(k)
                take = length
            else:  # nothing fits: crop the shortest document to fill the row
                length = sorted_lens.pop(0)
                take = remaining
            queue = by_len[length]
            doc = queue.popleft()
            if not queue:
                del by_len[length]
            buffered -= 1
            row.append((doc, take))
            pos += take
        yield row, epoch


def iter_row_arrays(split: TokenSplit, batch_size: int, seq_len: int) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (rows (B, seq_len + 1) int64, epoch) forever."""
    capacity = seq_len + 1
    rows = pack_rows(split.lengths, capacity, groups=split.groups)
    tokens, offsets = split.tokens, split.offsets
    while True:
        out = np.empty((batch_size, capacity), dtype=np.int64)
        epoch = 1
        for r in range(batch_size):
            layout, epoch = next(rows)
            pos = 0
            for doc, take in layout:
                start = offsets[doc]
                out[r, pos : pos + take] = tokens[start : start + take]
                pos += take
        yield out, epoch


def exact_count(name: str, value) -> int:
    """`value` as a plain positive int. An int subclass could answer differently to `*`, `range()` and numpy (a
    batch counted as 0 tokens but served in full): only its true value counts."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    count = int.__index__(value) if isinstance(value, int) else int(np.int64(value))
    if count < 1:
        raise ValueError(f"{name} must be at least 1, got {count}")
    return count


def make_dataloader(tokenizer, B: int, T: int, split: str = "train", device=None, directory: Path | None = None):
    """Iterator of (x, y, epoch): x, y contiguous int64 tensors (B, T) on `device`; y is x shifted by one token.

    train.py may read the train split only: val and test are read by the evaluation alone. Under a token budget
    (TOKEN_BUDGET > 0) the iterator ends once the next batch would take training past it.
    """
    if split != "train":
        from autoresearch.harness import channel

        reason = (f"make_dataloader(..., {split!r}) from train.py: training may read the 'train' split only; "
                  "the validation and test splits are for evaluate_bpb")
        channel.send("violation", kind="split", reason=reason)
        raise PermissionError(reason)
    B, T = exact_count("make_dataloader: B", B), exact_count("make_dataloader: T", T)  # noqa: N806
    return _batches(tokenizer, B, T, split, device, directory, announce=True)


def evaluation_loader(tokenizer, B: int, T: int, split: str, device, directory: Path | None = None):
    """The evaluation's own loader (any split); not part of the surface train.py may use."""
    return _batches(tokenizer, B, T, split, device, directory, announce=False)


def _token_budget() -> int:
    from autoresearch.harness.constants import workspace_settings
    from autoresearch.settings import SettingsError

    try:
        return workspace_settings().token_budget
    except SettingsError:  # the loader used on its own, outside a workspace (benchmarks, tests): no budget
        return 0


def _batches(tokenizer, B, T, split, device, directory, announce: bool):
    import torch

    from autoresearch.harness import channel
    from autoresearch.harness.constants import prepared_dir
    from autoresearch.harness.device import get_device
    from autoresearch.harness.meter import meter

    device = torch.device(device) if device is not None else get_device()
    data = TokenSplit.open(Path(directory) if directory else prepared_dir(), split)
    budget = _token_budget() if announce else 0
    pin = device.type == "cuda"
    for rows, _epoch in iter_row_arrays(data, B, T):
        served = int(rows.shape[0]) * (int(rows.shape[1]) - 1)  # (B, T+1): counted from what is served
        if announce:
            if channel.sent("eval_start"):
                reason = ("a training batch was asked for after evaluate_bpb started: train first, then evaluate once, "
                          "at the end")
                channel.send("violation", kind="train_after_eval", reason=reason)
                raise PermissionError(reason)
            if budget and meter.tokens + served > budget:
                meter.report()  # the runner sees the final count at once
                return  # the token budget is spent: the iterator ends (next(loader, None) gives None)
            meter.batch_served(served)
        t = torch.from_numpy(rows)  # (B, T+1)
        if pin:
            t = t.pin_memory()
        t = t.to(device, non_blocking=pin)
        # Contiguous x and y (one copy of B*T int64s): code written for the original's loader calls .view(-1).
        yield t[:, :-1].contiguous(), t[:, 1:].contiguous(), _epoch
