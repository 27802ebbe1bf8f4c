"""uvicorn's httptools protocol, sending each response in one write.

uvicorn writes a response's status line and headers, then its body, as two writes: two
send() calls and two TCP segments for every answer, each one a wake-up for the client.
Here a header block is held until the body that follows it, and both go out together. A
header block that no body follows (HEAD, `100 Continue`) is sent at the loop's next turn.

A request the HTTP parser refuses (a bad method token, a malformed Content-Length, a bad
chunk, a NUL in a header) never reaches the app: uvicorn answers it with a plain-text 400.
Here that answer is a Twilio-format error body, like every other refusal.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from passkeyd.logs import new_request_id


class _OneWriteTransport:
    """A transport that joins a header block to the write after it."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            data, self._held = self._held + bytes(data), None
            self._transport.write(data)
        elif data[:5] == b"HTTP/" and data[-4:] == b"\r\n\r\n":
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


_MALFORMED = json.dumps(
    {
        "code": 60200,
        "message": "Invalid HTTP request: the request line, a header or the body's framing"
        " is malformed",
        "more_info": "https://www.twilio.com/docs/errors/60200",
        "status": 400,
    },
    separators=(",", ":"),
).encode()


class OneWriteHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_OneWriteTransport(transport, self.loop))  # type: ignore[arg-type]

    def send_400_response(self, msg: str) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            # The malformed part came after this request's answer began (a bad chunk after
            # an early 401): a second answer would be taken for the next request's.
            self.transport.close()
            return
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"twilio-request-id: %s\r\n" % new_request_id().encode(),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(_MALFORMED),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + _MALFORMED)
        self.transport.close()
