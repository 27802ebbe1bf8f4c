"""The one-write transport under uvicorn's protocol: a response's head waits for its body
and both go out in one write; a head with no body after it goes out at the loop's next
turn; anything else passes straight through."""

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
        t = _OneWriteTransport(raw, asyncio.get_running_loop())
        t.write(HEAD)
        assert raw.writes == []
        t.write(b"{}")
        await asyncio.sleep(0)
        return raw.writes

    assert run(main()) == [HEAD + b"{}"]


def test_a_head_alone_goes_out_at_the_next_turn_and_before_a_close() -> None:
    async def main() -> tuple[list[bytes], list[bytes]]:
        loop = asyncio.get_running_loop()
        raw, other = Recorder(), Recorder()
        t = _OneWriteTransport(raw, loop)
        t.write(HEAD)  # HEAD request: no body follows
        await asyncio.sleep(0)
        u = _OneWriteTransport(other, loop)
        u.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        u.close()
        return raw.writes, other.writes

    writes, closed = run(main())
    assert writes == [HEAD]
    assert closed == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_other_writes_pass_straight_through() -> None:
    async def main() -> list[bytes]:
        raw = Recorder()
        t = _OneWriteTransport(raw, asyncio.get_running_loop())
        t.write(b"5\r\nhello\r\n")  # a chunk of a streamed body
        t.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\nx")
        return raw.writes

    assert run(main()) == [
        b"5\r\nhello\r\n",
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\nx",
    ]
