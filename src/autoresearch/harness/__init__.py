"""The fixed harness: the only thing train.py imports from autoresearch.

Surface (keep it small enough to list in an agent's prompt):
    MAX_SEQ_LEN, TIME_BUDGET, TOKEN_BUDGET, EVAL_TOKENS, VOCAB_SIZE
                                                        workspace constants from autoresearch.toml; TOKEN_BUDGET
                                                        > 0: training ends after that many tokens, not seconds
    Tokenizer.load()                                    this workspace's BPE tokenizer
    make_dataloader(tokenizer, B, T, split, device)     (x, y, epoch) batches, BOS-aligned best-fit packing;
                                                        ends when the token budget is spent
    evaluate_bpb(model, tokenizer, batch_size)          the official metric; model(x) -> logits (B, T, V)
    get_device(), autocast_context(device), peak_flops(device), synchronize(device), peak_memory_mb(device)
    pick_attention(device, seq_len, windows)            (backend, reason): FA3 on Hopper, compiled flex on other
                                                        CUDA GPUs, else SDPA; builds the masks of those windows
    attention(q, k, v, window, backend)                 causal attention, (B, T, H, D) -> (B, T, H, D): query i
                                                        sees key j iff 0 <= i - j <= window
"""

import importlib

from autoresearch.harness import constants

# Loaded on first use: the scorer and the orchestrator import parts of the harness (constants, the loader, the
# wire) without paying for torch; train.py's `from autoresearch.harness import ...` loads what it names.
_SURFACE = {
    "Tokenizer": "tokenizer", "make_dataloader": "dataloader", "evaluate_bpb": "evaluate",
    "get_device": "device", "autocast_context": "device", "peak_flops": "device", "synchronize": "device",
    "peak_memory_mb": "device", "pick_attention": "attention_backends", "attention": "attention_backends",
}

__all__ = [
    "MAX_SEQ_LEN", "TIME_BUDGET", "TOKEN_BUDGET", "EVAL_TOKENS", "VOCAB_SIZE",
    "Tokenizer", "make_dataloader", "evaluate_bpb",
    "get_device", "autocast_context", "peak_flops", "synchronize", "peak_memory_mb",
    "pick_attention", "attention",
]


def __getattr__(name: str):  # PEP 562: constants come from the workspace, the rest from its module, on first use
    if name in constants._CONSTANTS:
        return getattr(constants, name)
    if name in _SURFACE:
        value = getattr(importlib.import_module(f"autoresearch.harness.{_SURFACE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'autoresearch.harness' has no attribute {name!r}")
