"""HTTP on the wire from a real `passkeyd serve`: every response whole and in order on a
kept-alive connection (passkeyd sends each response's head and body in one write), HEAD,
204, and `Expect: 100-continue`."""

from __future__ import annotations

import base64
import re
import socket
from urllib.parse import urlsplit

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
