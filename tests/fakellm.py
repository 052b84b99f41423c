"""A scripted stand-in for the Anthropic Messages and OpenAI Chat Completions APIs, on 127.0.0.1.

`POST /v1/messages` answers in the Anthropic format, `POST /v1/chat/completions` in the OpenAI one. Each request
takes the next item of one shared script:

- `Reply(text, ...)`: a normal answer with the given usage and stop reason;
- `Status(code, retry_after=...)`: an HTTP error in the provider's error format;
- `Delay(seconds)`: answer nothing for `seconds` (longer than the client timeout), then a plain reply.

An empty script answers 418 with "fakellm: no scripted reply left", which the agents treat as a non-retryable
rejection, so a test that under-scripts fails fast and says why. Every request is recorded (path, headers, JSON
body). Point the SDKs at it with `anthropic.Anthropic(base_url=server.url)` and
`openai.OpenAI(base_url=server.url + "/v1")`: the Anthropic SDK adds `/v1/messages` itself, the OpenAI SDK only
`/chat/completions`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass(frozen=True)
class Reply:
    text: str
    input_tokens: int = 1000
    output_tokens: int = 200
    stop: str = "end_turn"  # Anthropic stop_reason; mapped to an OpenAI finish_reason ("max_tokens" -> "length")


@dataclass(frozen=True)
class Status:
    code: int
    retry_after: float | None = None
    message: str = "scripted failure"


@dataclass(frozen=True)
class Delay:
    seconds: float
    then: Reply = field(default_factory=lambda: Reply("too late"))


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: dict

    @property
    def messages(self) -> list[dict]:
        return self.body.get("messages", [])

    @property
    def user_texts(self) -> list[str]:
        """The text of every user turn, in order (string or content-block form)."""
        return [_text(m["content"]) for m in self.messages if m.get("role") == "user"]

    @property
    def system(self) -> str:
        if "system" in self.body:  # Anthropic
            return _text(self.body["system"])
        return "".join(_text(m["content"]) for m in self.messages if m.get("role") == "system")


class FakeLLM:
    """Threaded HTTP server on a random free port of 127.0.0.1, answering from a script."""

    def __init__(self) -> None:
        self.script: list[Reply | Status | Delay] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def push(self, *items: Reply | Status | Delay) -> FakeLLM:
        with self._lock:
            self.script.extend(items)
        return self

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers that are sleeping out a Delay
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self, request: Request) -> Reply | Status | Delay | None:
        with self._lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else None


def _handler_for(server: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            path = self.path.split("?", 1)[0]
            anthropic = path.endswith("/v1/messages")
            if not anthropic and not path.endswith("/v1/chat/completions"):
                return self._json(404, {"error": {"type": "not_found_error", "message": f"no route {path}"}})
            body = json.loads(raw or b"{}")
            item = server._next(Request(path, {k.lower(): v for k, v in self.headers.items()}, body))
            if item is None:
                return self._json(418, _error(anthropic, 418, "fakellm: no scripted reply left"))
            if isinstance(item, Delay):
                if server._stopping.wait(item.seconds):
                    return
                item = item.then
            if isinstance(item, Status):
                headers = {"retry-after": f"{item.retry_after:g}"} if item.retry_after is not None else {}
                return self._json(item.code, _error(anthropic, item.code, item.message), headers)
            model = body.get("model", "fake-model")
            self._json(200, _anthropic_reply(item, model) if anthropic else _openai_reply(item, model))

        def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                self.close_connection = True

    return Handler


def _anthropic_reply(r: Reply, model: str) -> dict:
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": r.text}], "stop_reason": r.stop, "stop_sequence": None,
            "usage": {"input_tokens": r.input_tokens, "output_tokens": r.output_tokens}}


def _openai_reply(r: Reply, model: str) -> dict:
    finish = {"max_tokens": "length", "end_turn": "stop"}.get(r.stop, r.stop)
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": r.text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": r.input_tokens, "completion_tokens": r.output_tokens,
                      "total_tokens": r.input_tokens + r.output_tokens}}


_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}


def _error(anthropic: bool, code: int, message: str) -> dict:
    kind = _ANTHROPIC_TYPES.get(code, "api_error")
    if anthropic:
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    try:
        yield server
    finally:
        server.stop()
