"""A token rotated with the CLI stays rotated when the server restarts with the token it was
first given (PASSKEYD_AUTH_TOKEN, as the quickstart sets it): a restart used to put the old
token back, on every replica, silently."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx2

from tests.e2e.processes import Passkeyd, passkeyd_cli


def status(base_url: str, account_sid: str, token: str) -> int:
    with httpx2.Client(trust_env=False, timeout=5) as client:
        return client.get(f"{base_url}/v2/Services", auth=(account_sid, token)).status_code


def test_a_restart_does_not_undo_a_token_rotation(tmp_path: Path) -> None:
    server = Passkeyd(
        database_url=f"sqlite:///{tmp_path}/rotation.db",
        account_sid="AC" + secrets.token_hex(16),
        auth_token=secrets.token_hex(16),
        log_path=tmp_path / "passkeyd.log",
    )
    server.start()
    try:
        rotated = passkeyd_cli(
            server.database_url, "accounts", "rotate-token", "--account", server.account_sid
        )["auth_token"]
        assert status(server.base_url, server.account_sid, server.auth_token) == 401
        server.stop()
        server.start()  # the same environment: PASSKEYD_AUTH_TOKEN is the first token
        assert status(server.base_url, server.account_sid, server.auth_token) == 401
        assert status(server.base_url, server.account_sid, rotated) == 200
        assert "exists with another auth token than PASSKEYD_AUTH_TOKEN" in server.output()
    finally:
        server.stop()
