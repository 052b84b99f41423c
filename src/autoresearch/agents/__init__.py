"""Agents, registered behind one small interface (base.Agent). Built-ins register the same way plugins do.

A spec names an agent: `search`, `anthropic:<model>`, `openai:<model>`, `claude-code[:<model>]`, `codex[:<model>]`,
`cmd:"<command>"`,
or `<plugin>:<arg>` for a third-party package exposing a factory in the `autoresearch.agents` entry-point group
(the factory is called as factory(arg, **options) and returns an object with `name` and `propose(ctx)`).
"""

from __future__ import annotations

from typing import Any

from autoresearch.agents.base import Agent, AgentError, Context, Failure, HistoryEntry, Proposal, Usage
from autoresearch.plugins import Registry

__all__ = ["Agent", "AgentError", "Context", "Failure", "HistoryEntry", "Proposal", "Usage", "make_agent", "register"]

AGENTS = Registry("autoresearch.agents")
register = AGENTS.register


@register("search")
def _search(arg: str, *, seed: int = 0, sampler: str = "tpe", workspace: Any = None, tag: str | None = None,
            **_: Any) -> Agent:
    from autoresearch.agents.search import SearchAgent

    return SearchAgent(seed=seed, sampler=sampler, workspace=workspace, tag=tag)


@register("anthropic")
@register("openai")
def _llm(arg: str, *, spec: str, base_url: str | None = None, prices: dict | None = None,
         timeout: float | None = None, **_: Any) -> Agent:
    from autoresearch.agents.llm import make_llm_agent

    if not arg:
        raise AgentError(f"{spec!r} needs a model name, e.g. anthropic:claude-sonnet-4-5 or openai:gpt-5", fatal=True)
    kw: dict[str, Any] = {"base_url": base_url, "prices": prices}
    if timeout:
        kw["timeout"] = timeout
    return make_llm_agent(spec, **kw)


@register("claude-code")
@register("codex")
@register("cmd")
def _command(arg: str, *, spec: str, agent_timeout: float | None = None, agent_sandbox: bool = True,
             cache_dir: Any = None, hidden: tuple = (), **_: Any) -> Agent:
    from autoresearch.agents.command import make_command_agent

    return make_command_agent(spec, confine=agent_sandbox, cache=cache_dir, hidden=tuple(hidden),
                              **({"timeout": agent_timeout} if agent_timeout else {}))


def make_agent(spec: str, **options: Any) -> Agent:
    """Build the agent a spec names; unknown names list what exists (built-ins and installed plugins).
    `A+B` is the hybrid: A proposes structural changes, B (the search agent) tunes the constants after each keep."""
    if "+" in spec and not spec.startswith("cmd:"):
        from autoresearch.agents.hybrid import HybridAgent

        structural, _, tuner = spec.rpartition("+")
        return HybridAgent(make_agent(structural, **options), make_agent(tuner, **options))
    prefix, _, arg = spec.partition(":")
    factory = AGENTS.get(prefix)
    if factory is None:
        raise AgentError(f"unknown agent {spec!r}; choose one of: {', '.join(AGENTS.names())} (e.g. search, "
                         f"anthropic:MODEL, openai:MODEL, claude-code, codex, cmd:\"./my-agent.sh\")", fatal=True)
    return factory(arg, spec=spec, **options)
