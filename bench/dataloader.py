"""End-to-end loader throughput: stored data -> (x, y) batches, ours against the straightforward reference.

Ours reads the splits tokenized once at prepare time (memory-mapped) and packs with a bisection; the reference
encodes documents on the fly in batches of 128 and scans a 1000-document buffer in pure Python for every
placement (the original autoresearch loader, transcribed in reference_loader.py). Both produce the same rows
(tests/test_dataloader.py checks that), so this compares speed only. Prints tokens/s for each, the ratio, and
the margin over what the `cuda` profile consumes on an H100.

    python bench/dataloader.py [--profile cuda] [--seconds 10] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_loader import bos_encoder, document_batches, reference_rows  # noqa: E402

from autoresearch.data import corpus  # noqa: E402
from autoresearch.data.prepare import prepare, split_seed  # noqa: E402
from autoresearch.harness.constants import prepared_dir  # noqa: E402
from autoresearch.harness.dataloader import make_dataloader  # noqa: E402
from autoresearch.harness.tokenizer import Tokenizer  # noqa: E402
from autoresearch.settings import PROFILES, Settings, cache_dir  # noqa: E402

H100_CUDA_PROFILE_TOKENS_PER_S = 1.7e6  # what train.py consumes under the cuda profile on an H100 (original's figures)


def measure(batches, tokens_per_batch: int, seconds: float) -> float:
    next(batches)  # start-up (opening files, first buffer fill) is not throughput
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(batches)
        n += 1
    return n * tokens_per_batch / (time.perf_counter() - t0)


def reference_batches(tok: Tokenizer, texts: list[str], B: int, T: int):
    rows = reference_rows(document_batches([texts]), T + 1, encode=bos_encoder(tok))
    while True:
        batch = torch.tensor([next(rows)[0] for _ in range(B)], dtype=torch.long)
        yield batch[:, :-1], batch[:, 1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cuda", choices=list(PROFILES))
    ap.add_argument("--batch-size", type=int, help="rows per batch (default: the profile's DEVICE_BATCH_SIZE)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--train-mb", type=float, default=24.0, help="size of the embedded training split to prepare")
    ap.add_argument("--cache-dir", type=Path)
    args = ap.parse_args()

    profile = PROFILES[args.profile]
    B = args.batch_size or int(profile.train_constants["DEVICE_BATCH_SIZE"])
    T = profile.max_seq_len
    settings = Settings.from_profile(args.profile, embedded_train_mb=args.train_mb, eval_tokens=T * 8)
    cache = cache_dir(args.cache_dir)
    prepare(settings, cache, progress=lambda m: print(m, flush=True))
    tok = Tokenizer.load(prepared_dir(settings, cache))

    print(f"\nprofile {args.profile}: batches of {B} x {T} tokens, {args.seconds:g}s each, 1 process, CPU tensors")
    ours = measure(make_dataloader(tok, B, T, "train", device="cpu", directory=prepared_dir(settings, cache)),
                   B * T, args.seconds)
    print(f"ours (pre-tokenized, memory-mapped, bisection best-fit): {ours / 1e6:8.2f} M tokens/s", flush=True)
    texts = [d.text for d in corpus.generate(split_seed(settings.seed, "train"), 0, 4000)]
    ref = measure(reference_batches(tok, texts, B, T), B * T, args.seconds)
    print(f"reference (on-the-fly encoding, pure-Python buffer scan): {ref / 1e6:8.2f} M tokens/s")
    print(f"speed-up: {ours / ref:.1f}x")
    print(f"vs cuda-profile consumption on an H100 ({H100_CUDA_PROFILE_TOKENS_PER_S / 1e6:.1f} M tokens/s): "
          f"ours supplies {ours / H100_CUDA_PROFILE_TOKENS_PER_S:.1f}x that on one core")


if __name__ == "__main__":
    main()
