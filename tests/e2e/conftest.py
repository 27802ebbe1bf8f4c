"""A real passkeyd process on loopback, started with the `passkeyd serve` command line.

`server` starts one process per test module on a free 127.0.0.1 port with its own SQLite file,
waits (at most 15 s) for `GET /healthz` to answer 200, and stops it (SIGTERM, then SIGKILL)
afterwards. `Server.cli()` runs the other `passkeyd` subcommands against the same database,
e.g. to create API keys and second accounts.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.processes import Passkeyd, passkeyd_cli


@dataclass(frozen=True)
class Server:
    base_url: str
    account_sid: str
    auth_token: str
    database_url: str

    def cli(self, *args: str) -> Any:
        return passkeyd_cli(self.database_url, *args)

    def create_api_key(self, account_sid: str | None = None) -> dict[str, str]:
        """`passkeyd keys create`: a dict with at least "sid" (SK...) and "secret"."""
        account = account_sid or self.account_sid
        key: dict[str, str] = self.cli("keys", "create", "--account", account)
        return key

    def create_account(self, name: str = "other") -> dict[str, str]:
        """`passkeyd accounts create`: a dict with at least "sid" (AC...) and "auth_token"."""
        account: dict[str, str] = self.cli("accounts", "create", "--name", name)
        return account


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("passkeyd-e2e")
    process = Passkeyd(
        database_url=f"sqlite:///{tmp}/e2e.db",
        account_sid="AC" + secrets.token_hex(16),
        auth_token=secrets.token_hex(16),
        log_path=tmp / "passkeyd.log",
    )
    try:
        process.start()
        yield Server(
            process.base_url, process.account_sid, process.auth_token, process.database_url
        )
    finally:
        process.stop()
