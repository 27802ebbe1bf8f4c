"""What `passkeyd demo` and `passkeyd conformance` say when passkeyd refuses their start-up
service: a wrong account SID or token read "passkeyd refused a new service: 20003
Authenticate", which names neither the credentials nor where they came from (found by the
new-user review)."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest

from passkeyd.web import launch as launch_module
from passkeyd.web.config import DemoConfig
from passkeyd.web.verify import VerifyError


def _config(service_sid: str | None = None) -> DemoConfig:
    return DemoConfig(
        host="127.0.0.1", port=0, passkeyd_url="http://127.0.0.1:9", account_sid="AC" + "1" * 32,
        auth_token="wrong", service_sid=service_sid, rp_id="localhost", rp_name="demo",
        origins=("http://localhost:8081",), user_verification="preferred", attestation="none",
        users_db=":memory:", ceremony_timeout=120.0, wait=0,
    )  # fmt: skip


def _refused(monkeypatch: pytest.MonkeyPatch, exc: VerifyError, config: DemoConfig) -> int:
    async def prepare(*_: Any) -> Any:
        raise exc

    monkeypatch.setattr(launch_module, "_prepare", prepare)
    monkeypatch.setattr(launch_module, "listen_problem", lambda *_: None)
    # In a thread of its own, as `passkeyd demo` runs it in a process's main thread with no
    # event loop: the browser tests' Playwright keeps one running in the suite's.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(
            launch_module.launch, "passkeyd demo", lambda: config, lambda *_: None,
            started=lambda *_: None, friendly_name="passkeyd demo",
        ).result(timeout=60)  # fmt: skip


def test_wrong_credentials_are_named_with_where_they_come_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _refused(monkeypatch, VerifyError(401, 20003, "Authenticate"), _config())
    err = capsys.readouterr().err
    assert code == 3
    assert "passkeyd refused a new service: 20003 Authenticate" in err  # as before
    assert "PASSKEYD_ACCOUNT_SID" in err and "PASSKEYD_AUTH_TOKEN" in err
    assert "--account-sid" in err and "--auth-token" in err


def test_other_refusals_are_said_as_they_were(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _refused(monkeypatch, VerifyError(404, 20404, "Not found"), _config("VA" + "0" * 32))
    err = capsys.readouterr().err
    assert code == 3
    assert err == f"passkeyd demo: passkeyd refused service VA{'0' * 32}: 20404 Not found\n"
