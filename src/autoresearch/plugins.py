"""Named factories, built-ins and plugins alike (simonw's `llm` style): agents and backends register here.

A built-in registers with the decorator; a third-party package exposes the same kind of factory in an entry-point
group (`autoresearch.agents`, `autoresearch.backends`), found only when a name is not built in.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

Factory = Callable[..., Any]


class Registry:
    def __init__(self, group: str) -> None:
        self.group = group  # the entry-point group of plugins
        self._built_in: dict[str, Factory] = {}

    def register(self, name: str) -> Callable[[Factory], Factory]:
        def deco(factory: Factory) -> Factory:
            self._built_in[name] = factory
            return factory

        return deco

    def get(self, name: str) -> Factory | None:
        """The factory registered as `name`, built in or from an installed plugin; None if there is none."""
        if name in self._built_in:
            return self._built_in[name]
        plugin = next((ep for ep in entry_points(group=self.group) if ep.name == name), None)
        return plugin.load() if plugin else None

    def names(self) -> list[str]:
        return sorted({*self._built_in, *(ep.name for ep in entry_points(group=self.group))})
