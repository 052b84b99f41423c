"""What a model's tokens cost: genai-prices (a maintained price list, read offline from its bundled data), which
a TOML file given with --prices overrides:

    [prices."claude-opus-5-5"]
    input = 4.0      # USD per million input tokens
    output = 20.0    # USD per million output tokens

genai-prices knows tiered prices (long prompts billed higher), dated snapshots and each provider's aliases, so a
call is priced from its actual token counts. Overrides match dated snapshots ("claude-haiku-4-5-20251001") and
suffixed variants ("gpt-5-codex" -> "gpt-5"), but never guess across versions: "claude-opus-4-9" does not match
"claude-opus-4". A model neither knows costs 0 with a one-time warning that says how to price it.
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


class Pricer:
    """Prices one model's calls: the user's override if it names the model, else genai-prices. A local server
    (`local`) is free unless the user prices it."""

    def __init__(self, model: str, provider: str | None = None, overrides: Mapping[str, Price] | None = None,
                 *, local: bool = False) -> None:
        self.model, self.provider, self.local = model, provider, local
        self.override = lookup(model, overrides or {})
        self.known = self.override is not None or (not local and self._listed())
        if not self.known and not local and model not in _warned:  # now, at start-up, not after the baseline
            _warned.add(model)
            log.warning("no price known for model %r (genai-prices does not list it): its cost is counted as $0. "
                        'Add it to a prices file ([prices."%s"] input = ... output = ..., USD per million tokens) '
                        "and pass --prices FILE.", model, model)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        if self.override is not None:
            return cost_usd(input_tokens, output_tokens, self.override)
        if not self.known:
            return 0.0
        return float(self._calc(input_tokens, output_tokens).total_price)

    def _calc(self, input_tokens: int, output_tokens: int):
        from genai_prices import Usage, calc_price

        return calc_price(Usage(input_tokens=input_tokens, output_tokens=output_tokens), self.model,
                          provider_id=self.provider)

    def _listed(self) -> bool:
        try:
            self._calc(0, 0)
        except ImportError:  # installed without the anthropic/openai extra: say how to get prices
            log.warning("genai-prices is not installed: pip install 'autoresearch[anthropic]' (or [openai])")
            return False
        except (LookupError, ValueError):
            return False
        return True


def cost_usd(input_tokens: int, output_tokens: int, price: Price) -> float:
    return (input_tokens * price[0] + output_tokens * price[1]) / 1e6
