"""passkeyd's own CPU per flow, without sockets or uvicorn: the ASGI app called in-process.

    .venv/bin/python bench/inproc.py [--flow auth|reg] [--flows 4000] [--concurrency 16]
                                     [--profile] [--top 40] [--database-url postgresql://...]

The same flows, software authenticator and requests as bench/run.py (the requests are the
load generator's own pre-rendered bytes, parsed back into ASGI scopes), run as `concurrency`
tasks on one uvloop loop beside the app, on a fresh SQLite file with the app's default
settings (durable, access log on, audit trail on). The client's work (signing, rendering)
is timed apart and subtracted, so `app us/flow` is what the app itself spends: everything
`bench/run.py` counts as server CPU except uvicorn's HTTP parsing and socket I/O.
Repeat runs agree within a few per cent, much closer than a loopback load run on these
shared machines, so this is the tool for judging a change to passkeyd's own code;
`--profile` adds cProfile's top functions (cProfile itself roughly doubles the time).

On PostgreSQL (`--database-url`, a fresh database made beside the one named, dropped after)
the queries run in worker threads, at the same time as the client's signing: `with client`
is then the figure to compare (all of the process's CPU per flow), `app` undercounts, and
`--profile` sees the event loop's thread only (use py-spy for the rest).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from pkbench.db import database_for  # noqa: E402
from pkbench.drivers import PasskeydDriver, User  # noqa: E402
from pkbench.systems import RATE_LIMITS, Credentials  # noqa: E402

Response = tuple[int, bytes]


class ClientClock:
    """CPU seconds the client spends (signing, rendering, parsing answers)."""

    def __init__(self) -> None:
        self.seconds = 0.0


class InProcConnection:
    """`pkbench.http.Connection`'s `send`, answered by calling the ASGI app directly."""

    def __init__(self, app: Any, clock: ClientClock) -> None:
        self.app = app
        self.clock = clock
        self.answered: dict[Any, float] = {}

    async def send(self, raw: bytes) -> Response:
        # The client's work runs between the app's answer and the task's next request, in one
        # step of that task (no await in between), so it is the time since the last answer.
        task = asyncio.current_task()
        now = time.process_time()
        if task in self.answered:
            self.clock.seconds += now - self.answered[task]
        try:
            return await self._call(raw)
        finally:
            self.answered[task] = time.process_time()

    async def _call(self, raw: bytes) -> Response:
        head, _, body = raw.partition(b"\r\n\r\n")
        request_line, *lines = head.split(b"\r\n")
        method, target, _ = request_line.split(b" ", 2)
        path, _, query = target.partition(b"?")
        headers = []
        for line in lines:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method.decode(),
            "scheme": "http",
            "path": path.decode(),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


class Lifespan:
    """The app's lifespan (start-up and shut-down), driven as uvicorn drives it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.ensure_future(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        message = await self.outbox.get()
        if message["type"] != "lifespan.startup.complete":
            raise SystemExit(f"start-up failed: {message}")

    async def stop(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        await self.task


def make_app(db_dir: str, creds: Credentials, database_url: str) -> Any:
    os.environ.update(
        {
            "PASSKEYD_DATABASE_URL": database_url or f"sqlite:///{db_dir}/passkeyd.db",
            "PASSKEYD_ACCOUNT_SID": creds.account_sid,
            "PASSKEYD_AUTH_TOKEN": creds.auth_token,
            "PASSKEYD_LOG_LEVEL": "info",
            "PASSKEYD_DATA_DIR": db_dir,
        }
    )
    os.environ.setdefault("PASSKEYD_RATE_LIMITS", RATE_LIMITS)  # counted, never reached
    import logging

    from passkeyd import cli
    from passkeyd.domain import Domain
    from passkeyd.settings import Settings

    settings = Settings.load()
    store = cli._open(settings, migrate=True)
    box = cli.secret_box(settings)
    Domain(store, box=box).accounts.ensure_account(creds.account_sid, creds.auth_token)
    store.close()
    app = cli.app_factory()
    # Access-log lines are formatted as in production, then dropped instead of written.
    for handler in logging.getLogger().handlers:
        handler.stream = open(os.devnull, "w")  # type: ignore[attr-defined]  # noqa: SIM115
    return app


async def run(args: argparse.Namespace) -> None:
    clock = ClientClock()
    creds = Credentials.random()
    database = database_for(args.database_url)
    with tempfile.TemporaryDirectory(prefix="passkeyd-inproc-") as db_dir:
        url = "" if database.kind == "sqlite" else database.fresh(f"inproc_{os.getpid()}")
        if url:
            database.before_serve(url, dict(os.environ))
        app = make_app(db_dir, creds, url)
        life = Lifespan(app)
        await life.start()
        conn = InProcConnection(app, clock)
        driver = PasskeydDriver("127.0.0.1:8000", creds.account_sid, creds.auth_token)
        await driver.prepare(conn)  # type: ignore[arg-type]
        users: list[User] = []
        for i in range(max(args.users, args.concurrency)):
            users.append(await driver.enroll(conn, f"bench-user-{i:04d}"))  # type: ignore[arg-type]
        flow = driver.authenticate if args.flow == "auth" else driver.register

        async def worker(mine: list[User], count: int) -> None:
            for i in range(count):
                await flow(conn, mine[i % len(mine)])  # type: ignore[arg-type]

        async def batch(total: int) -> None:
            per = total // args.concurrency
            await asyncio.gather(
                *(worker(users[i :: args.concurrency], per) for i in range(args.concurrency))
            )

        await batch(args.concurrency * 20)  # warm-up: caches, page cache, JIT-free steady state
        profiler = cProfile.Profile() if args.profile else None
        rounds = []
        for _ in range(args.rounds):
            clock.seconds = 0.0
            started = time.process_time()
            if profiler:
                profiler.enable()
            await batch(args.flows)
            if profiler:
                profiler.disable()
            total = time.process_time() - started
            flows = args.flows // args.concurrency * args.concurrency
            rounds.append(((total - clock.seconds) / flows * 1e6, total / flows * 1e6))
        # Statements per flow: a count, not a timing, so it is the same on any machine.
        statements: Counter[str] = Counter()
        if args.statements and database.kind == "sqlite":
            db = app.state.domain.store._db
            db.set_trace_callback(lambda sql: statements.update([" ".join(sql.split()[:2])]))
            await batch(args.flows)
            db.set_trace_callback(None)
        await life.stop()
    database.cleanup()
    flows = args.flows // args.concurrency * args.concurrency
    if statements:
        print(
            f"SQL statements per flow: {sum(statements.values()) / flows:.2f} ("
            + ", ".join(f"{k} {v / flows:.2f}" for k, v in statements.most_common())
            + ")"
        )
    app_us = [r[0] for r in rounds]
    print(
        f"{args.flow} c{args.concurrency}: app {statistics.median(app_us):.0f} us/flow"
        f" (min {min(app_us):.0f}; rounds: {', '.join(f'{x:.0f}' for x in app_us)}),"
        f" with client {statistics.median(r[1] for r in rounds):.0f} us/flow"
    )
    if profiler:
        stats = pstats.Stats(profiler).strip_dirs()
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumtime").print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--flow", choices=("auth", "reg"), default="auth")
    parser.add_argument(
        "--database-url",
        default="sqlite",
        help="sqlite (default: a file in a temp dir) or postgresql://host:port/db (a fresh"
        " database is made beside db, and dropped afterwards)",
    )
    parser.add_argument("--flows", type=int, default=3000, help="flows per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--no-statements",
        dest="statements",
        action="store_false",
        help="skip the extra round that counts SQL statements",
    )
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    import uvloop

    uvloop.run(run(args))


if __name__ == "__main__":
    main()
