"""Fixtures: a real SQLite store, the real ASGI app, and an API driver with a software
authenticator. `snapshot()` reads every stored row, so a test can show a refused request
changed nothing."""

from __future__ import annotations

import base64
import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from passkeyd.api import create_app
from passkeyd.domain import Domain
from passkeyd.storage import SQLiteStore
from tests.authenticator import Authenticator

ORIGIN = "https://example.com"
RP = {"id": "example.com", "name": "Example", "origins": [ORIGIN]}


class FakeClock:
    def __init__(self, now: int = 1_790_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


@dataclass
class Api:
    """Drives the HTTP API as a customer's backend (and its browser) would."""

    client: TestClient
    db_path: Path
    account_sid: str
    auth: tuple[str, str]
    service_sid: str = ""
    authenticator: Authenticator = field(default_factory=Authenticator)

    # --- raw HTTP ---------------------------------------------------------------------------

    def post_form(self, path: str, data: Any = None, **kw: Any) -> Any:
        return self.client.post(path, data=data, auth=kw.pop("auth", self.auth), **kw)

    def post_json(self, path: str, body: Any, **kw: Any) -> Any:
        return self.client.post(path, json=body, auth=kw.pop("auth", self.auth), **kw)

    def post_raw(self, path: str, content: bytes | str, media: str | None) -> Any:
        """`content` as it is, labelled `media` (no Content-Type header when None)."""
        headers = {"Content-Type": media} if media else {}
        return self.client.post(path, content=content, headers=headers, auth=self.auth)

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, auth=kw.pop("auth", self.auth), **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.client.delete(path, auth=kw.pop("auth", self.auth), **kw)

    @property
    def svc(self) -> str:
        return f"/v2/Services/{self.service_sid}"

    # --- flows ------------------------------------------------------------------------------

    def create_service(self, **passkeys: str) -> dict[str, Any]:
        form = {
            "FriendlyName": "Test service",
            "Passkeys.RelyingParty.Id": "example.com",
            "Passkeys.RelyingParty.Name": "Example",
            "Passkeys.RelyingParty.Origins": ORIGIN,
            "Passkeys.AuthenticatorAttachment": "platform",
            "Passkeys.DiscoverableCredentials": "preferred",
            "Passkeys.UserVerification": "preferred",
        }
        form.update(passkeys)
        r = self.post_form("/v2/Services", form)
        assert r.status_code == 201, r.text
        self.service_sid = r.json()["sid"]
        return r.json()

    def create_factor(self, identity: str = "user-0001", **body: Any) -> dict[str, Any]:
        payload = {"friendly_name": "alice", "identity": identity, **body}
        r = self.post_json(f"{self.svc}/Passkeys/Factors", payload)
        assert r.status_code == 201, r.text
        return r.json()

    def verify_factor(self, credential: dict[str, Any]) -> Any:
        return self.post_json(f"{self.svc}/Passkeys/VerifyFactor", credential)

    def register(
        self, identity: str = "user-0001", authenticator: Authenticator | None = None, **create: Any
    ) -> dict[str, Any]:
        factor = self.create_factor(identity)
        credential = (authenticator or self.authenticator).create(
            factor["options"], ORIGIN, **create
        )
        r = self.verify_factor(credential)
        assert r.status_code == 200, r.text
        return r.json()

    def challenge(self, **body: Any) -> dict[str, Any]:
        r = self.post_json(f"{self.svc}/Passkeys/Challenges", body)
        assert r.status_code == 201, r.text
        return r.json()

    def approve(self, assertion: dict[str, Any]) -> Any:
        return self.post_json(f"{self.svc}/Passkeys/ApproveChallenge", assertion)

    # --- what is stored -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every resource table. Counters that are not resource state are left
        out: a challenge's failed attempts, rate-limit windows, the audit trail and the
        tables' AUTOINCREMENT counters (an insert refused by ON CONFLICT spends one)."""
        db = sqlite3.connect(self.db_path)
        try:
            out = {}
            for (table,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type='table'"
                " AND name NOT IN ('rate_limits', 'audit_events', 'sqlite_sequence')"
            ):
                cols = [
                    r[1]
                    for r in db.execute(f"PRAGMA table_info({table})")
                    if r[1] != "failed_attempts"
                ]
                out[table] = db.execute(
                    f"SELECT {', '.join(cols)} FROM {table} ORDER BY 1"
                ).fetchall()
            return out
        finally:
            db.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "passkeyd.db"


@pytest.fixture
def domain(db_path: Path, clock: FakeClock) -> Iterator[Domain]:
    store = SQLiteStore(str(db_path))
    store.migrate()
    yield Domain(store, clock)
    store.close()


@pytest.fixture
def client(domain: Domain) -> Iterator[TestClient]:
    with TestClient(create_app(domain), base_url="http://testserver") as c:
        yield c


@pytest.fixture
def api(client: TestClient, domain: Domain, db_path: Path) -> Api:
    account, token = domain.accounts.create_account("tests")
    return Api(client, db_path, account.sid, (account.sid, token))


@pytest.fixture
def other_api(client: TestClient, domain: Domain, db_path: Path) -> Api:
    """A second account on the same server."""
    account, token = domain.accounts.create_account("other")
    return Api(client, db_path, account.sid, (account.sid, token))


def entity_handle(entity_sid: str) -> str:
    return base64.urlsafe_b64encode(entity_sid.encode()).rstrip(b"=").decode()


@contextlib.contextmanager
def approved_meanwhile(api: Api, domain: Domain, twin: dict[str, Any]) -> Iterator[None]:
    """Within it, the next approval's read of its challenge and factor is followed, before
    it goes on, by `twin`'s approval through the normal path: another worker's approval
    between this one's read and its write."""
    store = domain.store
    original = store.find_challenge_and_factor

    def read_then_let_the_twin_approve(*args: Any) -> Any:
        stale = original(*args)  # as they were before the twin
        store.find_challenge_and_factor = original  # type: ignore[method-assign]
        approved = domain.authentications.approve_challenge(api.account_sid, api.service_sid, twin)
        assert approved.status.value == "approved"
        return stale

    store.find_challenge_and_factor = read_then_let_the_twin_approve  # type: ignore[method-assign]
    try:
        yield
    finally:
        store.find_challenge_and_factor = original  # type: ignore[method-assign]
