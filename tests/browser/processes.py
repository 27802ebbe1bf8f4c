"""Real processes on loopback for the browser tests: passkeyd (`python -m passkeyd.cli serve`)
and the demo (`passkeyd.web.demo.main`), each waited for on its /healthz and stopped
(SIGTERM, then SIGKILL) by whoever started it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment without inherited PASSKEYD_* or Twilio settings, and with
    loopback kept away from any proxy."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PASSKEYD_", "TWILIO_"))
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def get_json(url: str, timeout: float = 2.0) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    with opener.open(url, timeout=timeout) as response:
        return json.load(response)


class Process:
    """A child process with its output in a log file, ready once `health_url` answers 200."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path):
        self.name, self.command, self.log_path = name, command, log_path
        with log_path.open("wb") as log:
            self.popen = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no output: {exc}>"

    def wait_healthy(self, health_url: str) -> Any:
        """The /healthz JSON; raises RuntimeError with the process output if it never comes."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode} before {health_url}"
                    f" answered\ncommand: {' '.join(self.command)}\noutput:\n{self.output()}"
                )
            try:
                return get_json(health_url)
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not answer {health_url} within {STARTUP_TIMEOUT:.0f} s"
                    f"\ncommand: {' '.join(self.command)}\noutput:\n{self.output()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=STOP_TIMEOUT)


def start_passkeyd(
    tmp: Path, account_sid: str, auth_token: str, port: int | None = None
) -> tuple[Process, str, Path]:
    """(process, base URL, SQLite file) of a ready passkeyd (on `port`, or a free one)."""
    port = port or free_port()
    db_path = tmp / "passkeyd.db"
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
        f"sqlite:///{db_path}",
    ]
    env = child_env(PASSKEYD_ACCOUNT_SID=account_sid, PASSKEYD_AUTH_TOKEN=auth_token)
    process = Process("passkeyd", command, env, tmp / "passkeyd.log")
    base_url = f"http://{HOST}:{port}"
    process.wait_healthy(base_url + "/healthz")
    return process, base_url, db_path


def start_demo(
    tmp: Path, passkeyd_url: str, account_sid: str, auth_token: str, *options: str
) -> tuple[Process, str, str]:
    """(process, page URL on localhost, Verify service SID) of a ready demo."""
    port = free_port()
    argv = ["--host", HOST, "--port", str(port), "--passkeyd-url", passkeyd_url, *options]
    command = [
        sys.executable,
        "-c",
        f"from passkeyd.web.demo import main; raise SystemExit(main({argv!r}))",
    ]
    env = child_env(PASSKEYD_ACCOUNT_SID=account_sid, PASSKEYD_AUTH_TOKEN=auth_token)
    process = Process("demo", command, env, tmp / f"demo-{port}.log")
    health = process.wait_healthy(f"http://{HOST}:{port}/healthz")
    # The RP id is localhost: pages must be loaded from that name, not from 127.0.0.1.
    return process, f"http://localhost:{port}", str(health["service_sid"])
