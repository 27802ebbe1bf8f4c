"""Browser tests: Debian's Chromium driven by Playwright, with virtual authenticators, against
the demo and a real passkeyd, all on loopback.

`passkeyd` is one server for the session (its own SQLite file); `demo(...)` starts a demo
process with its own Verify service per call, stopped after the test; `tab` is a new browser
context's page. Needs scripts/install-browser (Chromium at /usr/bin/chromium, Playwright).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import Browser, BrowserContext, expect, sync_playwright

from .demo_tab import DemoTab
from .processes import Process, start_demo, start_passkeyd

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH_TIMEOUT_MS = 30_000
ACTION_TIMEOUT_MS = 10_000
# The demo pages' own deadline for a ceremony; short, so a stuck one fails the test quickly.
CEREMONY_TIMEOUT_S = "8"

expect.set_options(timeout=ACTION_TIMEOUT_MS)


@dataclass(frozen=True)
class Passkeyd:
    """The real passkeyd, seen through its API and its SQLite file."""

    base_url: str
    account_sid: str
    auth_token: str
    db_path: Path

    def get(self, path: str) -> Any:
        with httpx2.Client(
            base_url=self.base_url, auth=(self.account_sid, self.auth_token), trust_env=False
        ) as client:
            response = client.get(path, timeout=5)
            response.raise_for_status()
            return response.json()

    def identities(self, service_sid: str) -> list[str]:
        page = self.get(f"/v2/Services/{service_sid}/Entities?PageSize=1000")
        return [e["identity"] for e in page["entities"]]

    def factors(self, service_sid: str, identity: str) -> list[dict[str, Any]]:
        page = self.get(f"/v2/Services/{service_sid}/Entities/{identity}/Factors?PageSize=1000")
        factors: list[dict[str, Any]] = page["factors"]
        return factors

    def verified_factors(self, service_sid: str) -> list[dict[str, Any]]:
        return [
            f
            for identity in self.identities(service_sid)
            for f in self.factors(service_sid, identity)
            if f["status"] == "verified"
        ]

    def stored_formats(self, service_sid: str) -> list[str]:
        """The attestation format of each verified factor, as stored (factors.fmt)."""
        db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT fmt FROM factors WHERE service_sid = ? AND status = 'verified'",
                (service_sid,),
            ).fetchall()
        finally:
            db.close()
        return [row[0] for row in rows]


@dataclass(frozen=True)
class Demo:
    url: str
    service_sid: str


@pytest.fixture(scope="session")
def passkeyd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Passkeyd]:
    tmp = tmp_path_factory.mktemp("browser-passkeyd")
    account_sid, auth_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    process, base_url, db_path = start_passkeyd(tmp, account_sid, auth_token)
    try:
        yield Passkeyd(base_url, account_sid, auth_token, db_path)
    finally:
        process.stop()


@contextmanager
def demos(passkeyd: Passkeyd, tmp: Path) -> Iterator[Callable[..., Demo]]:
    """A starter of demos, each with its own service; all are stopped on leaving."""
    started: list[Process] = []

    def start(*options: str) -> Demo:
        process, url, service_sid = start_demo(
            tmp,
            passkeyd.base_url,
            passkeyd.account_sid,
            passkeyd.auth_token,
            "--ceremony-timeout",
            CEREMONY_TIMEOUT_S,
            *options,
        )
        started.append(process)
        return Demo(url, service_sid)

    try:
        yield start
    finally:
        for process in started:
            process.stop()


@pytest.fixture
def demo(passkeyd: Passkeyd, tmp_path: Path) -> Iterator[Callable[..., Demo]]:
    """`demo("--attestation", "direct")` starts a demo with its own service for this test."""
    with demos(passkeyd, tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def module_demo(passkeyd: Passkeyd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo with default settings, shared by a module's tests: they must not depend on
    what the others stored."""
    with demos(passkeyd, tmp_path_factory.mktemp("demo")) as start:
        yield start()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-browser")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=LAUNCH_TIMEOUT_MS,
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    ctx.set_default_timeout(ACTION_TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def new_tab(context: BrowserContext, request: pytest.FixtureRequest) -> Callable[[Demo], DemoTab]:
    """A new tab (page) of this test's browser context, on the given demo."""

    def open_tab(demo: Demo) -> DemoTab:
        return DemoTab(context.new_page(), demo.url, request.node.name)

    return open_tab
