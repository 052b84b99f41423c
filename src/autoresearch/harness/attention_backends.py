"""The attention kernel for a device, chosen in one place, and causal sliding-window attention on it.

    pick_attention(device, seq_len, windows) -> (backend, reason)
    attention(q, k, v, window, backend) -> y      q, k, v, y: (B, T, H, D)

Window semantics, the same on every backend: query i sees key j iff 0 <= i - j <= window (FA3's left window);
window >= T - 1 is plain causal attention.

Backends, fastest first:
- "fa3": FlashAttention 3, Hopper (sm90) only, bf16. From the Hugging Face `kernels` package
  (`pip install 'autoresearch[cuda]'`), loaded offline from the local hub cache where `autoresearch prepare`
  put it (experiments have no network); else from `flash_attn_interface` (FA3 built from source).
- "flex": torch's flex_attention, compiled, with a block mask (any recent CUDA GPU).
- "sdpa": F.scaled_dot_product_attention; full windows use is_causal (no mask, so SDPA may take its flash
  kernel), sliding windows a boolean mask. Works everywhere.

Masks are built once per (T, window, device) and cached here; pick_attention(device, seq_len, windows) builds
them up front, outside any compiled region.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from types import ModuleType

import torch
import torch.nn.functional as F

FA3_REPO = "kernels-community/flash-attn3"  # the Hugging Face kernel prepare fetches and the harness loads
FA3_VERSION = 1  # the kernel's major version branch (v1): a newer one may change the interface
BACKENDS = ("fa3", "flex", "sdpa")
CUDA_EXTRA = "pip install 'autoresearch[cuda]'"

_kernels: dict[str, object] = {}  # "fa3" -> module with flash_attn_func; "flex" -> compiled flex_attention
_masks: dict[tuple, object] = {}  # (backend, T, window, device type, device index) -> mask or block mask


def pick_attention(device: torch.device | str, seq_len: int | None = None,
                   windows: Iterable[int] = ()) -> tuple[str, str]:
    """The fastest attention backend for `device` and why; never fails (SDPA always works).

    With seq_len and windows (the model's per-layer windows), the masks that backend needs are built now, so
    that a compiled model finds them cached instead of building them inside its graph.
    """
    device = _indexed(torch.device(device))
    backend, reason = _choose(device)
    if seq_len is not None:
        for window in set(windows):
            _mask(backend, seq_len, window, device)
    return backend, reason


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, backend: str = "sdpa") -> torch.Tensor:
    """Causal attention where query i sees key j iff 0 <= i - j <= window. q, k, v: (B, T, H, D) -> (B, T, H, D)."""
    T = q.size(1)
    full = window >= T - 1
    if backend == "fa3":
        fa3 = _kernels.get("fa3")
        if fa3 is None:
            raise RuntimeError("attention backend 'fa3' is not loaded: call pick_attention(device) first and use "
                               "the backend it returns")
        # FA3 computes in bf16 only; -1 = unlimited left window (the non-local kernel, faster than a huge window).
        y = fa3.flash_attn_func(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal=True,
                                window_size=(-1 if full else window, 0))
        y = y[0] if isinstance(y, tuple) else y  # some FA3 builds also return the log-sum-exp
        return y.to(v.dtype)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
    if backend == "flex":
        flex = _kernels.get("flex") or _flex_attention()  # eager only when pick_attention was skipped (CPU tests)
        y = flex(q, k, v, block_mask=_mask("flex", T, window, q.device))
    elif backend == "sdpa":
        if full:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=_mask("sdpa", T, window, q.device))
    else:
        raise ValueError(f"unknown attention backend {backend!r}; use one of {', '.join(BACKENDS)}")
    return y.transpose(1, 2)  # (B, T, H, D)


# ---------------------------------------------------------------------------
# Choosing
# ---------------------------------------------------------------------------


def _choose(device: torch.device) -> tuple[str, str]:
    if device.type != "cuda":
        return "sdpa", (f"no CUDA, device is {device.type}; SDPA, is_causal for full windows and a boolean mask "
                        "for sliding ones")
    major, minor = torch.cuda.get_device_capability(device)
    if major == 9:
        fa3, how = load_fa3()
        if fa3 is not None:
            _kernels["fa3"] = fa3
            return "fa3", f"FlashAttention 3 ({how}) on sm{major}{minor}"
        why_not = f"FlashAttention 3 unavailable on this sm90 GPU: {how}"
    else:
        why_not = f"FlashAttention 3 needs Hopper (sm90), this GPU is sm{major}{minor}"
    try:
        from torch.nn.attention.flex_attention import flex_attention
    except ImportError as e:
        return "sdpa", f"SLOWER FALLBACK: {why_not}; flex_attention unavailable ({e}); SDPA"
    # flex_attention is only fast compiled; eager, it materialises the whole (T, T) score matrix.
    _kernels["flex"] = torch.compile(flex_attention, dynamic=False)
    return "flex", f"{why_not}; compiled flex_attention with a causal sliding-window block mask"


def load_fa3() -> tuple[ModuleType | None, str]:
    """FA3's module (with flash_attn_func) and where it came from, or None and why not. Never touches the network."""
    try:
        import kernels
    except ImportError:
        from_hub = f"the `kernels` package is not installed ({CUDA_EXTRA})"
    else:
        try:
            with hub_offline():
                module = kernels.get_kernel(FA3_REPO, version=FA3_VERSION)
        except Exception as e:  # noqa: BLE001 - any failure means: not usable here; say which
            from_hub = (f"{FA3_REPO} v{FA3_VERSION} is not loadable from the local cache ({_one_line(e)}); "
                        "run `autoresearch prepare` with network access to fetch it")
        else:
            interface = _with_flash_attn_func(module)
            if interface is not None:
                return interface, f"kernels: {FA3_REPO} v{FA3_VERSION}"
            from_hub = f"{FA3_REPO} v{FA3_VERSION} has no flash_attn_func"
    try:
        import flash_attn_interface  # FA3 built from source (hopper/ of Dao-AILab/flash-attention)
    except ImportError as e:
        return None, f"{from_hub}; flash_attn_interface not importable either ({_one_line(e)})"
    return flash_attn_interface, f"flash_attn_interface (built from source; {from_hub})"


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Hugging Face hub calls inside answer from the local cache only (HF_HUB_OFFLINE), then the setting is restored.

    huggingface_hub reads HF_HUB_OFFLINE into its constants at import, so both the variable (for a first import)
    and the constant (when it was imported already) are set.
    """
    saved_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants
    except ImportError:
        constants = None
    saved_const = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved_const
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def _with_flash_attn_func(module: ModuleType) -> ModuleType | None:
    # Some builds export flash_attn_func at the top, others only in a flash_attn_interface submodule.
    for candidate in (module, getattr(module, "flash_attn_interface", None)):
        if callable(getattr(candidate, "flash_attn_func", None)):
            return candidate
    return None


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())[:300]


# ---------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------


def _indexed(device: torch.device) -> torch.device:
    # Tensors report "cuda:0", never "cuda": key the caches the way attention() will look them up.
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _mask(backend: str, T: int, window: int, device: torch.device):
    """The mask `backend` needs for (T, window) on `device`, built on first use and cached; None if it needs none."""
    if backend == "fa3" or (backend == "sdpa" and window >= T - 1):
        return None  # FA3 takes the window as an argument; full-window SDPA uses is_causal
    key = (backend, T, window, device.type, device.index)
    mask = _masks.get(key)
    if mask is None:
        mask = _block_mask(T, window, device) if backend == "flex" else _bool_mask(T, window, device)
        _masks[key] = mask
    return mask


def _bool_mask(T: int, window: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(T, device=device)[:, None]  # (T, 1) query positions
    j = torch.arange(T, device=device)[None, :]  # (1, T) key positions
    return (j <= i) & (i - j <= window)  # (T, T) bool, True = may attend


def _block_mask(T: int, window: int, device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask

    def causal_window(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx <= window)

    return create_block_mask(causal_window, B=None, H=None, Q_LEN=T, KV_LEN=T, device=device)


def _flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention
