"""A NUL character anywhere a client can put one: a Twilio-format 4xx on both stores, never a
500 (PostgreSQL's text cannot store NUL, and psycopg refuses it), and nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from passkeyd.api import create_app
from passkeyd.domain import Domain
from passkeyd.storage import open_store
from tests.conftest import FakeClock
from tests.pg import temporary_schema


@pytest.fixture(params=["sqlite", "postgres"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, tuple]]:
    def serve(url: str) -> Iterator[tuple[TestClient, tuple]]:
        store = open_store(url, pool_size=2) if url.startswith("postgres") else open_store(url)
        store.migrate()
        domain = Domain(store, FakeClock())
        account, token = domain.accounts.create_account("t")
        with TestClient(create_app(domain), raise_server_exceptions=False) as client:
            yield client, (account.sid, token)

    if request.param == "sqlite":
        yield from serve(f"sqlite:///{tmp_path}/nul.db")
    else:
        with temporary_schema() as url:
            yield from serve(url)


def test_nul_in_paths_queries_forms_and_json_is_refused(app) -> None:
    client, auth = app
    r = client.post(
        "/v2/Services",
        data={"FriendlyName": "s", "Passkeys.RelyingParty.Id": "example.com"},
        auth=auth,
    )
    assert r.status_code == 201, r.text
    svc = f"/v2/Services/{r.json()['sid']}"
    hook = {"FriendlyName": "h", "EventTypes": "*", "WebhookUrl": "https://93.184.216.34/x"}
    answers = {
        "path": client.get("/v2/Services/VA%00x", auth=auth),
        "entity path": client.get(f"{svc}/Entities/abc%00defgh", auth=auth),
        "ceremony path": client.post(
            "/v2/Services/VA%00/Passkeys/Challenges", json={"identity": "user-0001"}, auth=auth
        ),
        "query": client.get("/v2/AuditEvents?ServiceSid=%00", auth=auth),
        "form": client.post("/v2/Services", data={"FriendlyName": "a\x00b"}, auth=auth),
        "webhook form": client.post(f"{svc}/Webhooks", data={**hook, "FriendlyName": "a\x00"}),
        "json": client.post(
            f"{svc}/Passkeys/Factors",
            json={"friendly_name": "a\x00b", "identity": "user-0001"},
            auth=auth,
        ),
        "nested json": client.post(
            f"{svc}/Passkeys/Factors",
            json={"identity": "user-0001", "config": {"relying_party": {"name": "\x00"}}},
            auth=auth,
        ),
        # Deeper than a recursive walk's stack held (a 500 with a 100 KB traceback).
        "deep json": client.post(
            f"{svc}/Passkeys/Factors",
            content=b'{"identity": "user-0001", "config": '
            + b"[" * 900
            + b'"\\u0000"'
            + b"]" * 900
            + b"}",
            headers={"Content-Type": "application/json"},
            auth=auth,
        ),
    }
    expected = {"path": 404, "entity path": 404, "ceremony path": 404}
    for name, r in answers.items():
        if name == "webhook form":
            assert r.status_code == 401, r.text  # no credentials: refused before anything
            continue
        assert r.status_code == expected.get(name, 400), (name, r.status_code, r.text)
        assert r.json()["code"] in (20404, 60200, 60300, 60301), (name, r.text)
        assert r.json()["status"] == r.status_code
    listed = client.get("/v2/Services", auth=auth).json()["services"]
    assert [s["friendly_name"] for s in listed] == ["s"]
    entities = client.get(f"{svc}/Entities", auth=auth).json()["entities"]
    assert entities == []
