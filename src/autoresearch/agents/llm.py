"""Agents that ask a language model for the next train.py: `anthropic:<model>` and `openai:<model>`.

`openai:` speaks Chat Completions, so with `base_url` it also reaches any OpenAI-compatible server (Ollama, vLLM,
llama.cpp, LM Studio). Both SDKs are optional extras, imported only when such an agent is made.

Retries are the SDKs' own (max_retries on the client): they retry what passes by itself (429, 408, 409, 5xx,
connection errors, timeouts) with exponential backoff and jitter, honouring Retry-After and x-should-retry. What
is left is sorted by the SDKs' error classes:
- still failing after those retries: a transient AgentError, which the loop waits out however often it comes (the
  loop never dies of an outage);
- a refused key (401/403) or an unknown model (404): fatal, with a message saying what to fix;
- any other refusal (400 "prompt is too long", 422...): a plain AgentError, never retried here; the loop stops
  when the same one comes back a few times in a row (loop/proposer.py);
- a reply that cannot be parsed gets exactly one corrective turn carrying the parse error.
"""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

from autoresearch.agents.base import Agent, AgentError, Context, Proposal, Usage
from autoresearch.agents.pricing import Price, Pricer
from autoresearch.agents.prompt import (
    SYSTEM_PROMPT,
    ReplyError,
    base_files,
    base_source,
    build_prompt,
    correction_message,
    parse_reply_files,
    system_prompt,
)

log = logging.getLogger(__name__)

LOCAL_API_KEY = "not-needed"  # local servers ignore the key, but the SDKs insist on one
ANTHROPIC_MAX_TOKENS = 32_000  # Anthropic requires a cap; a full train.py is ~8k tokens, thinking needs headroom
DEFAULT_RETRIES = 6  # the SDK's retries of a transient failure (its own default is 2): about 20 s of backoff
# Local reasoning models (DeepSeek-R1, Qwen3 on Ollama or vLLM) often put their reasoning inline; its code snippets
# must not be mistaken for the answer.
_THINKING = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)


@dataclass
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    truncated: bool  # stopped at the output token limit


class LLMAgent:
    """The provider-independent part: prompt, corrective retry, transient-error retries, usage and cost."""

    provider = ""
    key_env = ""
    key_envs: tuple[str, ...] = ()  # any of them is a credential the SDK reads from the environment
    base_url_env = ""
    default_endpoint = ""

    def __init__(self, model: str, *, base_url: str | None = None, timeout: float = 600,
                 max_retries: int = DEFAULT_RETRIES, prices: Mapping[str, Price] | None = None,
                 temperature: float | None = None, max_tokens: int | None = None) -> None:
        _require_package(self.provider)  # first: a missing package is the error to report
        self.name = f"{self.provider}:{model}"
        self.model = model
        self.base_url = base_url or os.environ.get(self.base_url_env) or None
        self.local = is_local_url(self.base_url)
        if not self.local and not any(os.environ.get(var) for var in self.key_envs):
            # Now, not at the first request (after the baseline), and before importing the SDK (seconds).
            raise AgentError(f"{self.name}: no API key. Set {self.key_env}, or pass --base-url for a local server "
                             f"that needs none (a remote proxy that needs none: set {self.key_env} to any text).",
                             fatal=True)
        self.sdk = _import_sdk(self.provider)
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.temperature = temperature  # None: the model's default (some recent models refuse any other value)
        self.max_tokens = max_tokens
        self.pricer = Pricer(model, self.provider, prices, local=self.local)  # warns now, at start-up, if unknown
        self.client = self._make_client()

    @property
    def endpoint(self) -> str:
        return self.base_url or self.default_endpoint

    # -- the agent ---------------------------------------------------------------------------------------------
    def propose(self, ctx: Context) -> Proposal:
        source = base_source(ctx)
        self._system = system_prompt(ctx)  # one agent per worker: no other thread reads it meanwhile
        messages: list[dict[str, str]] = [{"role": "user", "content": build_prompt(ctx)}]
        usage = Usage()
        for turn in range(2):  # the reply, and at most one correction
            reply = self._call(messages, usage)
            text = _THINKING.sub("", reply.text).strip()
            try:
                if reply.truncated:
                    raise ReplyError("the reply was cut off at the output token limit; use SEARCH/REPLACE edits, "
                                     "which are much shorter than the complete file")
                if not text:
                    raise ReplyError("the reply was empty")
                train_py, changed, description, rationale = parse_reply_files(text, source, base_files(ctx))
            except ReplyError as err:
                if turn == 1:
                    raise AgentError(f"{self.name}: two replies in a row could not be used; the last one: {err}",
                                     usage=usage) from None
                log.info("%s: reply unusable (%s); asking once more", self.name, err)
                messages += [{"role": "assistant", "content": text or "(empty reply)"},
                             {"role": "user", "content": correction_message(err)}]
                continue
            files = {n: t for n, t in {**base_files(ctx), **changed}.items() if t != ctx.files.get(n)}
            return Proposal(train_py, description, rationale, usage, files=files)
        raise AssertionError("unreachable")

    def _call(self, messages: list[dict[str, str]], usage: Usage) -> Completion:
        """One completion (the SDK retries transient failures); adds what an answered request cost to `usage`."""
        try:
            reply = self._complete(messages)
        except Exception as exc:  # noqa: BLE001 - sorted below; anything unrecognised is re-raised
            verdict, message = self._classify(exc)
            raise AgentError(message, fatal=verdict == "fatal", transient=verdict == "transient",
                             usage=usage) from exc
        usage.input_tokens += reply.input_tokens
        usage.output_tokens += reply.output_tokens
        usage.cost_usd += self.pricer.cost(reply.input_tokens, reply.output_tokens)
        return reply

    def _classify(self, exc: Exception) -> tuple[str, str]:
        """("transient" | "fail" | "fatal", message), by the SDK's error classes (both SDKs share the names)."""
        sdk, who = self.sdk, f"{self.name} at {self.endpoint}"
        response = getattr(exc, "response", None)
        retried = response is None or getattr(response, "headers", {}).get("x-should-retry") != "false"
        tries = f" (after {self.max_retries + 1} attempts)" if retried and self.max_retries else ""
        if isinstance(exc, sdk.APITimeoutError):
            return "transient", f"{who}: no answer within {self.timeout:g} s{tries}"
        if isinstance(exc, sdk.APIConnectionError):
            return "transient", f"{who}: cannot connect ({exc.__cause__ or exc}){tries}"
        if isinstance(exc, (sdk.AuthenticationError, sdk.PermissionDeniedError)):
            return "fatal", (f"{who} refused the credentials (HTTP {exc.status_code}: {_detail(exc)}). Set "
                             f"{self.key_env} to a valid key with access to this model.")
        if isinstance(exc, sdk.NotFoundError):
            return "fatal", (f"{who}: model {self.model!r} or the API path was not found (HTTP 404: {_detail(exc)}). "
                             "Check the model name (a local server may need it pulled first, e.g. `ollama pull "
                             "MODEL`) and --base-url (OpenAI-compatible servers usually end in /v1).")
        if isinstance(exc, (sdk.RateLimitError, sdk.InternalServerError, sdk.ConflictError)) or (
                isinstance(exc, sdk.APIStatusError) and exc.status_code == 408):
            return "transient", f"{who}: HTTP {exc.status_code} ({_detail(exc)}){tries}"
        if isinstance(exc, sdk.APIStatusError):  # 400, 413, 422...: the same request fails the same way again
            return "fail", f"{who}: request rejected (HTTP {exc.status_code}: {_detail(exc)})"
        if isinstance(exc, sdk.APIError):  # e.g. a response that does not parse: a server problem, not ours
            return "fail", f"{who}: {exc}"
        if isinstance(exc, TypeError) and "authentication" in str(exc).lower():  # Anthropic SDK without a key
            return "fatal", f"{who}: no API key. Set {self.key_env}."
        raise exc

    # -- provider specifics ------------------------------------------------------------------------------------
    def _make_client(self) -> Any:
        raise NotImplementedError

    def _complete(self, messages: list[dict[str, str]]) -> Completion:
        raise NotImplementedError


class AnthropicAgent(LLMAgent):
    provider = "anthropic"
    key_env = "ANTHROPIC_API_KEY"
    key_envs = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
    base_url_env = "ANTHROPIC_BASE_URL"
    default_endpoint = "https://api.anthropic.com"

    def _make_client(self) -> Any:
        key = os.environ.get(self.key_env)
        if not key and self.local and not os.environ.get("ANTHROPIC_AUTH_TOKEN"):
            key = LOCAL_API_KEY
        return self.sdk.Anthropic(api_key=key, base_url=self.base_url, timeout=self.timeout,
                                  max_retries=self.max_retries)

    def _complete(self, messages: list[dict[str, str]]) -> Completion:
        options: dict[str, Any] = {}
        if self.temperature is not None:  # through extra_body: recent SDKs dropped the argument (recent models
            options["extra_body"] = {"temperature": self.temperature}  # refuse it), older models still take it
        # An explicit timeout also keeps the SDK from refusing large max_tokens without streaming.
        resp = self.client.messages.create(model=self.model, max_tokens=self.max_tokens or ANTHROPIC_MAX_TOKENS,
                                           system=getattr(self, "_system", SYSTEM_PROMPT), messages=messages, timeout=self.timeout, **options)
        text = "".join(getattr(b, "text", "") or "" for b in resp.content or [] if getattr(b, "type", "") == "text")
        usage = resp.usage
        return Completion(text, getattr(usage, "input_tokens", 0) or 0, getattr(usage, "output_tokens", 0) or 0,
                          resp.stop_reason == "max_tokens")


class OpenAIAgent(LLMAgent):
    provider = "openai"
    key_env = "OPENAI_API_KEY"
    key_envs = ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY")
    base_url_env = "OPENAI_BASE_URL"
    default_endpoint = "https://api.openai.com/v1"

    def _make_client(self) -> Any:
        key = os.environ.get(self.key_env) or (LOCAL_API_KEY if self.local else None)
        try:
            return self.sdk.OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout,
                                   max_retries=self.max_retries)
        except self.sdk.OpenAIError as exc:
            raise AgentError(f"{self.name}: no API key ({exc}). Set {self.key_env}, or pass --base-url for a local "
                             "server that needs none.", fatal=True) from None

    def _complete(self, messages: list[dict[str, str]]) -> Completion:
        options: dict[str, Any] = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.max_tokens is not None:  # recent models reject the older max_tokens
            options["max_completion_tokens"] = self.max_tokens
        resp = self.client.chat.completions.create(
            model=self.model, messages=[{"role": "system", "content": getattr(self, "_system", SYSTEM_PROMPT)}, *messages],
            timeout=self.timeout, **options)
        choice = resp.choices[0] if resp.choices else None
        text = (choice.message.content or "") if choice is not None and choice.message is not None else ""
        usage = resp.usage  # some compatible servers send none
        return Completion(text, getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0,
                          choice is not None and choice.finish_reason == "length")


PROVIDERS: dict[str, type[LLMAgent]] = {"anthropic": AnthropicAgent, "openai": OpenAIAgent}


def make_llm_agent(spec: str, *, base_url: str | None = None, timeout: float = 600,
                   max_retries: int = DEFAULT_RETRIES, prices: Mapping[str, Price] | None = None,
                   temperature: float | None = None, max_tokens: int | None = None) -> Agent:
    """An agent for `anthropic:<model>` or `openai:<model>`; its name is the spec."""
    provider, _, model = spec.partition(":")
    if provider not in PROVIDERS or not model.strip():
        raise AgentError(f"unknown LLM agent {spec!r}: write anthropic:MODEL or openai:MODEL "
                         "(e.g. anthropic:claude-opus-5-5, openai:gpt-6-sol)", fatal=True)
    return PROVIDERS[provider](model.strip(), base_url=base_url, timeout=timeout, max_retries=max_retries,
                               prices=prices, temperature=temperature, max_tokens=max_tokens)


def is_local_url(url: str | None) -> bool:
    """Whether a base URL points at this machine or a private network: a server nobody bills for."""
    host = (urlparse(url).hostname or "") if url else ""
    if not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local")) or host == "host.docker.internal":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified


def _require_package(provider: str) -> None:
    """Whether the SDK is installed, without importing it (that takes seconds, and may not be needed)."""
    try:
        found = importlib.util.find_spec(provider) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None for it (how tests hide a package)
        found = False
    if not found:
        _import_sdk(provider)  # raises the error that says how to install it


def _import_sdk(provider: str) -> ModuleType:
    try:
        return importlib.import_module(provider)
    except ImportError:
        raise AgentError(f"the {provider!r} package is not installed, and {provider}:MODEL agents need it: "
                         f"pip install 'autoresearch[{provider}]'", fatal=True) from None


def _detail(exc: Any) -> str:
    """The provider's own error message, short."""
    body = getattr(exc, "body", None)
    message = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
    text = " ".join(str(message or getattr(exc, "message", "") or exc).split())
    return text[:300]
