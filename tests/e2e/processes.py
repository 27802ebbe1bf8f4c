"""Start and stop real `passkeyd serve` processes on loopback, bounded in time."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 30.0
# Settings that would change how the SDK or passkeyd reach each other (reference §g).
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


def passkeyd_cli(database_url: str, *args: str, expect_json: bool = True) -> Any:
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
    return json.loads(done.stdout) if expect_json else done.stdout


def healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    try:
        with opener.open(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Passkeyd:
    """One `passkeyd serve` process (with its workers, when it has any)."""

    database_url: str
    account_sid: str
    auth_token: str
    log_path: Path
    workers: int = 1
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "passkeyd.cli", "serve", "--host", HOST,
            "--port", str(self.port), "--database-url", self.database_url,
            "--workers", str(self.workers),
        ]  # fmt: skip

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no output: {exc}>"

    def start(self) -> Passkeyd:
        """Start and wait (bounded) until GET /healthz answers 200."""
        env = child_env(
            PASSKEYD_ACCOUNT_SID=self.account_sid,
            PASSKEYD_AUTH_TOKEN=self.auth_token,
            **self.extra_env,
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not healthy(self.base_url + "/healthz"):
            if self.process.poll() is not None:
                pytest.fail(
                    f"passkeyd exited with {self.process.returncode} before /healthz answered\n"
                    f"command: {' '.join(self.command)}\noutput:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"passkeyd did not answer GET /healthz within {STARTUP_TIMEOUT:.0f} s\n"
                    f"command: {' '.join(self.command)}\noutput:\n{self.output()}"
                )
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a shutdown."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> int | None:
        """SIGTERM, wait; SIGKILL the group if it does not exit in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):  # reap a multi-worker server's workers
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode
