"""The benchmark's sections: each starts its servers, runs its cells, and stops them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from math import nan
from pathlib import Path
from statistics import median
from typing import Any

from . import systems
from .db import Database, SeedResult
from .drivers import Driver, EchoDriver, PasskeydDriver, PeerDriver, User
from .http import connect
from .load import Budget, CellResult, run_cell
from .load import prepare_users as enroll_users
from .procs import HOST, Server

FLOWS = ("auth", "reg")


@dataclass
class Options:
    budget: Budget
    workers: Sequence[int]
    concurrency: Sequence[int]
    scale_counts: Sequence[int]
    scale_workers: int
    scale_concurrency: int
    database: Database
    log_dir: Path
    src: Path | None
    log: Callable[[str], None] = print
    passkeyd_env: dict[str, str] = field(default_factory=dict)
    users: int = 1024  # enrolled per server, shared out among the connections of each cell
    scale_rounds: int = 3  # turns each scale cell takes (`scale_section`)


@dataclass
class ServerFacts:
    """What one server start showed: start-up time and memory per process."""

    system: str
    workers: int
    startup_s: float
    rss_idle_mb: dict[str, float] = field(default_factory=dict)
    rss_loaded_mb: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass
class Results:
    cells: list[CellResult] = field(default_factory=list)
    servers: list[ServerFacts] = field(default_factory=list)
    scale: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        cells = []
        for c in self.cells:
            d = asdict(c)
            d["worker_split"] = c.worker_split
            cells.append(d)
        return {
            "cells": cells,
            "servers": [asdict(s) for s in self.servers],
            "scale": self.scale,
            "skipped": self.skipped,
        }


def _rss_by_role(server: Server) -> dict[str, float]:
    roles = server.roles()
    out: dict[str, float] = {}
    counts: dict[str, int] = {}
    for pid, rss in sorted(server.rss().items()):
        role = roles.get(pid, "worker")
        counts[role] = counts.get(role, 0) + 1
        out[f"{role}{counts[role]}"] = round(rss / 2**20, 1)
    return out


def _start(server: Server, system: str, workers: int, results: Results, opts: Options) -> None:
    startup = server.start()
    if workers > 1:
        server.wait_workers(workers)
    results.servers.append(ServerFacts(system, workers, startup, _rss_by_role(server)))
    opts.log(f"  {server.name}: healthy after {startup * 1e3:.0f} ms")


async def _cells(
    system: str,
    driver: Driver,
    server: Server,
    workers: int,
    users: list[User],
    opts: Options,
    results: Results,
    flows: Sequence[str] = FLOWS,
    database: Database | None = None,
) -> None:
    for flow_name in flows:
        flow = driver.authenticate if flow_name == "auth" else driver.register
        for c in opts.concurrency:
            result = await run_cell(
                system=system,
                flow_name=flow_name,
                flow=flow,
                users=pools(users, c),
                port=server.port,
                workers=workers,
                budget=opts.budget,
                server=server,
                database_pids=database.server_pids if database is not None else None,
            )
            results.cells.append(result)
            opts.log("  " + one_line(result))
    results.servers[-1].rss_loaded_mb = _rss_by_role(server)


def one_line(r: CellResult) -> str:
    split = "/".join(f"{x:.2f}" for x in r.worker_split)
    return (
        f"{r.system} {r.flow} w{r.workers} c{r.concurrency}: {r.flows_per_s:,.0f}/s"
        f" p50 {r.p50_ms:.1f} p99 {r.p99_ms:.1f} ms, server {r.server_us_per_flow:.0f} us/flow"
        f" ({r.server_cores:.2f} cores, workers {split}),"
        + (f" database {r.db_us_per_flow:.0f} us/flow," if r.db_cpu_s else "")
        + f" client {r.client_us_per_flow:.0f} us/flow, errors {r.errors}"
    )


async def _passkeyd_server(
    workers: int, tag: str, opts: Options, database: Database | None = None
) -> tuple[Server, systems.Credentials, str]:
    database = database or opts.database
    creds = systems.Credentials.random()
    url = database.fresh(tag)
    server = systems.passkeyd_server(
        workers=workers,
        database_url=url,
        credentials=creds,
        log_dir=opts.log_dir,
        src=opts.src,
        extra_env=opts.passkeyd_env,
    )
    env = dict(server.env)
    database.before_serve(url, env)
    return server, creds, url


async def _passkeyd_driver(server: Server, creds: systems.Credentials) -> PasskeydDriver:
    driver = PasskeydDriver(f"{HOST}:{server.port}", creds.account_sid, creds.auth_token)
    conn = await connect(HOST, server.port)
    await driver.prepare(conn)
    conn.close()
    return driver


def pools(users: Sequence[User], connections: int) -> list[list[User]]:
    """Every user, dealt out to the connections: user i goes to connection i mod c."""
    return [list(users[i::connections]) for i in range(connections)]


def user_names(count: int) -> list[str]:
    return [f"bench-user-{i:04d}" for i in range(count)]


async def passkeyd_section(
    opts: Options, results: Results, database: Database | None = None, system: str = "passkeyd"
) -> None:
    """passkeyd's cells on `database` (by default the run's own, `--database-url`)."""
    database = database or opts.database
    for workers in opts.workers:
        server, creds, _ = await _passkeyd_server(workers, f"{system}-w{workers}", opts, database)
        _start(server, system, workers, results, opts)
        try:
            driver = await _passkeyd_driver(server, creds)
            users = await enroll_users(
                server.port, user_names(max(opts.users, max(opts.concurrency))), driver.enroll
            )
            await _cells(system, driver, server, workers, users, opts, results, database=database)
        finally:
            server.stop()


async def fastapi_section(opts: Options, results: Results) -> None:
    if systems.fastapi_version() is None:
        results.skipped.append("fastapi peer: fastapi is not installed (see bench/README.md)")
        return
    for workers in opts.workers:
        db_path = opts.log_dir / f"fastapi-w{workers}.db"
        server = systems.fastapi_server(workers=workers, db_path=db_path, log_dir=opts.log_dir)
        _start(server, "fastapi", workers, results, opts)
        try:
            driver = PeerDriver(f"{HOST}:{server.port}", "fastapi")
            users = await enroll_users(
                server.port, user_names(max(opts.users, max(opts.concurrency))), driver.enroll
            )
            await _cells("fastapi", driver, server, workers, users, opts, results)
        finally:
            server.stop()


async def simplewebauthn_section(opts: Options, results: Results, node: str | None) -> None:
    if node is None or systems.simplewebauthn_version() is None:
        results.skipped.append(
            "simplewebauthn peer: node or bench/peers/simplewebauthn/node_modules missing"
        )
        return
    server = systems.node_server(log_dir=opts.log_dir, node=node)
    _start(server, "simplewebauthn", 1, results, opts)
    try:
        driver = PeerDriver(f"{HOST}:{server.port}", "simplewebauthn")
        users = await enroll_users(
            server.port, user_names(max(opts.users, max(opts.concurrency))), driver.enroll
        )
        await _cells("simplewebauthn", driver, server, 1, users, opts, results)
    finally:
        server.stop()


async def http_floor_section(opts: Options, results: Results) -> None:
    for workers in opts.workers:
        server = systems.bare_server(workers=workers, log_dir=opts.log_dir)
        _start(server, "bare-starlette", workers, results, opts)
        try:
            driver = EchoDriver(f"{HOST}:{server.port}")
            c = max(opts.concurrency)
            result = await run_cell(
                system="bare-starlette",
                flow_name="request",
                flow=driver.echo,
                users=[[User(f"u{i}")] for i in range(c)],
                port=server.port,
                workers=workers,
                budget=opts.budget,
                server=server,
            )
            results.cells.append(result)
            opts.log("  " + one_line(result))
        finally:
            server.stop()


@dataclass
class _ScaleDatabase:
    """One scale cell's database: seeded with `count` factors besides its users' own."""

    count: int
    url: str
    creds: systems.Credentials
    driver: PasskeydDriver
    users: list[User]
    seeded: SeedResult


async def scale_section(opts: Options, results: Results) -> None:
    """The same authentication cell over 1k and 1M stored factors (seeded straight into the
    database while passkeyd is stopped; the virtual users' own passkeys are real).

    Both databases are made first; then the cells take turns, `scale_rounds` times, in the
    order small, large, then large, small, and so on: a host that speeds up or slows down
    during the run moves both sides of a round alike. Each count's figures are the median
    of its rounds, and the ratio is the median of the rounds' ratios."""
    workers, c = opts.scale_workers, opts.scale_concurrency
    prepared: list[_ScaleDatabase] = []
    for count in opts.scale_counts:
        server, creds, url = await _passkeyd_server(workers, f"scale-{count}", opts)
        server.start()
        try:
            driver = await _passkeyd_driver(server, creds)
            users = await enroll_users(server.port, user_names(max(opts.users, c)), driver.enroll)
        finally:
            server.stop()
        opts.log(f"  seeding {count:,} entities + factors ...")
        seeded = opts.database.seed(url, count)
        opts.log(
            f"  seeded {seeded.rows:,} in {seeded.seconds:.1f} s"
            f" ({seeded.size_bytes / 2**20:,.0f} MiB)"
        )
        prepared.append(_ScaleDatabase(count, url, creds, driver, users, seeded))
    runs: dict[int, list[CellResult]] = {count: [] for count in opts.scale_counts}
    for round_ in range(opts.scale_rounds):
        for db in prepared if round_ % 2 == 0 else prepared[::-1]:
            count, driver = db.count, db.driver
            server = systems.passkeyd_server(
                workers=workers,
                database_url=db.url,
                credentials=db.creds,
                log_dir=opts.log_dir,
                src=opts.src,
                extra_env=opts.passkeyd_env,
            )
            _start(server, f"passkeyd ({count:,} factors)", workers, results, opts)
            try:
                driver.use_service(driver.service_sid)
                result = await run_cell(
                    system=f"passkeyd {count:,} factors",
                    flow_name="auth",
                    flow=driver.authenticate,
                    users=pools(db.users, c),
                    port=server.port,
                    workers=workers,
                    budget=opts.budget,
                    server=server,
                    database_pids=opts.database.server_pids,
                )
                result.extra = {
                    "stored_factors": count,
                    "seed_seconds": db.seeded.seconds,
                    "round": round_ + 1,
                }
                results.cells.append(result)
                runs[count].append(result)
                opts.log(f"  round {round_ + 1}: " + one_line(result))
            finally:
                server.stop()
    smallest = runs[opts.scale_counts[0]]
    for db in prepared:
        cells = runs[db.count]
        results.scale.append(
            {
                "factors": db.count + len(db.users),
                "seeded": db.count,
                "seed_seconds": db.seeded.seconds,
                "db_bytes": db.seeded.size_bytes,
                "rounds": len(cells),
                "flows_per_s": median(r.flows_per_s for r in cells),
                "p99_ms": median(r.p99_ms for r in cells),
                "server_us_per_flow": median(r.server_us_per_flow for r in cells),
                "flows_per_s_by_round": [r.flows_per_s for r in cells],
                # this count's throughput over the smallest count's, round by round
                "ratio_by_round": [
                    r.flows_per_s / s.flows_per_s if s.flows_per_s else nan
                    for r, s in zip(cells, smallest, strict=True)
                ],
            }
        )


def node_binary() -> str | None:
    import shutil

    return shutil.which("node")


def run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coro)
    return uvloop.run(coro)
