"""uvicorn's httptools protocol, sending each response in one write.

uvicorn writes a response's status line and headers, then its body, as two writes: two
send() calls and two TCP segments for every answer, each one a wake-up for the client.
Here a header block is held until the body that follows it, and both go out together. A
header block that no body follows (HEAD) is sent when its response is complete, and an
interim `100 Continue` at once. (So a streamed response's head would wait for its first
chunk, and one started before its request's body was read would wait for that body: the
API has neither. The demo's pages and static files run on uvicorn's own protocol.)

A request the HTTP parser refuses (a bad method token, a malformed Content-Length, a bad
chunk, a NUL in a header) never reaches the app: uvicorn answers it with a plain-text 400.
Here that answer is a Twilio-format error body, like every other refusal, and it goes out
in its turn: after the answers to the requests pipelined before it (uvicorn sent it at once,
and a client took it for the answer to its previous request), and also on a connection
that served requests before (uvicorn's override here closed that one without a word).

uvicorn's httptools mode also lacks guards its h11 mode has, added here: a request line and
headers over 64 KiB are answered 431, and a head that takes longer than
PASSKEYD_HEADERS_TIMEOUT_SECONDS 408 (a connection that sends nothing is closed). A request
asking to switch to h2c (curl --http2 over http://) had its body skipped by the parser and
was carried out without it; it is refused when it has a body, and answered as HTTP/1.1 when
it has none. A client that half-closes after its request gets its answer. As RFC 9112
asks, an HTTP/1.1 request without a Host, any with two or with one that is no host and port
is refused 400 (httptools took them), and a transfer coding other than chunked 501 (it read
`gzip, chunked` as if the compressed bytes were the body).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from passkeyd import logs, metrics
from passkeyd.logs import new_request_id


class _OneWriteTransport:
    """A transport that joins a response's header block to the write after it (its body).
    A header block that no body follows (a HEAD request's, say) goes out when its response
    is complete (`OneWriteHttpProtocol.on_response_complete`), or before a close; an
    interim `100 Continue` at once."""

    __slots__ = ("_transport", "_held", "is_closing")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self.is_closing = transport.is_closing  # asked at every response: no __getattr__

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            data, self._held = self._held + bytes(data), None
            self._transport.write(data)
        elif data[:5] == b"HTTP/" and data[-4:] == b"\r\n\r\n" and data[9:10] != b"1":
            self._held = bytes(data)
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


def _error(status: int, code: int, message: str) -> bytes:
    """A Twilio-format error body."""
    return json.dumps(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        separators=(",", ":"),
    ).encode()


_MALFORMED = _error(
    400,
    60200,
    "Invalid HTTP request: the request line, a header or the body's framing is malformed",
)
_HEAD_TOO_LARGE = _error(
    431, 60200, "Request header fields too large: the request line and headers are over 64 KiB"
)
_HEAD_TOO_SLOW = _error(408, 60200, "Request timeout: the request's headers did not arrive")
_UPGRADE_WITH_BODY = _error(
    400,
    60200,
    "Upgrade is not supported: passkeyd speaks HTTP/1.1 here, and a request asking to switch"
    " protocols cannot carry a body (curl: --http1.1, or https:// through a proxy)",
)
_HOST_MISSING = _error(400, 60200, "Bad request: an HTTP/1.1 request must have a Host header")
_HOST_REPEATED = _error(400, 60200, "Bad request: a request must not have two Host headers")
_HOST_INVALID = _error(400, 60200, "Bad request: the Host header is not a host and port")
_CODING_UNSUPPORTED = _error(
    501,
    60200,
    "Not implemented: a request body's Transfer-Encoding may only be chunked (passkeyd does"
    " not decode gzip, deflate or compress)",
)
_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
}
# RFC 9112 3.2 and RFC 3986 3.2.2: a host (a name, IPv4, or a bracketed IP literal) and an
# optional port; empty when the target had no authority.
_HOST = re.compile(rb"(?:\[[0-9A-Za-z:.%]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")

MAX_HEAD_BYTES = 64 * 1024  # the request line and the headers together


class _HeadTooLarge(Exception):
    pass


class _HeadRefused(Exception):
    pass


class OneWriteHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with each response in one write, Twilio-format answers
    to what the parser refuses, and the guards uvicorn's httptools mode lacks: a bound on
    the request head's size and time, requests to switch protocols (h2c) read as HTTP/1.1
    or refused, Host and Transfer-Encoding checked, and an answer for a client that
    half-closed after its request."""

    # From a connection's opening, or a request's first byte, to its last header: a client
    # that takes longer is answered 408 (PASSKEYD_HEADERS_TIMEOUT_SECONDS, set per worker).
    head_seconds = 10.0
    # an answer waiting for the responses before it: status, body, and whether it answers a
    # HEAD request (which gets the head alone, RFC 9110 9.3.2)
    _refusal: tuple[int, bytes, bool] | None = None
    _head_bytes = 0
    _head_timer: asyncio.TimerHandle | None = None
    _head_started = False  # a request's first bytes came, and not yet all its headers
    _head_raw = 0  # bytes received while a head went on (httptools joins a line unseen)
    _message_complete = True  # the last request whose head was read has all its body
    _input_closed = False  # what comes after the request being answered is not read
    _too_large = False
    _head_refusal: tuple[int, bytes] | None = None  # a head read whole, but refused
    _upgrade_refused = False  # this request's body was skipped by the parser: refused
    _one_write: _OneWriteTransport

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._one_write = _OneWriteTransport(transport)
        super().connection_made(self._one_write)  # type: ignore[arg-type]
        self._arm_head_timer()  # a connection that never sends a request is not kept

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None or self._input_closed:
            return  # the rest of the connection is refused: its answer waits its turn
        in_head = self._head_started
        super().data_received(data)
        if self.transport.is_closing() or self._refusal is not None:
            return
        if self._head_started:  # a head this read began or went on with, not yet whole
            if in_head:
                # httptools holds a header line until it ends: count what the head took.
                self._head_raw += len(data)
                if self._head_raw > MAX_HEAD_BYTES:
                    self._too_large = True
                    self._refuse(431, _HEAD_TOO_LARGE, body_of_cycle=True)
                    return
            # Its clock starts now (a head that arrives whole in one read, as nearly every
            # one does, needs none: no timer is set and cancelled for it).
            self._arm_head_timer()
        elif self.cycle is None or self.cycle.response_complete:
            # Bytes that began no request (a bare CRLF) stopped uvicorn's keep-alive clock.
            self._arm_head_timer()

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client sent all it will (a half-close): a request still being answered gets
        its answer, then the connection closes (asyncio would close it at once)."""
        if self._refusal is not None:
            # Refused bytes wait for the answers before theirs; their answer then closes
            # the connection (closing it with the last of those answers would drop it).
            return True
        cycle = self.cycle
        if cycle is not None and self._message_complete and not cycle.response_complete:
            cycle.keep_alive = False
            return True
        return None  # a body cut short can never end: closed (the app hears a disconnect)

    # --- the request head: its size and time -------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A request before it is still being answered: that answer goes out, then the
            # connection closes; nothing more is read.
            cycle.keep_alive = False
            self._input_closed = True
            self.flow.pause_reading()
        elif self._head_started:
            self._answer(408, _HEAD_TOO_SLOW, head_method=self._head_is_head())
        else:  # nothing asked
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        self._head_bytes = 0
        self._head_raw = 0
        self._upgrade_refused = False

    # (The size is counted inline: these run for every header of every request.)
    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._too_large = True
            raise _HeadTooLarge  # the parser stops, and send_400_response answers
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            self._too_large = True
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._head_started = False
        refusal = self._refusal_of_head()
        if refusal is not None:
            self._head_refusal = refusal
            raise _HeadRefused  # the parser stops, and send_400_response answers
        if self.parser.should_upgrade() and not self._should_upgrade():
            # A protocol passkeyd does not switch to (h2c: curl --http2 and Java's HttpClient
            # ask so over http://). httptools stops reading HTTP/1.1 at these headers, so a
            # body would be skipped and the request carried out without it: a challenge for
            # a user made usernameless. One with a body is refused; one without is answered
            # as HTTP/1.1, and the connection closed after it (nothing more can be read).
            if self._declares_body():
                self._upgrade_refused = True
                self._refuse(400, _UPGRADE_WITH_BODY, body_of_cycle=False)
                return
            super().on_headers_complete()
            self._message_complete = False
            self.cycle.keep_alive = False
            return
        super().on_headers_complete()
        self._message_complete = False

    def _refusal_of_head(self) -> tuple[int, bytes] | None:
        """What RFC 9112 has a server refuse in a head the parser took: a Host missing from
        an HTTP/1.1 request, two of them, or one that is no host and port (passkeyd builds
        `url` and `next_page_url` from it: 400); a transfer coding other than chunked, which
        passkeyd would read as the body itself (501)."""
        host: bytes | None = None
        host_at = -1
        unsupported = False  # a transfer coding other than chunked
        for i, (name, value) in enumerate(self.headers):  # one pass: this runs per request
            if name == b"host":
                if host is not None:
                    return 400, _HOST_REPEATED
                host, host_at = value.strip(b" \t"), i  # (httptools keeps trailing OWS)
            elif name == b"transfer-encoding":
                codings = [c.strip(b" \t").lower() for c in value.split(b",")]
                unsupported = unsupported or any(c and c != b"chunked" for c in codings)
        if host is None and self.parser.get_http_version() != "1.0":
            return 400, _HOST_MISSING
        target = self.url
        if target[:1] != b"/" and b"://" in target[:8]:
            # An absolute-form target (through a proxy): its authority is the host, and
            # the Host header is ignored (RFC 9112 3.2.2).
            host = target.split(b"://", 1)[1].split(b"/", 1)[0].split(b"?", 1)[0]
        if host is not None:
            if not _HOST.fullmatch(host):
                return 400, _HOST_INVALID
            # The request's Host, as `url` and `next_page_url` are built from it.
            if host_at >= 0:
                self.headers[host_at] = (b"host", host)
            else:
                self.headers.append((b"host", host))
        if unsupported:
            return 501, _CODING_UNSUPPORTED
        return None

    def _head_is_head(self) -> bool:
        """The request whose head is being read is a HEAD. Asked only when refusing, so
        nothing is added per request: its method is parsed once its URL began (on_url
        counted it in `_head_bytes`, reset by on_message_begin, even when it raised 431);
        before that, the parser's method is still the previous request's."""
        return self._head_bytes > 0 and self.parser.get_method() == b"HEAD"

    def _declares_body(self) -> bool:
        for name, value in self.headers:
            if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b" 0")):
                return True
        return False

    def on_body(self, body: bytes) -> None:
        if not self._upgrade_refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._upgrade_refused:
            self._message_complete = True
            super().on_message_complete()

    def _unsupported_upgrade_warning(self) -> None:
        pass  # handled in on_headers_complete: answered as HTTP/1.1, or refused

    # --- answering what the parser refuses ---------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """The parser refused bytes (uvicorn answers a plain-text 400): answered in Twilio's
        format, in its turn after the responses to the requests before them."""
        if self._too_large:  # a head, or a chunked body's trailers
            self._refuse(431, _HEAD_TOO_LARGE, body_of_cycle=True)
        elif self._head_refusal is not None:
            self._refuse(*self._head_refusal, body_of_cycle=True)
        else:
            self._refuse(400, _MALFORMED, body_of_cycle=True)

    def _refuse(self, status: int, body: bytes, *, body_of_cycle: bool) -> None:
        """Answer the refused bytes, which end the connection. `body_of_cycle`: they may be
        in the body of the last request whose head was read (a bad chunk), rather than a
        new request's head."""
        self._cancel_head_timer()
        cycle = self.cycle
        head_method = self._head_is_head()  # a new request's head refused
        if cycle is not None and body_of_cycle and not self._message_complete:
            # In that request's body.
            head_method = cycle.scope["method"] == "HEAD"
            if cycle.response_started:
                # Answered already (an early 401): a second answer would be taken for the
                # next request's.
                self.transport.close()
                return
            queued = [item for item in self.pipeline if item[0] is not cycle]
            if len(queued) == len(self.pipeline):  # being served: it hears a disconnect
                self._answer(status, body, head_method=head_method)
                return
            self.pipeline.clear()  # queued behind others: it is never started
            self.pipeline.extend(queued)
        elif cycle is None or cycle.response_complete:
            self._answer(status, body, head_method=head_method)
            return
        # Requests before these bytes are still being answered: this answer goes after theirs.
        self._refusal = (status, body, head_method)
        self.flow.pause_reading()

    def on_response_complete(self) -> None:
        last = not self.pipeline
        self._one_write.flush()  # a header block no body followed (HEAD)
        super().on_response_complete()
        if self._refusal is not None and last:
            status, body, head_method = self._refusal
            self._answer(status, body, head_method=head_method)

    def _answer(self, status: int, body: bytes, *, head_method: bool = False) -> None:
        """Answer refused bytes and close: in Twilio's format, without the body (but with
        its length, as a GET would have it) when they were a HEAD request's."""
        if self.transport.is_closing():
            return
        request_id = new_request_id()
        # Like every other answer: counted (under `unmatched`, as no route served it) and
        # in the access log with the request id the client was given. (uvicorn's warning
        # "Invalid HTTP request received." said neither, once per request.)
        metrics.unmatched("", status)
        logs.access(
            f"{status}",
            {"request_id": request_id, "route": metrics.UNMATCHED, "status": status, "code": 60200},
        )
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"twilio-request-id: %s\r\n" % request_id.encode(),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        # (A head alone is held by _OneWriteTransport for a body to follow: close() below
        # flushes it.)
        self.transport.write(b"".join(head) + (b"" if head_method else body))
        self.transport.close()
