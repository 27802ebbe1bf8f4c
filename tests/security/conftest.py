"""Shared by the security tests: an isolated app per test, Twilio error-body checks, and a
record of the figures each test measured (printed as it goes and again in the summary)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from passkeyd.api import create_app
from passkeyd.domain import Domain
from passkeyd.sealing import SecretBox
from passkeyd.settings import Settings
from passkeyd.storage import SQLiteStore
from tests.conftest import Api, FakeClock

from .support import FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("security figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def _no_rate_limits() -> dict[str, Any]:
    """Rate limits off where this Domain has them (the fuzzers would only meet 429s)."""
    names = {f.name for f in dataclasses.fields(Domain)}
    return {"rate_limits": {}} if "rate_limits" in names else {}


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Nothing leaves this machine: no DNS (host names fail to resolve as an offline
    resolver would; address literals and the real function's argument checks behave as
    usual), and a connection to anything but loopback is refused and recorded."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    refused: list[Any] = []

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> Any:  # fmt: skip
        return real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0])
            if not (host.startswith("127.") or host in ("::1", "localhost")):
                refused.append(address)
                raise ConnectionRefusedError(f"security tests: no traffic to {host}")
        real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return refused


@dataclasses.dataclass
class Server:
    """One app on one SQLite file, and a way to make accounts on it."""

    client: TestClient
    domain: Domain
    db_path: Path

    def account(self, name: str) -> Api:
        account, token = self.domain.accounts.create_account(name)
        return Api(self.client, self.db_path, account.sid, (account.sid, token))


@contextlib.contextmanager
def running(tmp_path: Path, *, rate_limits: bool) -> Iterator[Server]:
    """The real ASGI app on a fresh SQLite file; tokens sealed so webhooks are signed and
    delivered; webhooks allowed on loopback (and only there: see `loopback_only`)."""
    db_path = tmp_path / "security.db"
    store = SQLiteStore(str(db_path))
    store.migrate()
    domain = Domain(
        store,
        FakeClock(),
        box=SecretBox(os.urandom(32)),
        allow_private_webhooks=True,
        **({} if rate_limits else _no_rate_limits()),
    )
    app = create_app(domain, Settings(webhook_interval_seconds=0.02))
    with TestClient(app, base_url="http://testserver") as client:
        yield Server(client, domain, db_path)


@pytest.fixture
def server(tmp_path: Path, loopback_only: list[Any]) -> Iterator[Server]:
    """For the fuzzers: rate limits off (they would only meet 429s)."""
    with running(tmp_path, rate_limits=False) as it:
        yield it


@pytest.fixture
def limited_server(tmp_path: Path, loopback_only: list[Any]) -> Iterator[Server]:
    """As deployed: the default rate limits on."""
    with running(tmp_path, rate_limits=True) as it:
        yield it
