"""A real passkeyd process on loopback, started with the `passkeyd serve` command line.

`server` starts one process per test module on a free 127.0.0.1 port with its own SQLite file,
waits (at most 15 s) for `GET /healthz` to answer 200, and stops it (SIGTERM, then SIGKILL)
afterwards. `Server.cli()` runs the other `passkeyd` subcommands against the same database,
e.g. to create API keys and second accounts.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 30.0
# Settings that would change how the SDK or passkeyd reach each other (see section (g)).
SCRUBBED_ENV = ("TWILIO_EDGE", "TWILIO_REGION")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The test environment without Twilio edge/region and without inherited PASSKEYD_*."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in SCRUBBED_ENV and not key.startswith("PASSKEYD_")
    }
    env.update(extra)
    return env


def passkeyd_cli(database_url: str, *args: str) -> Any:
    """Run `passkeyd <args> --database-url <url>` and return its JSON output."""
    command = [sys.executable, "-m", "passkeyd.cli", *args, "--database-url", database_url]
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        command, capture_output=True, text=True, timeout=CLI_TIMEOUT, env=child_env()
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return json.loads(done.stdout)


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


def _output(log_path: Path) -> str:
    try:
        return log_path.read_text(errors="replace")
    except OSError as exc:
        return f"<no output: {exc}>"


def _healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    try:
        with opener.open(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("passkeyd-e2e")
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    account_sid = "AC" + secrets.token_hex(16)
    auth_token = secrets.token_hex(16)
    database_url = f"sqlite:///{tmp}/e2e.db"
    command = [
        sys.executable,
        "-m",
        "passkeyd.cli",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--database-url",
        database_url,
    ]
    env = child_env(PASSKEYD_ACCOUNT_SID=account_sid, PASSKEYD_AUTH_TOKEN=auth_token)
    log_path = tmp / "passkeyd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _healthy(base_url + "/healthz"):
            if process.poll() is not None:
                pytest.fail(
                    f"passkeyd exited with {process.returncode} before /healthz answered\n"
                    f"command: {' '.join(command)}\noutput:\n{_output(log_path)}"
                )
            if time.monotonic() > deadline:
                _stop(process)
                pytest.fail(
                    f"passkeyd did not answer GET /healthz with 200 within {STARTUP_TIMEOUT:.0f}"
                    f" s\ncommand: {' '.join(command)}\noutput:\n{_output(log_path)}"
                )
            time.sleep(0.05)
        yield Server(base_url, account_sid, auth_token, database_url)
    finally:
        _stop(process)
