"""A minimal HTTP/1.1 keep-alive client on asyncio (uvloop) and httptools.

The load generator has to stay far cheaper than the server it drives, so requests are
pre-rendered byte strings and responses are parsed by httptools (the parser uvicorn uses).
One `Connection` carries one request at a time, like a browser-facing backend's pooled
upstream connection.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping

import httptools

Response = tuple[int, bytes]


class HttpError(Exception):
    """The connection failed or the response could not be parsed."""


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._body: list[bytes] = []
        self.closed = False
        self.request_seconds: list[float] = []  # filled while `record` is True
        self.record = False

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"bad response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HttpError(f"connection lost: {exc or 'closed by server'}"))

    # --- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self._parser.get_status_code(), b"".join(self._body)))

    # --- API ----------------------------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    async def send(self, raw: bytes) -> Response:
        """Send one pre-rendered request and wait for its response: (status, body)."""
        if self.closed or self._transport is None:
            raise HttpError("connection closed")
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        started = time.perf_counter()
        self._transport.write(raw)
        result = await waiter
        if self.record:
            self.request_seconds.append(time.perf_counter() - started)
        return result

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.close()
        self.closed = True


async def connect(host: str, port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(Connection, host, port)
    return protocol


def basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {token}"


class RequestTemplate:
    """Everything of a request but its body, rendered once: `render(body)` adds the body."""

    def __init__(
        self,
        method: str,
        path: str,
        host: str,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Type: {content_type}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")

    def render(self, body: bytes) -> bytes:
        return b"".join((self._head, str(len(body)).encode(), b"\r\n\r\n", body))


def get_request(path: str, host: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("latin-1")
