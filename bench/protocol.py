"""The HTTP protocol's own CPU per request: passkeyd's `OneWriteHttpProtocol` beside
uvicorn's stock httptools protocol, without sockets.

    .venv/bin/python bench/protocol.py [--requests 20000] [--rounds 3] [--profile]

Each round feeds the same keep-alive POST (the headers a twilio SDK sends, a small JSON
body) to one protocol instance on a uvloop loop, with a trivial ASGI app behind uvicorn's
proxy-headers middleware (as `passkeyd serve` has it) and a transport that only counts
writes. What differs between the two lines is what passkeyd's protocol adds to every
request: its head checks (size, Host, Transfer-Encoding), the head timer and the one-write
transport. Rounds alternate between the two; medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import time
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from passkeyd.httpproto import OneWriteHttpProtocol

BODY = b'{"identity": "alice"}'
REQUEST = (
    b"POST /v2/Services/VA00000000000000000000000000000000/Passkeys/Challenges HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8000\r\nAuthorization: Basic QUMwOnRva2Vu\r\n"
    b"Content-Type: application/json\r\nAccept: application/json\r\n"
    b"User-Agent: twilio-python/9.13.0 (Linux x86_64) Python/3.11.7\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
) + BODY
PROTOCOLS: dict[str, Any] = {"uvicorn": HttpToolsProtocol, "passkeyd": OneWriteHttpProtocol}


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    headers = [(b"content-length", b"2"), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


class CountingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def serve(protocol: Any, requests: int) -> float:
    """CPU seconds for `requests` requests on one connection."""
    config = Config(app=app, http=protocol, access_log=False, log_level="warning")
    config.load()
    instance = protocol(config=config, server_state=ServerState(), app_state={})
    transport = CountingTransport()
    instance.connection_made(transport)
    started = time.process_time()
    for _ in range(requests):
        instance.data_received(REQUEST)
        for _ in range(4):  # the app's task runs and answers
            await asyncio.sleep(0)
    spent = time.process_time() - started
    if transport.writes < requests:
        raise SystemExit(f"{protocol.__name__}: {transport.writes} answers to {requests}")
    instance.connection_lost(None)
    return spent


async def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile passkeyd's protocol")
    args = parser.parse_args()
    for protocol in PROTOCOLS.values():
        await serve(protocol, 2000)  # warm-up
    us: dict[str, list[float]] = {name: [] for name in PROTOCOLS}
    for _ in range(args.rounds):
        for name, protocol in PROTOCOLS.items():
            us[name].append(await serve(protocol, args.requests) / args.requests * 1e6)
    for name, figures in us.items():
        rounds = ", ".join(f"{x:.1f}" for x in figures)
        print(f"{name:9} {statistics.median(figures):6.1f} us/request (rounds: {rounds})")
    extra = statistics.median(us["passkeyd"]) - statistics.median(us["uvicorn"])
    print(f"passkeyd's protocol adds {extra:.1f} us per request")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        await serve(OneWriteHttpProtocol, args.requests)
        profiler.disable()
        pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    uvloop.run(main())
