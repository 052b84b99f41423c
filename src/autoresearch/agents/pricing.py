"""What a model's tokens cost: a small built-in list of USD per million tokens, overridable by a TOML file.

The built-in table holds list prices (standard tier, short prompts, no caching or batch discount) as published by
Anthropic (platform.claude.com, models overview and pricing) and OpenAI (developers.openai.com pricing), read in
October 2026. Prices move; a user who needs exact figures passes a file:

    [prices."claude-opus-5-5"]
    input = 4.0      # USD per million input tokens
    output = 20.0    # USD per million output tokens

Lookup tolerates dated snapshots ("claude-haiku-4-5-20251001", "gpt-4o-2024-08-06") and suffixed variants
("gpt-5-codex" -> "gpt-5"), but never guesses across versions: "claude-opus-4-9" is unknown, not "claude-opus-4",
because a newer version is often priced differently. Unknown models cost 0 with a one-time warning.
"""

from __future__ import annotations

import logging
import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

Price = tuple[float, float]  # (USD per million input tokens, USD per million output tokens)

# fmt: off
BUILTIN_PRICES: dict[str, Price] = {
    # Anthropic ------------------------------------------------------------------------------------------------
    "claude-fable-5-2":   (8.0, 40.0),
    "claude-fable-5-1":   (10.0, 50.0),
    "claude-fable-5":     (10.0, 50.0),
    "claude-opus-5-5":    (4.0, 20.0),
    "claude-opus-5":      (5.0, 25.0),
    "claude-opus-4-8":    (5.0, 25.0),
    "claude-opus-4-7":    (5.0, 25.0),
    "claude-opus-4-6":    (5.0, 25.0),
    "claude-opus-4-5":    (5.0, 25.0),
    "claude-opus-4-1":    (15.0, 75.0),
    "claude-opus-4-0":    (15.0, 75.0),
    "claude-opus-4":      (15.0, 75.0),
    "claude-sonnet-5-5":  (2.0, 10.0),
    "claude-sonnet-5":    (2.0, 10.0),
    "claude-sonnet-4-6":  (3.0, 15.0),
    "claude-sonnet-4-5":  (3.0, 15.0),
    "claude-sonnet-4-0":  (3.0, 15.0),
    "claude-sonnet-4":    (3.0, 15.0),
    "claude-3-7-sonnet":  (3.0, 15.0),
    # Haiku 5.5 is tiered: 5x for prompts over 100k tokens. Our prompts are ~10-30k tokens, so the base tier.
    "claude-haiku-5-5":   (0.10, 0.50),
    "claude-haiku-4-5":   (1.0, 5.0),
    "claude-3-5-haiku":   (0.80, 4.0),
    "claude-3-haiku":     (0.25, 1.25),
    # OpenAI (GPT-6 and GPT-5.6 bill prompts over 272k tokens higher; ours stay far below) ------------------------
    "gpt-6.2-astra":      (8.0, 40.0),
    "gpt-6.2-sol":        (2.0, 10.0),
    "gpt-6.1-sol":        (2.0, 10.0),
    "gpt-6-astra":        (10.0, 50.0),
    "gpt-6-sol":          (2.0, 10.0),
    "gpt-6-luna":         (0.10, 0.50),
    "gpt-5.6-sol":        (4.0, 20.0),
    "gpt-5.6-terra":      (2.0, 12.0),
    "gpt-5.6-luna":       (0.20, 1.20),
    "gpt-5.5-pro":        (30.0, 180.0),
    "gpt-5.5":            (5.0, 30.0),
    "gpt-5.4-pro":        (30.0, 180.0),
    "gpt-5.4":            (2.50, 15.0),
    "gpt-5.4-mini":       (0.75, 4.50),
    "gpt-5.4-nano":       (0.20, 1.25),
    "gpt-5.2":            (1.75, 14.0),
    "gpt-5.1":            (1.25, 10.0),
    "gpt-5":              (1.25, 10.0),
    "gpt-5-mini":         (0.25, 2.0),
    "gpt-5-nano":         (0.05, 0.40),
    "gpt-4.1":            (2.0, 8.0),
    "gpt-4.1-mini":       (0.40, 1.60),
    "gpt-4.1-nano":       (0.10, 0.40),
    "gpt-4o":             (2.50, 10.0),
    "gpt-4o-mini":        (0.15, 0.60),
    "o3-pro":             (20.0, 80.0),
    "o3":                 (2.0, 8.0),
    "o4-mini":            (1.10, 4.40),
}
# fmt: on

_DATE_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$")  # -20251001, -2024-08-06
_warned: set[str] = set()


class PriceFileError(ValueError):
    """The prices file cannot be used; the message names the file and the entry to fix."""


def load_prices(path: str | Path) -> dict[str, Price]:
    """Read `[prices."model"] input = X  output = Y` tables (USD per million tokens) from a TOML file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PriceFileError(f"prices file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PriceFileError(f"prices file {path} is not valid TOML: {exc}") from None
    table = data.get("prices")
    if not isinstance(table, dict):
        raise PriceFileError(f'prices file {path} has no [prices."MODEL"] tables; write e.g.\n'
                             f'[prices."my-model"]\ninput = 3.0\noutput = 15.0')
    prices: dict[str, Price] = {}
    for model, entry in table.items():
        where = f'[prices."{model}"] in {path}'
        if not isinstance(entry, dict) or set(entry) != {"input", "output"}:
            raise PriceFileError(f"{where} needs exactly two keys, input and output (USD per million tokens)")
        values = entry["input"], entry["output"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                   for v in values):
            raise PriceFileError(f"{where}: input and output must be non-negative numbers, got {values}")
        prices[model] = (float(values[0]), float(values[1]))
    return prices


def lookup(model: str, table: Mapping[str, Price]) -> Price | None:
    """The price of `model` in `table`, matching dated snapshots and suffixed variants; None if unknown."""
    if model in table:
        return table[model]
    base = _DATE_SUFFIX.sub("", model)
    if base in table:
        return table[base]
    # Longest key that is a prefix at a dash, unless what follows is a version number or a "pro" tier: both are
    # usually priced differently (a pro tier ~10x), and an honest "unknown" beats a confident wrong figure.
    best: str | None = None
    for key in table:
        rest = base[len(key) + 1:]
        if (base.startswith(key + "-") and rest and not rest[0].isdigit() and not rest.startswith("pro")
                and (best is None or len(key) > len(best))):
            best = key
    return table[best] if best is not None else None


def price_for(model: str, overrides: Mapping[str, Price] | None = None, *, builtin: bool = True) -> Price:
    """USD per million (input, output) tokens. User overrides win; unknown models cost 0 (warned once).

    `builtin=False` is for local servers: only the user's own prices apply, and an unknown model is silently free.
    """
    for table in (overrides or {}, BUILTIN_PRICES if builtin else {}):
        price = lookup(model, table)
        if price is not None:
            return price
    if builtin and model not in _warned:
        _warned.add(model)
        log.warning("no price known for model %r: its cost is counted as $0. Add it to a prices file "
                    '([prices."%s"] input = ... output = ..., USD per million tokens) and pass --prices FILE.',
                    model, model)
    return (0.0, 0.0)


def cost_usd(input_tokens: int, output_tokens: int, price: Price) -> float:
    return (input_tokens * price[0] + output_tokens * price[1]) / 1e6
