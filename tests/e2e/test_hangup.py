"""SIGHUP (logrotate's `postrotate kill -HUP`, a closed terminal) killed a single-process
`passkeyd serve` at once, by the signal's default action: requests in flight were cut off
and audit records not yet written were lost. It is now ignored, with a warning."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

import httpx2

from tests.e2e.processes import Passkeyd


def test_sighup_leaves_a_serving_process_serving(tmp_path: Path) -> None:
    server = Passkeyd(
        database_url=f"sqlite:///{tmp_path}/hup.db",
        account_sid="AC" + secrets.token_hex(16),
        auth_token=secrets.token_hex(16),
        log_path=tmp_path / "passkeyd.log",
    )
    server.start()
    try:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "SIGHUP ignored" not in server.output() and time.monotonic() < deadline:
            assert server.process.poll() is None, server.output()[-2000:]
            time.sleep(0.05)
        assert "SIGHUP ignored" in server.output()
        with httpx2.Client(trust_env=False, timeout=5) as client:
            r = client.post(
                f"{server.base_url}/v2/Services",
                data={"FriendlyName": "after the hangup"},
                auth=(server.account_sid, server.auth_token),
            )
        assert r.status_code == 201, r.text
        assert server.process.poll() is None
    finally:
        server.stop()
