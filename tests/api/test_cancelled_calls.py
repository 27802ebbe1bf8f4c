"""A request cancelled while its call runs in a store thread (PostgreSQL), as a shutdown past
its grace period cancels them: uvicorn answered it 500, and the call, waiting for a lock,
committed afterwards. The answer now waits for how the call ended."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from passkeyd.api.edge import _run
from passkeyd.storage import StorageUnavailable


@dataclass
class ThreadedStore:
    runs_in_threads = True
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))

    def submit(self, call: Any) -> Any:
        return self.executor.submit(call)


@dataclass
class FakeDomain:
    store: ThreadedStore


def test_a_call_running_when_its_request_is_cancelled_is_answered_as_it_ended():
    domain = FakeDomain(ThreadedStore())
    committed = threading.Event()

    def slow_write() -> str:
        time.sleep(0.3)  # a statement waiting for a lock
        committed.set()
        return "approved"

    async def main() -> Any:
        task = asyncio.ensure_future(_run(domain, slow_write))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        task.cancel()
        return await task

    assert asyncio.run(main()) == "approved"  # not CancelledError: uvicorn's 500
    assert committed.is_set()


def test_a_call_not_started_when_its_request_is_cancelled_never_runs():
    domain = FakeDomain(ThreadedStore())
    started = threading.Event()
    ran: list[str] = []

    def busy() -> None:
        started.set()
        time.sleep(0.3)

    async def main() -> None:
        blocking = asyncio.ensure_future(_run(domain, busy))  # type: ignore[arg-type]
        while not started.is_set():
            await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(_run(domain, lambda: ran.append("x")))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        queued.cancel()
        with pytest.raises(StorageUnavailable, match="shutting down"):
            await queued
        await blocking

    asyncio.run(main())
    time.sleep(0.1)
    assert ran == []
