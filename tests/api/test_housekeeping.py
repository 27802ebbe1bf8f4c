"""Expired challenges are deleted after the retention period, in the background."""

from __future__ import annotations

import time

from starlette.testclient import TestClient

from passkeyd.api import create_app
from passkeyd.settings import Settings


def test_expired_challenges_are_purged_after_retention(domain, clock):
    account, token = domain.accounts.create_account()
    settings = Settings(challenge_retention_seconds=60, purge_interval_seconds=1)
    with TestClient(create_app(domain, settings)) as client:
        auth = (account.sid, token)
        form = {
            "FriendlyName": "svc",
            "Passkeys.RelyingParty.Id": "example.com",
            "Passkeys.RelyingParty.Name": "Example",
            "Passkeys.RelyingParty.Origins": "https://example.com",
            "Passkeys.AuthenticatorAttachment": "any",
            "Passkeys.DiscoverableCredentials": "preferred",
            "Passkeys.UserVerification": "preferred",
        }
        svc = client.post("/v2/Services", data=form, auth=auth).json()["sid"]
        old = client.post(f"/v2/Services/{svc}/Passkeys/Challenges", json={}, auth=auth).json()
        clock.advance(600 + 61)  # expired, and past the retention period
        fresh = client.post(f"/v2/Services/{svc}/Passkeys/Challenges", json={}, auth=auth).json()
        deadline = time.monotonic() + 5
        while (
            domain.store.get_challenge(account.sid, svc, old["sid"]) and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert domain.store.get_challenge(account.sid, svc, old["sid"]) is None
        assert domain.store.get_challenge(account.sid, svc, fresh["sid"]) is not None


def test_the_audit_trail_joins_the_loops_group_commit_on_sqlite(domain, monkeypatch):
    """On SQLite the audit records are written on the event loop, in its batch, the lock
    taken there: never by a thread that would have to win the lock against other worker
    processes while this process's requests wait behind it."""
    import asyncio

    from passkeyd.api.app import flush_audit_forever
    from passkeyd.domain.models import AuditEvent, PageRequest
    from tests.aio import run

    account, _ = domain.accounts.create_account()

    def no_thread_writes() -> None:
        raise AssertionError("an audit write from a thread")

    monkeypatch.setattr(domain.store, "_begin_beside_loop", no_thread_writes)

    async def main() -> None:
        domain.store.start_group_commit(asyncio.get_running_loop())
        event = AuditEvent(account.sid, "", "AC", "create_service", "VA1", "ok", 0, "", "RQ1", 1)
        domain.audit.record(event)
        flusher = asyncio.create_task(flush_audit_forever(domain, interval=0.01))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not domain.audit.pending():
                break
        flusher.cancel()
        domain.store.stop_group_commit()

    run(main())
    stored = domain.store.list_audit(account.sid, PageRequest(page_size=10))
    assert [e.request_id for e in stored.items] == ["RQ1"]


def test_audit_records_of_a_group_commit_that_fails_are_written_again(domain, monkeypatch):
    import asyncio

    from passkeyd.api.app import flush_audit_forever
    from passkeyd.domain.models import AuditEvent, PageRequest
    from passkeyd.storage import sqlite as sqlite_module
    from tests.aio import run
    from tests.storage.test_group_commit import fail_commits_after_orphans

    account, _ = domain.accounts.create_account()
    store = domain.store
    fail_commits_after_orphans(store)

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        domain.audit.record(
            AuditEvent(account.sid, "", "AC", "create_service", "VA1", "ok", 0, "", "RQ1", 1)
        )
        # A request still working keeps the batch open (up to MAX_BATCH_SECONDS) until
        # the flush has joined it.
        monkeypatch.setattr(sqlite_module, "MAX_BATCH_SECONDS", 0.05)
        store.request_started()
        await store.reserve()
        with store._write() as tx:
            tx.execute("INSERT INTO child VALUES (7)")  # this batch's commit will fail
        flusher = asyncio.create_task(flush_audit_forever(domain, interval=0.001))
        while domain.audit.pending():
            await asyncio.sleep(0.001)
        store.request_finished()
        for _ in range(200):
            await asyncio.sleep(0.005)
            if not domain.audit.pending() and store._batch is None:
                break
        flusher.cancel()
        store.stop_group_commit()

    run(main())
    stored = store.list_audit(account.sid, PageRequest(page_size=10))
    assert [e.request_id for e in stored.items] == ["RQ1"]  # neither lost nor doubled


def test_the_purge_loop_drops_rate_windows_older_than_every_rule(domain, clock):
    """Rate-limit windows are counted in the database here (no in-process windows): the
    background purge deletes those older than twice the longest rule's window, and keeps
    the current ones (it used to keep them for the 7 days of challenge retention)."""
    account, token = domain.accounts.create_account()
    settings = Settings(purge_interval_seconds=1)
    with TestClient(create_app(domain, settings)) as client:
        auth = (account.sid, token)
        form = {"FriendlyName": "svc", "Passkeys.RelyingParty.Id": "example.com",
                "Passkeys.RelyingParty.Name": "Example",
                "Passkeys.RelyingParty.Origins": "https://example.com",
                "Passkeys.AuthenticatorAttachment": "any",
                "Passkeys.DiscoverableCredentials": "preferred",
                "Passkeys.UserVerification": "preferred"}  # fmt: skip
        created = client.post("/v2/Services", data=form, auth=auth)
        assert created.status_code == 201, created.text
        svc = created.json()["sid"]
        first = client.post(f"/v2/Services/{svc}/Passkeys/Challenges", json={}, auth=auth)
        assert first.status_code == 201, first.text
        old_window = clock() - clock() % 60
        clock.advance(3 * domain.limiter.longest_window())
        second = client.post(f"/v2/Services/{svc}/Passkeys/Challenges", json={}, auth=auth)
        assert second.status_code == 201, second.text
        new_window = clock() - clock() % 60
        key = f"usernameless:{svc}"
        deadline = time.monotonic() + 5
        while domain.store.rate_limit_count(key, old_window) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert domain.store.rate_limit_count(key, old_window) == 0
        assert domain.store.rate_limit_count(key, new_window) == 1
