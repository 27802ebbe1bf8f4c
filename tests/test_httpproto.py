"""The one-write transport under uvicorn's protocol: a response's head waits for its body
and both go out in one write; a head with no body after it goes out when it is flushed (at
its response's completion) or before a close; an interim 100 Continue and anything else
pass straight through."""

from __future__ import annotations

import asyncio

from passkeyd.httpproto import _OneWriteTransport
from tests.aio import run


class Recorder(asyncio.Transport):
    """Stands in for the socket transport: records each write the socket would get."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


def test_a_head_and_its_body_go_out_in_one_write() -> None:
    async def main() -> list[bytes]:
        raw = Recorder()
        t = _OneWriteTransport(raw)
        t.write(HEAD)
        assert raw.writes == []
        t.write(b"{}")
        await asyncio.sleep(0)
        return raw.writes

    assert run(main()) == [HEAD + b"{}"]


def test_a_head_alone_waits_for_its_flush_or_a_close() -> None:
    raw, other = Recorder(), Recorder()
    t = _OneWriteTransport(raw)
    t.write(HEAD)  # HEAD request: no body follows
    assert raw.writes == []
    t.flush()  # the response is complete
    u = _OneWriteTransport(other)
    u.write(HEAD)
    u.close()
    assert raw.writes == [HEAD]
    assert other.writes == [HEAD]
    assert other.closed


def test_an_interim_100_continue_goes_out_at_once() -> None:
    raw = Recorder()
    t = _OneWriteTransport(raw)
    t.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the client waits for it to send its body
    assert raw.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_other_writes_pass_straight_through() -> None:
    async def main() -> list[bytes]:
        raw = Recorder()
        t = _OneWriteTransport(raw)
        t.write(b"5\r\nhello\r\n")  # a chunk of a streamed body
        t.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\nx")
        return raw.writes

    assert run(main()) == [
        b"5\r\nhello\r\n",
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\nx",
    ]
