"""`prepare` fetches the FlashAttention 3 kernel while it has the network; experiments load it offline.

Experiments run without network, so the harness (harness/attention_backends.py) loads FA3 from the local Hugging Face
cache only. This is where it gets there: `kernels.install_kernel` downloads the build that matches this machine's
torch and CUDA into that cache. FA3 is an optimisation, never a requirement: every failure here is one line of
progress and prepare goes on; training then uses compiled flex_attention or SDPA.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from autoresearch.data import sources
from autoresearch.harness.attention_backends import CUDA_EXTRA, FA3_REPO, FA3_VERSION

FALLBACK = "training uses flex_attention or SDPA instead"


def fetch_attention_kernel(progress: Callable[[str], None] = print, force: bool = False) -> bool:
    """Download FA3 into the local hub cache; True when it is there. Never raises.

    By default only where it can help: the `kernels` package is installed and torch sees a CUDA GPU. With
    `force`, also without a GPU (a login node preparing the cache that GPU machines share).
    """
    if not (force or torch.cuda.is_available()):
        return False  # a CPU machine: nothing to say, nothing to fetch
    name = f"{FA3_REPO} v{FA3_VERSION}"
    try:
        import kernels
    except ImportError:
        progress(f"prepare: FlashAttention 3 not fetched: the `kernels` package is not installed ({CUDA_EXTRA}); "
                 f"{FALLBACK}")
        return False
    endpoint = sources._endpoint()  # the same hub, mirror and proxy settings as dataset downloads
    try:
        sources._probe(endpoint, FA3_REPO)  # a few seconds, instead of the hub client's long retries
    except sources.DataError as e:
        progress(f"prepare: FlashAttention 3 not fetched, no network: {e} Rerun prepare online to fetch {name}; "
                 f"until then {FALLBACK}.")
        return False
    try:
        path = kernels.install_kernel(FA3_REPO, version=FA3_VERSION)
    except Exception as e:  # noqa: BLE001 - whatever went wrong, FA3 is optional: say it and go on
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:400]
        progress(f"prepare: FlashAttention 3 not fetched: {name} failed ({reason}); {FALLBACK}. This machine's "
                 f"torch may have no FA3 build (it needs a CUDA build of torch), or `kernels` is too old "
                 f"({CUDA_EXTRA} installs a supported one).")
        return False
    progress(f"prepare: FlashAttention 3 ({name}) is in the local cache ({path}); Hopper GPUs load it offline")
    return True
