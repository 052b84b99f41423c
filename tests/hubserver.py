"""A tiny stand-in for the Hugging Face hub, enough for `hf_hub_download` over plain HTTP.

It serves `/{datasets/}{repo}/resolve/{revision}/{filename}` (HEAD and GET, with Range for resume) and
`/api/datasets/{repo}` (the reachability probe), records every request, and can be scripted to fail:
`fail_next` answers a request with an error status, `drop_next` closes the connection mid-body.
Point huggingface_hub at it with `HF_ENDPOINT=server.url`.

Headers are the ones huggingface_hub's `get_hf_file_metadata` and `http_get` read: `X-Repo-Commit`,
`ETag`/`X-Linked-Etag`, `Content-Length`, `Content-Range`. No `X-Xet-Hash`, so downloads stay plain HTTP.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?:(datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_API = re.compile(r"^/api/(?:datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    filename: str | None  # set for /resolve/ requests
    range: str | None  # the Range header, e.g. "bytes=1000-"


class HubServer:
    """Threaded HTTP server on 127.0.0.1 (random free port) holding {repo_id: {filename: bytes}}."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, bytes]] = {}
        self.requests: list[Request] = []
        self._failures: dict[tuple[str, str], list[int]] = {}  # (method, filename) -> statuses to answer next
        self._drops: dict[str, int] = {}  # filename -> body bytes to send before closing the connection
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)  # quick stop

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def add(self, repo_id: str, filename: str, data: bytes) -> None:
        self.files.setdefault(repo_id, {})[filename] = data

    def fail_next(self, filename: str, status: int = 500, *, times: int = 1, method: str = "GET") -> None:
        """Answer the next `times` `method` requests for `filename` with `status`."""
        with self._lock:
            self._failures.setdefault((method, filename), []).extend([status] * times)

    def drop_next(self, filename: str, after_bytes: int) -> None:
        """Cut the connection after `after_bytes` body bytes of the next GET of `filename`."""
        with self._lock:
            self._drops[filename] = after_bytes

    def count(self, method: str | None = None, filename: str | None = None) -> int:
        return sum(
            (method is None or r.method == method) and (filename is None or r.filename == filename)
            for r in self.requests
        )

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- called by the handler, under the lock ---------------------------------------------------------
    def _record(self, request: Request) -> tuple[int | None, int | None]:
        with self._lock:
            self.requests.append(request)
            failure = drop = None
            statuses = self._failures.get((request.method, request.filename or ""))
            if statuses:
                failure = statuses.pop(0)
            elif request.method == "GET" and request.filename in self._drops:
                drop = self._drops.pop(request.filename)
            return failure, drop


def _handler_for(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real hub; every response sets Content-Length

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = unquote(self.path.split("?", 1)[0])
            if api := _API.match(path):
                server._record(Request(self.command, path, None, None))
                known = api["repo"] in server.files
                return self._empty(200 if known else 404, {"X-Error-Code": "RepoNotFound"} if not known else {})
            resolve = _RESOLVE.match(path)
            filename = resolve["file"] if resolve else None
            failure, drop = server._record(Request(self.command, path, filename, self.headers.get("Range")))
            if resolve is None:
                return self._empty(404, {})
            data = server.files.get(resolve["repo"], {}).get(filename)
            if data is None:
                error = "EntryNotFound" if resolve["repo"] in server.files else "RepoNotFound"
                return self._empty(404, {"X-Error-Code": error, "X-Repo-Commit": COMMIT})
            if failure is not None:
                return self._empty(failure, {})
            self._send_file(data, body, drop)

        def _send_file(self, data: bytes, body: bool, drop: int | None) -> None:
            start = _range_start(self.headers.get("Range"))
            if start >= len(data) > 0:
                return self._empty(416, {"Content-Range": f"bytes */{len(data)}"})
            etag = hashlib.sha256(data).hexdigest()
            chunk = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(chunk)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            if drop is not None:  # promise the whole body, send part of it, hang up: a reset mid-download
                self.wfile.write(chunk[:drop])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(chunk)

        def _empty(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def _range_start(header: str | None) -> int:
    """Start offset of a `bytes=N-` Range header (the only form huggingface_hub sends); 0 without one."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", header or "")
    return int(match[1]) if match else 0


# ----------------------------------------------------------------------------------------------------
# Unreachable endpoints for the offline tests


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A URL whose server completes the TCP handshake (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def hub_server() -> Iterator[HubServer]:
    server = HubServer().start()
    try:
        yield server
    finally:
        server.stop()
