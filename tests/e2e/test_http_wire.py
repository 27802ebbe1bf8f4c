"""HTTP on the wire from a real `passkeyd serve`: every response whole and in order on a
kept-alive connection (passkeyd sends each response's head and body in one write), HEAD,
204, and `Expect: 100-continue`."""

from __future__ import annotations

import base64
import json
import re
import socket
import sqlite3
import time
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Server


class Connection:
    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=5)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, "connection closed early"
        self.buffer += chunk

    def head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        return int(status_line.split()[1]), headers

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status, headers = self.head()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def close(self) -> None:
        self.sock.close()


def auth(server: Server) -> str:
    token = base64.b64encode(f"{server.account_sid}:{server.auth_token}".encode()).decode()
    return f"Basic {token}"


def test_responses_arrive_whole_and_in_order_on_one_connection(server: Server) -> None:
    c = Connection(server.base_url)
    try:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" * 3)  # pipelined
        for _ in range(3):
            status, headers, body = c.response()
            assert status == 200 and b"ok" in body
            assert headers["content-type"] == "application/json"
        c.send(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers = c.head()  # a head with no body after it still arrives
        assert status == 200 and int(headers["content-length"]) > 0
        c.send(b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = c.response()
        assert status == 404 and b"20404" in body and headers["twilio-request-id"]
    finally:
        c.close()


def test_204_and_expect_100_continue(server: Server) -> None:
    c = Connection(server.base_url)
    try:
        form = b"FriendlyName=wire"
        c.send(
            b"POST /v2/Services HTTP/1.1\r\nHost: t\r\nAuthorization: "
            + auth(server).encode()
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "
            + str(len(form)).encode()
            + b"\r\nExpect: 100-continue\r\n\r\n"
        )
        status, _ = c.head()
        assert status == 100
        c.send(form)
        status, _, body = c.response()
        assert status == 201, body
        sid = body.split(b'"sid":"', 1)[1].split(b'"', 1)[0].decode()
        c.send(
            f"DELETE /v2/Services/{sid} HTTP/1.1\r\nHost: t\r\nAuthorization: {auth(server)}"
            "\r\n\r\n".encode()
        )
        status, headers, body = c.response()
        assert status == 204 and body == b"" and headers["twilio-request-id"].startswith("RQ")
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection is still good
        assert c.response()[0] == 200
    finally:
        c.close()


def test_a_request_the_http_parser_refuses_gets_a_twilio_error(server: Server) -> None:
    """These never reach the app; uvicorn's own answer is a plain-text 400."""
    import json

    for request in (
        b"FOO /v2/Services HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v2/Services HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nabcde",
        b"POST /v2/Services HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ):
        connection = Connection(server.base_url)
        try:
            connection.send(request)
            status, headers, body = connection.response()
        finally:
            connection.close()
        assert status == 400
        assert headers["content-type"] == "application/json"
        assert re.fullmatch(r"RQ[0-9a-f]{32}", headers["twilio-request-id"])
        error = json.loads(body)
        assert (error["status"], error["code"]) == (400, 60200)
        assert error["more_info"] == "https://www.twilio.com/docs/errors/60200"


def test_a_malformed_chunk_after_the_answer_began_gets_no_second_answer(server: Server) -> None:
    """An early 401 answers the request while its body is still coming; a malformed chunk
    after that must not draw a second response, which a client would take for the answer
    to its next request."""
    connection = Connection(server.base_url)
    try:
        connection.send(
            b"POST /v2/Services HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n"
        )
        status, _, _ = connection.response()
        assert status == 401
        connection.send(b"zz\r\n")
        connection.sock.settimeout(2)
        rest = b""
        while chunk := connection.sock.recv(65536):
            rest += chunk
        assert connection.buffer + rest == b""  # closed, with nothing more
    finally:
        connection.close()


def _service(server: Server) -> str:
    c = Connection(server.base_url)
    try:
        form = (
            b"FriendlyName=wire&Passkeys.RelyingParty.Id=example.com&Passkeys.RelyingParty.Name=Ex"
            b"&Passkeys.RelyingParty.Origins=https%3A%2F%2Fexample.com"
            b"&Passkeys.AuthenticatorAttachment=platform&Passkeys.DiscoverableCredentials=preferred"
            b"&Passkeys.UserVerification=preferred"
        )
        c.send(
            b"POST /v2/Services HTTP/1.1\r\nHost: t\r\nAuthorization: " + auth(server).encode()
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "
            + str(len(form)).encode() + b"\r\n\r\n" + form
        )  # fmt: skip
        status, _, body = c.response()
        assert status == 201, body
        return body.split(b'"sid":"', 1)[1].split(b'"', 1)[0].decode()
    finally:
        c.close()


def _challenge_request(
    server: Server, service_sid: str, extra: bytes = b"", body: bytes = b'{"identity":"nobody-yet"}'
) -> bytes:
    return (
        f"POST /v2/Services/{service_sid}/Passkeys/Challenges HTTP/1.1\r\nHost: t\r\n"
        f"Authorization: {auth(server)}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


def _rest(c: Connection) -> bytes:
    """What else arrives before the server closes the connection."""
    c.sock.settimeout(5)
    rest = c.buffer
    while chunk := c.sock.recv(65536):
        rest += chunk
    c.buffer = b""
    return rest


def test_a_request_to_switch_to_h2c_is_refused_with_a_body_and_answered_without(
    server: Server,
) -> None:
    """curl --http2 over http:// (and Java's HttpClient) ask to upgrade to h2c. httptools stops
    reading HTTP/1.1 at the headers: the body was skipped, and a challenge for a user was
    made usernameless (201, identity "") that anyone's passkey answers. Refused now (and
    nothing made); a request without a body is answered as HTTP/1.1, and the connection
    closed after it, since nothing after it can be read."""
    sid = _service(server)
    upgrade = (
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
    )
    c = Connection(server.base_url)
    try:
        c.send(_challenge_request(server, sid, upgrade))
        status, headers, body = c.response()
        assert status == 400 and b"Upgrade is not supported" in body, body
        assert headers["connection"] == "close"
        assert _rest(c) == b""
    finally:
        c.close()
    c = Connection(server.base_url)
    try:  # the same without the upgrade: that user does not exist
        c.send(_challenge_request(server, sid))
        status, _, body = c.response()
        assert (status, b"60392" in body) == (404, True), body
        fetch = (
            f"GET /v2/Services/{sid} HTTP/1.1\r\nHost: t\r\nAuthorization: {auth(server)}\r\n"
        ).encode()
        c.send(fetch + upgrade + b"\r\n" + b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = c.response()
        assert status == 200 and sid.encode() in body, body
        assert headers["connection"] == "close"
        assert _rest(c) == b""  # the pipelined request after the upgrade is not read
    finally:
        c.close()
    from tests.e2e.processes import passkeyd_cli

    events: list[dict[str, str]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the audit trail is written every 0.2 s
        text = passkeyd_cli(
            server.database_url, "audit", "list", "--account", server.account_sid, expect_json=False
        )
        events = [json.loads(line) for line in text.splitlines() if line.strip()]
        if any(e["action"] == "create_challenge" for e in events):
            break
        time.sleep(0.2)
    assert [e["action"] for e in events if e["action"] == "create_challenge"] == [
        "create_challenge"
    ]  # the one refused 404: the upgrade made none
    assert [e["outcome"] for e in events if e["action"] == "create_challenge"] == ["refused"]


def test_a_websocket_handshake_is_answered_as_the_http_request_it_is(server: Server) -> None:
    """passkeyd has no WebSocket endpoint, and its workers load no WebSocket implementation
    (uvicorn's took about 100 ms of a two-worker start-up). A handshake used to get uvicorn's
    bare 403, past the access log; one with a body hung, its body never read. Now the
    Upgrade is ignored (RFC 9110 §7.8) as for h2c: a request without a body is answered as
    HTTP/1.1, one with a body refused, nothing made."""
    websocket = (
        b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
    c = Connection(server.base_url)
    try:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + websocket + b"\r\n")
        status, headers, body = c.response()
        assert status == 200, (status, body)
        assert json.loads(body) == {"status": "ok"}
        assert headers["twilio-request-id"].startswith("RQ")
    finally:
        c.close()
    sid = _service(server)
    c = Connection(server.base_url)
    try:
        c.send(_challenge_request(server, sid, websocket))
        status, headers, body = c.response()
        assert status == 400 and b"Upgrade is not supported" in body, body
        assert _rest(c) == b""
    finally:
        c.close()


def test_a_refused_head_request_gets_the_head_of_the_answer_alone(server: Server) -> None:
    """RFC 9110 9.3.2: no body in an answer to HEAD, a refusal's included (its
    Content-Length is the body's a GET would get). The Twilio-format body went out after
    the head (a fuzz review)."""
    for request in (
        b"HEAD /v2/Services HTTP/1.1 x\r\nHost: x\r\n\r\n",  # the request line
        b"HEAD /v2/Services HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n",
        b"HEAD /v2/Services HTTP/1.1\r\nHost: a b\r\n\r\n",  # a Host RFC 9112 refuses
        # behind a request still answered: its answer, then the refusal's head
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nHEAD /healthz HTTP/1.1\r\nHost: a b\r\n\r\n",
        # a target over 64 KiB in one read (431 before the URL was taken)
        b"HEAD /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        # a bad chunk in a HEAD request's body
        b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ):
        c = Connection(server.base_url)
        try:
            c.send(request)
            if request.startswith(b"GET"):
                assert c.response()[0] == 200
            status, headers = c.head()
            assert status == (431 if len(request) > 65536 else 400), request[:80]
            assert int(headers["content-length"]) > 0
            assert _rest(c) == b"", request  # nothing after the head: the connection closed
        finally:
            c.close()
    # A GET refused alike still gets its body.
    c = Connection(server.base_url)
    try:
        c.send(b"GET /v2/Services HTTP/1.1 x\r\nHost: x\r\n\r\n")
        status, _, body = c.response()
        assert (status, json.loads(body)["code"]) == (400, 60200)
    finally:
        c.close()


def test_a_malformed_request_is_answered_after_the_requests_before_it(server: Server) -> None:
    """Pipelined behind a valid request, a malformed one's 400 went out at once, and the
    client took it for the valid one's answer (which was carried out all the same)."""
    c = Connection(server.base_url)
    try:
        c.send(
            b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" * 2
            + b"GET /x HTTP/1.1\r\nBad Header: y\r\n\r\n"
        )
        assert [c.response()[0] for _ in range(3)] == [200, 200, 400]
        assert _rest(c) == b""
    finally:
        c.close()


def test_a_malformed_request_on_a_kept_alive_connection_is_answered(server: Server) -> None:
    c = Connection(server.base_url)
    try:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.response()[0] == 200
        c.send(
            b"POST /v2/Services HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        status, _, body = c.response()  # it was closed without a word
        assert (status, b"60200" in body) == (400, True)
    finally:
        c.close()


def test_a_client_that_half_closes_after_its_request_gets_the_answer(server: Server) -> None:
    """asyncio closed the connection at the client's FIN, while the request was being
    answered: the challenge was made, and its answer never sent."""
    sid = _service(server)
    c = Connection(server.base_url)
    try:
        c.send(_challenge_request(server, sid, body=b"{}"))  # usernameless
        c.sock.shutdown(socket.SHUT_WR)
        status, _, body = c.response()
        assert status == 201, body
        assert _rest(c) == b""
    finally:
        c.close()


def test_a_head_request_answered_after_a_half_close_gets_its_head(server: Server) -> None:
    """A HEAD answer is a head with no body after it. It was held for the loop's next turn,
    the client's FIN closed the transport first, and the held head was dropped: no answer."""
    for _ in range(5):  # the order of the FIN and the answer is up to the loop
        c = Connection(server.base_url)
        try:
            c.send(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            c.sock.shutdown(socket.SHUT_WR)
            status, headers = c.head()
            assert status == 200 and int(headers["content-length"]) > 0
            assert _rest(c) == b""
        finally:
            c.close()


def test_a_request_head_over_64_kib_is_refused(server: Server) -> None:
    c = Connection(server.base_url)
    try:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        status, _, body = c.response()
        assert (status, b"60200" in body) == (431, True), body
    finally:
        c.close()


def test_a_request_head_that_takes_too_long_is_answered_408(tmp_path) -> None:
    from tests.e2e.processes import Passkeyd

    process = Passkeyd(
        database_url=f"sqlite:///{tmp_path}/slow.db",
        account_sid="AC" + "1" * 32,
        auth_token="t" * 32,
        log_path=tmp_path / "passkeyd.log",
        extra_env={"PASSKEYD_HEADERS_TIMEOUT_SECONDS": "1"},
    )
    process.start()
    try:
        idle, slow = Connection(process.base_url), Connection(process.base_url)
        slow.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        time.sleep(0.5)
        slow.send(b"X-Slow: a\r\n")  # a header now and then, as a slowloris client sends them
        status, _, body = slow.response()
        assert (status, b"60200" in body) == (408, True), body
        assert time.monotonic() - started < 3
        assert _rest(idle) == b""  # one that sent nothing is closed without a word
        slow.close()
        idle.close()
        # Bytes that begin no request (a CRLF) after an answer: closed all the same (they
        # stopped uvicorn's keep-alive clock, and the connection stayed open for good).
        crlf = Connection(process.base_url)
        crlf.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert crlf.response()[0] == 200
        crlf.send(b"\r\n")
        started = time.monotonic()
        assert _rest(crlf) == b""
        assert time.monotonic() - started < 3  # (uvicorn's keep-alive: 5 s)
        crlf.close()
        # The head of a kept-alive connection's next request is timed too: its bytes stop
        # uvicorn's keep-alive clock, and the head's own starts with them.
        kept = Connection(process.base_url)
        kept.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert kept.response()[0] == 200
        kept.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        status, _, body = kept.response()
        assert (status, b"60200" in body) == (408, True), body
        assert time.monotonic() - started < 3
        kept.close()
        # A head that is slow while the request before it is being answered: that answer
        # goes out (it was dropped, the request carried out), then the connection closes.
        lock = sqlite3.connect(f"{tmp_path}/slow.db", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock for 2.5 s
        busy = Connection(process.base_url)
        auth = "Basic " + base64.b64encode(f"{process.account_sid}:{'t' * 32}".encode()).decode()
        form = b"FriendlyName=held"
        busy.send(
            b"POST /v2/Services HTTP/1.1\r\nHost: t\r\nAuthorization: " + auth.encode()
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "
            + str(len(form)).encode() + b"\r\n\r\n" + form + b"GET /healthz HTTP/1.1\r\n"
        )  # fmt: skip
        time.sleep(2.5)
        lock.execute("COMMIT")
        lock.close()
        status, _, body = busy.response()
        assert status == 201, body
        assert _rest(busy) == b""
        busy.close()
    finally:
        process.stop()


def test_a_body_cut_short_by_the_clients_fin_closes_the_connection(server: Server) -> None:
    """A half-close keeps a connection only for a request received whole: a body that can
    no longer arrive held the connection (CLOSE_WAIT) for good."""
    c = Connection(server.base_url)
    try:
        c.send(
            b"POST /v2/Services HTTP/1.1\r\nHost: t\r\nAuthorization: " + auth(server).encode()
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n"
            b"\r\nFriendlyName="
        )  # fmt: skip
        c.sock.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        rest = _rest(c)  # (a socket.timeout here: held)
        assert rest.count(b"HTTP/1.1 ") <= 1 and time.monotonic() - started < 3, rest
    finally:
        c.close()


@pytest.mark.parametrize("pause", [0.0, 0.2])
def test_chunked_trailers_over_64_kib_are_refused(server: Server, pause: float) -> None:
    """Trailers are counted as they come, like a head. The request is authenticated, so the
    app waits for its body: without credentials it was answered 401 at once whenever the
    trailers came in a later read than the head (once in CI), and the 431 never showed."""
    c = Connection(server.base_url)
    try:
        c.send(
            b"POST /v2/Services HTTP/1.1\r\nHost: t\r\nAuthorization: " + auth(server).encode()
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
        )  # fmt: skip
        time.sleep(pause)  # (0.2: the trailers come in reads of their own)
        c.send(b"".join(b"X-T%d: %s\r\n" % (i, b"a" * 1000) for i in range(70)))
        status, _, body = c.response()
        assert (status, b"60200" in body) == (431, True), body
    finally:
        c.close()


def test_one_header_line_is_refused_before_it_grows_past_the_limit(server: Server) -> None:
    """httptools holds a header line until it ends: a 40 MB line was read whole (80 MB of
    the server's memory) before the 64 KiB limit saw it."""
    c = Connection(server.base_url)
    try:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
        time.sleep(0.2)  # the head has begun: what follows is counted as it comes
        sent = 0
        try:
            while sent < 8_000_000:
                c.send(b"a" * 65536)
                sent += 65536
        except OSError:  # refused and closed while this was still sending
            pass
        status, _, body = c.response()
        assert (status, b"60200" in body) == (431, True), body
        assert sent < 4_000_000, sent
    finally:
        c.close()


def test_a_malformed_request_after_an_early_answer_is_answered(server: Server) -> None:
    """A request answered before its body came (401) still had its body to come: the
    malformed request after that body was taken for part of it and closed without a word."""
    c = Connection(server.base_url)
    try:
        c.send(b"POST /v2/Services HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n")
        assert c.response()[0] == 401
        c.send(b"abcde" + b"GET /x HTTP/1.1\r\nBad Header: y\r\n\r\n")
        status, _, body = c.response()
        assert (status, b"60200" in body) == (400, True), body
    finally:
        c.close()


def test_host_headers_rfc_9112_refuses(server: Server) -> None:
    """RFC 9112 3.2: an HTTP/1.1 request without Host, any request with two, or one whose
    Host is no host and port, is answered 400 (passkeyd builds `url` and `next_page_url`
    from it). The request is not carried out: a service it would create is never made."""
    service = (
        b"POST /v2/Services HTTP/1.1\r\n%sAuthorization: "
        + auth(server).encode()
        + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 21\r\n\r\n"
        b"FriendlyName=HostTest"
    )
    for hosts, message in (
        (b"", "must have a Host header"),
        (b"Host: a\r\nHost: b\r\n", "two Host headers"),
        (b"Host: evil.example/x?\r\n", "not a host and port"),
        (b"Host: a b\r\n", "not a host and port"),
    ):
        c = Connection(server.base_url)
        try:
            c.send(service % hosts)
            status, headers, body = c.response()
            assert _rest(c) == b""  # and the connection is closed
        finally:
            c.close()
        assert status == 400, hosts
        assert headers["connection"] == "close"
        error = json.loads(body)
        assert (error["status"], error["code"]) == (400, 60200)
        assert message in error["message"]
    services = get_json(server, "/v2/Services")["services"]
    assert "HostTest" not in [s["friendly_name"] for s in services]


def test_hosts_the_rfc_allows_are_served(server: Server) -> None:
    """HTTP/1.0 may leave Host out; an IPv6 literal, a port, an empty port and an empty
    Host (a target with no authority) are hosts."""
    for request in (
        b"GET /healthz HTTP/1.0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: passkeyd.internal-1.example.com\r\n\r\n",
    ):
        c = Connection(server.base_url)
        try:
            c.send(request)
            assert c.response()[0] == 200, request
        finally:
            c.close()


def test_a_transfer_coding_other_than_chunked_is_refused_501(server: Server) -> None:
    """RFC 9112 6.1: passkeyd decodes no gzip; `gzip, chunked` used to be read as if plain,
    the compressed bytes taken for the body."""
    for coding in (b"gzip, chunked", b"deflate,chunked", b"chunked, gzip"):
        c = Connection(server.base_url)
        try:
            c.send(
                b"POST /v2/Services HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
                + coding
                + b"\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"
            )
            status, _, body = c.response()
        finally:
            c.close()
        if coding == b"chunked, gzip":
            assert status == 400, coding  # chunked not last: the parser refuses the framing
        else:
            assert status == 501, coding
            assert json.loads(body)["code"] == 60200


def test_a_refused_host_pipelined_behind_a_request_is_answered_after_it(server: Server) -> None:
    c = Connection(server.base_url)
    try:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
        assert [c.response()[0] for _ in range(2)] == [200, 400]
        assert _rest(c) == b""
    finally:
        c.close()


def get_json(server: Server, path: str) -> dict:  # type: ignore[type-arg]
    c = Connection(server.base_url)
    try:
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {auth(server)}\r\n\r\n".encode())
        status, _, body = c.response()
    finally:
        c.close()
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


def _services_url(server: Server, head: bytes) -> str:
    c = Connection(server.base_url)
    try:
        c.send(head + f"Authorization: {auth(server)}\r\n\r\n".encode())
        status, _, body = c.response()
    finally:
        c.close()
    assert status == 200, body
    return str(json.loads(body)["meta"]["url"])


def test_the_host_in_urls_is_the_one_the_request_named(server: Server) -> None:
    """`url` and `next_page_url` are built from the request's host: without the blanks
    around a Host value (httptools kept a trailing one: "http://example.com /v2/..."), and
    from an absolute-form target's authority, which RFC 9112 3.2.2 has win over Host."""
    assert _services_url(
        server, b"GET /v2/Services?PageSize=1 HTTP/1.1\r\nHost: example.com \t\r\n"
    ).startswith("http://example.com/v2/Services?")
    assert _services_url(
        server,
        b"GET http://proxied.example:8443/v2/Services?PageSize=1 HTTP/1.1\r\n"
        b"Host: other.example\r\n",
    ).startswith("http://proxied.example:8443/v2/Services?")
    c = Connection(server.base_url)
    try:
        c.send(b"GET http://user@proxied.example/healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = c.response()
    finally:
        c.close()
    assert status == 400 and "not a host and port" in json.loads(body)["message"]


def test_a_refusal_pipelined_behind_requests_is_answered_after_a_half_close(
    server: Server,
) -> None:
    """The refusal waits for the answers before it; a half-close meanwhile made the last of
    those close the connection, and the refusal was never sent."""
    c = Connection(server.base_url)
    try:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" * 2 + b"GET /healthz HTTP/1.1\r\n\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        assert [c.response()[0] for _ in range(3)] == [200, 200, 400]
        assert _rest(c) == b""
    finally:
        c.close()
