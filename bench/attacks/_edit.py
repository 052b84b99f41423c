"""Anchored edits: each asserts its anchor occurs exactly once, so a changed template fails loudly."""

from __future__ import annotations


def replace(source: str, old: str, new: str) -> str:
    n = source.count(old)
    assert n == 1, f"edit anchor found {n} times (expected once): {old!r}"
    return source.replace(old, new)


def after(source: str, anchor: str, text: str) -> str:
    """Insert `text` right after the line holding `anchor` (text is whole lines, newline-terminated)."""
    n = source.count(anchor)
    assert n == 1, f"edit anchor found {n} times (expected once): {anchor!r}"
    i = source.index(anchor)
    end = source.index("\n", i) + 1
    return source[:end] + text + source[end:]


def before(source: str, anchor: str, text: str) -> str:
    """Insert `text` right before the line holding `anchor`."""
    n = source.count(anchor)
    assert n == 1, f"edit anchor found {n} times (expected once): {anchor!r}"
    i = source.index(anchor)
    start = source.rindex("\n", 0, i) + 1
    return source[:start] + text + source[start:]


def imports(source: str, text: str) -> str:
    """Add import lines after the template's `import torch.nn.functional as F`."""
    return after(source, "import torch.nn.functional as F\n", text)
