"""A real HTTP receiver on loopback that records webhook requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    params: dict[str, str]


@dataclass
class Receiver:
    port: int
    fail_first: int = 0  # answer 500 to this many requests first
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/passkeys"

    def events(self, kind: str | None = None) -> list[dict[str, str]]:
        with self.lock:
            return [r.params for r in self.requests if kind is None or r.params.get("type") == kind]


@contextmanager
def receiver(fail_first: int = 0, port: int = 0) -> Iterator[Receiver]:
    state = Receiver(port=port, fail_first=fail_first)
    answered = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            with state.lock:
                state.requests.append(
                    Received(self.path, dict(self.headers.items()), dict(parse_qsl(body)))
                )
                answered[0] += 1
                failing = answered[0] <= state.fail_first
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
