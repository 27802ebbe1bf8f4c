"""`passkeyd demo` started beside a passkeyd that is still starting, as the README's Demo
section does (`scripts/serve &`, then `passkeyd demo`): it waits for passkeyd to answer."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser.processes import HOST, Process, child_env, free_port, start_passkeyd

ACCOUNT, TOKEN = "AC" + "0" * 31 + "7", "changeme"


def _demo(tmp: Path, passkeyd_port: int, *options: str) -> tuple[Process, int]:
    port = free_port()
    argv = ["--host", HOST, "--port", str(port)]
    argv += ["--passkeyd-url", f"http://{HOST}:{passkeyd_port}", *options]
    command = [
        sys.executable,
        "-c",
        f"from passkeyd.web.demo import main; raise SystemExit(main({argv!r}))",
    ]
    env = child_env(PASSKEYD_ACCOUNT_SID=ACCOUNT, PASSKEYD_AUTH_TOKEN=TOKEN)
    return Process("demo", command, env, tmp / f"demo-{port}.log"), port


def test_the_demo_waits_for_a_passkeyd_still_starting(tmp_path: Path) -> None:
    """It tried once and exited 3 ("passkeyd does not answer"): the README's two commands
    failed every time, as passkeyd takes about a second to listen."""
    passkeyd_port = free_port()
    demo, port = _demo(tmp_path, passkeyd_port, "--wait", "30")
    passkeyd = None
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):  # still waiting, as it should
            demo.popen.wait(timeout=1.5)
        assert demo.popen.poll() is None, demo.output()
        assert "waiting up to 30 s for passkeyd" in demo.output()
        passkeyd, _, _ = start_passkeyd(tmp_path, ACCOUNT, TOKEN, port=passkeyd_port)
        health = demo.wait_healthy(f"http://{HOST}:{port}/healthz")
        assert str(health["service_sid"]).startswith("VA")
    finally:
        demo.stop()
        if passkeyd is not None:
            passkeyd.stop()


def test_the_demo_gives_up_on_a_passkeyd_that_never_answers(tmp_path: Path) -> None:
    demo, _ = _demo(tmp_path, free_port(), "--wait", "0.5")
    try:
        assert demo.popen.wait(timeout=20) == 3
    finally:
        demo.stop()
    assert "passkeyd does not answer at" in demo.output()


def test_the_wait_holds_against_a_passkeyd_that_accepts_and_never_answers(
    tmp_path: Path,
) -> None:
    """Each probe took up to the client's 10 s: `--wait 1` came to 20 s. Now the wait is
    its own length plus one request's timeout (10 s) for the attempt after it."""
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(16)
        demo, _ = _demo(tmp_path, silent.getsockname()[1], "--wait", "1")
        started = time.monotonic()
        try:
            assert demo.popen.wait(timeout=30) == 3
        finally:
            demo.stop()
    assert time.monotonic() - started < 16, demo.output()
    assert "passkeyd does not answer at" in demo.output()
    line = next(x for x in demo.output().splitlines() if "does not answer at" in x)
    assert not line.rstrip().endswith(":"), line  # a reason, not empty


@pytest.mark.parametrize("wait", ["nan", "inf", "-1"])
def test_a_wait_that_is_no_number_of_seconds_is_a_configuration_error(
    tmp_path: Path, wait: str
) -> None:
    demo, _ = _demo(tmp_path, free_port(), "--wait", wait)
    try:
        assert demo.popen.wait(timeout=20) == 3
    finally:
        demo.stop()  # (one that took `inf` would wait for ever)
    assert "--wait must be a number of seconds" in demo.output()


def test_a_demo_that_cannot_listen_says_so_before_it_touches_passkeyd(tmp_path: Path) -> None:
    """It made its Verify service first, then failed to bind: one stray service per try.
    Now the port is tried first (passkeyd, here never answering, is not even waited for)."""
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["--host", HOST, "--port", str(port), "--wait", "30"]
        argv += ["--passkeyd-url", f"http://{HOST}:{free_port()}"]
        code = f"from passkeyd.web.demo import main; raise SystemExit(main({argv!r}))"
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-c", code],
            capture_output=True, text=True, timeout=20,
            env=child_env(PASSKEYD_ACCOUNT_SID=ACCOUNT, PASSKEYD_AUTH_TOKEN=TOKEN),
        )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert f"cannot listen on {HOST}:{port} (--host, --port): Address already in use" in (
        done.stderr
    )
    assert "waiting" not in done.stderr
