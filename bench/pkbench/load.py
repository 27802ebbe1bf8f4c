"""The closed-loop load generator: `concurrency` connections, each running whole flows back
to back, bounded by a flow count and by seconds.

Timeline of one cell: connect, warm up, then a measured window that ends after `seconds` or
once `max_flows` flows have completed in it, whichever comes first. A flow counts when it
completes inside the window with every request answered as expected; server and client CPU
are sampled at the window's edges, so CPU per flow covers exactly the counted flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .drivers import User
from .http import Connection, connect
from .procs import HOST, Server, cpu_seconds, machine_busy_seconds, self_cpu_seconds

Flow = Callable[[Connection, User], Awaitable[None]]
ERROR_PAUSE = 0.01  # after a failed flow, so an error storm cannot spin a core
GRACE = 10.0  # seconds the in-flight flows get to finish after the window closes


@dataclass(frozen=True)
class Budget:
    warmup: float
    seconds: float
    max_flows: int


@dataclass
class ProcessCpu:
    pid: int
    role: str
    cpu_seconds: float
    cores: float


@dataclass
class CellResult:
    system: str
    flow: str
    workers: int
    concurrency: int
    flows: int
    seconds: float
    flows_per_s: float
    p50_ms: float
    p99_ms: float
    req_p50_ms: float
    req_p99_ms: float
    errors: int
    error_samples: list[str]
    server_cpu_s: float
    server_us_per_flow: float
    server_cores: float
    processes: list[ProcessCpu]
    client_cpu_s: float
    client_us_per_flow: float
    client_cores: float
    other_cores: float = 0.0  # CPU the rest of the machine used meanwhile: noise
    # A database server's own processes (PostgreSQL), beside passkeyd's: part of the cost.
    db_cpu_s: float = 0.0
    db_us_per_flow: float = 0.0
    db_cores: float = 0.0
    unfinished: int = 0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def worker_split(self) -> list[float]:
        """Cores used by each worker process during the window, busiest first."""
        return sorted((p.cores for p in self.processes if p.role == "worker"), reverse=True)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Window:
    def __init__(self, max_flows: int) -> None:
        self.measuring = False
        self.stopped = False
        self.latencies: list[float] = []
        self.errors = 0
        self.error_kinds: Counter[str] = Counter()
        self.full = asyncio.Event()
        self._max = max_flows

    def done(self, seconds: float) -> None:
        if self.measuring:
            self.latencies.append(seconds)
            if len(self.latencies) >= self._max:
                self.full.set()

    def failed(self, exc: BaseException) -> None:
        self.error_kinds[f"{type(exc).__name__}: {exc}"[:300]] += 1
        if self.measuring:
            self.errors += 1


async def run_cell(
    *,
    system: str,
    flow_name: str,
    flow: Flow,
    users: Sequence[Sequence[User]],
    port: int,
    workers: int,
    budget: Budget,
    server: Server | None,
    database_pids: Callable[[], Sequence[int]] | None = None,
) -> CellResult:
    """Run one cell: one connection per pool in `users` (so concurrency = len(users)); each
    connection takes the users of its own pool in turn, so no user is ever in two flows at
    once (their signature counters grow without races)."""
    window = Window(budget.max_flows)
    conns = [await connect(HOST, port) for _ in users]

    async def virtual_user(i: int) -> None:
        conn, pool = conns[i], users[i]
        turn = 0
        while not window.stopped:
            user = pool[turn % len(pool)]
            turn += 1
            started = time.perf_counter()
            try:
                await flow(conn, user)
            except Exception as exc:  # counted, reported, and the loop goes on
                window.failed(exc)
                if conn.closed and not window.stopped:
                    conn = conns[i] = await connect(HOST, port)
                    conn.record = window.measuring
                await asyncio.sleep(ERROR_PAUSE)
                continue
            window.done(time.perf_counter() - started)

    tasks = [asyncio.create_task(virtual_user(i)) for i in range(len(users))]
    await asyncio.sleep(budget.warmup)
    roles = server.roles() if server else {}
    before = server.sample() if server else None
    db_pids = database_pids() if database_pids else ()  # after the warm-up: pools are open
    db_before = _cpu_of(db_pids)
    client_before = self_cpu_seconds()
    busy_before = machine_busy_seconds()
    t0 = time.perf_counter()
    window.measuring = True
    for conn in conns:
        conn.record = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(window.full.wait(), budget.seconds)
    window.measuring = False
    t1 = time.perf_counter()
    after = server.sample() if server else None
    db_after = _cpu_of(db_pids)
    client_cpu = self_cpu_seconds() - client_before
    busy = machine_busy_seconds() - busy_before
    window.stopped = True
    _, pending = await asyncio.wait(tasks, timeout=GRACE)
    for task in pending:
        task.cancel()
    for conn in conns:
        conn.close()

    elapsed = t1 - t0
    flows = len(window.latencies)
    requests = [s for c in conns for s in c.request_seconds]
    processes = []
    server_cpu = 0.0
    if before is not None and after is not None:
        for pid, cpu in after.cpu.items():
            delta = cpu - before.cpu.get(pid, cpu)
            server_cpu += delta
            processes.append(ProcessCpu(pid, roles.get(pid, "worker"), delta, delta / elapsed))
    db_cpu = sum(cpu - db_before[pid] for pid, cpu in db_after.items() if pid in db_before)
    per_flow = 1e6 / flows if flows else float("nan")
    return CellResult(
        system=system,
        flow=flow_name,
        workers=workers,
        concurrency=len(users),
        flows=flows,
        seconds=elapsed,
        flows_per_s=flows / elapsed if elapsed else 0.0,
        p50_ms=percentile(window.latencies, 0.50) * 1e3,
        p99_ms=percentile(window.latencies, 0.99) * 1e3,
        req_p50_ms=percentile(requests, 0.50) * 1e3,
        req_p99_ms=percentile(requests, 0.99) * 1e3,
        errors=window.errors,
        error_samples=[f"{n}x {kind}" for kind, n in window.error_kinds.most_common(5)],
        server_cpu_s=server_cpu,
        server_us_per_flow=server_cpu * per_flow,
        server_cores=server_cpu / elapsed if elapsed else 0.0,
        processes=processes,
        client_cpu_s=client_cpu,
        client_us_per_flow=client_cpu * per_flow,
        client_cores=client_cpu / elapsed if elapsed else 0.0,
        other_cores=(
            max(0.0, busy - server_cpu - client_cpu - db_cpu) / elapsed if elapsed else 0.0
        ),
        unfinished=len(pending),
        db_cpu_s=db_cpu,
        db_us_per_flow=db_cpu * per_flow,
        db_cores=db_cpu / elapsed if elapsed else 0.0,
    )


def _cpu_of(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds of each process still there and readable."""
    out = {}
    for pid in pids:
        seconds = cpu_seconds(pid)
        if seconds is not None:
            out[pid] = seconds
    return out


async def prepare_users(
    port: int,
    names: Sequence[str],
    enroll: Callable[[Connection, str], Awaitable[User]],
    parallel: int = 8,
) -> list[User]:
    """Enroll users (outside any timed loop), a few connections in parallel."""
    conns = [await connect(HOST, port) for _ in range(min(parallel, len(names)) or 1)]
    out: list[User | None] = [None] * len(names)

    async def worker(k: int) -> None:
        for i in range(k, len(names), len(conns)):
            out[i] = await enroll(conns[k], names[i])

    await asyncio.gather(*(worker(k) for k in range(len(conns))))
    for conn in conns:
        conn.close()
    return [u for u in out if u is not None]
