"""LLM agents against a scripted loopback server (tests/fakellm.py): no real API, no waiting, a few seconds in all."""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import fields

import pytest
from fakellm import Delay, FakeLLM, Reply, Status, fake_llm  # noqa: F401 - fake_llm is a fixture
from hubserver import closed_port_url

from autoresearch.agents import pricing
from autoresearch.agents.base import Agent, AgentError, Context, Failure, HistoryEntry
from autoresearch.agents.llm import is_local_url, make_llm_agent
from autoresearch.agents.prompt import ReplyError, base_source, build_prompt, format_history, parse_reply

SOURCE = """\
import torch
from autoresearch.harness import TIME_BUDGET, evaluate_bpb

# ---------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------

DEPTH = 8                   # transformer blocks
LR = 0.02                   # learning rate
WARMUP = 0.0                # fraction of the budget


def train():
    model = torch.nn.Linear(DEPTH, DEPTH)
    for step in range(10):
        pass
    return model


def main():
    model = train()
    print("---")
    print(f"val_bpb: {evaluate_bpb(model):.6f}")


if __name__ == "__main__":
    main()
"""
NEW_SOURCE = SOURCE.replace("LR = 0.02 ", "LR = 0.04 ")
FULL_REPLY = f"""Doubling the learning rate should speed up early training.

Description: double the learning rate to 0.04

```python
{NEW_SOURCE}```
"""
EDIT_REPLY = """A small change.

Description: raise DEPTH to 10
<<<<<<< SEARCH
DEPTH = 8                   # transformer blocks
=======
DEPTH = 10                  # transformer blocks
>>>>>>> REPLACE
"""
MALFORMED = "I would double the learning rate, but here is no code."
PROGRAM = "Favour simple changes. PROGRAM-MARKER-42."
SURFACE = "TIME_BUDGET: float, seconds of training\nevaluate_bpb(model) -> float"
HISTORY = (
    HistoryEntry(1, "keep", "baseline", val_bpb=1.234567, memory_gb=3.2),
    HistoryEntry(2, "discard", "wider MLP ratio 6", val_bpb=1.240001, memory_gb=4.1, diff="-MLP = 4\n+MLP = 6"),
    HistoryEntry(3, "crash", "fused attention kernel", reason="CUDA out of memory", memory_gb=None),
    HistoryEntry(4, "rejected", "import scipy optimiser", reason="imports outside the harness"),
)
PRICES = {"claude-test": (3.0, 15.0), "gpt-test": (2.0, 8.0)}


def make_ctx(**kw) -> Context:
    base = dict(program=PROGRAM, train_py=SOURCE, harness_surface=SURFACE, history=HISTORY, best_val_bpb=1.234567,
                time_budget=300.0, experiment=5)
    return Context(**{**base, **kw})


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch):
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY",
                "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(params=["anthropic", "openai"])
def provider(request) -> str:
    return request.param


def agent_for(provider: str, server: FakeLLM, **kw):
    spec = "anthropic:claude-test" if provider == "anthropic" else "openai:gpt-test"
    url = server.url if provider == "anthropic" else server.url + "/v1"  # the OpenAI SDK wants the /v1 prefix
    kw.setdefault("prices", PRICES)
    kw.setdefault("timeout", 5.0)
    return make_llm_agent(spec, base_url=url, **kw)


# ----------------------------------------------------------------------------------------------------------------
# The agents against the fake server, both providers


@pytest.mark.slow
def test_full_file_reply(provider, fake_llm):
    fake_llm.push(Reply(FULL_REPLY, input_tokens=1200, output_tokens=300))
    agent = agent_for(provider, fake_llm)
    assert isinstance(agent, Agent) and agent.name.startswith(provider + ":")
    p = agent.propose(make_ctx())
    assert p.train_py == NEW_SOURCE
    assert p.description == "double the learning rate to 0.04"
    assert p.rationale == "Doubling the learning rate should speed up early training."
    assert (p.usage.input_tokens, p.usage.output_tokens) == (1200, 300)
    [req] = fake_llm.requests
    assert req.path == ("/v1/messages" if provider == "anthropic" else "/v1/chat/completions")
    assert req.body["model"] in ("claude-test", "gpt-test")
    assert "researcher" in req.system
    assert "temperature" not in req.body  # the model's default unless asked: some models refuse anything else
    if provider == "anthropic":
        assert req.body["max_tokens"] == 32_000
    else:
        assert "max_tokens" not in req.body and "max_completion_tokens" not in req.body


def test_edit_reply(provider, fake_llm):
    fake_llm.push(Reply(EDIT_REPLY))
    p = agent_for(provider, fake_llm).propose(make_ctx())
    assert p.train_py == SOURCE.replace("DEPTH = 8                   #", "DEPTH = 10                  #")
    assert p.description == "raise DEPTH to 10"


def test_prompt_reaches_the_model(provider, fake_llm):
    fake_llm.push(Reply(FULL_REPLY))
    agent_for(provider, fake_llm).propose(make_ctx())
    [prompt] = fake_llm.requests[0].user_texts
    assert PROGRAM in prompt and SOURCE.strip() in prompt and SURFACE in prompt
    for h in HISTORY:
        assert h.description in prompt
    assert "CUDA out of memory" in prompt and "1.234567" in prompt and "300 seconds" in prompt


def test_malformed_then_good_gets_one_correction(provider, fake_llm):
    fake_llm.push(Reply(MALFORMED, input_tokens=1000, output_tokens=50), Reply(FULL_REPLY, 1100, 400))
    p = agent_for(provider, fake_llm).propose(make_ctx())
    assert p.train_py == NEW_SOURCE
    assert len(fake_llm.requests) == 2
    second = fake_llm.requests[1]
    correction = second.user_texts[-1]
    assert "could not be used" in correction and "neither a ```python block" in correction
    assert [m["role"] for m in second.messages if m["role"] != "system"] == ["user", "assistant", "user"]
    assert MALFORMED in str(second.messages)
    # Usage and cost are summed over both calls, at the prices given.
    assert (p.usage.input_tokens, p.usage.output_tokens) == (2100, 450)
    inp, out = PRICES["claude-test" if provider == "anthropic" else "gpt-test"]
    assert p.usage.cost_usd == pytest.approx((2100 * inp + 450 * out) / 1e6)


def test_two_malformed_replies_fail_softly(provider, fake_llm):
    fake_llm.push(Reply(MALFORMED, 1000, 50), Reply("still nothing", 1500, 60))
    with pytest.raises(AgentError) as err:
        agent_for(provider, fake_llm).propose(make_ctx())
    assert not err.value.fatal and "two replies" in str(err.value)
    assert (err.value.usage.input_tokens, err.value.usage.output_tokens) == (2500, 110)  # still paid for
    assert len(fake_llm.requests) == 2


def test_identical_file_is_no_change(provider, fake_llm):
    fake_llm.push(Reply(f"Description: nothing\n```python\n{SOURCE}```"), Reply(FULL_REPLY))
    agent_for(provider, fake_llm).propose(make_ctx())
    assert "no change" in fake_llm.requests[1].user_texts[-1]


def test_truncated_reply_asks_for_edits(provider, fake_llm):
    fake_llm.push(Reply("Description: x\n```python\nimport torch\n", stop="max_tokens"), Reply(EDIT_REPLY))
    agent_for(provider, fake_llm).propose(make_ctx())
    assert "cut off" in fake_llm.requests[1].user_texts[-1]


def test_inline_reasoning_is_ignored(fake_llm):
    thinking = f"<think>Maybe:\n```python\n{SOURCE.replace('LR = 0.02', 'LR = 0.5')}```\nNo, smaller.</think>\n"
    fake_llm.push(Reply(thinking + FULL_REPLY))
    p = agent_for("openai", fake_llm).propose(make_ctx())
    assert p.train_py == NEW_SOURCE and "<think>" not in p.rationale


def test_rate_limit_then_success(provider, fake_llm, caplog):
    """The SDK's own retry: it waits what Retry-After says, then asks again."""
    caplog.set_level(logging.INFO, logger=provider)
    fake_llm.push(Status(429, retry_after=0.2), Reply(FULL_REPLY, 1000, 200))
    p = agent_for(provider, fake_llm).propose(make_ctx())
    assert p.train_py == NEW_SOURCE and len(fake_llm.requests) == 2
    assert re.search(r"Retrying request .*in 0\.2\d* seconds", caplog.text), caplog.text  # Retry-After honoured
    assert p.usage.input_tokens == 1000  # the refused request cost nothing


@pytest.mark.parametrize("code", [500, 529])
def test_server_error_then_success(provider, fake_llm, code):
    fake_llm.push(Status(code), Reply(FULL_REPLY))
    assert agent_for(provider, fake_llm).propose(make_ctx()).train_py == NEW_SOURCE
    assert len(fake_llm.requests) == 2


def test_timeout_then_success(provider, fake_llm):
    fake_llm.push(Delay(3.0), Reply(FULL_REPLY))
    p = agent_for(provider, fake_llm, timeout=0.5).propose(make_ctx())
    assert p.train_py == NEW_SOURCE and len(fake_llm.requests) == 2


def test_retry_budget_exhausted_is_transient(provider, fake_llm):
    """Past the SDK's retries an outage is a transient error: the loop waits it out and goes on."""
    fake_llm.push(*[Status(503)] * 3)
    with pytest.raises(AgentError) as err:
        agent_for(provider, fake_llm, max_retries=2).propose(make_ctx())
    assert not err.value.fatal and err.value.transient
    assert "HTTP 503" in str(err.value) and "after 3 attempts" in str(err.value)
    assert len(fake_llm.requests) == 3


def test_unreachable_server_is_not_fatal(provider):
    url = closed_port_url()
    agent = make_llm_agent(f"{provider}:m", base_url=url if provider == "anthropic" else url + "/v1",
                           max_retries=1)
    with pytest.raises(AgentError, match="cannot connect") as err:
        agent.propose(make_ctx())
    assert not err.value.fatal and err.value.transient


@pytest.mark.parametrize("code, words", [(401, "credentials"), (403, "credentials"), (404, "not found")])
def test_auth_and_unknown_model_are_fatal(provider, fake_llm, code, words):
    fake_llm.push(Status(code))
    with pytest.raises(AgentError, match=words) as err:
        agent_for(provider, fake_llm).propose(make_ctx())
    assert err.value.fatal and len(fake_llm.requests) == 1
    if code != 404:
        assert ("ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY") in str(err.value)


def test_bad_request_fails_without_retry(provider, fake_llm):
    fake_llm.push(Status(400, message="prompt is too long"))
    with pytest.raises(AgentError, match="prompt is too long") as err:
        agent_for(provider, fake_llm).propose(make_ctx())
    assert not err.value.fatal and not err.value.transient and len(fake_llm.requests) == 1


def test_options_are_sent(provider, fake_llm):
    fake_llm.push(Reply(FULL_REPLY))
    agent_for(provider, fake_llm, temperature=0.3, max_tokens=9000).propose(make_ctx())
    body = fake_llm.requests[0].body
    assert body["temperature"] == 0.3
    assert body["max_tokens" if provider == "anthropic" else "max_completion_tokens"] == 9000


def test_base_url_from_environment(provider, fake_llm, monkeypatch):
    env = "ANTHROPIC_BASE_URL" if provider == "anthropic" else "OPENAI_BASE_URL"
    monkeypatch.setenv(env, fake_llm.url if provider == "anthropic" else fake_llm.url + "/v1")
    fake_llm.push(Reply(FULL_REPLY))
    agent = make_llm_agent(f"{provider}:local-model")
    p = agent.propose(make_ctx())
    assert p.train_py == NEW_SOURCE
    assert p.usage.cost_usd == 0.0  # a local server costs nothing, and no price warning is due


def test_missing_sdk_is_fatal_with_install_hint(provider, monkeypatch):
    monkeypatch.setitem(sys.modules, provider, None)  # makes `import <provider>` raise ImportError
    with pytest.raises(AgentError) as err:
        make_llm_agent(f"{provider}:m", base_url="http://127.0.0.1:1")
    assert err.value.fatal and f"pip install 'autoresearch[{provider}]'" in str(err.value)


def test_missing_key_is_fatal_when_the_agent_is_made(provider):
    """Not at the first request: that comes after the baseline, minutes (or, on a GPU, 20 of them) later."""
    with pytest.raises(AgentError) as err:  # a remote URL that is never contacted: the key is missing first
        make_llm_agent(f"{provider}:m", base_url="https://llm.invalid/v1")
    assert err.value.fatal
    assert ("ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY") in str(err.value)


def test_bad_spec_is_fatal():
    for spec in ("claude-opus", "gemini:pro", "openai:", "anthropic: "):
        with pytest.raises(AgentError) as err:
            make_llm_agent(spec)
        assert err.value.fatal and "anthropic:MODEL" in str(err.value)


def test_failure_is_fixed_on_the_failed_file(provider, fake_llm):
    failed = SOURCE.replace("WARMUP = 0.0 ", "WARMUP = 0.1 ").replace("pass", "raise RuntimeError('boom')")
    ctx = make_ctx(failure=Failure("add warmup", "crash", "exception", "Traceback\n  File train.py\nRuntimeError: boom",
                                   failed))
    fix = ("Description: add warmup, fixed\n<<<<<<< SEARCH\n        raise RuntimeError('boom')\n=======\n"
           "        pass\n>>>>>>> REPLACE\n")
    fake_llm.push(Reply(fix))
    p = agent_for(provider, fake_llm).propose(ctx)
    assert "WARMUP = 0.1" in p.train_py and "boom" not in p.train_py  # the fix applies to the failed attempt
    assert "RuntimeError: boom" in fake_llm.requests[0].user_texts[0]


# ----------------------------------------------------------------------------------------------------------------
# The prompt


def test_prompt_contents_and_purity():
    ctx = make_ctx()
    text = build_prompt(ctx)
    assert text == build_prompt(ctx)  # a pure function of the context
    for needle in (PROGRAM, SOURCE.strip(), SURFACE, "Best val_bpb so far: 1.234567", "300 seconds",
                   "experiment #5", "Description:", "<<<<<<< SEARCH", ">>>>>>> REPLACE", "-MLP = 4"):
        assert needle in text, needle
    assert "| 3 | crash | - | - | fused attention kernel | CUDA out of memory |" in text
    assert "| 1 | keep | 1.234567 | 3.2 | baseline |  |" in text
    assert "fix it" not in text


def test_prompt_never_has_a_test_figure():
    # The context cannot carry one: keep it that way.
    assert not [f.name for f in fields(HistoryEntry) if "test" in f.name]
    assert not [f.name for f in fields(Context) if "test" in f.name]
    assert "test_bpb" not in build_prompt(make_ctx()).lower()


def test_prompt_with_failure_shows_the_tail_and_the_failed_file():
    tail = "\n".join(f"line {i}" for i in range(100)) + "\nRuntimeError: shapes (4, 8) and (6, 8)"
    failed = SOURCE.replace("LR = 0.02 ", "LR = 9.99 ")
    ctx = make_ctx(failure=Failure("huge LR", "crash", "nan loss", tail, failed))
    text = build_prompt(ctx)
    assert "RuntimeError: shapes (4, 8) and (6, 8)" in text and "line 99" in text
    assert "line 10\n" not in text  # only the last lines of the output
    assert "huge LR" in text and "nan loss" in text and "fix it" in text
    assert "-LR = 0.02" in text and "+LR = 9.99" in text  # what the idea changed
    assert base_source(ctx) == failed and failed.strip() in text
    # The loop may pass the failed file as train_py too: the prompt still shows it, only without the idea's diff.
    same = build_prompt(make_ctx(train_py=failed, failure=ctx.failure))
    assert failed.strip() in same and "RuntimeError: shapes" in same and "-LR = 0.02" not in same


def test_prompt_without_history():
    text = build_prompt(make_ctx(history=(), best_val_bpb=None))
    assert "No experiment has a val_bpb yet" in text and "No experiments yet" in text


def test_long_history_keeps_every_kept_row():
    history = [HistoryEntry(i, "keep" if i % 50 == 0 else "discard", f"idea {i}", val_bpb=1.0) for i in range(1, 301)]
    table = format_history(history, max_rows=20)
    assert "| 50 | keep |" in table and "| 300 | keep |" in table and "| 299 | discard |" in table
    assert "| 2 | discard |" not in table and "(280 older experiments not shown)" in table


# ----------------------------------------------------------------------------------------------------------------
# Parsing replies


def test_parse_full_file():
    train_py, description, rationale = parse_reply(FULL_REPLY, SOURCE)
    assert train_py == NEW_SOURCE and description == "double the learning rate to 0.04"
    assert rationale.startswith("Doubling")


def test_parse_several_edits_in_fences():
    reply = """Description: **two knobs**
```python
<<<<<<< SEARCH
DEPTH = 8                   # transformer blocks
=======
DEPTH = 12                  # transformer blocks
>>>>>>> REPLACE
```
```python
<<<<<<< SEARCH
WARMUP = 0.0                # fraction of the budget
=======
WARMUP = 0.05               # fraction of the budget
>>>>>>> REPLACE
```"""
    train_py, description, rationale = parse_reply(reply, SOURCE)
    assert "DEPTH = 12 " in train_py and "WARMUP = 0.05 " in train_py and description == "two knobs"
    assert rationale == ""


def test_parse_edit_tolerates_trailing_spaces_and_can_delete():
    reply = ("Description: drop the loop\n<<<<<<< SEARCH\n    for step in range(10):   \n        pass\n=======\n"
             ">>>>>>> REPLACE")
    train_py, _, _ = parse_reply(reply, SOURCE)
    assert "range(10)" not in train_py and train_py.endswith("main()\n")


@pytest.mark.parametrize("reply, message", [
    ("Description: x\n<<<<<<< SEARCH\nDEPTH = 9\n=======\nDEPTH = 10\n>>>>>>> REPLACE", "not found"),
    ("Description: x\n<<<<<<< SEARCH\n\n\n=======\nX = 1\n>>>>>>> REPLACE", "empty SEARCH"),
    ("Description: x\n<<<<<<< SEARCH\n    return model\n=======\n    return None\n>>>>>>> REPLACE", None),
    ("Description: x\n<<<<<<< SEARCH\nDEPTH = 8                   # transformer blocks\n=======\nDEPTH = 9\n",
     "not closed"),
    ("Description: x\n<<<<<<< SEARCH\nDEPTH = 8                   # transformer blocks\n>>>>>>> REPLACE", "======="),
    ("just words", "neither"),
    (f"Description: x\n```python\n{SOURCE}```", "no change"),
    (f"Description: x\n```python\n{NEW_SOURCE}", "not closed"),
    ("Description: x\n```python\nLR = 0.04\n```", "excerpt"),
    (f"Description: x\n```python\n{NEW_SOURCE}```\n```python\n{NEW_SOURCE.replace('0.04', '0.05')}```", "2 python"),
    ("Description: x\n```python\n"
     + NEW_SOURCE.replace("def main():", "# ... rest of the file unchanged ...\ndef main():") + "```", "elides"),
    ("Description: x\n```python\n" + NEW_SOURCE.replace("def main():", "def main(:") + "```", "not valid Python"),
])
def test_parse_errors(reply, message):
    if message is None:  # `return model` occurs once: a valid edit, as a control for the ambiguity case below
        parse_reply(reply, SOURCE)
        with pytest.raises(ReplyError, match="matches 2 places"):
            parse_reply(reply, SOURCE + "\n\ndef again():\n    return model\n")
        return
    with pytest.raises(ReplyError, match=message):
        parse_reply(reply, SOURCE)


def test_parse_picks_the_one_complete_block():
    reply = (f"The key line:\n```python\nLR = 0.04\n```\nDescription: lr 0.04\n```python\n{NEW_SOURCE}```\n"
             "```bash\nls\n```")
    assert parse_reply(reply, SOURCE)[0] == NEW_SOURCE


def test_parse_description_fallbacks():
    _, description, rationale = parse_reply(f"## Try a higher LR\nIt may help.\n```python\n{NEW_SOURCE}```", SOURCE)
    assert description == "Try a higher LR" and rationale == "## Try a higher LR\nIt may help."
    assert parse_reply(f"```python\n{NEW_SOURCE}```", SOURCE)[1] == "unnamed change"
    assert parse_reply(f"Description:\nhigher\tLR\n```python\n{NEW_SOURCE}```", SOURCE)[1] == "higher LR"
    long = parse_reply(f"Description: {'word ' * 100}\n```python\n{NEW_SOURCE}```", SOURCE)[1]
    assert len(long) <= 200 and long.endswith("...")


# ----------------------------------------------------------------------------------------------------------------
# Pricing


def test_prices_come_from_genai_prices():
    """Published list prices, read offline from genai-prices: $3/$15 per million for claude-sonnet-4-5's short
    prompts, more per token past its 200k tier; dated snapshots resolve; nothing is guessed across versions."""
    sonnet = pricing.Pricer("claude-sonnet-4-5", "anthropic")
    assert sonnet.cost(100_000, 10_000) == pytest.approx((100_000 * 3 + 10_000 * 15) / 1e6)
    assert sonnet.cost(300_000, 0) / 300_000 > sonnet.cost(100_000, 0) / 100_000  # the long-prompt tier
    assert pricing.Pricer("claude-haiku-4-5-20251001", "anthropic").cost(10**6, 0) == pytest.approx(1.0)
    assert pricing.Pricer("gpt-4o-2024-08-06", "openai").cost(0, 10**6) == pytest.approx(10.0)
    assert not pricing.Pricer("claude-opus-4-9", "anthropic").known  # never guessed across versions
    assert pricing.lookup("gpt-5.2-pro", {"gpt-5.2": (1.75, 14.0)}) is None  # nor, for overrides, across tiers


def test_unknown_model_costs_nothing_and_warns_once(caplog):
    with caplog.at_level(logging.WARNING, logger="autoresearch.agents.pricing"):
        assert pricing.Pricer("mystery-model-xyz", "openai").cost(1000, 1000) == 0.0
        assert pricing.Pricer("mystery-model-xyz", "openai").cost(1000, 1000) == 0.0
        assert pricing.Pricer("another-mystery", "openai", local=True).cost(1000, 1000) == 0.0  # a local server
    warnings = [r for r in caplog.records if "mystery" in r.getMessage()]
    assert len(warnings) == 1 and "--prices" in warnings[0].getMessage()


def test_prices_file_overrides(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text('[prices."claude-opus-5-5"]\ninput = 1.5\noutput = 7\n\n[prices."my-llama"]\ninput = 0\n'
                    'output = 0.1\n')
    prices = pricing.load_prices(path)
    assert prices == {"claude-opus-5-5": (1.5, 7.0), "my-llama": (0.0, 0.1)}
    assert pricing.Pricer("claude-opus-5-5", "anthropic", prices).cost(10**6, 2 * 10**6) == pytest.approx(15.5)
    assert pricing.Pricer("my-llama", "openai", prices, local=True).cost(0, 10**6) == pytest.approx(0.1)
    assert pricing.Pricer("gpt-5", "openai", prices).cost(10**6, 0) == pytest.approx(1.25)  # genai-prices still


@pytest.mark.parametrize("text, message", [
    ("[prices.m]\ninput = 1\n", "exactly two keys"),
    ('[prices."m"]\ninput = -1\noutput = 2\n', "non-negative"),
    ('[prices."m"]\ninput = "cheap"\noutput = 2\n', "non-negative"),
    ("[other]\nx = 1\n", "no \\[prices"),
    ("[prices\n", "not valid TOML"),
])
def test_bad_prices_file(tmp_path, text, message):
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(pricing.PriceFileError, match=message):
        pricing.load_prices(path)
    with pytest.raises(pricing.PriceFileError, match="does not exist"):
        pricing.load_prices(tmp_path / "missing.toml")


def test_cost_with_builtin_price_on_a_remote_url(fake_llm, monkeypatch):
    # 127.0.0.1 counts as local (free), so pretend it is remote to see genai-prices' price applied.
    monkeypatch.setattr("autoresearch.agents.llm.is_local_url", lambda url: False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    fake_llm.push(Reply(FULL_REPLY, input_tokens=10_000, output_tokens=2_000))
    agent = make_llm_agent("anthropic:claude-sonnet-5-5", base_url=fake_llm.url)
    assert agent.propose(make_ctx()).usage.cost_usd == pytest.approx((10_000 * 2 + 2_000 * 10) / 1e6)
    headers = fake_llm.requests[0].headers  # SDK 2.x sends the key as a bearer token, older ones as x-api-key
    assert "sk-test" in headers.get("x-api-key", "") + headers.get("authorization", "")


def test_is_local_url():
    for url in ("http://localhost:11434/v1", "http://127.0.0.1:8000", "http://[::1]:8080/v1", "http://192.168.1.20/v1",
                "http://10.0.0.5:8000/v1", "http://gpu-box.local:1234/v1", "http://host.docker.internal:11434"):
        assert is_local_url(url), url
    for url in (None, "", "https://api.openai.com/v1", "https://api.anthropic.com", "https://8.8.8.8/v1"):
        assert not is_local_url(url), url
