"""The storage contract: every backend passes the same tests (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from passkeyd.domain.ids import new_sid
from passkeyd.domain.models import (
    Account,
    ApiKey,
    AuditEvent,
    Challenge,
    ChallengeStatus,
    ClaimedDelivery,
    Credential,
    Delivery,
    Entity,
    Factor,
    FactorStatus,
    PageRequest,
    PasskeyPolicy,
    PasskeySettings,
    RateHit,
    Service,
    Webhook,
)
from passkeyd.storage import (
    ApproveOutcome,
    CredentialConflict,
    FailureOutcome,
    InsertOutcome,
    StorageUnavailable,
    Store,
    open_store,
)
from passkeyd.storage.sql import _count_hit_in_table, load_migrations
from tests.pg import temporary_schema

NOW = 1_790_000_000
POLICY = PasskeyPolicy(
    "example.com", "Example", ("https://example.com",), "platform", "preferred", "preferred"
)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path}/contract.db")
        s.migrate()
        yield s
        s.close()
        return
    with temporary_schema() as url:
        s = open_store(url, pool_size=4)
        s.migrate()
        yield s
        s.close()


def service(account: str = "AC" + "1" * 32, **kw) -> Service:
    return Service(
        new_sid("VA"),
        account,
        "svc",
        PasskeySettings(rp_id="example.com"),
        {"code_length": 6},
        NOW,
        NOW,
        **kw,
    )


def entity(svc: Service, identity: str = "user-0001") -> Entity:
    return Entity(new_sid("YE"), svc.account_sid, svc.sid, identity, NOW, NOW)


def stored(store: Store, ent: Entity) -> Entity:
    """The entity, inserted; or the one already stored for its identity."""
    if store.insert_entity(ent):
        return ent
    found = store.get_entity(ent.account_sid, ent.service_sid, ent.identity)
    assert found is not None
    return found


def hooked(store: Store, deliveries: list[Delivery]) -> list[Delivery]:
    """`deliveries`, whose webhooks (by SID and account) are made if missing: enabled,
    each in a service of its own. A claim sends only to a webhook that is there."""
    for sid, account in dict.fromkeys((d.webhook_sid, d.account_sid) for d in deliveries):
        svc = service(account)
        store.insert_service(svc)
        hook = Webhook(sid, account, svc.sid, "h", ("*",), "http://x/", "POST", "enabled", "v2",
                       NOW, NOW)  # fmt: skip
        with contextlib.suppress(sqlite3.IntegrityError, psycopg.IntegrityError):  # there already
            store.insert_webhook(hook)
    return deliveries


def factor(ent: Entity, challenge: bytes | None = None) -> Factor:
    return Factor(
        new_sid("YF"),
        ent.account_sid,
        ent.service_sid,
        ent.sid,
        ent.identity,
        "key",
        FactorStatus.UNVERIFIED,
        POLICY,
        challenge or new_sid("RG").encode(),
        NOW + 600,
        None,
        None,
        NOW,
        NOW,
    )


def credential(cred_id: bytes = b"\x01" * 16, count: int = 0) -> Credential:
    return Credential(
        cred_id,
        b"cose-key",
        -7,
        count,
        ("internal",),
        "0" * 8 + "-0000-0000-0000-" + "0" * 12,
        "none",
        True,
        False,
        "platform",
    )


def challenge(ent: Entity | None, svc: Service, value: bytes | None = None, **kw) -> Challenge:
    fields = dict(
        sid=new_sid("YC"),
        account_sid=svc.account_sid,
        service_sid=svc.sid,
        entity_sid=ent.sid if ent else "",
        identity=ent.identity if ent else "",
        factor_sid="",
        challenge=value or new_sid("CH").encode(),
        rp_id="example.com",
        user_verification="preferred",
        options={"publicKey": {"rpId": "example.com"}},
        status=ChallengeStatus.PENDING,
        failed_attempts=0,
        date_created=NOW,
        date_updated=NOW,
        date_responded=None,
        expiration_date=NOW + 600,
        allowed_credentials=(b"\x01" * 16,),
    )
    fields.update(kw)
    return Challenge(**fields)


def verified(
    store: Store, svc: Service, identity: str = "user-0001", cred_id: bytes = b"\x01" * 16
) -> Factor:
    ent = stored(store, entity(svc, identity))
    f = factor(ent)
    store.insert_factor(f)
    assert store.complete_registration(f.sid, credential(cred_id), NOW)
    got = store.get_factor(svc.account_sid, svc.sid, f.sid)
    assert got is not None
    return got


# --- schema ----------------------------------------------------------------------------------


def test_the_configuration_cache_keeps_few_misses(store, monkeypatch):
    """Lookups of made-up accounts, keys and services (anyone can send them, in a Basic
    credential or a path) are cached as absent only while the cache is small, and only
    for SIDs of a SID's length; what exists is cached."""
    from passkeyd.storage import sql

    monkeypatch.setattr(sql, "MAX_CACHED_MISSES", 50)
    svc = service()
    store.insert_service(svc)
    store.refresh_config()
    assert store.get_service(svc.account_sid, svc.sid) is not None
    for i in range(200):
        assert store.get_service(svc.account_sid, "VA" + "x" * 8000 + str(i)) is None
    assert len(store._config) == 1
    for i in range(200):
        assert store.get_account(f"AC{i:032x}") is None
        assert store.get_api_key(f"SK{i:032x}") is None
        assert len(store._config.get(sql._MISSES, ())) <= 50
    assert store.get_service(svc.account_sid, svc.sid) is not None  # kept through it all
    assert ("service", svc.account_sid, svc.sid) in store._config


def test_migrations_are_applied_once(store):
    assert store.pending_migrations() == []
    assert store.migrate() == []
    assert 1 in store.applied_migrations()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_empty_database_has_every_migration_pending_and_is_migrated(backend, tmp_path):
    """`passkeyd migrate` and `check-config` read what is applied first: on an empty
    PostgreSQL schema that read (no schema_migrations yet) was taken for an outage, and
    both exited 6 where SQLite's empty file migrated."""

    def check(url: str) -> None:
        s = open_store(url, pool_size=2) if backend == "postgres" else open_store(url)
        try:
            every = [v for v, _ in load_migrations(s.dialect)]
            assert s.applied_migrations() == set()
            assert s.pending_migrations() == every
            assert s.migrate() == every
            assert s.pending_migrations() == []
        finally:
            s.close()

    if backend == "sqlite":
        check(f"sqlite:///{tmp_path}/empty.db")
    else:
        with temporary_schema() as url:
            check(url)


# --- accounts and keys -----------------------------------------------------------------------


def test_accounts_are_upserted_and_listed(store):
    a = Account("AC" + "a" * 32, "one", b"h1", NOW)
    store.put_account(a)
    store.put_account(dataclasses.replace(a, token_hash=b"h2"))
    assert store.get_account(a.sid).token_hash == b"h2"
    assert store.get_account("AC" + "b" * 32) is None
    assert [x.sid for x in store.list_accounts()] == [a.sid]


def test_an_accounts_seal_is_replaced_only_while_it_is_as_read(store):
    a = Account("AC" + "a" * 32, "one", b"h1", NOW)
    assert store.put_account(a)
    sealed = dataclasses.replace(a, token_sealed=b"seal-1")
    assert store.put_account(sealed, same_token_only=True, sealed_as=None)
    again = dataclasses.replace(a, token_sealed=b"seal-2")
    assert not store.put_account(again, same_token_only=True, sealed_as=None)  # sealed since
    assert store.read_account(a.sid).token_sealed == b"seal-1"
    assert store.put_account(again, same_token_only=True, sealed_as=b"seal-1")
    assert not store.put_account(sealed, same_token_only=True, sealed_as=b"seal-1")
    assert store.read_account(a.sid).token_sealed == b"seal-2"


def test_api_keys_are_revoked(store):
    store.put_account(Account("AC" + "a" * 32, "one", b"h", NOW))
    key = ApiKey("SK" + "c" * 32, "AC" + "a" * 32, "ci", b"s", False, NOW)
    store.put_api_key(key)
    assert store.get_api_key(key.sid) == key
    assert not store.revoke_api_key("AC" + "b" * 32, key.sid)
    assert store.revoke_api_key(key.account_sid, key.sid)
    assert store.get_api_key(key.sid).revoked
    assert [k.sid for k in store.list_api_keys(key.account_sid)] == [key.sid]


# --- services ----------------------------------------------------------------------------------


def test_services_belong_to_their_account(store):
    svc = service()
    store.insert_service(svc)
    got = store.get_service(svc.account_sid, svc.sid)
    assert dataclasses.replace(got, seq=0) == svc
    assert store.get_service("AC" + "2" * 32, svc.sid) is None
    assert not store.delete_service("AC" + "2" * 32, svc.sid)


def test_services_page_in_both_directions(store):
    sids = []
    for _ in range(5):
        svc = service()
        store.insert_service(svc)
        sids.append(svc.sid)
    account = "AC" + "1" * 32
    first = store.list_services(account, PageRequest(page_size=2))
    assert [s.sid for s in first.items] == sids[:2] and first.has_more
    rest = store.list_services(account, PageRequest(page_size=10, after=first.last_seq))
    assert [s.sid for s in rest.items] == sids[2:] and not rest.has_more
    desc = store.list_services(account, PageRequest(page_size=10, descending=True))
    assert [s.sid for s in desc.items] == sids[::-1]


def test_a_page_token_held_across_deleting_the_newest_records_finds_those_made_since(store):
    """A page token holds the seq of its page's last record. SQLite gave the seq of the
    newest rows, once deleted, to the next row made (a rowid without AUTOINCREMENT), which
    the token then skipped; PostgreSQL's identity never goes back. So on both: a record
    made after the deletion is on the token's next page, in every list that deletes."""
    svc = service()
    store.insert_service(svc)
    account = svc.account_sid
    ents = [stored(store, entity(svc, f"user-000{i}")) for i in range(3)]
    page = store.list_entities(account, svc.sid, PageRequest(page_size=2))
    for ent in ents[1:]:
        assert store.delete_entity(account, svc.sid, ent.identity)
    newer = stored(store, entity(svc, "user-0009"))
    after = PageRequest(page_size=10, after=page.last_seq)
    assert [e.sid for e in store.list_entities(account, svc.sid, after).items] == [newer.sid]

    factors = [factor(newer) for _ in range(3)]
    for f in factors:
        store.insert_factor(f)
    page = store.list_factors(account, svc.sid, newer.sid, PageRequest(page_size=2))
    for f in factors[1:]:
        assert store.delete_factor(account, svc.sid, f.sid)
    made = factor(newer)
    store.insert_factor(made)
    after = PageRequest(page_size=10, after=page.last_seq)
    assert [f.sid for f in store.list_factors(account, svc.sid, newer.sid, after).items] == [
        made.sid
    ]

    hooks = [Webhook(new_sid("YW"), account, svc.sid, "h", ("*",), "https://example.com/h",
                     "POST", "enabled", "v2", NOW, NOW) for _ in range(3)]  # fmt: skip
    for hook in hooks:
        assert store.insert_webhook(hook)
    page = store.list_webhooks(account, svc.sid, PageRequest(page_size=2))
    for hook in hooks[1:]:
        assert store.delete_webhook(account, svc.sid, hook.sid)
    assert store.insert_webhook(hooks[1])
    after = PageRequest(page_size=10, after=page.last_seq)
    assert [w.sid for w in store.list_webhooks(account, svc.sid, after).items] == [hooks[1].sid]

    services = [service(account) for _ in range(3)]
    for s in services:
        store.insert_service(s)
    page = store.list_services(account, PageRequest(page_size=3))  # svc and two of them
    for s in services[1:]:
        assert store.delete_service(account, s.sid)
    store.insert_service(services[2])
    after = PageRequest(page_size=10, after=page.last_seq)
    assert [s.sid for s in store.list_services(account, after).items] == [services[2].sid]


def test_service_update_and_cascading_delete(store):
    svc, other = service(), service()
    for s in (svc, other):
        store.insert_service(s)
    store.update_service(
        svc.account_sid,
        svc.sid,
        lambda s: dataclasses.replace(s, friendly_name="renamed", date_updated=NOW + 1),
    )
    assert store.get_service(svc.account_sid, svc.sid).friendly_name == "renamed"
    f = verified(store, svc)
    kept = verified(store, other, cred_id=b"\x02" * 16)
    challenges = {
        s.sid: [challenge(None, s), challenge(stored(store, entity(s)), s)] for s in (svc, other)
    }
    for c in challenges[svc.sid] + challenges[other.sid]:
        store.insert_challenge(c)
    assert store.delete_service(svc.account_sid, svc.sid)
    assert store.get_factor(svc.account_sid, svc.sid, f.sid) is None
    assert store.get_entity(svc.account_sid, svc.sid, "user-0001") is None
    for c in challenges[svc.sid]:  # usernameless and for an identity
        assert store.get_challenge(svc.account_sid, svc.sid, c.sid) is None
    for c in challenges[other.sid]:
        assert store.get_challenge(other.account_sid, other.sid, c.sid) is not None
    assert store.get_factor(other.account_sid, other.sid, kept.sid) == kept


def test_nothing_is_written_under_a_service_deleted_meanwhile(store):
    """The request read its service (perhaps from the cache) before the delete; its write
    came after. It used to write anyway: entities, factors and challenges of no service."""
    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    assert store.delete_service(svc.account_sid, svc.sid)
    assert not store.insert_entity(entity(svc, "user-0002"))
    new_user = entity(svc, "user-0003")
    assert store.insert_factor(factor(new_user), entity=new_user) is InsertOutcome.SERVICE_GONE
    assert store.insert_factor(factor(ent)) is InsertOutcome.SERVICE_GONE
    for c in (challenge(None, svc), challenge(ent, svc)):
        assert store.insert_challenge(c, max_pending=20) is InsertOutcome.SERVICE_GONE
    assert store.list_entities(svc.account_sid, svc.sid, PageRequest(page_size=10)).items == []
    hook = Webhook(
        new_sid("YW"), svc.account_sid, svc.sid, "hook", ("*",), "https://example.com/hook",
        "POST", "enabled", "v2", NOW, NOW,
    )  # fmt: skip
    assert store.insert_webhook(hook) is False


def test_a_challenge_waits_for_a_deletion_of_its_service_in_progress():
    """PostgreSQL: a challenge insert racing the service's deletion either commits first
    (and the deletion, waiting for it, takes its row too) or waits and finds the service
    gone. Here the deletion holds its lock first."""
    import threading

    with postgres_with_a_passkey() as (url, store, svc, _):
        with psycopg.connect(url) as deleting:
            deleting.execute("DELETE FROM services WHERE sid = %s", (svc.sid,))
            outcome: list[InsertOutcome] = []
            insert = threading.Thread(
                target=lambda: outcome.append(store.insert_challenge(challenge(None, svc)))
            )
            insert.start()
            with psycopg.connect(url, autocommit=True) as watching:
                assert _waits_for_a_row_lock(watching, "WITH svc AS")
            deleting.commit()
        insert.join(10)
        assert outcome == [InsertOutcome.SERVICE_GONE]


def _in_a_thread(
    results: dict[str, object], name: str, call: Callable[[], object]
) -> threading.Thread:
    """`call` started in a thread of its own; its result, or what it raised (a deadlock's
    StorageUnavailable), goes to results[name]."""

    def target() -> None:
        try:
            results[name] = call()
        except Exception as exc:
            results[name] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_deleting_a_service_and_one_of_its_entities_at_once_do_not_deadlock():
    """PostgreSQL: the service's deletion takes the entity's challenges, then its factors,
    then the entity; the entity's deletion took the entity, then its challenges. Paused
    between the two (by a reader of the factor), they deadlocked: one request a 503."""

    with postgres_with_a_passkey() as (url, store, svc, f):
        ent = store.get_entity(svc.account_sid, svc.sid, f.identity)
        assert ent is not None
        store.insert_challenge(challenge(ent, svc))
        results: dict[str, object] = {}
        run = functools.partial(_in_a_thread, results)

        with (
            psycopg.connect(url) as holder,
            psycopg.connect(url, autocommit=True) as watching,
        ):
            holder.execute("SELECT 1 FROM factors WHERE sid = %s FOR SHARE", (f.sid,))
            service = run("service", lambda: store.delete_service(svc.account_sid, svc.sid))
            assert _waits_for_a_row_lock(watching, "DELETE FROM factors")
            entity = run(
                "entity", lambda: store.delete_entity(svc.account_sid, svc.sid, f.identity)
            )
            assert _waits_for_a_row_lock(watching, "SELECT sid FROM entities")
            holder.rollback()
        service.join(10)
        entity.join(10)
        assert results == {"service": True, "entity": False}, results


def test_a_service_update_waits_for_one_in_progress_and_keeps_it():
    """PostgreSQL: an update reads the row it changes under a lock, so one committed while
    it waited is kept, not written over with what it read before."""
    with postgres_with_a_passkey() as (url, store, svc, _):
        with (
            psycopg.connect(url) as other,
            psycopg.connect(url, autocommit=True) as watching,
        ):
            other.execute(
                "UPDATE services SET friendly_name = 'renamed' WHERE sid = %s", (svc.sid,)
            )
            done: list[Service | None] = []

            def later() -> None:
                done.append(
                    store.update_service(
                        svc.account_sid,
                        svc.sid,
                        lambda s: dataclasses.replace(s, date_updated=NOW + 5),
                    )
                )

            update = threading.Thread(target=later)
            update.start()
            assert _waits_for_a_row_lock(watching, "SELECT seq")
            other.commit()
            update.join(10)
        assert done and done[0] is not None and done[0].friendly_name == "renamed"
        stored = store.get_service(svc.account_sid, svc.sid)
        assert stored is not None
        assert (stored.friendly_name, stored.date_updated) == ("renamed", NOW + 5)


def test_a_service_update_in_progress_does_not_hold_up_sign_ins():
    """PostgreSQL: the update locks the service's row against other updates only, not
    against the KEY SHARE every challenge and factor insert takes on it."""
    with postgres_with_a_passkey() as (url, store, svc, f):
        ent = store.get_entity(svc.account_sid, svc.sid, f.identity)
        assert ent is not None
        started, release = threading.Event(), threading.Event()

        def slow_change(s: Service) -> Service:
            started.set()
            release.wait(10)
            return dataclasses.replace(s, friendly_name="renamed")

        update = threading.Thread(
            target=lambda: store.update_service(svc.account_sid, svc.sid, slow_change)
        )
        update.start()
        try:
            assert started.wait(10)
            began = time.monotonic()
            assert store.insert_challenge(challenge(ent, svc)) is InsertOutcome.INSERTED
            assert time.monotonic() - began < 2
        finally:
            release.set()
            update.join(10)
        got = store.get_service(svc.account_sid, svc.sid)
        assert got is not None and got.friendly_name == "renamed"


@pytest.mark.parametrize("deleting", ["entity", "service"])
def test_a_usernameless_approval_committed_during_a_deletion_goes_with_it(deleting):
    """PostgreSQL: a usernameless challenge being approved when its user's (or service's)
    deletion began: the deletion's challenges statement still read `entity_sid = ''` and
    passed it by; the approval set the user's entity_sid and committed while the deletion
    waited for the factor's row. The approved challenge, with the deleted user's identity,
    outlived the 204 until the purge."""
    with postgres_with_a_passkey() as (url, store, svc, f):
        c = challenge(None, svc)
        store.insert_challenge(c)
        with (
            psycopg.connect(url) as approval,
            psycopg.connect(url, autocommit=True) as watching,
        ):
            approval.execute("UPDATE factors SET sign_count = 1 WHERE sid = %s", (f.sid,))
            approval.execute(
                "UPDATE challenges SET status = 'approved', entity_sid = %s, identity = %s,"
                " factor_sid = %s WHERE sid = %s",
                (f.entity_sid, f.identity, f.sid, c.sid),
            )
            if deleting == "entity":
                delete = lambda: store.delete_entity(svc.account_sid, svc.sid, f.identity)  # noqa: E731
            else:
                delete = lambda: store.delete_service(svc.account_sid, svc.sid)  # noqa: E731
            deletion = threading.Thread(target=delete)
            deletion.start()
            assert _waits_for_a_row_lock(watching, "DELETE FROM")  # the factor or challenge
            approval.commit()
            deletion.join(10)
            left = watching.execute("SELECT count(*) FROM challenges WHERE sid = %s", (c.sid,))
            assert left.fetchone() == (0,)


def test_events_of_a_change_committed_during_a_service_deletion_are_dropped_with_it():
    """PostgreSQL: an approval in flight when the service's deletion began commits its
    webhook event while the deletion waits for the challenge's row. The deletion dropped
    the service's pending deliveries first, so that event was sent to the deleted webhook."""
    import threading

    with postgres_with_a_passkey() as (url, store, svc, f):
        ent = store.get_entity(svc.account_sid, svc.sid, f.identity)
        assert ent is not None
        c = challenge(ent, svc)
        store.insert_challenge(c)
        hook = Webhook(
            new_sid("YW"), svc.account_sid, svc.sid, "hook", ("*",), "https://example.com/h",
            "POST", "enabled", "v2", NOW, NOW,
        )  # fmt: skip
        assert store.insert_webhook(hook)
        with (
            psycopg.connect(url) as approval,
            psycopg.connect(url, autocommit=True) as watching,
        ):
            approval.execute("SELECT 1 FROM challenges WHERE sid = %s FOR UPDATE", (c.sid,))
            deletion = threading.Thread(
                target=lambda: store.delete_service(svc.account_sid, svc.sid)
            )
            deletion.start()
            assert _waits_for_a_row_lock(watching, "DELETE FROM challenges")
            approval.execute(
                "INSERT INTO webhook_deliveries (event_sid, event_type, webhook_sid,"
                " account_sid, url, payload, status, attempts, next_attempt_at, locked_until,"
                " date_created, date_updated) VALUES (%s, 'challenge.approved', %s, %s, %s,"
                " '{}', 'pending', 0, 0, 0, 0, 0)",
                (new_sid("EV"), hook.sid, svc.account_sid, hook.webhook_url),
            )
            approval.commit()
            deletion.join(10)
            left = watching.execute(
                "SELECT count(*) FROM webhook_deliveries WHERE webhook_sid = %s", (hook.sid,)
            ).fetchone()
        assert left == (0,)


def test_deleting_a_service_finds_its_rows_by_indexes(tmp_path: Path):
    """Not a scan of every service's factors and challenges, which held SQLite's write
    lock for seconds in a large multi-tenant database. (SQLite's plans; PostgreSQL has the
    same indexes.)"""
    from passkeyd.storage.sql import SERVICE_ROWS

    store = open_store(f"sqlite:///{tmp_path}/plans.db")
    store.migrate()
    for statement in SERVICE_ROWS:
        plan = [row[-1] for row in store._all("EXPLAIN QUERY PLAN " + statement, ("VA1",))]
        assert plan and all(step.startswith(("SEARCH", "LIST SUBQUERY")) for step in plan), (
            statement,
            plan,
        )
    store.close()


def test_only_a_unique_constraint_is_answered_as_a_credential_registered_already(store):
    """A registration refused by another constraint (here a trigger an operator added) is
    the database's fault, not the request's: it was answered 403 60311 "already
    registered" (operations review); it now stays the error it is (a 500)."""
    svc = service()
    store.insert_service(svc)
    taken = verified(store, svc)
    fresh = factor(stored(store, entity(svc, "user-0002")))
    store.insert_factor(fresh)
    with pytest.raises(CredentialConflict):  # the same credential id: registered already
        store.complete_registration(fresh.sid, taken.credential, NOW)
    with store._write() as tx:
        if store.dialect == "sqlite":
            tx.execute("CREATE TRIGGER refuse BEFORE UPDATE ON factors"
                       " BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END")  # fmt: skip
        else:
            tx.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                       " RAISE EXCEPTION 'refused by a trigger' USING ERRCODE = 'check_violation';"
                       " END $$")  # fmt: skip
            tx.execute("CREATE TRIGGER refuse BEFORE UPDATE ON factors"
                       " FOR EACH ROW EXECUTE FUNCTION refuse()")  # fmt: skip
    with pytest.raises(Exception, match="refused by a trigger") as refused:
        store.complete_registration(fresh.sid, credential(b"\x07" * 16), NOW)
    assert not isinstance(refused.value, CredentialConflict)


# --- entities ----------------------------------------------------------------------------------


def test_entities_are_unique_per_service(store):
    svc = service()
    store.insert_service(svc)
    first = entity(svc)
    assert store.insert_entity(first)
    assert not store.insert_entity(entity(svc))
    assert store.get_entity(svc.account_sid, svc.sid, "user-0001").sid == first.sid
    page = store.list_entities(svc.account_sid, svc.sid, PageRequest(page_size=10))
    assert [e.sid for e in page.items] == [first.sid]
    assert store.delete_entity(svc.account_sid, svc.sid, "user-0001")
    assert not store.delete_entity(svc.account_sid, svc.sid, "user-0001")


def test_an_entity_deleted_by_the_sid_it_was_read_as(store):
    """`entity_sid`: the entity the deletion's factors were read from. When the identity
    names another now (deleted and made again since), nothing is deleted (None: read again)."""
    svc = service()
    store.insert_service(svc)
    again = entity(svc)
    assert store.insert_entity(again)
    earlier = "YE" + "0" * 32
    assert store.delete_entity(svc.account_sid, svc.sid, "user-0001", entity_sid=earlier) is None
    assert store.get_entity(svc.account_sid, svc.sid, "user-0001").sid == again.sid
    assert store.delete_entity(svc.account_sid, svc.sid, "user-0001", entity_sid=again.sid)
    assert store.get_entity(svc.account_sid, svc.sid, "user-0001") is None


# --- factors -----------------------------------------------------------------------------------


def test_a_new_users_first_factor_and_entity_are_one_write(store):
    svc = service()
    store.insert_service(svc)
    alice = entity(svc, "user-alice")
    first = factor(alice)
    assert store.insert_factor(first, entity=alice) is InsertOutcome.INSERTED
    assert store.get_entity(svc.account_sid, svc.sid, "user-alice").sid == alice.sid
    assert store.get_factor(svc.account_sid, svc.sid, first.sid).entity_sid == alice.sid
    # The identity was taken meanwhile (another sid): nothing is written, no hit counted.
    rival = entity(svc, "user-alice")
    hit = RateHit("factor:VA1:user-alice", NOW, 1)
    late = factor(rival)
    assert store.insert_factor(late, rate=hit, entity=rival) is InsertOutcome.ENTITY_EXISTS
    assert store.get_factor(svc.account_sid, svc.sid, late.sid) is None
    assert store.rate_limit_count(hit.key, NOW) == 0
    # Over its rate limit, a new user's entity is not created either.
    bob = entity(svc, "user-bob")
    assert store.insert_factor(factor(bob), rate=dataclasses.replace(hit, limit=0), entity=bob) is (
        InsertOutcome.RATE_LIMITED
    )
    assert store.get_entity(svc.account_sid, svc.sid, "user-bob") is None


def test_registration_completes_exactly_once(store):
    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    f = factor(ent, challenge=b"reg-challenge")
    store.insert_factor(f)
    found = store.find_factor_by_registration(svc.account_sid, svc.sid, b"reg-challenge")
    assert found.sid == f.sid and found.status is FactorStatus.UNVERIFIED
    assert store.complete_registration(f.sid, credential(), NOW)
    assert not store.complete_registration(f.sid, credential(b"\x02" * 16), NOW)
    got = store.get_factor(svc.account_sid, svc.sid, f.sid)
    assert got.status is FactorStatus.VERIFIED and got.credential == credential()


@pytest.mark.parametrize("discoverable", [True, False, None])
def test_whether_a_passkey_is_discoverable_is_kept(store, discoverable):
    svc = service()
    store.insert_service(svc)
    f = factor(stored(store, entity(svc)))
    store.insert_factor(f)
    said = dataclasses.replace(credential(), discoverable=discoverable)
    assert store.complete_registration(f.sid, said, NOW)
    got = store.get_factor(svc.account_sid, svc.sid, f.sid)
    assert got.credential.discoverable is discoverable
    (listed,) = store.verified_factors_of_identity(svc.account_sid, svc.sid, "user-0001")
    assert listed.credential == said


def test_expired_registration_does_not_complete(store):
    svc = service()
    store.insert_service(svc)
    f = factor(stored(store, entity(svc)))
    store.insert_factor(f)
    assert not store.complete_registration(f.sid, credential(), NOW + 600)


def test_a_credential_id_is_registered_once_per_service(store):
    svc = service()
    store.insert_service(svc)
    verified(store, svc, "user-0001")
    f = factor(stored(store, entity(svc, "user-0002")))
    store.insert_factor(f)
    with pytest.raises(CredentialConflict):
        store.complete_registration(f.sid, credential(), NOW)
    assert store.get_factor(svc.account_sid, svc.sid, f.sid).status is FactorStatus.UNVERIFIED


def test_factor_lists_rename_and_delete(store):
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    pending = factor(stored(store, entity(svc)))
    store.insert_factor(pending)
    all_factors = store.list_factors(svc.account_sid, svc.sid, f.entity_sid, PageRequest(10))
    assert [x.sid for x in all_factors.items] == [f.sid, pending.sid]
    assert [x.sid for x in store.verified_factors(svc.account_sid, svc.sid, f.entity_sid)] == [
        f.sid
    ]
    store.rename_factor(f.sid, "laptop", NOW + 5)
    renamed = store.get_factor(svc.account_sid, svc.sid, f.sid)
    assert (renamed.friendly_name, renamed.date_updated) == ("laptop", NOW + 5)
    assert store.delete_factor(svc.account_sid, svc.sid, f.sid)
    assert store.get_factor(svc.account_sid, svc.sid, f.sid) is None


def test_the_passkeys_to_re_check_across_accounts_or_in_one(store):
    """Those registered under trusted attestation (whatever their AAGUID: a U2F key's is
    zero), with what vouched for them read back as stored, and the others of given models."""
    zero = "0" * 8 + "-0000-0000-0000-" + "0" * 12  # the AAGUID of `credential()`
    svc, other_account = service(), service("AC" + "7" * 32)
    store.insert_service(svc)
    store.insert_service(other_account)
    first = verified(store, svc)
    unverified = factor(stored(store, entity(svc, "user-0002")))
    store.insert_factor(unverified)
    second = verified(store, other_account, "user-0003", b"\x03" * 16)
    attested = factor(stored(store, entity(svc, "user-0004")))
    store.insert_factor(attested)
    u2f = dataclasses.replace(credential(b"\x04" * 16), attested_model="ab" * 20,
                              attested_certificates=("cd" * 32, "ef" * 32))  # fmt: skip
    assert store.complete_registration(attested.sid, u2f, NOW)
    stored_u2f = store.get_factor(svc.account_sid, svc.sid, attested.sid).credential
    assert (stored_u2f.attested_model, stored_u2f.attested_certificates) == (
        "ab" * 20,
        ("cd" * 32, "ef" * 32),
    )
    assert first.credential.attested_model is None and first.credential.attested_certificates == ()
    other_model = "11111111-2222-3333-4444-555555555555"
    both = store.verified_factors_to_recheck([zero.upper(), other_model], ["AB" * 20])
    assert [f.sid for f in both] == [first.sid, second.sid, attested.sid]  # by seq
    mine = store.verified_factors_to_recheck([zero], ["ab" * 20], svc.account_sid)
    assert [f.sid for f in mine] == [first.sid, attested.sid]
    # A trusted one by what vouched for it only, not by the AAGUID it claims.
    assert [f.sid for f in store.verified_factors_to_recheck([zero], [])] == [first.sid, second.sid]
    assert (
        list(store.verified_factors_to_recheck([other_model], ["ab" * 20], "AC" + "7" * 32)) == []
    )
    assert list(store.verified_factors_to_recheck([], [], other_account.account_sid)) == []


def test_with_nothing_reported_no_passkey_is_read(store, monkeypatch):
    svc = service()
    store.insert_service(svc)
    verified(store, svc)
    reads = []
    real = store._all
    monkeypatch.setattr(store, "_all", lambda *a, **k: reads.append(a) or real(*a, **k))
    assert list(store.verified_factors_to_recheck([], [])) == [] and reads == []
    assert [f.identity for f in store.verified_factors_to_recheck([], ["ab" * 20])] == []
    assert reads  # (something reported: the trusted ones are read)


def test_trusted_passkeys_to_re_check_are_read_a_page_at_a_time(store, monkeypatch):
    """Whatever the page, each trusted passkey of a model is found once, by seq; one whose
    `attested` this release cannot read is found by the AAGUID it claims."""
    from passkeyd.storage import sql as sql_module

    svc = service()
    store.insert_service(svc)
    sids = []
    for n in range(7):
        f = factor(stored(store, entity(svc, f"user-{n:04d}")))
        store.insert_factor(f)
        model = "ab" * 20 if n % 2 == 0 else "cd" * 20
        vouched = dataclasses.replace(credential(bytes([n + 1]) * 16), attested_model=model)
        assert store.complete_registration(f.sid, vouched, NOW)
        sids.append(f.sid)
    with store._write() as tx:
        tx.execute("UPDATE factors SET attested = 'not json' WHERE sid = ?", (sids[1],))
    zero = "0" * 8 + "-0000-0000-0000-" + "0" * 12  # the AAGUID of `credential()`
    claiming = []
    for n in range(5):  # registered otherwise: found by the AAGUID they claim
        claiming.append(verified(store, svc, f"user-1{n:03d}", bytes([n + 100]) * 16).sid)
    for page in (1, 2, 3, 5000):
        monkeypatch.setattr(sql_module, "RECHECK_PAGE", page)
        got = store.verified_factors_to_recheck([zero], [])
        assert [f.sid for f in got] == [sids[1], *claiming], page
        got = store.verified_factors_to_recheck([], ["ab" * 20])
        assert [f.sid for f in got] == sids[0::2], page
        got = store.verified_factors_to_recheck([zero], ["ab" * 20])
        assert [f.sid for f in got] == [sids[0], sids[1], *sids[2::2], *claiming], page


def test_the_passkeys_to_re_check_are_read_as_they_are_taken(store, monkeypatch):
    """The re-checked passkeys are read a page at a time as the caller takes them, not all
    at once: the caller writes between pages (an announcement), and a passkey of the model
    registered meanwhile, past the pages read, is found by the same run."""
    from passkeyd.storage import sql as sql_module

    monkeypatch.setattr(sql_module, "RECHECK_PAGE", 2)
    svc = service()
    store.insert_service(svc)

    def trusted(n: int) -> str:
        f = factor(stored(store, entity(svc, f"user-{n:04d}")))
        store.insert_factor(f)
        vouched = dataclasses.replace(credential(bytes([n + 1]) * 16), attested_model="ab" * 20)
        assert store.complete_registration(f.sid, vouched, NOW)
        return f.sid

    sids = [trusted(n) for n in range(3)]
    found = store.verified_factors_to_recheck([], ["ab" * 20])
    first = next(found)
    assert first.sid == sids[0]
    assert store.announce_report(svc.account_sid, first.sid, "REVOKED", (), NOW)
    sids.append(trusted(3))
    assert [f.sid for f in found] == sids[1:]


def test_a_factor_is_found_in_its_own_service_only(store):
    svc, elsewhere = service(), service()
    store.insert_service(svc)
    store.insert_service(elsewhere)
    f = verified(store, svc)
    assert store.get_factor(svc.account_sid, svc.sid, f.sid) == f
    assert store.get_factor(svc.account_sid, elsewhere.sid, f.sid) is None
    assert store.get_factor("AC" + "9" * 32, svc.sid, f.sid) is None


# --- challenges --------------------------------------------------------------------------------


def test_an_assertions_challenge_and_factor_in_one_read(store):
    svc, elsewhere = service(), service()
    store.insert_service(svc)
    store.insert_service(elsewhere)
    f = verified(store, svc)
    verified(store, elsewhere, cred_id=b"\x02" * 16)
    c = challenge(None, svc, b"auth-challenge")
    store.insert_challenge(c)
    acct = svc.account_sid
    found, holder = store.find_challenge_and_factor(acct, svc.sid, b"auth-challenge", b"\x01" * 16)
    assert found == store.get_challenge(acct, svc.sid, c.sid)
    assert holder == store.get_factor(acct, svc.sid, f.sid)
    # A credential no factor of this service holds (another service's does not count).
    for unknown in (b"\x09" * 16, b"\x02" * 16):
        found, holder = store.find_challenge_and_factor(acct, svc.sid, b"auth-challenge", unknown)
        assert found is not None and found.sid == c.sid and holder is None
    # No challenge: nothing, whatever the credential.
    for account, service_sid, value in (
        (acct, svc.sid, b"other-challenge"),
        (acct, elsewhere.sid, b"auth-challenge"),
        ("AC" + "9" * 32, svc.sid, b"auth-challenge"),
    ):
        assert store.find_challenge_and_factor(account, service_sid, value, b"\x01" * 16) == (
            None,
            None,
        )


def test_challenge_is_approved_exactly_once(store):
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    ent = store.get_entity(svc.account_sid, svc.sid, "user-0001")
    c = challenge(None, svc, b"auth-challenge")
    store.insert_challenge(c)
    got = store.get_challenge(svc.account_sid, svc.sid, c.sid)
    assert got == dataclasses.replace(c, seq=got.seq)
    first = store.approve_challenge(c, f, new_sign_count=1, backed_up=True, now=NOW + 1)
    second = store.approve_challenge(c, f, new_sign_count=2, backed_up=True, now=NOW + 1)
    assert (first, second) == (ApproveOutcome.APPROVED, ApproveOutcome.NOT_PENDING)
    got = store.get_challenge(svc.account_sid, svc.sid, c.sid)
    assert got.status is ChallengeStatus.APPROVED
    assert (got.entity_sid, got.identity, got.factor_sid) == (ent.sid, "user-0001", f.sid)
    approved = store.get_factor(svc.account_sid, svc.sid, f.sid)
    assert approved.credential.sign_count == 1 and approved.date_last_approved == NOW + 1


@pytest.mark.parametrize("flagged", [False, True], ids=["counted", "clone-flagged"])
def test_a_usernameless_approval_latches_discoverable(store, flagged):
    """`discovered`: the passkey answered a usernameless challenge, so it is discoverable,
    recorded whether its counter grew or (a counter that went back, under the flag policy)
    its clone warning was set; without it, `discoverable` is left as it was."""
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    assert f.credential.discoverable is None

    def approve(count: int, **kw) -> None:
        c = challenge(None, svc)
        store.insert_challenge(c)
        flag = {"flag_counter_regression": True} if flagged else {}
        outcome = store.approve_challenge(
            c, f, new_sign_count=count, backed_up=True, now=NOW, **flag, **kw
        )
        assert outcome is ApproveOutcome.APPROVED

    approve(5)
    assert store.get_factor(svc.account_sid, svc.sid, f.sid).credential.discoverable is None
    approve(1 if flagged else 6, discovered=True)
    got = store.get_factor(svc.account_sid, svc.sid, f.sid).credential
    assert got.discoverable is True and got.clone_warning is flagged
    assert got.sign_count == (5 if flagged else 6)


def test_a_challenge_for_one_user_is_never_approved_as_another(store):
    """Only a usernameless challenge learns whose it was: one made for a user is refused
    to another user's factor (the domain checks first; the store holds it too), and
    nothing changes."""
    svc = service()
    store.insert_service(svc)
    alice = stored(store, entity(svc, "user-0001"))
    mallory = verified(store, svc, "user-0002", cred_id=b"\x02" * 16)
    c = challenge(alice, svc)
    store.insert_challenge(c)
    outcome = store.approve_challenge(c, mallory, new_sign_count=1, backed_up=True, now=NOW + 1)
    assert outcome is ApproveOutcome.NOT_PENDING
    assert store.get_challenge(svc.account_sid, svc.sid, c.sid) == dataclasses.replace(
        c, seq=store.get_challenge(svc.account_sid, svc.sid, c.sid).seq
    )
    assert store.get_factor(svc.account_sid, svc.sid, mallory.sid) == mallory
    # The same factor approves a usernameless challenge, which takes its owner's name.
    open_to_all = challenge(None, svc)
    store.insert_challenge(open_to_all)
    assert (
        store.approve_challenge(open_to_all, mallory, new_sign_count=1, backed_up=True, now=NOW + 1)
        is ApproveOutcome.APPROVED
    )
    got = store.get_challenge(svc.account_sid, svc.sid, open_to_all.sid)
    assert (got.entity_sid, got.identity) == (mallory.entity_sid, "user-0002")


def test_counter_race_rolls_the_approval_back(store):
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    c1, c2 = challenge(None, svc), challenge(None, svc)
    store.insert_challenge(c1)
    store.insert_challenge(c2)
    assert store.approve_challenge(c1, f, new_sign_count=5, backed_up=False, now=NOW) is (
        ApproveOutcome.APPROVED
    )
    # c2 was verified against the old count (0) but 5 is stored now: 3 must not win.
    assert store.approve_challenge(c2, f, new_sign_count=3, backed_up=False, now=NOW) is (
        ApproveOutcome.COUNTER_RACE
    )
    assert store.get_challenge(svc.account_sid, svc.sid, c2.sid).status is ChallengeStatus.PENDING
    assert store.get_factor(svc.account_sid, svc.sid, f.sid).credential.sign_count == 5


def test_a_counter_equal_to_the_stored_nonzero_one_is_a_counter_race(store):
    """§7.2.22: a nonzero counter must grow. One equal to the stored count (an assertion
    verified against an older count, racing the approval that moved it there) is refused,
    and nothing changes; zero after zero is a synced passkey's, and approved."""
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    c0, c1, c2 = challenge(None, svc), challenge(None, svc), challenge(None, svc)
    for c in (c0, c1, c2):
        store.insert_challenge(c)
    assert store.approve_challenge(c0, f, new_sign_count=0, backed_up=False, now=NOW) is (
        ApproveOutcome.APPROVED
    )
    assert store.approve_challenge(c1, f, new_sign_count=5, backed_up=False, now=NOW) is (
        ApproveOutcome.APPROVED
    )
    moved = store.get_factor(svc.account_sid, svc.sid, f.sid)
    assert store.approve_challenge(c2, f, new_sign_count=5, backed_up=True, now=NOW + 1) is (
        ApproveOutcome.COUNTER_RACE
    )
    assert store.get_challenge(svc.account_sid, svc.sid, c2.sid).status is ChallengeStatus.PENDING
    assert store.get_factor(svc.account_sid, svc.sid, f.sid) == moved


@contextmanager
def postgres_with_a_passkey() -> Iterator[tuple[str, Store, Service, Factor]]:
    """A migrated PostgreSQL store in a schema of its own, with a service and a verified
    passkey (url, store, service, factor); closed and dropped after."""
    with temporary_schema() as url:
        store = open_store(url, pool_size=2)
        store.migrate()
        try:
            svc = service()
            store.insert_service(svc)
            yield url, store, svc, verified(store, svc)
        finally:
            store.close()


@contextmanager
def _postgres_with_two_deliveries(
    *, same_webhook: bool
) -> Iterator[tuple[str, Store, Service, Entity]]:
    """A migrated PostgreSQL store in a schema of its own, with a service, an entity and a
    factor whose creation queued deliveries EV1 and EV2 (to WH1, or WH1 and WH2); closed
    and dropped after."""
    with temporary_schema() as url:
        store = open_store(url, pool_size=2)
        try:
            store.migrate()
            svc = service()
            store.insert_service(svc)
            ent = stored(store, entity(svc))
            store.insert_factor(
                factor(ent),
                hooked(store, [Delivery(f"EV{n}", "factor.created",
                                        "WH1" if same_webhook else f"WH{n}",
                                        svc.account_sid, "http://x/", {})
                               for n in (1, 2)]),
            )  # fmt: skip
            yield url, store, svc, ent
        finally:
            store.close()


def _waits_for_a_row_lock(conn: psycopg.Connection, query_start: str) -> bool:
    """Whether a statement starting with `query_start` waits for a lock, within 10 s.

    `conn` may be in a transaction (it holds the lock): PostgreSQL then answers every read
    of pg_stat_activity from the snapshot its first read took, which made a statement that
    was not waiting yet at the first look never seen waiting (a failure on a loaded host).
    So each look starts from a fresh snapshot."""
    for _ in range(1000):
        conn.execute("SELECT pg_stat_clear_snapshot()")
        waits = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND starts_with(query, %s)",
            (query_start,),
        ).fetchone()
        if waits and waits[0]:
            return True
        threading.Event().wait(0.01)
    return False


def _sessions(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    """What the cluster's busy sessions are doing (for a failure's message)."""
    return conn.execute(
        "SELECT datname, state, wait_event_type, wait_event, left(query, 80)"
        " FROM pg_stat_activity WHERE state <> 'idle' AND pid <> pg_backend_pid()"
    ).fetchall()


@pytest.mark.parametrize("flag", [False, True])
def test_postgres_approval_of_a_factor_deleted_while_it_waits_is_factor_gone(flag):
    """PostgreSQL's one-statement approval waits for the factor's row while a deletion
    holds it; once the deletion commits, the answer is FACTOR_GONE, as on the generic path,
    not COUNTER_RACE (which the statement's own snapshot, still showing the factor, said)."""
    with postgres_with_a_passkey() as (url, store, svc, f):
        c = challenge(stored(store, entity(svc)), svc)
        store.insert_challenge(c)
        with psycopg.connect(url) as deleter, ThreadPoolExecutor(1) as pool:
            deleter.execute("DELETE FROM factors WHERE sid = %s", (f.sid,))  # holds the row
            outcome = pool.submit(
                store.approve_challenge, c, f, new_sign_count=5, backed_up=True, now=NOW,
                flag_counter_regression=flag,
            )  # fmt: skip
            try:
                waited = _waits_for_a_row_lock(deleter, "WITH pending AS")
                # (When it did not wait: what the approval did instead.)
                assert waited, (
                    repr(outcome.exception(timeout=0) or outcome.result(timeout=0))
                    if outcome.done()
                    else "still running, and not waiting for a lock; sessions: "
                    + repr(_sessions(deleter))
                )
                deleter.commit()
            finally:  # a failure must not leave the approval waiting, and the pool's exit
                deleter.rollback()  # waiting for it, for ever (no-op after the commit)
            assert outcome.result(timeout=10) is ApproveOutcome.FACTOR_GONE
        got = store.get_challenge(svc.account_sid, svc.sid, c.sid)
        assert got.status is ChallengeStatus.PENDING


def test_expired_challenge_is_not_approved(store):
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    c = challenge(None, svc)
    store.insert_challenge(c)
    assert store.approve_challenge(c, f, new_sign_count=1, backed_up=True, now=NOW + 601) is (
        ApproveOutcome.NOT_PENDING
    )
    # The factor's update, sent with the challenge's, is rolled back with it.
    got = store.get_factor(svc.account_sid, svc.sid, f.sid)
    assert got == f


def test_a_hit_of_an_older_window_leaves_the_current_one_alone(store):
    """A replica whose clock is a little behind (or a request that read the time just
    before the boundary) hits the window that just ended: it is let through without being
    counted, as in-process windows do, and the current window keeps its count. It used to
    restart the stored window, so alternating hits could pass any limit."""
    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    key = f"challenge:{svc.sid}:user-0001"
    current, older = RateHit(key, NOW, 2), RateHit(key, NOW - 60, 2)
    for expected in (InsertOutcome.INSERTED, InsertOutcome.INSERTED, InsertOutcome.RATE_LIMITED):
        assert store.insert_challenge(challenge(ent, svc), rate=current) is expected
    assert store.insert_challenge(challenge(ent, svc), rate=older) is InsertOutcome.INSERTED
    assert store.rate_limit_count(key, NOW) == 2
    assert store.insert_challenge(challenge(ent, svc), rate=current) is InsertOutcome.RATE_LIMITED
    # The same through a failure's hits (the generic upsert, on both stores).
    failed = RateHit(f"failed_auth:{svc.account_sid}", NOW, 2)
    c = challenge(ent, svc)
    store.insert_challenge(c)
    for _ in range(2):
        store.record_failed_attempt(c.sid, max_attempts=99, now=NOW, rate_hits=[failed])
    stale = RateHit(failed.key, NOW - 60, 2)
    store.record_failed_attempt(c.sid, max_attempts=99, now=NOW, rate_hits=[stale])
    assert store.rate_limit_count(failed.key, NOW) == 2


def test_a_challenge_over_a_limit_is_not_stored(store):
    svc = service()
    store.insert_service(svc)
    ent_ = stored(store, entity(svc))
    hit = RateHit("challenge:VA1:user-0001", NOW, 2)
    kept = [challenge(ent_, svc) for _ in range(2)]
    for c in kept:
        assert store.insert_challenge(c, rate=hit, max_pending=2) is InsertOutcome.INSERTED
    # The third is over both limits; then over the pending bound alone (counted before it).
    third = challenge(ent_, svc)
    assert store.insert_challenge(third, rate=hit, max_pending=2) is InsertOutcome.RATE_LIMITED
    assert store.rate_limit_count(hit.key, NOW) == 2  # the refused hit was rolled back
    roomy = dataclasses.replace(hit, limit=10)
    assert store.insert_challenge(third, rate=roomy, max_pending=2) is (
        InsertOutcome.TOO_MANY_PENDING
    )
    assert store.get_challenge(svc.account_sid, svc.sid, third.sid) is None
    assert store.insert_challenge(third, rate=roomy, max_pending=3) is InsertOutcome.INSERTED
    assert store.get_challenge(svc.account_sid, svc.sid, third.sid) is not None


def test_a_challenge_over_the_rate_limit_alone_is_not_stored(store):
    """Room left for it, a challenge over the rate limit is refused and leaves nothing:
    neither the challenge (SQLite inserts it before counting the hit) nor the hit."""
    svc = service()
    store.insert_service(svc)
    ent_ = stored(store, entity(svc))
    hit = RateHit("challenge:VA1:user-0002", NOW, 1)
    assert store.insert_challenge(challenge(ent_, svc), rate=hit, max_pending=50) is (
        InsertOutcome.INSERTED
    )
    over = challenge(ent_, svc)
    assert store.insert_challenge(over, rate=hit, max_pending=50) is InsertOutcome.RATE_LIMITED
    assert store.get_challenge(svc.account_sid, svc.sid, over.sid) is None
    assert store.rate_limit_count(hit.key, NOW) == 1
    unlimited = challenge(ent_, svc)  # and without a limit, the same statement stores it
    assert store.insert_challenge(unlimited) is InsertOutcome.INSERTED
    assert store.get_challenge(svc.account_sid, svc.sid, unlimited.sid) is not None


def test_a_capped_failure_past_its_limit_writes_nothing(store):
    svc = service()
    store.insert_service(svc)
    c = challenge(None, svc)
    store.insert_challenge(c)
    budget = RateHit("failed_auth:" + svc.account_sid, NOW, 2)
    for _ in range(2):
        outcome = store.record_failed_attempt(
            c.sid, max_attempts=5, now=NOW, rate_hits=[budget], capped=True
        )
        assert outcome is FailureOutcome.COUNTED
    before = store.get_challenge(svc.account_sid, svc.sid, c.sid)
    outcome = store.record_failed_attempt(
        c.sid, max_attempts=5, now=NOW + 1, rate_hits=[budget], capped=True
    )
    assert outcome is FailureOutcome.OVER_LIMIT
    assert store.get_challenge(svc.account_sid, svc.sid, c.sid) == before
    assert store.rate_limit_count(budget.key, NOW) == 2
    # Uncapped (an owner's own failures), the hit is counted past its limit.
    outcome = store.record_failed_attempt(c.sid, max_attempts=5, now=NOW, rate_hits=[budget])
    assert outcome is FailureOutcome.COUNTED
    assert store.rate_limit_count(budget.key, NOW) == 3


def test_concurrent_capped_failures_never_pass_the_limit(store):
    """24 failures from 8 threads at once against a budget of 10: exactly 10 are counted,
    on PostgreSQL too, where each runs in its own transaction."""
    svc = service()
    store.insert_service(svc)
    c = challenge(None, svc)
    store.insert_challenge(c)
    budget = RateHit("failed_auth:" + svc.account_sid, NOW, 10)
    start = threading.Barrier(8)

    def fail_three() -> list[FailureOutcome]:
        start.wait()
        return [
            store.record_failed_attempt(
                c.sid, max_attempts=100, now=NOW, rate_hits=[budget], capped=True
            )
            for _ in range(3)
        ]

    with ThreadPoolExecutor(8) as pool:
        outcomes = [o for batch in pool.map(lambda _: fail_three(), range(8)) for o in batch]
    assert outcomes.count(FailureOutcome.COUNTED) == 10
    assert outcomes.count(FailureOutcome.OVER_LIMIT) == 14
    assert store.rate_limit_count(budget.key, NOW) == 10
    assert store.get_challenge(svc.account_sid, svc.sid, c.sid).failed_attempts == 10


@pytest.mark.parametrize("answered", ["approved", "denied", "deleted"])
def test_a_failure_on_a_challenge_no_longer_pending_counts_nothing(store, answered):
    """A failed attempt whose challenge was answered, spent or deleted since the attempt
    read it (on PostgreSQL, another request's commit in between; SQLite's write lock keeps
    the domain's read current) counts no failure and spends no budget: as on SQLite, where
    such an attempt is answered 60322 before anything is counted."""
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    ent = store.get_entity(svc.account_sid, svc.sid, "user-0001")
    c = challenge(ent, svc)
    store.insert_challenge(c)
    if answered == "approved":
        assert store.approve_challenge(c, f, new_sign_count=1, backed_up=False, now=NOW) is (
            ApproveOutcome.APPROVED
        )
    elif answered == "denied":
        spent = store.record_failed_attempt(c.sid, max_attempts=1, now=NOW)
        assert spent is FailureOutcome.SPENT
    else:
        assert store.delete_entity(svc.account_sid, svc.sid, "user-0001")
    budget = RateHit("approve:" + svc.sid, NOW, 5)
    event = Delivery("EV1", "factor.counter_regressed", "YW" + "1" * 32, svc.account_sid,
                     "https://example.com/h", {"type": "factor.counter_regressed"})  # fmt: skip
    outcome = store.record_failed_attempt(
        c.sid, max_attempts=2, now=NOW, rate_hits=[budget], deliveries=[event]
    )
    assert outcome is FailureOutcome.NOT_PENDING
    assert store.rate_limit_count(budget.key, NOW) == 0
    assert store.delivery_backlog() == 0


def test_failed_attempts_spend_the_challenge(store):
    svc = service()
    store.insert_service(svc)
    c = challenge(None, svc)
    store.insert_challenge(c)
    for _ in range(4):
        outcome = store.record_failed_attempt(c.sid, max_attempts=5, now=NOW)
        assert outcome is FailureOutcome.COUNTED
    assert store.get_challenge(svc.account_sid, svc.sid, c.sid).status is ChallengeStatus.PENDING
    outcome = store.record_failed_attempt(c.sid, max_attempts=5, now=NOW + 9)
    assert outcome is FailureOutcome.SPENT
    spent = store.get_challenge(svc.account_sid, svc.sid, c.sid)
    assert (spent.status, spent.failed_attempts, spent.date_updated) == (
        ChallengeStatus.DENIED,
        5,
        NOW + 9,
    )


def test_challenge_lists_filter_by_status_and_factor(store):
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    ent = store.get_entity(svc.account_sid, svc.sid, "user-0001")
    pending = challenge(ent, svc, factor_sid=f.sid)
    old = challenge(ent, svc, expiration_date=NOW - 1)
    done = challenge(ent, svc)
    for c in (pending, old, done):
        store.insert_challenge(c)
    store.approve_challenge(done, f, new_sign_count=1, backed_up=False, now=NOW)

    def sids(**kw):
        page = store.list_challenges(
            svc.account_sid,
            svc.sid,
            ent.sid,
            PageRequest(10),
            now=NOW,
            **{"factor_sid": None, "status": None, **kw},
        )
        return [c.sid for c in page.items]

    assert sids() == [pending.sid, old.sid, done.sid]
    assert sids(status=ChallengeStatus.PENDING) == [pending.sid]
    assert sids(status=ChallengeStatus.EXPIRED) == [old.sid]
    assert sids(status=ChallengeStatus.APPROVED) == [done.sid]
    assert sids(factor_sid=f.sid) == [pending.sid, done.sid]


def test_purge_removes_only_what_expired_before_the_cutoff(store):
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    ent = store.get_entity(svc.account_sid, svc.sid, "user-0001")
    old = [challenge(ent, svc, expiration_date=NOW - 100) for _ in range(5)]
    fresh = challenge(ent, svc)
    for c in [*old, fresh]:
        store.insert_challenge(c)
    stale = factor(ent)
    stale = dataclasses.replace(stale, registration_expires=NOW - 100)
    store.insert_factor(stale)
    assert store.purge_expired(NOW - 50, batch=2) == 6
    assert store.get_challenge(svc.account_sid, svc.sid, fresh.sid) is not None
    assert all(store.get_challenge(svc.account_sid, svc.sid, c.sid) is None for c in old)
    assert store.get_factor(svc.account_sid, svc.sid, stale.sid) is None
    assert store.get_factor(svc.account_sid, svc.sid, f.sid) is not None


def test_the_purge_removes_the_entities_abandoned_sign_ups_made_and_no_other(store):
    """Every sign-up left behind its entity, made with its first factor, for good: a bot
    with a new identity each time grew the table without end. Kept: an entity made through
    the API, one with a passkey, one whose passkeys its user deleted (the demo signals a
    deleted passkey by it), one with a registration under way."""
    svc = service()
    store.insert_service(svc)

    def signed_up(identity: str, *, expires: int = NOW - 100) -> tuple[Entity, Factor]:
        made = expires - 600  # with its first factor, whose registration lasts 600 s
        ent = dataclasses.replace(entity(svc, identity), date_created=made, date_updated=made)
        f = dataclasses.replace(factor(ent), registration_expires=expires)
        assert store.insert_factor(f, entity=ent) is InsertOutcome.INSERTED
        return ent, f

    abandoned = [signed_up(f"bot-{i:04}")[0] for i in range(3)]
    kept_by_api = stored(
        store, dataclasses.replace(entity(svc, "made-by-post"), date_created=NOW - 700)
    )
    store.insert_factor(dataclasses.replace(factor(kept_by_api), registration_expires=NOW - 100))
    user, first = signed_up("user-0001", expires=NOW + 600)
    assert store.complete_registration(first.sid, credential(), NOW)
    deleted_all, theirs = signed_up("user-0002", expires=NOW + 600)
    assert store.complete_registration(theirs.sid, credential(b"\x02" * 16), NOW)
    assert store.delete_factor(svc.account_sid, svc.sid, theirs.sid)
    under_way, _ = signed_up("user-0003", expires=NOW + 600)
    retried, again = signed_up("user-0004")  # expired, then tried again: a new factor
    store.insert_factor(factor(retried))
    asked_for, _ = signed_up("user-0005")  # then made through the API: 409, and kept
    assert not store.insert_entity(entity(svc, "user-0005"))

    store.purge_expired(NOW - 50, batch=2)
    left = {
        e.identity for e in store.list_entities(svc.account_sid, svc.sid, PageRequest(50)).items
    }
    assert left == {"made-by-post", "user-0001", "user-0002", "user-0003", "user-0004", "user-0005"}
    assert not {e.identity for e in abandoned} & left
    # Its passkey deleted later, a user's entity still stays.
    assert store.delete_factor(svc.account_sid, svc.sid, first.sid)
    store.purge_expired(NOW + 10**6)
    left = {
        e.identity for e in store.list_entities(svc.account_sid, svc.sid, PageRequest(50)).items
    }
    assert {"made-by-post", "user-0001", "user-0002"} <= left


@pytest.mark.parametrize(
    ("table", "condition", "index"),
    [
        ("factors", "status = 'unverified' AND registration_expires < ?", "factors_unfinished"),
        ("webhook_deliveries", "status <> 'pending' AND date_updated < ?",
         "webhook_deliveries_done"),
        ("entities", "provisional = 1 AND date_created < ?", "entities_provisional"),
    ],
)  # fmt: skip
def test_the_purge_finds_its_rows_by_an_index(store, table, condition, index):
    """Each purge runs every few minutes, holding SQLite's write lock while it looks: a
    scan of every factor took half a second with a million of them."""
    if store.dialect == "sqlite":
        plan = store._all(
            f"EXPLAIN QUERY PLAN SELECT seq FROM {table} WHERE {condition} LIMIT ?", (NOW, 10)
        )
        assert any(f"USING INDEX {index}" in row[-1] for row in plan), plan
    else:
        names = {r[0] for r in store._all("SELECT indexname FROM pg_indexes", ())}
        assert index in names


def test_the_purge_drops_rate_windows_no_rule_looks_back_to(store):
    now = NOW - NOW % 60
    svc = service()
    store.insert_service(svc)
    store.insert_challenge(challenge(None, svc), rate=RateHit("usernameless:old", now - 120, 9))
    store.insert_challenge(challenge(None, svc), rate=RateHit("usernameless:new", now, 9))
    assert store.purge_expired(NOW - 10**6, rate_before=now - 60) == 1
    assert store.rate_limit_count("usernameless:old", now - 120) == 0
    assert store.rate_limit_count("usernameless:new", now) == 1


# --- authenticator metadata, clone warnings and backup flags (schema version 2) ----------------


def test_schema_version_2_is_applied(store):
    assert {1, 2} <= store.applied_migrations()


def test_the_authenticator_name_is_stored_with_the_credential(store):
    svc = service()
    store.insert_service(svc)
    f = factor(stored(store, entity(svc)))
    store.insert_factor(f)
    named = dataclasses.replace(credential(), authenticator_name="YubiKey 5 Series")
    assert store.complete_registration(f.sid, named, NOW)
    got = store.get_factor(svc.account_sid, svc.sid, f.sid).credential
    assert got.authenticator_name == "YubiKey 5 Series"
    assert (got.clone_warning, got.backup_eligible_changed) == (False, False)


def test_service_extension_settings_round_trip(store):
    settings = PasskeySettings(
        rp_id="example.com",
        attestation_policy="trusted",
        aaguid_allow=("cb69481e-8ff7-4039-93ec-0a2729a154a8",),
        aaguid_deny=("ba86dc56-635f-4141-aef6-00227b1b9af6",),
        top_origins=("https://portal.example",),
        counter_policy="flag",
        algorithms=(-7, -35),
    )
    svc = dataclasses.replace(service(), passkeys=settings)
    store.insert_service(svc)
    assert store.get_service(svc.account_sid, svc.sid).passkeys == settings


def test_a_regressed_counter_is_refused_or_flagged(store):
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    c1, c2, c3 = challenge(None, svc), challenge(None, svc), challenge(None, svc)
    for c in (c1, c2, c3):
        store.insert_challenge(c)
    assert store.approve_challenge(c1, f, new_sign_count=5, backed_up=False, now=NOW) is (
        ApproveOutcome.APPROVED
    )
    # Without the flag policy a counter at or below the stored one is a race: refused.
    assert store.approve_challenge(c2, f, new_sign_count=3, backed_up=False, now=NOW) is (
        ApproveOutcome.COUNTER_RACE
    )
    flagged = store.approve_challenge(
        c3, f, new_sign_count=3, backed_up=True, now=NOW + 1, flag_counter_regression=True
    )
    assert flagged is ApproveOutcome.APPROVED
    got = store.get_factor(svc.account_sid, svc.sid, f.sid)
    assert got.credential.clone_warning is True
    assert got.credential.sign_count == 5  # the counter never moves backwards
    assert got.credential.backed_up is True and got.date_last_approved == NOW + 1
    assert store.get_challenge(svc.account_sid, svc.sid, c3.sid).status is ChallengeStatus.APPROVED


def test_a_backup_eligibility_change_latches(store):
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    c1, c2 = challenge(None, svc), challenge(None, svc)
    store.insert_challenge(c1)
    store.insert_challenge(c2)
    store.approve_challenge(
        c1, f, new_sign_count=0, backed_up=False, now=NOW, backup_eligible_changed=True
    )
    store.approve_challenge(c2, f, new_sign_count=0, backed_up=False, now=NOW)
    got = store.get_factor(svc.account_sid, svc.sid, f.sid).credential
    assert got.backup_eligible_changed is True
    assert got.backup_eligible is True  # the registration's value stays the baseline


def test_active_factors_are_verified_or_awaiting_registration(store):
    svc = service()
    store.insert_service(svc)
    done = verified(store, svc)
    ent = store.get_entity(svc.account_sid, svc.sid, "user-0001")
    waiting = factor(ent)
    stale = dataclasses.replace(factor(ent), registration_expires=NOW - 1)
    store.insert_factor(waiting)
    store.insert_factor(stale)
    active = store.active_factors(svc.account_sid, svc.sid, ent.sid, NOW)
    assert [f.sid for f in active] == [done.sid, waiting.sid]
    assert store.active_factors("AC" + "9" * 32, svc.sid, ent.sid, NOW) == []


@pytest.fixture(params=["sqlite", "postgres"])
def two_processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two stores on one database, as two server processes have."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/shared.db"
        a, b = open_store(url), open_store(url)
        a.migrate()
        yield a, b
        a.close()
        b.close()
        return
    with temporary_schema() as url:
        a, b = open_store(url, pool_size=2), open_store(url, pool_size=2)
        a.migrate()
        yield a, b
        a.close()
        b.close()


def test_cached_configuration_is_current_at_each_refresh(two_processes) -> None:
    """A process keeps accounts, keys, services and webhooks between requests; a change
    made by any other process is seen from the next request (refresh) on."""
    a, b = two_processes
    acct = Account("AC" + "2" * 32, "", b"old-hash", NOW)
    b.put_account(acct)
    key = ApiKey(new_sid("SK"), acct.sid, "k", b"secret", False, NOW)
    b.put_api_key(key)
    svc = service(acct.sid)
    b.insert_service(svc)
    hook = Webhook(
        new_sid("YW"), acct.sid, svc.sid, "h", ("*",), "https://example.com/h", "POST",
        "enabled", "v2", NOW, NOW,
    )  # fmt: skip
    b.insert_webhook(hook)

    a.refresh_config()
    assert a.get_account(acct.sid).token_hash == b"old-hash"
    assert not a.get_api_key(key.sid).revoked
    assert a.get_service(acct.sid, svc.sid).friendly_name == "svc"
    assert [w.sid for w in a.enabled_webhooks(acct.sid, svc.sid)] == [hook.sid]

    b.put_account(dataclasses.replace(acct, token_hash=b"new-hash"))
    b.revoke_api_key(acct.sid, key.sid)
    b.update_service(
        svc.account_sid, svc.sid, lambda s: dataclasses.replace(s, friendly_name="renamed")
    )
    b.update_webhook(
        hook.account_sid,
        hook.service_sid,
        hook.sid,
        lambda w: dataclasses.replace(w, status="disabled"),
    )
    # within one request, what it began with
    assert a.get_account(acct.sid).token_hash == b"old-hash"
    a.refresh_config()  # the next request
    assert a.get_account(acct.sid).token_hash == b"new-hash"
    assert a.get_api_key(key.sid).revoked
    assert a.get_service(acct.sid, svc.sid).friendly_name == "renamed"
    assert a.enabled_webhooks(acct.sid, svc.sid) == []

    b.delete_service(acct.sid, svc.sid)
    a.refresh_config()
    assert a.get_service(acct.sid, svc.sid) is None


def test_a_miss_cached_by_one_process_is_forgotten_when_another_makes_it(two_processes) -> None:
    a, b = two_processes
    acct = Account("AC" + "6" * 32, "", b"hash", NOW)
    key = ApiKey("SK" + "6" * 32, acct.sid, "k", b"secret", False, NOW)
    a.refresh_config()
    assert a.get_account(acct.sid) is None and a.get_api_key(key.sid) is None  # cached
    b.put_account(acct)
    b.put_api_key(key)
    a.refresh_config()  # the next request
    assert a.get_account(acct.sid).token_hash == b"hash"
    assert a.get_api_key(key.sid).secret_hash == b"secret"


def test_a_process_sees_its_own_configuration_changes_at_once(store) -> None:
    store.refresh_config()
    svc = service()
    assert store.get_service(svc.account_sid, svc.sid) is None  # cached as absent
    store.insert_service(svc)
    assert store.get_service(svc.account_sid, svc.sid).sid == svc.sid
    store.update_service(
        svc.account_sid, svc.sid, lambda s: dataclasses.replace(s, friendly_name="renamed")
    )
    assert store.get_service(svc.account_sid, svc.sid).friendly_name == "renamed"


def test_upgrading_to_schema_7_keeps_the_rate_limit_windows(tmp_path: Path) -> None:
    """Version 7 rebuilds SQLite's rate_limits table (WITHOUT ROWID): running windows
    survive the upgrade and go on counting."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT)")
    for version, sql in load_migrations("sqlite"):
        if version < 7:
            for statement in filter(str.strip, sql.split(";")):
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
    db.execute("INSERT INTO rate_limits VALUES ('challenge:VA1:user-0001', ?, 7)", (NOW,))
    db.close()

    store = open_store(f"sqlite:///{path}")
    later = [v for v, _ in load_migrations("sqlite") if v >= 7]
    assert store.pending_migrations() == later
    assert store.migrate() == later
    assert store.rate_limit_count("challenge:VA1:user-0001", NOW) == 7
    with store._write() as tx:
        assert _count_hit_in_table(tx, RateHit("challenge:VA1:user-0001", NOW, 30)) == 8
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrading_to_schema_11_keeps_the_passkeys_of_schema_10(backend, tmp_path, monkeypatch):
    """A passkey as schema 10 stored it (no `attested` column): read back after
    `migrate` as registered otherwise, re-checked by its AAGUID, and listed by
    `verified_factors_to_recheck` under its model; new ones are stored with theirs."""
    from passkeyd.storage import sql as sql_module
    from passkeyd.storage.rows import FACTOR_COLUMNS, factor_to_row

    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path}/v10.db"
        else:
            url = stack.enter_context(temporary_schema())
        full = sql_module.load_migrations
        monkeypatch.setattr(
            sql_module, "load_migrations", lambda d: [m for m in full(d) if m[0] < 11]
        )
        store = open_store(url)
        stack.callback(store.close)
        store.migrate()
        svc = service()
        store.insert_service(svc)
        old = dataclasses.replace(
            factor(stored(store, entity(svc))),
            status=FactorStatus.VERIFIED,
            credential=credential(),
        )
        # neither seq nor attested, nor the columns of later schemas
        columns = FACTOR_COLUMNS.split(", ", 1)[1].split(", attested")[0]
        with store._write() as tx:
            tx.execute(
                f"INSERT INTO factors ({columns}) VALUES ({', '.join('?' * 26)})",
                factor_to_row(old)[:26],
            )
        monkeypatch.setattr(sql_module, "load_migrations", full)
        later = [m[0] for m in full(store.dialect) if m[0] >= 11]
        assert store.pending_migrations() == later
        assert store.migrate() == later
        got = store.get_factor(svc.account_sid, svc.sid, old.sid)
        assert got.credential.attested_model is None and got.credential.attested_certificates == ()
        assert got.credential.discoverable is None  # (not known: schema 13's column)
        assert [f.sid for f in store.verified_factors_to_recheck([got.credential.aaguid], [])] == [
            old.sid
        ]
        new = factor(stored(store, entity(svc, "user-0002")))
        store.insert_factor(new)
        attested = dataclasses.replace(credential(b"\x02" * 16), attested_model="ab" * 20,
                                       attested_certificates=("cd" * 32,))  # fmt: skip
        assert store.complete_registration(new.sid, attested, NOW)
        got = store.get_factor(svc.account_sid, svc.sid, new.sid).credential
        assert (got.attested_model, got.attested_certificates) == ("ab" * 20, ("cd" * 32,))


def test_verified_factors_of_an_identity_in_one_read(store):
    svc = service()
    store.insert_service(svc)
    alice = stored(store, entity(svc, "user-alice"))
    bob = stored(store, entity(svc, "user-bob"))
    verified, pending, bobs = factor(alice), factor(alice), factor(bob)
    for f in (verified, pending, bobs):
        store.insert_factor(f)
    store.complete_registration(verified.sid, credential(), NOW)
    store.complete_registration(
        bobs.sid, dataclasses.replace(credential(), credential_id=b"bob-cred"), NOW
    )
    got = store.verified_factors_of_identity(svc.account_sid, svc.sid, "user-alice")
    assert [f.sid for f in got] == [verified.sid]
    assert got[0].entity_sid == alice.sid and got[0].credential is not None
    assert store.verified_factors_of_identity("AC" + "9" * 32, svc.sid, "user-alice") == []
    assert store.verified_factors_of_identity(svc.account_sid, svc.sid, "user-nobody") == []


def test_a_passkeys_reported_status_is_announced_once(store):
    """`announce_report` records a verified passkey's status with its deliveries unless
    that status was recorded already; another status is announced again. Nothing is
    recorded for an unverified factor, another account's, or one that is gone."""
    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    verified, unverified = factor(ent), factor(ent)
    store.insert_factor(verified)
    store.insert_factor(unverified)
    assert store.complete_registration(verified.sid, credential(), NOW)

    def event(n: int) -> Delivery:
        return Delivery(f"EV{n}", "factor.authenticator_reported", "WHa", svc.account_sid,
                        "http://x/", {"n": n})  # fmt: skip

    def announce(sid: str, status: str, n: int, account: str = svc.account_sid) -> bool:
        return store.announce_report(account, sid, status, hooked(store, [event(n)]), NOW)

    def outbox() -> list[str]:
        claimed = store.claim_deliveries(now=NOW, lease_seconds=60, limit=10)
        for c in claimed:
            store.finish_delivery(c.seq, now=NOW, delivered=True, retry_at=None, error=None)
        return [c.delivery.event_sid for c in claimed]

    assert announce(verified.sid, "REVOKED", 1)
    assert outbox() == ["EV1"]
    assert not announce(verified.sid, "REVOKED", 2)  # already announced: no event
    assert outbox() == []
    assert not announce(verified.sid, "USER_VERIFICATION_BYPASS", 3, "AC" + "9" * 32)
    assert not announce(unverified.sid, "REVOKED", 4)
    assert not announce("YF" + "0" * 32, "REVOKED", 5)
    assert outbox() == []
    assert announce(verified.sid, "USER_VERIFICATION_BYPASS", 6)  # another status
    assert outbox() == ["EV6"]
    got = store.get_factor(svc.account_sid, svc.sid, verified.sid)
    assert got.status is FactorStatus.VERIFIED and got.credential.sign_count == 0


def test_a_reported_status_commits_with_its_audit_record(store):
    """`announce_report`'s audit records are written with the status, in its transaction:
    none when it was announced already, nor for a factor that is not there."""
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)

    def record(n: int) -> AuditEvent:
        return AuditEvent(svc.account_sid, svc.sid, "cli", "announce_authenticator_status",
                          f"{f.sid}#{n}", "ok", 0, "", "", NOW)  # fmt: skip

    def announce(sid: str, n: int) -> bool:
        return store.announce_report(svc.account_sid, sid, "REVOKED", (), NOW, audit=[record(n)])

    assert announce(f.sid, 1)
    assert not announce(f.sid, 2)
    assert not announce("YF" + "0" * 32, 3)
    trail = store.list_audit(svc.account_sid, PageRequest(page_size=10)).items
    assert [e.resource for e in trail] == [f"{f.sid}#1"]


def test_two_runs_announcing_one_passkey_at_once_announce_it_once():
    """PostgreSQL: another host's run has recorded the passkey's status and not committed
    yet; this run's announcement waits for it, finds the status recorded and writes no
    event. (A read of `reported` before the write would have found nothing, and both runs
    announced the passkey.)"""
    with postgres_with_a_passkey() as (url, store, svc, f):
        with psycopg.connect(url) as other_host:
            other_host.execute("UPDATE factors SET reported = 'REVOKED' WHERE sid = %s", (f.sid,))
            results: dict[str, object] = {}
            delivery = Delivery("EV1", "factor.authenticator_reported", "WH1", svc.account_sid,
                                "http://x/", {})  # fmt: skip
            thread = _in_a_thread(
                results,
                "announced",
                lambda: store.announce_report(svc.account_sid, f.sid, "REVOKED", [delivery], NOW),
            )
            with psycopg.connect(url, autocommit=True) as watching:
                assert _waits_for_a_row_lock(watching, "UPDATE factors SET reported")
            other_host.commit()
        thread.join(10)
        assert results == {"announced": False}
        assert store.claim_deliveries(now=NOW, lease_seconds=60, limit=10) == []


def test_each_webhook_has_one_delivery_out_at_a_time_oldest_first(store):
    """Claims take each webhook's oldest due delivery, none of a webhook with one out; a
    retry waits for its time and lets the next go; a lost lease makes it due again."""
    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))

    def event(hook: str, n: int) -> Delivery:
        return Delivery(f"EV{hook}{n}", "factor.created", hook, svc.account_sid, "http://x/", {})

    f = factor(ent)
    store.insert_factor(
        f, hooked(store, [event("WHa", 1), event("WHa", 2), event("WHb", 1), event("WHa", 3)])
    )

    def claim(now: int = NOW) -> list[str]:
        return [
            c.delivery.event_sid
            for c in store.claim_deliveries(now=now, lease_seconds=60, limit=10)
        ]

    first = store.claim_deliveries(now=NOW, lease_seconds=60, limit=10)
    assert [c.delivery.event_sid for c in first] == ["EVWHa1", "EVWHb1"]
    assert claim() == []  # both webhooks have one out
    a1, b1 = first
    assert store.finish_delivery(a1.seq, now=NOW, delivered=True, retry_at=None, error=None)
    assert claim() == ["EVWHa2"]
    assert store.finish_delivery(b1.seq, now=NOW, delivered=True, retry_at=None, error=None)
    assert claim() == []  # WHb has nothing more; WHa2 is still out
    assert claim(NOW + 61) == ["EVWHa2"]  # its lease ran out: due again, still first
    (a2,) = [c for c in store.claim_deliveries(now=NOW + 200, lease_seconds=60, limit=10)]
    assert a2.delivery.event_sid == "EVWHa2" and a2.attempts == 3
    store.finish_delivery(a2.seq, now=NOW + 200, delivered=False, retry_at=NOW + 500, error="x")
    assert claim(NOW + 200) == ["EVWHa3"]  # a delivery awaiting its retry holds up no one


def test_a_delivery_goes_to_its_webhook_as_it_is_when_claimed(store):
    """An event's deliveries are built from the webhooks read before its transaction (the
    configuration cache); a webhook deleted, turned off or moved in between gets none, or
    gets it at its new URL. (PostgreSQL's webhook change cannot see deliveries not yet
    committed, so the claim is where this holds on both stores.)"""
    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    hooks = {
        name: Webhook(new_sid("YW"), svc.account_sid, svc.sid, name, ("*",),
                      f"https://example.com/{name}", "POST", "enabled", "v2", NOW, NOW)
        for name in ("kept", "deleted", "disabled", "moved")
    }  # fmt: skip
    for hook in hooks.values():
        assert store.insert_webhook(hook)
    events = [
        Delivery(f"EV-{name}", "factor.created", hook.sid, svc.account_sid, hook.webhook_url, {})
        for name, hook in hooks.items()
    ]
    assert store.delete_webhook(svc.account_sid, svc.sid, hooks["deleted"].sid)
    for name, change in (
        ("disabled", {"status": "disabled"}),
        ("moved", {"webhook_url": "https://example.net/new"}),
    ):
        assert store.update_webhook(
            svc.account_sid,
            svc.sid,
            hooks[name].sid,
            lambda w, c=change: dataclasses.replace(w, **c),
        )
    store.insert_factor(factor(ent), events)  # the event's transaction, after the changes
    claimed = store.claim_deliveries(now=NOW, lease_seconds=60, limit=10)
    assert {c.delivery.event_sid: c.delivery.url for c in claimed} == {
        "EV-kept": "https://example.com/kept",
        "EV-moved": "https://example.net/new",
    }
    assert store.delivery_backlog() == 2  # the other two are gone, not left pending


@pytest.mark.parametrize("per_account", [None, 1])
def test_a_claim_fills_the_places_of_the_deliveries_it_drops(store, per_account):
    """A claim that drops deliveries whose webhook went takes others due in their place at
    once: the sender does not wait an interval for them (at most `limit` in all, one per
    webhook, `per_account` per account as always)."""
    svc = service()
    store.insert_service(svc)
    hooks = [
        Webhook(new_sid("YW"), svc.account_sid, svc.sid, name, ("*",),
                f"https://{name}.example/h", "POST", "enabled", "v2", NOW, NOW)
        for name in ("gone", "kept", "also")
    ]  # fmt: skip
    for hook in hooks:
        store.insert_webhook(hook)
    gone, kept, also = hooks
    deliveries = [
        Delivery(f"EV{h.friendly_name}{n}", "factor.created", h.sid, svc.account_sid,
                 h.webhook_url, {})
        for n in (1, 2, 3) for h in (gone, kept, also)
        if h is gone or n == 3
    ]  # fmt: skip
    assert [d.event_sid for d in deliveries][:3] == ["EVgone1", "EVgone2", "EVgone3"]
    # A webhook deleted before the event's transaction, whose deliveries were built from
    # the cache: the oldest due ones are the gone webhook's.
    assert store.delete_webhook(svc.account_sid, svc.sid, gone.sid)
    store.insert_factor(factor(stored(store, entity(svc))), deliveries)
    claimed = store.claim_deliveries(now=NOW, lease_seconds=60, limit=1, per_account=per_account)
    assert [c.delivery.event_sid for c in claimed] == ["EVkept3"]
    assert store.delivery_backlog() == 2  # the gone webhook's three are gone
    if per_account is None:
        (more,) = store.claim_deliveries(now=NOW, lease_seconds=60, limit=5)
        assert more.delivery.event_sid == "EValso3"
    else:  # the account has one out already
        assert store.claim_deliveries(now=NOW, lease_seconds=60, limit=5, per_account=1) == []


def test_a_delivery_given_back_has_its_attempt_unspent(store):
    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    hook = Delivery("EV1", "factor.created", "WHa", svc.account_sid, "http://x/", {})
    store.insert_factor(factor(ent), hooked(store, [hook]))
    (claimed,) = store.claim_deliveries(now=NOW, lease_seconds=60, limit=10)
    assert (claimed.attempts, claimed.date_created) == (1, NOW)
    assert store.finish_delivery(claimed.seq, now=NOW, delivered=False, retry_at=NOW + 5,
                                 error="not ours", lease_until=claimed.lease_until,
                                 attempt_spent=False)  # fmt: skip
    assert store.claim_deliveries(now=NOW + 4, lease_seconds=60, limit=10) == []
    (again,) = store.claim_deliveries(now=NOW + 5, lease_seconds=60, limit=10)
    assert again.attempts == 1
    # Only the claim's holder gives it back, once: a second give-back changes nothing.
    args = dict(now=NOW + 5, delivered=False, retry_at=NOW + 9, error="x", attempt_spent=False)
    assert store.finish_delivery(again.seq, lease_until=again.lease_until, **args)
    assert not store.finish_delivery(again.seq, lease_until=again.lease_until, **args)
    (third,) = store.claim_deliveries(now=NOW + 9, lease_seconds=60, limit=10)
    assert third.attempts == 1


def test_a_webhooks_undelivered_events_follow_it(store):
    """Deleted or disabled: its pending deliveries (retries included) are dropped, so
    nothing more goes to a URL its owner took away. Moved: they go to the new URL. Other
    webhooks' deliveries are untouched."""
    svc = service()
    store.insert_service(svc)
    hooks = [
        Webhook(new_sid("YW"), svc.account_sid, svc.sid, name, ("*",),
                f"https://{name}.example/h", "POST", "enabled", "v2", NOW, NOW)
        for name in ("gone", "off", "moved", "kept")
    ]  # fmt: skip
    for hook in hooks:
        store.insert_webhook(hook)
    gone, off, moved, kept = hooks
    store.insert_factor(
        factor(stored(store, entity(svc))),
        [
            Delivery(f"EV{h.friendly_name}{n}", "factor.created", h.sid, svc.account_sid,
                     h.webhook_url, {})
            for h in hooks for n in (1, 2)
        ],
    )  # fmt: skip
    first = store.claim_deliveries(now=NOW, lease_seconds=60, limit=10)
    for claimed in first:  # each webhook's first attempt failed: a retry is pending
        store.finish_delivery(claimed.seq, now=NOW, delivered=False, retry_at=NOW + 5, error="x")
    assert store.delete_webhook(svc.account_sid, svc.sid, gone.sid)
    store.update_webhook(
        off.account_sid,
        off.service_sid,
        off.sid,
        lambda w: dataclasses.replace(w, status="disabled"),
    )
    store.update_webhook(
        moved.account_sid,
        moved.service_sid,
        moved.sid,
        lambda w: dataclasses.replace(w, webhook_url="https://new.example/h"),
    )
    due = store.claim_deliveries(now=NOW + 10, lease_seconds=60, limit=10)
    assert sorted((c.delivery.event_sid, c.delivery.url) for c in due) == [
        ("EVkept1", "https://kept.example/h"),
        ("EVmoved1", "https://new.example/h"),
    ]


def test_an_audit_batch_is_written_in_one_call_and_read_back_in_order(store):
    events = [
        AuditEvent("AC" + "1" * 32, "VA1", "AC" + "1" * 32, f"action_{i}", f"YF{i}", "ok", 0, "",
                   f"RQ{i}", NOW + i)
        for i in range(3)
    ]  # fmt: skip
    other = dataclasses.replace(events[0], account_sid="AC" + "2" * 32, request_id="RQx")
    store.append_audit([*events, other])
    page = store.list_audit("AC" + "1" * 32, PageRequest(page_size=10))
    assert [e.request_id for e in page.items] == ["RQ0", "RQ1", "RQ2"]
    assert dataclasses.replace(page.items[0], seq=0) == events[0]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_claimers_never_lease_a_delivery_twice_nor_two_of_one_webhook(
    backend: str, tmp_path: Path
) -> None:
    """Two processes' dispatchers (two stores on one database, their clocks a second
    apart) claiming and finishing at once, in threads: every delivery is sent exactly once,
    no webhook ever has two out, and no account more than its share."""
    import threading
    from collections import Counter
    from contextlib import ExitStack

    with ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path}/claims.db"
        else:
            url = stack.enter_context(temporary_schema())
        first = open_store(url, pool_size=4)
        stack.callback(first.close)
        first.migrate()
        second = open_store(url, pool_size=4)
        stack.callback(second.close)
        svc = service()
        first.insert_service(svc)
        ent = stored(first, entity(svc))
        owner = {f"WH{h}": "AC" + str(1 + h // 4) * 32 for h in range(6)}  # 4 and 2 hooks
        events = [
            Delivery(f"EV{h}-{n:02d}", "factor.created", h, owner[h], "http://x/", {})
            for n in range(8)
            for h in owner
        ]
        first.insert_factor(factor(ent), hooked(first, events))
        lock = threading.Lock()
        out: set[str] = set()  # webhooks with a delivery out
        per_account: Counter[str] = Counter()
        sent: list[str] = []
        errors: list[BaseException] = []

        def dispatch(store: Store, now: int) -> None:
            try:
                for _ in range(400):
                    claimed = store.claim_deliveries(
                        now=now, lease_seconds=60, limit=3, per_account=2
                    )
                    with lock:
                        for c in claimed:
                            hook, account = c.delivery.webhook_sid, c.delivery.account_sid
                            assert hook not in out, "two out for one webhook"
                            out.add(hook)
                            per_account[account] += 1
                            assert per_account[account] <= 2, "an account over its share"
                            sent.append(c.delivery.event_sid)
                    for c in claimed:
                        with lock:  # finished and no longer out, as one step
                            assert store.finish_delivery(
                                c.seq, now=now, delivered=True, retry_at=None, error=None,
                                lease_until=c.lease_until,
                            )  # fmt: skip
                            out.discard(c.delivery.webhook_sid)
                            per_account[c.delivery.account_sid] -= 1
                    if len(sent) == len(events):
                        return
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        threads = [
            threading.Thread(target=dispatch, args=(store, now))
            for store, now in ((first, NOW), (second, NOW + 1))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert sorted(sent) == sorted(e.event_sid for e in events)  # each exactly once
        for hook in owner:  # and each webhook's in order
            mine = [s for s in sent if s.startswith(f"EV{hook}-")]
            assert mine == sorted(mine)


def test_no_account_gets_more_deliveries_out_than_its_share(store):
    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    busy_account, other_account = svc.account_sid, "AC" + "2" * 32
    events = [
        Delivery(f"EV{h}", "factor.created", h, acct, "http://x/", {})
        for h, acct in (("WH1", busy_account), ("WH2", busy_account), ("WH3", busy_account),
                        ("WH4", other_account))
    ]  # fmt: skip
    store.insert_factor(factor(ent), hooked(store, events))

    def claim() -> list[ClaimedDelivery]:
        return store.claim_deliveries(now=NOW, lease_seconds=60, limit=10, per_account=2)

    first = claim()
    assert [c.delivery.event_sid for c in first] == ["EVWH1", "EVWH2", "EVWH4"]
    assert claim() == []  # the busy account has its two out, the other its one webhook's
    store.finish_delivery(first[0].seq, now=NOW, delivered=True, retry_at=None, error=None)
    assert [c.delivery.event_sid for c in claim()] == ["EVWH3"]


def test_a_claim_waits_for_a_claim_in_progress_on_postgresql() -> None:
    """A replica whose claim runs while another's is still uncommitted waits for it, then
    sees its lease: here the other leased its webhook's second delivery (the first awaits a
    retry due a second later), and this one, a second ahead, must not lease the first."""
    import threading

    import psycopg

    from passkeyd.storage.postgres import _CLAIM_LOCK

    with _postgres_with_two_deliveries(same_webhook=True) as (url, store, svc, ent):
        with psycopg.connect(url) as other:  # the other replica, mid-claim
            other.execute("SELECT pg_advisory_xact_lock(%s)", (_CLAIM_LOCK,))
            other.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = %s WHERE event_sid = 'EV1'",
                (NOW + 1,),
            )
            other.execute(
                "UPDATE webhook_deliveries SET locked_until = %s, attempts = 1"
                " WHERE event_sid = 'EV2'",
                (NOW + 60,),
            )
            got: list[list[ClaimedDelivery]] = []
            claim = threading.Thread(
                target=lambda: got.append(
                    store.claim_deliveries(now=NOW + 1, lease_seconds=60, limit=5)
                )
            )
            claim.start()
            claim.join(timeout=0.5)
            assert claim.is_alive(), "the claim did not wait for the one in progress"
            other.commit()
        claim.join(timeout=10)
        assert got == [[]]  # WH1 has EV2 out: nothing more for it


def test_claims_and_the_purge_pass_rows_a_deletion_holds_on_postgresql() -> None:
    """A service's deletion locks its deliveries and challenges in an order of its own; a
    claim or a purge batch waiting for one of them while holding others deadlocked with it
    (1 round in 40; one of the two a 503 or a failed pass). They now leave locked rows for
    their next pass and wait for none."""
    with _postgres_with_two_deliveries(same_webhook=False) as (url, store, svc, ent):
        old = [challenge(ent, svc, expiration_date=NOW - 10) for _ in range(2)]
        for c in old:
            store.insert_challenge(c)
        with psycopg.connect(url) as deleting:  # holds one of each, mid-deletion
            deleting.execute("SELECT 1 FROM webhook_deliveries WHERE event_sid = 'EV1' FOR UPDATE")
            deleting.execute("SELECT 1 FROM challenges WHERE sid = %s FOR UPDATE", (old[0].sid,))
            done: dict[str, object] = {}
            jobs = _in_a_thread(
                done,
                "jobs",
                lambda: (
                    store.claim_deliveries(now=NOW, lease_seconds=60, limit=5),
                    store.purge_expired(NOW),
                ),
            )
            jobs.join(5)
            if jobs.is_alive():  # waiting for the held rows: let them go, then fail
                deleting.rollback()
                jobs.join(10)
                pytest.fail("a claim or the purge waited for rows a deletion held")
            claimed, removed = done["jobs"]  # type: ignore[misc]
            assert [c.delivery.event_sid for c in claimed] == ["EV2"]
            assert removed >= 1
            assert store.get_challenge(svc.account_sid, svc.sid, old[1].sid) is None
            assert store.get_challenge(svc.account_sid, svc.sid, old[0].sid) is not None
            deleting.rollback()
        store.purge_expired(NOW)  # the next pass takes what was passed
        assert store.get_challenge(svc.account_sid, svc.sid, old[0].sid) is None


def test_a_serving_process_hears_configuration_changes_without_reading_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL a serving process LISTENs for configuration changes, so its requests
    need not read the configuration version first; while it cannot listen, they do."""
    import asyncio
    import threading
    import time

    import psycopg

    from passkeyd.storage import postgres
    from tests.pg import ADMIN_URL

    monkeypatch.setattr(postgres, "LISTEN_RETRY_SECONDS", 3.0)  # the cut lasts a while

    def eventually(condition, seconds: float = 5.0) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.02)

    with temporary_schema() as url:
        a, b = open_store(url, pool_size=2), open_store(url, pool_size=2)
        a.migrate()
        loop = asyncio.new_event_loop()
        reads: list[str] = []
        real_one = a._one
        here = threading.current_thread()  # the requests' thread, not the listener's

        def one(sql, args):
            if threading.current_thread() is here:
                reads.append(sql)
            return real_one(sql, args)

        a._one = one  # type: ignore[method-assign]
        try:
            a.start_group_commit(loop)
            eventually(lambda: a._listening)
            svc = service()
            b.insert_service(svc)
            a.refresh_config()
            assert a.get_service(svc.account_sid, svc.sid).friendly_name == "svc"
            reads.clear()
            b.update_service(
                svc.account_sid, svc.sid, lambda s: dataclasses.replace(s, friendly_name="renamed")
            )

            def renamed(name: str) -> bool:
                a.refresh_config()
                return a.get_service(svc.account_sid, svc.sid).friendly_name == name

            eventually(lambda: renamed("renamed"))
            assert not [sql for sql in reads if "config_version" in sql]
            # Its connection cut: requests read the version again (a change is seen at the
            # next one), until it listens again.
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'passkeyd-config-listener'"
                )
            eventually(lambda: not a._listening)
            b.update_service(
                svc.account_sid, svc.sid, lambda s: dataclasses.replace(s, friendly_name="again")
            )
            assert renamed("again")
            eventually(lambda: a._listening)
        finally:
            a.stop_group_commit()
            loop.close()
            a.close()
            b.close()


def test_a_lost_configuration_notice_is_caught_by_the_listener_s_version_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio
    import time

    from passkeyd.storage import postgres
    from passkeyd.storage.sql import SqlStore

    monkeypatch.setattr(postgres, "LISTEN_CHECK_SECONDS", 0.3)
    with temporary_schema() as url:
        a, b = open_store(url, pool_size=2), open_store(url, pool_size=2)
        a.migrate()
        loop = asyncio.new_event_loop()
        try:
            a.start_group_commit(loop)
            deadline = time.monotonic() + 5
            while not a._listening:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            seen: list[int] = []  # the versions the listener's checks read
            real_version = postgres.PostgresStore._version

            def version(self):
                found = real_version(self)
                seen.append(found)
                return found

            monkeypatch.setattr(postgres.PostgresStore, "_version", version)
            svc = service()
            b.insert_service(svc)
            inserted = real_version(b)
            # The listener has caught up with the insert (its notice, and a check that read
            # its version) before the rename. Caught up late, under load, it made the rename
            # visible with no check that read the rename's version.
            deadline = time.monotonic() + 10
            while inserted not in seen:
                assert time.monotonic() < deadline, "no check read the insert's version"
                time.sleep(0.02)
            # Quiet: the check that read it has acted on it, and so has the listener on the
            # insert's notice (each loop of the listener hears notices, then checks; under
            # load a notice can be heard a loop late), and the cache, filled again, holds
            # the service: a later change can then be seen only through a check. (A fixed
            # pause here, then one check, were too short under load.)
            key = ("service", svc.account_sid, svc.sid)
            while True:
                for _ in range(2):  # two more checks began
                    read = len(seen)
                    while len(seen) == read:
                        assert time.monotonic() < deadline, "no check after the insert's"
                        time.sleep(0.02)
                a.refresh_config()
                assert a.get_service(svc.account_sid, svc.sid).friendly_name == "svc"
                if a._config_version is not None and key in a._config:
                    break
            monkeypatch.setattr(b, "_bump_config", SqlStore._bump_config)  # no NOTIFY
            seen.clear()
            b.update_service(
                svc.account_sid, svc.sid, lambda s: dataclasses.replace(s, friendly_name="renamed")
            )
            changed = real_version(b)
            deadline = time.monotonic() + 3
            while a.get_service(svc.account_sid, svc.sid).friendly_name != "renamed":
                assert time.monotonic() < deadline, "the version check never caught it"
                time.sleep(0.05)
                a.refresh_config()
            # Caught by a check that read the changed version (timed by what it read: a
            # check that began before the change may have read after its commit).
            assert a._listening and changed in seen
        finally:
            a.stop_group_commit()
            loop.close()
            a.close()
            b.close()


def test_concurrent_challenges_do_not_pass_their_rate_limit_together(store):
    from concurrent.futures import ThreadPoolExecutor

    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    hit = RateHit("challenge:VA1:user-0001", NOW, 5)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(
            pool.map(lambda _: store.insert_challenge(challenge(ent, svc), rate=hit), range(20))
        )
    assert outcomes.count(InsertOutcome.INSERTED) == 5
    assert outcomes.count(InsertOutcome.RATE_LIMITED) == 15
    assert store.rate_limit_count(hit.key, NOW) == 5


def test_an_approval_writes_its_webhook_deliveries_and_a_refused_one_none(store):
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    ent = Entity(f.entity_sid, svc.account_sid, svc.sid, f.identity, NOW, NOW)

    def events(tag: str) -> list[Delivery]:
        return hooked(store, [
            Delivery(f"EV{tag}{n}", "challenge.approved", "WH1", svc.account_sid, "http://x/",
                     {"challenge_sid": tag, "n": str(n)})
            for n in range(2)
        ])  # fmt: skip

    def claimed() -> dict[str, dict[str, str]]:
        got = store.claim_deliveries(now=NOW + 10_000, lease_seconds=1, limit=100)
        found = {c.delivery.event_sid: c.delivery.payload for c in got}
        for c in got:
            store.finish_delivery(c.seq, now=NOW, delivered=True, retry_at=None, error=None)
        return found

    expired, raced, ok = (challenge(ent, svc) for _ in range(3))
    for c in (expired, raced, ok):
        store.insert_challenge(c)
    assert store.approve_challenge(
        expired, f, new_sign_count=1, backed_up=True, now=NOW + 601, deliveries=events("x")
    ) is (ApproveOutcome.NOT_PENDING)
    assert store.get_factor(svc.account_sid, svc.sid, f.sid) == f  # untouched
    assert store.approve_challenge(
        ok, f, new_sign_count=7, backed_up=False, now=NOW, deliveries=events("ok")
    ) is (ApproveOutcome.APPROVED)
    assert store.approve_challenge(
        raced, f, new_sign_count=5, backed_up=False, now=NOW, deliveries=events("r")
    ) is (ApproveOutcome.COUNTER_RACE)
    assert store.get_challenge(svc.account_sid, svc.sid, raced.sid).status is (
        ChallengeStatus.PENDING
    )
    # Deliveries go one per webhook at a time: claim twice.
    seen = {**claimed(), **claimed()}
    assert seen == {"EVok0": {"challenge_sid": "ok", "n": "0"},
                    "EVok1": {"challenge_sid": "ok", "n": "1"}}  # fmt: skip
    got = store.get_challenge(svc.account_sid, svc.sid, ok.sid)
    assert got.status is ChallengeStatus.APPROVED and got.factor_sid == f.sid
    assert got.date_responded == NOW
    assert store.get_factor(svc.account_sid, svc.sid, f.sid).credential.sign_count == 7


def test_a_usernameless_approval_names_the_passkey_s_owner(store):
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    c = challenge(None, svc)
    store.insert_challenge(c)
    assert store.approve_challenge(c, f, new_sign_count=1, backed_up=False, now=NOW) is (
        ApproveOutcome.APPROVED
    )
    got = store.get_challenge(svc.account_sid, svc.sid, c.sid)
    assert (got.entity_sid, got.identity, got.factor_sid) == (f.entity_sid, f.identity, f.sid)


def test_a_registration_writes_its_webhook_deliveries_and_a_refused_one_none(store):
    svc = service()
    store.insert_service(svc)
    f = factor(stored(store, entity(svc)))
    store.insert_factor(f)
    late = factor(stored(store, entity(svc, "user-0002")))
    store.insert_factor(late)

    def event(tag: str) -> list[Delivery]:
        return hooked(store, [Delivery(f"EV{tag}", "factor.verified", "WH" + tag, svc.account_sid,
                                       "http://x/", {"factor_sid": tag})])  # fmt: skip

    assert not store.complete_registration(late.sid, credential(b"\x03" * 16), NOW + 600,
                                           event("late"))  # fmt: skip
    assert store.complete_registration(f.sid, credential(), NOW, event("ok"))
    assert not store.complete_registration(f.sid, credential(b"\x02" * 16), NOW, event("again"))
    got = store.claim_deliveries(now=NOW + 10_000, lease_seconds=1, limit=100)
    assert [(c.delivery.event_sid, c.delivery.payload) for c in got] == [
        ("EVok", {"factor_sid": "ok"})
    ]


def test_a_flagged_approval_racing_one_that_moved_the_counter_is_approved_and_flagged() -> None:
    """PostgreSQL, the flag policy: an approval whose counter was overtaken, while it
    waited, by a concurrent one is approved with the clone warning set, as in sequence."""
    with postgres_with_a_passkey() as (url, store, svc, f):
        first = challenge(None, svc)
        store.insert_challenge(first)
        assert store.approve_challenge(first, f, new_sign_count=4, backed_up=False, now=NOW)
        f = store.get_factor(svc.account_sid, svc.sid, f.sid)
        mine = challenge(None, svc)
        store.insert_challenge(mine)
        outcome: list[ApproveOutcome] = []
        with psycopg.connect(url) as other:  # a concurrent approval, not yet committed
            other.execute("UPDATE factors SET sign_count = 6 WHERE sid = %s", (f.sid,))
            waiting = threading.Thread(
                target=lambda: outcome.append(
                    store.approve_challenge(
                        mine, f, new_sign_count=5, backed_up=False, now=NOW,
                        flag_counter_regression=True,
                    )
                )
            )  # fmt: skip
            waiting.start()
            waiting.join(0.5)
            assert waiting.is_alive()  # it waits for the factor's row
            other.commit()
        waiting.join(5)
        assert outcome == [ApproveOutcome.APPROVED]
        got = store.get_factor(svc.account_sid, svc.sid, f.sid)
        assert got.credential.sign_count == 6 and got.credential.clone_warning is True


def test_cache_only_reads_answer_from_the_cache_or_say_they_cannot(store) -> None:
    """What a request on the event loop may read without waiting for the database."""
    from passkeyd.storage import NotCached

    acct = Account("AC" + "3" * 32, "", b"hash", NOW)
    store.put_account(acct)
    store.refresh_config()
    with pytest.raises(NotCached), store.cached_only():
        store.get_account(acct.sid)  # not cached yet
    assert store.get_account(acct.sid).token_hash == b"hash"  # loads and caches it
    # Absent: cached too, so that a 401 takes as long for a SID nobody has as for one that
    # exists (on PostgreSQL a miss cost a thread's round trip to the database: twice the
    # time of a wrong password for a real account).
    assert store.get_account("AC" + "4" * 32) is None
    with store.cached_only():
        assert store.get_account(acct.sid).token_hash == b"hash"
        assert store.get_account("AC" + "4" * 32) is None
    store.forget_config()
    with pytest.raises(NotCached), store.cached_only():
        store.get_account(acct.sid)


def test_misses_that_fill_the_cache_are_dropped_not_refused(store, monkeypatch) -> None:
    """Anyone can make up SIDs: they must not grow the cache without end, nor, by filling
    it, stop the misses that follow from being cached (a probe's would then take a query
    again, and its time would tell)."""
    from passkeyd.storage import NotCached, sql

    monkeypatch.setattr(sql, "MAX_CACHED_MISSES", 3)
    store.refresh_config()
    made_up = ["SK" + f"{i:032x}" for i in range(5)]
    for sid in made_up:
        assert store.get_api_key(sid) is None
    with store.cached_only():
        # the first three filled it; the fourth dropped them; the fourth and fifth are cached
        assert [store.get_api_key(sid) for sid in made_up[3:]] == [None] * 2
        for sid in made_up[:3]:
            with pytest.raises(NotCached):
                store.get_api_key(sid)
    assert len(store._config[sql._MISSES]) == 2
    # What exists does not count against the misses' bound (many accounts in use left
    # room for one miss, and every miss scanned the whole cache).
    real = [Account("AC" + f"{i:032x}", "", b"hash", NOW) for i in range(7, 12)]
    for acct in real:
        store.put_account(acct)
    store.refresh_config()
    for acct in real:
        store.get_account(acct.sid)
    for sid in made_up[:2]:
        assert store.get_api_key(sid) is None
    with store.cached_only():
        assert [store.get_api_key(sid) for sid in made_up[:2]] == [None] * 2
        assert all(store.get_account(a.sid) is not None for a in real)
    acct = Account("AC" + "5" * 32, "", b"hash", NOW)
    store.put_account(acct)
    store.refresh_config()
    store.get_account(acct.sid)  # one that exists is cached whatever the size
    with store.cached_only():
        assert store.get_account(acct.sid).token_hash == b"hash"


def test_a_request_authenticates_from_the_cache_while_the_listener_hears_changes() -> None:
    """PostgreSQL: listening, the configuration version need not be read, so authenticating
    a known account is a cache read; not listening, reading the version needs the database."""
    import asyncio
    import time

    from passkeyd.storage import NotCached

    with temporary_schema() as url:
        store = open_store(url, pool_size=2)
        store.migrate()
        acct = Account("AC" + "5" * 32, "", b"hash", NOW)
        store.put_account(acct)
        with pytest.raises(NotCached), store.cached_only():
            store.refresh_config()  # not listening: it would read the version
        loop = asyncio.new_event_loop()
        try:
            store.start_group_commit(loop)
            deadline = time.monotonic() + 5
            while not store._listening:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            store.refresh_config()
            store.get_account(acct.sid)
            with store.cached_only():
                store.refresh_config()
                assert store.get_account(acct.sid).token_hash == b"hash"
        finally:
            store.stop_group_commit()
            loop.close()
            store.close()


def test_an_entity_s_factor_limit_is_counted_in_the_insert(store):
    """`max_factors` counts an existing entity's verified factors and those awaiting
    registration inside the insert's own write; an expired registration does not count.
    At the limit nothing is written and no rate-limit hit is counted."""
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    ent = Entity(f.entity_sid, svc.account_sid, svc.sid, f.identity, NOW, NOW)
    store.insert_factor(dataclasses.replace(factor(ent), registration_expires=NOW))  # expired
    assert store.insert_factor(factor(ent), max_factors=3) is InsertOutcome.INSERTED
    assert store.insert_factor(factor(ent), max_factors=3) is InsertOutcome.INSERTED
    hit = RateHit("factor:VA1:user-0001", NOW, 100)
    full = factor(ent)
    assert store.insert_factor(full, rate=hit, max_factors=3) is InsertOutcome.ENTITY_FULL
    assert store.get_factor(svc.account_sid, svc.sid, full.sid) is None
    assert store.rate_limit_count(hit.key, NOW) == 0
    assert len(store.active_factors(svc.account_sid, svc.sid, ent.sid, NOW)) == 3


def test_concurrent_factors_do_not_pass_their_entity_s_limit_together(store):
    from concurrent.futures import ThreadPoolExecutor

    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(
            pool.map(lambda _: store.insert_factor(factor(ent), max_factors=5), range(16))
        )
    assert outcomes.count(InsertOutcome.INSERTED) == 5
    assert outcomes.count(InsertOutcome.ENTITY_FULL) == 11
    assert len(store.active_factors(svc.account_sid, svc.sid, ent.sid, NOW)) == 5


def test_a_factor_for_an_entity_deleted_meanwhile_is_not_written(store):
    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    assert store.delete_entity(svc.account_sid, svc.sid, ent.identity)
    hit = RateHit("factor:VA1:user-0001", NOW, 100)
    late = factor(ent)
    assert store.insert_factor(late, rate=hit) is InsertOutcome.ENTITY_GONE
    assert store.insert_factor(factor(ent), max_factors=20) is InsertOutcome.ENTITY_GONE
    assert store.get_factor(svc.account_sid, svc.sid, late.sid) is None
    assert store.rate_limit_count(hit.key, NOW) == 0


def test_a_challenge_for_an_entity_deleted_meanwhile_is_not_written(store):
    """The request read the user's passkeys before the deletion; its write came after. The
    challenge used to be written anyway, pending for a user who no longer exists."""
    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    assert store.delete_entity(svc.account_sid, svc.sid, ent.identity)
    hit = RateHit("challenge:VA1:user-0001", NOW, 100)
    late = challenge(ent, svc)
    assert store.insert_challenge(late, rate=hit, max_pending=20) is InsertOutcome.ENTITY_GONE
    assert store.insert_challenge(challenge(ent, svc)) is InsertOutcome.ENTITY_GONE
    assert store.get_challenge(svc.account_sid, svc.sid, late.sid) is None
    assert store.rate_limit_count(hit.key, NOW) == 0
    gone = verified(store, svc, cred_id=b"\x05" * 16, identity="user-0002")
    kept = store.get_entity(svc.account_sid, svc.sid, "user-0002")
    assert store.delete_factor(svc.account_sid, svc.sid, gone.sid)
    for_it = challenge(kept, svc, factor_sid=gone.sid)  # its user stays; the passkey went
    assert store.insert_challenge(for_it) is InsertOutcome.ENTITY_GONE
    usernameless = challenge(None, svc)  # no entity: nothing to check
    assert store.insert_challenge(usernameless, rate=hit) is InsertOutcome.INSERTED


def test_a_webhook_update_and_its_service_s_deletion_do_not_deadlock():
    """PostgreSQL: the update locked the webhook, then the configuration version; the
    service's deletion locks the version, then the webhooks: one of them failed on a
    deadlock (a 503). The update now takes the service's row first, as the deletion does."""
    with postgres_with_a_passkey() as (url, store, svc, _):
        hook = Webhook(
            new_sid("YW"), svc.account_sid, svc.sid, "hook", ("*",), "https://example.com/h",
            "POST", "enabled", "v2", NOW, NOW,
        )  # fmt: skip
        assert store.insert_webhook(hook)
        in_change, go_on = threading.Event(), threading.Event()
        results: dict[str, object] = {}
        run = functools.partial(_in_a_thread, results)

        def slow_change(w: Webhook) -> Webhook:
            in_change.set()
            go_on.wait(10)
            return dataclasses.replace(w, status="disabled")

        update = run(
            "update",
            lambda: store.update_webhook(svc.account_sid, svc.sid, hook.sid, slow_change),
        )
        assert in_change.wait(10)
        deletion = run("delete", lambda: store.delete_service(svc.account_sid, svc.sid))
        with psycopg.connect(url, autocommit=True) as watching:
            assert _waits_for_a_row_lock(watching, "DELETE FROM services")
        go_on.set()
        update.join(10)
        deletion.join(10)
        assert isinstance(results["update"], Webhook), results
        assert results["delete"] is True, results


def test_a_challenge_waits_for_a_deletion_of_its_entity_in_progress():
    """PostgreSQL: the entity's deletion holds its row; the challenge's insert waits for it,
    then finds the entity gone and writes nothing."""
    with postgres_with_a_passkey() as (url, store, svc, f):
        ent = store.get_entity(svc.account_sid, svc.sid, f.identity)
        assert ent is not None
        with psycopg.connect(url) as deleting:
            deleting.execute("SELECT 1 FROM entities WHERE sid = %s FOR UPDATE", (ent.sid,))
            deleting.execute("DELETE FROM factors WHERE entity_sid = %s", (ent.sid,))
            deleting.execute("DELETE FROM entities WHERE sid = %s", (ent.sid,))
            outcome: list[InsertOutcome] = []
            late = challenge(ent, svc)
            insert = threading.Thread(
                target=lambda: outcome.append(store.insert_challenge(late, max_pending=20))
            )
            insert.start()
            with psycopg.connect(url, autocommit=True) as watching:
                assert _waits_for_a_row_lock(watching, "WITH svc AS")
            deleting.commit()
        insert.join(10)
        assert outcome == [InsertOutcome.ENTITY_GONE]
        assert store.get_challenge(svc.account_sid, svc.sid, late.sid) is None


@pytest.mark.parametrize("flag", [False, True])
def test_an_approval_for_a_factor_deleted_meanwhile_changes_nothing(store, flag):
    """Told apart from a counter race (which, under the flag policy, would approve with a
    clone warning): the factor is gone, the challenge stays pending."""
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    ent = Entity(f.entity_sid, svc.account_sid, svc.sid, f.identity, NOW, NOW)
    c = challenge(ent, svc)
    store.insert_challenge(c)
    assert store.delete_factor(svc.account_sid, svc.sid, f.sid)
    outcome = store.approve_challenge(
        c, f, new_sign_count=5, backed_up=False, now=NOW + 1, flag_counter_regression=flag
    )
    assert outcome is ApproveOutcome.FACTOR_GONE
    assert store.get_challenge(svc.account_sid, svc.sid, c.sid).status is ChallengeStatus.PENDING


def test_a_statement_waits_for_a_lock_at_most_the_lock_timeout(monkeypatch):
    """PostgreSQL: a table locked by another session (by hand, or a stuck transaction) held
    every request waiting for as long as the lock lasted, past the 10 s a shutdown gives
    them: answered 500, then committed. Now it waits LOCK_TIMEOUT_SECONDS, fails, and rolls
    back (StorageUnavailable: 503); once the lock is gone it goes through. A migration still
    waits for the locks it needs."""
    import time

    from passkeyd.storage import postgres

    monkeypatch.setattr(postgres, "LOCK_TIMEOUT_SECONDS", 0.3, raising=False)
    with postgres_with_a_passkey() as (url, store, svc, _):
        mine = challenge(None, svc)
        results: dict[str, object] = {}
        with psycopg.connect(url) as locking:
            locking.execute("LOCK TABLE challenges IN ACCESS EXCLUSIVE MODE")
            inserting = _in_a_thread(results, "insert", lambda: store.insert_challenge(mine))
            inserting.join(3)
            waited = inserting.is_alive()
            locking.rollback()  # (lets a waiting insert end)
        inserting.join(10)
        assert not waited, "the insert waited for the lock past 3 s"
        assert isinstance(results["insert"], StorageUnavailable), results
        assert store.get_challenge(svc.account_sid, svc.sid, mine.sid) is None  # rolled back
        assert store.insert_challenge(mine) is InsertOutcome.INSERTED

        with psycopg.connect(url) as locking:
            locking.execute("LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE")
            migrating = _in_a_thread(results, "migrate", store.migrate)
            time.sleep(1.0)  # three lock timeouts
            assert migrating.is_alive()
            locking.rollback()
        migrating.join(10)
        assert results["migrate"] == []


def test_a_rate_window_dated_by_a_clock_since_stepped_back_is_replaced(store):
    """As `RateWindows`, in the rate_limits table, and in PostgreSQL's one-statement
    challenge insert: a window more than one window ahead of the present is replaced by
    the present's, which counts again (the key had no limit until the clock caught up)."""
    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    future = RateHit(f"challenge:{svc.sid}:{ent.identity}", NOW + 365 * 86400, 2, 60)
    assert store.insert_challenge(challenge(ent, svc), rate=future) is InsertOutcome.INSERTED
    now = dataclasses.replace(future, window_start=NOW)
    outcomes = [store.insert_challenge(challenge(ent, svc), rate=now) for _ in range(3)]
    assert outcomes == [InsertOutcome.INSERTED, InsertOutcome.INSERTED, InsertOutcome.RATE_LIMITED]
    assert store.rate_limit_count(now.key, NOW) == 2

    counted = []
    for start in (NOW + 3600, NOW, NOW):
        with store._write() as tx:
            counted.append(_count_hit_in_table(tx, RateHit("approve:x", start, 9, 60)))
    assert counted == [1, 1, 2]


def test_page_tokens_have_one_random_key_per_database(two_processes, tmp_path) -> None:
    """Made once by the migration, read alike by every process of the database: a page
    token made by one is read by the other."""
    a, b = two_processes
    assert len(a.page_token_key()) == 32
    assert a.page_token_key() == b.page_token_key()
    other = open_store(f"sqlite:///{tmp_path}/other.db")
    other.migrate()
    try:
        assert other.page_token_key() != a.page_token_key()
    finally:
        other.close()


def test_every_postgresql_connection_notices_a_server_gone_without_a_word() -> None:
    """TCP keepalives and tcp_user_timeout on the pool's connections and a request's own,
    not only the listener's: a query on a connection to a dead host (or through a partition
    that drops packets) hung for the kernel's retransmissions, about 15 minutes, and a
    shutdown with it. What the URL sets itself is kept."""
    from urllib.parse import urlsplit

    with temporary_schema() as url:
        store = open_store(url, pool_size=2)
        try:
            with store._pool.connection() as conn:
                pooled = conn.info.get_parameters()
            with store._connect() as conn:
                own = conn.info.get_parameters()
        finally:
            store.close()
        for params in (pooled, own):
            assert (params["keepalives"], params["tcp_user_timeout"]) == ("1", "5000"), params
            assert params["keepalives_idle"] == "5", params
        query = urlsplit(url).query
        mine = url + ("&" if query else "?") + "keepalives_idle=60"
        store = open_store(mine, pool_size=1)
        try:
            with store._pool.connection() as conn:
                assert conn.info.get_parameters()["keepalives_idle"] == "60"
        finally:
            store.close()


def test_a_flag_decided_by_the_write_writes_its_announcement(store):
    """CounterPolicy=flag: an approval verified against a counter that another approval
    (a clone's, on another worker) moved up to its own before it wrote is flagged by the
    write, and `on_flag`, the flag's announcement, is written after its other deliveries.
    It used to be left out: the factor flagged, and no factor.counter_regressed sent."""
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    c1, c2, c3 = (challenge(None, svc) for _ in range(3))
    for c in (c1, c2, c3):
        store.insert_challenge(c)

    def event(n: int, kind: str) -> Delivery:
        return Delivery(f"EV{n}", kind, "YW" + "1" * 32, svc.account_sid, "http://x/", {"n": n})

    def sent_in_order() -> list[tuple[str, str]]:
        """Claim and acknowledge what is queued, one at a time (a webhook's order)."""
        sent = []
        while claimed := store.claim_deliveries(now=NOW + 5, lease_seconds=60, limit=16):
            (one,) = claimed
            sent.append((one.delivery.event_sid, one.delivery.event_type))
            store.finish_delivery(one.seq, now=NOW + 5, delivered=True, retry_at=None, error=None)
        return sent

    hooked(store, [event(0, "challenge.approved")])
    # The counter grows: no flag, and nothing of on_flag is written.
    assert store.approve_challenge(
        c1, f, new_sign_count=10, backed_up=False, now=NOW, flag_counter_regression=True,
        deliveries=[event(1, "challenge.approved")], on_flag=[event(2, "factor.counter_regressed")],
    ) is ApproveOutcome.APPROVED  # fmt: skip
    assert sent_in_order() == [("EV1", "challenge.approved")]
    # c2's assertion (counter 10) was verified against the count read before c1's approval.
    assert store.approve_challenge(
        c2, f, new_sign_count=10, backed_up=False, now=NOW, flag_counter_regression=True,
        deliveries=[event(3, "challenge.approved")], on_flag=[event(4, "factor.counter_regressed")],
    ) is ApproveOutcome.APPROVED  # fmt: skip
    assert store.get_factor(svc.account_sid, svc.sid, f.sid).credential.clone_warning is True
    assert sent_in_order() == [("EV3", "challenge.approved"), ("EV4", "factor.counter_regressed")]
    # Without the flag policy the race is refused, and nothing is written.
    assert store.approve_challenge(
        c3, f, new_sign_count=10, backed_up=False, now=NOW,
        deliveries=[event(5, "challenge.approved")], on_flag=[event(6, "factor.counter_regressed")],
    ) is ApproveOutcome.COUNTER_RACE  # fmt: skip
    assert store.delivery_backlog() == 0


def test_a_backup_state_change_is_announced_by_the_write_that_makes_it(store):
    """Two approvals of one passkey race (synced to a second device), each verified against
    the factor read before either wrote. `on_backup_change` is written when the stored
    backup state, as the write finds it, differs from the approval's: so the last event
    sent is the state stored. It used to be decided on the read: the stale approval that
    put BS back off said nothing, and the last event said on."""
    svc = service()
    store.insert_service(svc)
    f = verified(store, svc)
    assert f.credential.backed_up is False
    c1, c2, c3, c4 = (challenge(None, svc) for _ in range(4))
    for c in (c1, c2, c3, c4):
        store.insert_challenge(c)

    def event(n: int, kind: str) -> Delivery:
        return Delivery(f"EV{n}", kind, "YW" + "2" * 32, svc.account_sid, "http://x/", {"n": n})

    def approve(c: Challenge, count: int, backed_up: bool, n: int, **kw) -> ApproveOutcome:
        return store.approve_challenge(
            c, f, new_sign_count=count, backed_up=backed_up, now=NOW,
            deliveries=[event(n, "challenge.approved")],
            on_backup_change=[event(n + 1, "factor.backup_state_changed")], **kw,
        )  # fmt: skip

    def sent() -> list[str]:
        got = []
        while claimed := store.claim_deliveries(now=NOW + 5, lease_seconds=60, limit=16):
            (one,) = claimed
            got.append(one.delivery.event_sid)
            store.finish_delivery(one.seq, now=NOW + 5, delivered=True, retry_at=None, error=None)
        return got

    hooked(store, [event(0, "challenge.approved")])
    assert approve(c1, 10, True, 10) is ApproveOutcome.APPROVED  # off -> on
    assert sent() == ["EV10", "EV11"]
    # `f` was read before c1 was approved (backed up: no): on again, nothing changed.
    assert approve(c2, 11, True, 20) is ApproveOutcome.APPROVED
    assert sent() == ["EV20"]
    # Off, verified against that same stale read (which also said off): a change.
    assert approve(c3, 12, False, 30) is ApproveOutcome.APPROVED
    assert sent() == ["EV30", "EV31"]
    assert store.get_factor(svc.account_sid, svc.sid, f.sid).credential.backed_up is False
    # Refused (the counter did not grow): nothing is written, the announcement neither.
    assert approve(c4, 12, True, 40) is ApproveOutcome.COUNTER_RACE
    assert store.delivery_backlog() == 0
    # With the flag policy, the flag's announcement comes after the backup state's.
    flagged = approve(
        c4, 12, True, 50, flag_counter_regression=True,
        on_flag=[event(52, "factor.counter_regressed")],
    )  # fmt: skip
    assert flagged is ApproveOutcome.APPROVED
    assert sent() == ["EV50", "EV51", "EV52"]


def test_a_backup_state_committed_while_an_approval_waits_is_what_it_compares_with():
    """PostgreSQL, for real: another transaction (the passkey's approval from a second
    device) has changed the backup state, uncommitted, when this approval's statement
    starts; it commits half a second later. The statement's snapshot still shows the old
    state, but the comparison reads the row as committed, under its lock: on, so this
    approval's off is a change, announced."""
    with temporary_schema() as url:
        store = open_store(url)
        try:
            store.migrate()
            svc = service()
            store.insert_service(svc)
            f = verified(store, svc)  # backed up: no
            c = challenge(None, svc)
            store.insert_challenge(c)
            change = Delivery("EV1", "factor.backup_state_changed", "YW" + "3" * 32,
                              svc.account_sid, "http://x/", {})  # fmt: skip
            hooked(store, [change])
            with psycopg.connect(url) as other:
                other.execute(
                    "UPDATE factors SET backed_up = TRUE, sign_count = 10 WHERE sid = %s", (f.sid,)
                )
                committer = threading.Timer(0.5, other.commit)
                committer.start()
                try:
                    outcome = store.approve_challenge(
                        c, f, new_sign_count=20, backed_up=False, now=NOW,
                        on_backup_change=[change],
                    )  # fmt: skip
                finally:
                    committer.join()
            assert outcome is ApproveOutcome.APPROVED
            claimed = store.claim_deliveries(now=NOW + 5, lease_seconds=60, limit=16)
            assert [d.delivery.event_sid for d in claimed] == ["EV1"]
            assert store.get_factor(svc.account_sid, svc.sid, f.sid).credential.backed_up is False
        finally:
            store.close()


def test_a_migration_waiting_for_a_table_lock_does_not_hold_up_the_replicas(monkeypatch):
    """A rolling upgrade on PostgreSQL: `migrate` runs while replicas serve. Should a
    transaction hold a table a migration alters (a pg_dump backup, an open psql session),
    the migration waits for it, but without queueing its ACCESS EXCLUSIVE request in front
    of the replicas' queries for all that time: a query on the table still answers within
    about a second, and the migration is applied once the table is free."""
    from passkeyd.storage import sql as sql_module

    with temporary_schema() as url:
        full = sql_module.load_migrations
        monkeypatch.setattr(
            sql_module, "load_migrations", lambda d: [m for m in full(d) if m[0] < 11]
        )
        store = open_store(url)
        try:
            store.migrate()
            monkeypatch.setattr(sql_module, "load_migrations", full)
            with psycopg.connect(url) as reader, psycopg.connect(url, autocommit=True) as probe:
                reader.execute("SELECT count(*) FROM factors").fetchone()  # holds ACCESS SHARE
                with ThreadPoolExecutor(1) as pool:
                    migrating = pool.submit(store.migrate)
                    try:
                        time.sleep(1.5)  # migrate is waiting for the reader's lock by now
                        assert not migrating.done()
                        probe.execute("SET lock_timeout = '3s'")
                        started = time.monotonic()
                        try:  # a replica's read
                            probe.execute("SELECT count(*) FROM factors").fetchone()
                        except psycopg.errors.LockNotAvailable:
                            pytest.fail("a read of factors waited 3 s behind the migration")
                        assert time.monotonic() - started < 2.5
                    finally:
                        reader.rollback()  # the table is free: the migration goes ahead
                    assert migrating.result(timeout=30) == [11, 12, 13]
            assert store.pending_migrations() == []
        finally:
            store.close()


def test_an_entity_whose_passkey_an_older_release_verified_stays_once_it_is_deleted(store):
    """During a rolling upgrade from a release before schema 10, a sign-up's factor created
    by a new process (its entity provisional) may be verified by an old one, which knows
    nothing of `provisional` and leaves it so. Once its user deletes that passkey the entity
    stays, as any whose user deleted passkeys they had (docs/deployment.md, Housekeeping)."""
    from passkeyd.storage.sql import VERIFY_FACTOR, verify_factor_args

    svc = service()
    store.insert_service(svc)
    made = NOW - 700
    ent = dataclasses.replace(entity(svc, "user-0001"), date_created=made, date_updated=made)
    f = dataclasses.replace(factor(ent), registration_expires=NOW + 600)
    assert store.insert_factor(f, entity=ent) is InsertOutcome.INSERTED
    with store._write() as tx:  # verified as a release before schema 10 does
        assert tx.execute(VERIFY_FACTOR, verify_factor_args(f.sid, credential(), NOW)).rowcount
    assert store.delete_factor(svc.account_sid, svc.sid, f.sid)
    store.purge_expired(NOW + 10**6)
    left = store.list_entities(svc.account_sid, svc.sid, PageRequest(50)).items
    assert [e.identity for e in left] == ["user-0001"]


def test_a_claim_does_not_drop_an_event_for_a_webhook_turned_on_again(monkeypatch):
    """A claim that finds its delivery's webhook off drops that webhook's pending deliveries.
    Under READ COMMITTED the webhook can be turned on again, and an event for it committed,
    between the claim's read of the webhooks and its DELETE: that event was deleted unsent,
    for a webhook that is on."""
    from passkeyd.storage import postgres as pg

    with temporary_schema() as url:
        store, other = open_store(url, pool_size=2), open_store(url, pool_size=2)
        try:
            store.migrate()
            svc = service()
            store.insert_service(svc)
            w = Webhook(new_sid("YW"), svc.account_sid, svc.sid, "w", ("*",),
                        "https://w.example/h", "POST", "enabled", "v2", NOW, NOW)  # fmt: skip
            store.insert_webhook(w)
            ent = stored(store, entity(svc))
            off = functools.partial(dataclasses.replace, status="disabled")
            assert store.update_webhook(svc.account_sid, svc.sid, w.sid, off)
            # An event built from a cache that still had the webhook on.
            stale = Delivery("EVstale", "factor.created", w.sid, svc.account_sid, w.webhook_url, {})
            store.insert_factor(factor(ent), [stale])
            execute = pg._PgTx.execute
            meanwhile: list[str] = []

            def execute_after_a_change(self, sql, args=()):  # type: ignore[no-untyped-def]
                if sql.startswith("DELETE FROM webhook_deliveries WHERE") and not meanwhile:
                    meanwhile.append(sql)
                    with psycopg.connect(url, autocommit=True) as conn:  # (its row is locked)
                        conn.execute("UPDATE webhooks SET status = 'enabled' WHERE sid = %s",
                                     (w.sid,))  # fmt: skip
                    new = Delivery("EVnew", "factor.created", w.sid, svc.account_sid,
                                   w.webhook_url, {})  # fmt: skip
                    other.insert_factor(factor(ent), [new])
                return execute(self, sql, args)

            monkeypatch.setattr(pg._PgTx, "execute", execute_after_a_change)
            claimed = store.claim_deliveries(now=NOW, lease_seconds=60, limit=4)
            monkeypatch.setattr(pg._PgTx, "execute", execute)
            assert meanwhile
            claimed += store.claim_deliveries(now=NOW + 1, lease_seconds=60, limit=4)
            # (the stale one is dropped; the new one is claimed in its place, or later)
            assert [c.delivery.event_sid for c in claimed] == ["EVnew"]
        finally:
            store.close()
            other.close()


def test_the_listener_says_a_database_error_without_the_row_it_quotes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The configuration listener's warning gave the error's whole text, which for a
    PostgreSQL error includes its DETAIL (a refused row's values)."""
    import asyncio

    from passkeyd.storage import postgres

    class Diagnostic:
        message_primary = "the version cannot be read"
        sqlstate = "XX000"

    class Refused(Exception):
        diag = Diagnostic()

    def version(self):  # type: ignore[no-untyped-def]
        raise Refused("the version cannot be read\nDETAIL:  Failing row contains (s3cr3t)")

    monkeypatch.setattr(postgres, "LISTEN_CHECK_SECONDS", 0.1)
    caplog.set_level("WARNING", logger="passkeyd.storage")
    with temporary_schema() as url:
        store = open_store(url, pool_size=2)
        store.migrate()
        loop = asyncio.new_event_loop()
        try:
            monkeypatch.setattr(postgres.PostgresStore, "_version", version)
            store.start_group_commit(loop)
            deadline = time.monotonic() + 10
            while not any("unheard" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "the listener said nothing"
                time.sleep(0.05)
        finally:
            store.close()
            loop.close()
    (said,) = [r.getMessage() for r in caplog.records if "unheard" in r.getMessage()]
    assert "s3cr3t" not in said and "(SQLSTATE XX000)" in said, said
