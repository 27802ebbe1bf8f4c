"""What operators rely on: readiness, metrics that move, request ids, logs without secrets."""

from __future__ import annotations

import logging
import os
import re
import sqlite3

from starlette.testclient import TestClient

from passkeyd import logs as logs_module
from passkeyd.api import create_app
from passkeyd.settings import Settings, describe
from passkeyd.storage import sqlite as sqlite_module
from tests.authenticator import b64url
from tests.conftest import ORIGIN


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in an exposition text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[len(name) + 1 : line.index("}")].split(",")))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_readyz_answers_when_the_database_and_schema_are_current(api):
    r = api.client.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"status": "ready"})
    assert api.client.get("/healthz").status_code == 200


def test_metrics_ask_for_their_bearer_token_when_one_is_set(domain):
    settings = Settings(metrics_token="scrape-me")
    with TestClient(create_app(domain, settings)) as client:
        for headers in (
            {},
            {"Authorization": "Bearer scrape-m"},
            {"Authorization": "Bearer scrape-me-too"},
            {"Authorization": "Basic c2NyYXBlLW1l"},  # the token, but not as a bearer token
        ):
            r = client.get("/metrics", headers=headers)
            assert (r.status_code, r.json()["code"]) == (401, 20003), headers
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert "scrape-me" not in r.text
        r = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert r.status_code == 200 and "passkeyd_http_requests_total" in r.text
        # Two: which counted depended on their order (the first one).
        twice = [("Authorization", "Bearer scrape-me"), ("Authorization", "Bearer nope")]
        r = client.get("/metrics", headers=twice)
        assert (r.status_code, r.json()["code"]) == (400, 60200)
    assert describe(settings)["PASSKEYD_METRICS_TOKEN"] == "<set>"
    assert Settings.from_env({"PASSKEYD_METRICS_TOKEN": "t"}).metrics_token == "t"


def test_readyz_stays_ready_when_the_next_release_migrated_meanwhile(api, domain):
    """A rolling upgrade migrates while this release serves: its replicas stay in the
    balancer's rotation until the new ones are up (503 took the whole fleet out)."""
    domain.store._db.execute("INSERT INTO schema_migrations VALUES (999, 0)")  # type: ignore[attr-defined]
    r = api.client.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"status": "ready", "newer_schema": [999]})


def test_readyz_refuses_when_the_schema_is_behind(api, domain):
    domain.store._db.execute("DELETE FROM schema_migrations WHERE version = 3")  # type: ignore[attr-defined]
    r = api.client.get("/readyz")
    assert r.status_code == 503 and "pending migrations" in r.json()["reason"]


def test_metrics_count_requests_latency_and_ceremonies(api):
    before = api.client.get("/metrics").text
    api.create_service()
    factor = api.create_factor()
    api.verify_factor(api.authenticator.create(factor["options"], ORIGIN))
    challenge = api.challenge(identity="user-0001")
    bad = api.authenticator.get(challenge["options"], "https://evil.test")
    assert api.approve(bad).status_code == 403
    assert api.approve(api.authenticator.get(challenge["options"], ORIGIN)).status_code == 200
    after = api.client.get("/metrics").text

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert (
        moved("passkeyd_http_requests_total", route="create_service", method="POST", status="201")
        == 1
    )
    assert (
        moved(
            "passkeyd_http_request_duration_seconds_count", route="approve_challenge", method="POST"
        )
        == 2
    )
    assert (
        moved("passkeyd_ceremonies_total", ceremony="registration", outcome="success", step="") == 1
    )
    assert (
        moved(
            "passkeyd_ceremonies_total", ceremony="authentication", outcome="refused", step="origin"
        )
        == 1
    )
    assert (
        moved("passkeyd_ceremonies_total", ceremony="authentication", outcome="success", step="")
        == 1
    )
    assert "passkeyd_webhook_backlog" in after
    # the same series with one worker as with several (whose collector exports no *_created)
    assert "_created" not in after


def test_metrics_count_requests_no_route_serves_under_bounded_labels(api):
    """A 404 path or a 405 method was in no count: probes and misdirected clients did not
    show. Counted under route `unmatched`; a method passkeyd does not know is `other`, so
    that clients cannot add series at will."""
    before = api.client.get("/metrics").text
    assert api.get("/v2/Nope").status_code == 404
    assert api.client.request("PATCH", "/v2/Services", auth=api.auth).status_code == 405
    for method in ("BREW", "WHEN"):
        api.client.request(method, "/v2/Nope", auth=api.auth)
    after = api.client.get("/metrics").text

    def moved(**labels: str) -> float:
        name = "passkeyd_http_requests_total"
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved(route="unmatched", method="GET", status="404") == 1
    assert moved(route="unmatched", method="PATCH", status="405") == 1
    assert moved(route="unmatched", method="other", status="404") == 2
    assert "BREW" not in after and "WHEN" not in after


def test_every_response_carries_a_request_id_that_the_log_names(api, caplog):
    caplog.set_level(logging.INFO, logger="passkeyd.access")
    r = api.get("/v2/Services")
    request_id = r.headers["Twilio-Request-Id"]
    assert re.fullmatch(r"RQ[0-9a-f]{32}", request_id)
    (record,) = [rec for rec in caplog.records if getattr(rec, "request_id", "") == request_id]
    assert (record.route, record.status, record.account_sid) == (
        "list_services",
        200,
        api.account_sid,
    )
    assert api.client.get("/v2/Services").headers["Twilio-Request-Id"] != request_id


def test_unknown_paths_and_methods_are_logged_with_their_request_id(api, caplog):
    caplog.set_level(logging.INFO, logger="passkeyd.access")
    for r, status in ((api.get("/v2/Nothing/here"), 404), (api.client.put("/v2/Services"), 405)):
        request_id = r.headers["Twilio-Request-Id"]
        (record,) = [rec for rec in caplog.records if getattr(rec, "request_id", "") == request_id]
        assert (record.status, record.code) == (status, 20404 if status == 404 else 20004)
        assert record.route == "unmatched"  # as /metrics counts it (it was "")
    assert caplog.records[0].path == "/v2/Nothing/here"


def test_no_secret_or_credential_material_reaches_the_log(api, caplog):
    caplog.set_level(logging.DEBUG)
    api.create_service()
    factor = api.create_factor()
    credential = api.authenticator.create(factor["options"], ORIGIN)
    api.verify_factor(credential)
    challenge = api.challenge(identity="user-0001")
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    api.approve(assertion)
    api.client.get("/v2/Services", auth=(api.account_sid, "wrong-token"))
    text = "\n".join(f"{rec.getMessage()} {rec.__dict__}" for rec in caplog.records)
    secrets = [
        api.auth[1],
        "wrong-token",
        credential["response"]["attestationObject"][:40],
        assertion["response"]["signature"],
        challenge["options"]["publicKey"]["challenge"],
        b64url(next(iter(api.authenticator.credentials))),
    ]
    for secret in secrets:
        assert secret not in text


def test_a_database_locked_by_another_process_answers_503_and_stores_nothing(
    api, db_path, monkeypatch
):
    api.create_service()
    monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT_SECONDS", 0.3)
    before = api.snapshot()
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        r = api.post_json(
            f"{api.svc}/Passkeys/Factors", {"friendly_name": "alice", "identity": "user-0009"}
        )
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert r.status_code == 503
    assert r.json()["code"] == 20503 and "request id" in r.json()["message"]
    assert api.snapshot() == before
    # and once the lock is gone, the same request goes through
    assert api.create_factor(identity="user-0009")["status"] == "unverified"


def test_a_ceremony_request_waits_for_one_commit_not_two(api, domain, monkeypatch):
    """Checking the credentials is a read that need not wait for the open group commit
    (a secret is only ever answered once its batch committed): a request that writes waits
    for the one commit holding its writes, not first for another one."""
    api.create_service()
    api.register("user-0001")
    settles = 0
    settle = domain.store.settle

    async def counting_settle() -> None:
        nonlocal settles
        settles += 1
        await settle()

    monkeypatch.setattr(domain.store, "settle", counting_settle)
    api.challenge(identity="user-0001")
    assert settles == 1


def test_a_ceremony_refused_before_its_write_does_not_wait_for_another_process(
    api, db_path, monkeypatch
):
    """The ceremony endpoints take the write lock only at their first write: a challenge
    for an identity with no passkey is refused (404) while another process holds the lock,
    instead of waiting for the lock first and answering 503 when it stays taken."""
    api.create_service()
    monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT_SECONDS", 2)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"identity": "nobody-0000"})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (r.status_code, r.json()["code"]) == (404, 60392), r.text


def test_a_start_does_not_undo_a_rotation_made_after_it_read_the_account(domain, monkeypatch):
    """`serve` re-seals PASSKEYD_AUTH_TOKEN's account when the token still matches: a
    `rotate-token` between its read and its write was written over with the old token (on
    PostgreSQL, replicas starting while an operator rotates; 50 of 100 rounds)."""
    from passkeyd.domain.accounts import hash_secret
    from passkeyd.sealing import SecretBox

    account, old = domain.accounts.create_account("env")
    as_read = domain.store.get_account(account.sid)
    new = domain.accounts.rotate_token(account.sid)
    monkeypatch.setattr(domain.store, "get_account", lambda sid: as_read)
    # Started with a key, it seals the token it read unsealed: a write, which must not land.
    monkeypatch.setattr(domain.accounts, "box", SecretBox(os.urandom(32)))
    answers = domain.accounts.ensure_account(account.sid, old).answers
    monkeypatch.undo()
    assert not answers
    stored = domain.store.read_account(account.sid)
    assert stored is not None and stored.token_hash == hash_secret(new)


def test_probes_of_a_database_that_does_not_answer_log_once_a_while(
    api, domain, caplog, monkeypatch
):
    """A balancer's probes every few seconds logged a traceback each while PostgreSQL was
    down (15 in a 15 s outage), beside the audit writer's line every 0.2 s."""
    from passkeyd import logs
    from passkeyd.api import app as app_module
    from passkeyd.storage import StorageUnavailable

    monkeypatch.setattr(app_module, "_PROBE_TRACEBACK_NOW", logs.Every(60.0))
    monkeypatch.setattr(app_module, "_PROBE_LINE", logs.Throttle(10.0))

    def down() -> None:
        raise StorageUnavailable("the database does not answer")

    monkeypatch.setattr(domain.store, "pending_migrations", down)
    monkeypatch.setattr(domain.store, "ping", down)
    for _ in range(10):
        assert api.client.get("/readyz").status_code == 503
        assert api.client.get("/healthz").status_code == 503
    said = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(said) == 2, [r.getMessage() for r in said]  # a traceback, and one line
    assert sum(1 for r in said if r.exc_info) == 1


def test_an_unforeseen_error_logs_its_traceback_once_a_while_and_a_line_each_time(
    api, db_path, monkeypatch, caplog
):
    """Every write refused by a trigger an operator added is a 500 (the database's fault).
    Its traceback is logged once a minute, not once per request (40 lines each); each other
    request gets a line that names the request whose log holds it (last note)."""
    from passkeyd.api import edge

    monkeypatch.setattr(edge, "_UNHANDLED", logs_module.Tracebacks(60.0))
    api.create_service()
    api.register("user-0001")
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON challenges"
        " BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
    )
    other.close()
    caplog.set_level(logging.ERROR, logger="passkeyd.api")
    ids = []
    for _ in range(3):
        r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"identity": "user-0001"})
        assert (r.status_code, r.json()["code"]) == (500, 20500)
        ids.append(r.headers["Twilio-Request-Id"])
    logged = [rec for rec in caplog.records if rec.getMessage().startswith("unhandled error")]
    assert [rec.request_id for rec in logged] == ids
    assert [rec.exc_info is not None for rec in logged] == [True, False, False]
    assert all(
        "refused by a trigger" in rec.getMessage() and ids[0] in rec.getMessage()
        for rec in logged[1:]
    ), [rec.getMessage() for rec in logged]
    # Another error, raised at another place, has its traceback logged at once.
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute(
        "CREATE TRIGGER refuse_factors BEFORE INSERT ON factors"
        " BEGIN SELECT RAISE(ABORT, 'refused by another trigger'); END"
    )
    other.close()
    r = api.post_json(
        f"{api.svc}/Passkeys/Factors", {"friendly_name": "b", "identity": "user-0002"}
    )
    assert r.status_code == 500
    (last,) = [rec for rec in caplog.records if rec.request_id == r.headers["Twilio-Request-Id"]]
    assert last.exc_info is not None and "another trigger" in str(last.exc_info[1])


def test_metrics_of_a_database_that_does_not_answer_log_once_a_while(
    api, domain, caplog, monkeypatch
):
    """Each GET /metrics during an outage logged a warning, unthrottled (200 scrapes, or
    200 requests from anyone who reaches an open /metrics, 200 lines), where the probes
    log a line at most every 10 s."""
    from passkeyd import logs
    from passkeyd.api import app as app_module
    from passkeyd.storage import StorageUnavailable

    monkeypatch.setattr(app_module, "_METRICS_LINE", logs.Throttle(10.0))

    def down() -> int:
        raise StorageUnavailable("the database does not answer")

    monkeypatch.setattr(domain.store, "delivery_backlog", down)
    for _ in range(10):
        assert api.client.get("/metrics").status_code == 200
    said = [r for r in caplog.records if "webhook backlog is stale" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]


def test_a_ceremony_the_database_could_not_finish_is_not_counted_as_refused(api, domain):
    """An approval answered 503 (the database refused the write) was counted
    outcome="refused", step="20503", as a failed sign-in is: an outage looked like an
    attack on the ceremonies' refusal rate."""
    api.create_service()
    api.register("user-0001")
    challenge = api.challenge(identity="user-0001")
    before = api.client.get("/metrics").text
    domain.store._db.execute("PRAGMA query_only = ON")
    try:
        r = api.approve(api.authenticator.get(challenge["options"], ORIGIN))
    finally:
        domain.store._db.execute("PRAGMA query_only = OFF")
    assert (r.status_code, r.json()["code"]) == (503, 20503), r.text
    after = api.client.get("/metrics").text
    refused = "passkeyd_ceremonies_total", {"ceremony": "authentication", "outcome": "refused"}
    assert sample(after, refused[0], **refused[1], step="20503") == sample(
        before, refused[0], **refused[1], step="20503"
    )
    # the request itself is counted, with its status
    assert sample(
        after,
        "passkeyd_http_requests_total",
        route="approve_challenge",
        method="POST",
        status="503",
    ) == 1 + sample(
        before,
        "passkeyd_http_requests_total",
        route="approve_challenge",
        method="POST",
        status="503",
    )
