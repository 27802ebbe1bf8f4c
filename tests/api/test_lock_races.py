"""The ceremony endpoints read before they take the write lock (`domain.steps`): what they
read may change before they write. Here another process changes it while holding the lock,
and commits while the request waits for it; the write must notice."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from passkeyd.domain import authentication as authentication_module
from passkeyd.domain.limits import DEFAULT_RULES
from tests.api.test_webhooks import create_webhook
from tests.authenticator import Authenticator
from tests.conftest import ORIGIN


@contextmanager
def changed_by_another_process(
    db_path: Path, *statements: tuple[str, tuple]
) -> Iterator[list[float]]:
    """Another connection runs `statements` holding the write lock, and commits them half
    a second into the block (while the block's request waits for the lock). Yields a list
    that receives the commit's time (time.monotonic)."""
    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    for sql, args in statements:
        other.execute(sql, args)
    committed_at: list[float] = []

    def commit() -> None:
        time.sleep(0.5)
        committed_at.append(time.monotonic())
        other.execute("COMMIT")

    committer = threading.Thread(target=commit)
    committer.start()
    try:
        yield committed_at
    finally:
        committer.join()
        other.close()


def rows(db_path: Path, sql: str, args: tuple = ()) -> list[tuple]:
    db = sqlite3.connect(db_path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def deleting_entity(entity_sid: str) -> list[tuple[str, tuple]]:
    """What delete_entity runs."""
    return [
        (f"DELETE FROM {table} WHERE {column} = ?", (entity_sid,))
        for table, column in (("challenges", "entity_sid"), ("factors", "entity_sid"),
                              ("entities", "sid"))
    ]  # fmt: skip


def test_a_factor_for_a_user_deleted_meanwhile_starts_a_new_entity(api, db_path):
    """The entity read before the lock is gone when the factor is written: the factor goes
    to a new entity for the identity, not to the deleted one (where it would outlive its
    user, unlisted, and still sign in without a username)."""
    api.create_service()
    old = api.register("user-0001")
    with changed_by_another_process(db_path, *deleting_entity(old["entity_sid"])):
        r = api.post_json(
            f"{api.svc}/Passkeys/Factors", {"friendly_name": "alice", "identity": "user-0001"}
        )
    assert r.status_code == 201, r.text
    assert r.json()["entity_sid"] != old["entity_sid"]
    assert rows(db_path, "SELECT sid FROM factors WHERE entity_sid NOT IN"
                " (SELECT sid FROM entities)") == []  # fmt: skip
    entity = api.get(f"{api.svc}/Entities/user-0001")
    assert entity.status_code == 200 and entity.json()["sid"] == r.json()["entity_sid"]


@pytest.mark.parametrize("by", ["identity", "factor_sid"])
def test_a_challenge_for_a_user_deleted_meanwhile_is_not_found(api, db_path, by):
    """The user's passkeys were read before the lock; the user was deleted before the
    challenge's write: 404, as if deleted before, and no challenge left pending for a user
    who no longer exists (it used to stay until the purge)."""
    api.create_service()
    factor = api.register("user-0001")
    body = {"identity": "user-0001"} if by == "identity" else {"factor_sid": factor["sid"]}
    with changed_by_another_process(db_path, *deleting_entity(factor["entity_sid"])):
        r = api.post_json(f"{api.svc}/Passkeys/Challenges", body)
    expected = 60392 if by == "identity" else 60390
    assert (r.status_code, r.json()["code"]) == (404, expected), r.text
    assert rows(db_path, "SELECT sid FROM challenges") == []


def one_of_two_passkeys_deleted_once_read(api, domain, monkeypatch) -> dict:
    """A service whose user-0001 has two passkeys; the first (returned) is deleted, as by
    another request, right after the next request reads it (the user stays)."""
    api.create_service()
    factor = api.register("user-0001")
    api.register("user-0001", authenticator=Authenticator())
    store, read = domain.store, domain.store.get_factor

    def read_then_deleted_by_another(*args):
        found = read(*args)
        store.delete_factor(api.account_sid, api.service_sid, factor["sid"])
        return found

    monkeypatch.setattr(store, "get_factor", read_then_deleted_by_another)
    return factor


def test_a_challenge_for_a_passkey_deleted_meanwhile_is_not_found(api, domain, monkeypatch):
    """By FactorSid, for a passkey deleted after the request read it while its user keeps
    another: 404, not a pending challenge for a passkey that no longer exists."""
    factor = one_of_two_passkeys_deleted_once_read(api, domain, monkeypatch)
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"factor_sid": factor["sid"]})
    assert (r.status_code, r.json()["code"]) == (404, 60390), r.text
    assert rows(api.db_path, "SELECT sid FROM challenges") == []


def test_deleting_a_passkey_deleted_meanwhile_is_not_found(api, domain, monkeypatch):
    """Two deletions of one passkey at once (PostgreSQL, where a request's read and write
    are not under one lock): the one whose write finds nothing answered 204 as well. Here
    the other deletes right after this one's read."""
    factor = one_of_two_passkeys_deleted_once_read(api, domain, monkeypatch)
    r = api.delete(f"{api.svc}/Entities/user-0001/Factors/{factor['sid']}")
    assert (r.status_code, r.json()["code"]) == (404, 20404), r.text


def test_an_approval_whose_passkey_was_deleted_meanwhile_is_not_found(api, db_path):
    """The factor read before the lock was deleted before the approval's write: 404 factor
    not found, as if it had been deleted before; not a counter refusal with a clone warning
    (60324 and a factor.counter_regressed webhook)."""
    api.create_service()
    factor = api.register("user-0001")
    create_webhook(api, "https://hooks.example.com/x")
    challenge = api.challenge(identity="user-0001")
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    before = rows(db_path, "SELECT event_type FROM webhook_deliveries")
    with changed_by_another_process(db_path, ("DELETE FROM factors WHERE sid = ?",
                                              (factor["sid"],))):  # fmt: skip
        r = api.approve(assertion)
    assert (r.status_code, r.json()["code"]) == (404, 60390), r.text  # factor not found
    new = rows(db_path, "SELECT event_type FROM webhook_deliveries")[len(before) :]
    assert ("factor.counter_regressed",) not in new and ("challenge.approved",) not in new
    status = rows(db_path, "SELECT status FROM challenges WHERE sid = ?", (challenge["sid"],))
    assert status == [("pending",)]


def test_a_backup_state_changed_meanwhile_is_announced_as_the_write_finds_it(api, db_path):
    """The passkey synced to a second device, whose approval (BS on) committed while this
    one (BS off, from the first device) was being verified: this one's write puts BS back
    off, a change, and announces it. It used to compare with the factor read before the
    lock (off too) and say nothing, so the last event said on while off was stored."""
    api.create_service()
    device = Authenticator(backed_up=False)
    factor = api.register("user-0001", authenticator=device)
    create_webhook(api, "https://hooks.example.com/x", "factor.backup_state_changed")
    challenge = api.challenge(identity="user-0001")
    assertion = device.get(challenge["options"], ORIGIN, sign_count=20)
    synced = ("UPDATE factors SET backed_up = 1, sign_count = 10 WHERE sid = ?", (factor["sid"],))
    with changed_by_another_process(db_path, synced):
        assert api.approve(assertion).status_code == 200
    sent = rows(db_path, "SELECT payload FROM webhook_deliveries")
    assert [json.loads(p)["backed_up"] for (p,) in sent] == ["false"]
    assert rows(db_path, "SELECT backed_up FROM factors") == [(0,)]


def test_an_approval_whose_user_was_deleted_meanwhile_is_not_found(api, db_path):
    """The challenge and passkey read before the lock were deleted with their user before
    the approval's write: 404 challenge not found, as if deleted before; not 60322
    "already responded" for a challenge nobody answered (PostgreSQL answered so whenever a
    deletion of the user committed while an approval was being verified)."""
    api.create_service()
    factor = api.register("user-0001")
    challenge = api.challenge(identity="user-0001")
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    with changed_by_another_process(db_path, *deleting_entity(factor["entity_sid"])):
        r = api.approve(assertion)
    assert (r.status_code, r.json()["code"]) == (404, 60391), r.text


def test_an_owner_whose_passkey_was_deleted_meanwhile_is_not_refused_by_the_foreign_budget(
    api, db_path, clock
):
    """Strangers have spent the account's budget for foreign passkeys, and the owner's
    passkey is deleted while the owner's approval waits for the lock: the answer is still
    404 factor not found, not 429 from a budget that only foreign passkeys may spend."""
    api.create_service()
    factor = api.register("user-0001")
    assertion = api.authenticator.get(api.challenge(identity="user-0001")["options"], ORIGIN)
    rule = DEFAULT_RULES["failed_auth"]
    window = clock() - clock() % rule.window
    spent = ("INSERT INTO rate_limits (key, window_start, count) VALUES (?, ?, ?)",
             (f"failed_auth:{api.account_sid}", window, rule.limit))  # fmt: skip
    deleted = ("DELETE FROM factors WHERE sid = ?", (factor["sid"],))
    with changed_by_another_process(db_path, spent, deleted):
        r = api.approve(assertion)
    assert (r.status_code, r.json()["code"]) == (404, 60390), r.text


@pytest.mark.parametrize("limit", [20, 3])
def test_an_entity_filled_meanwhile_gets_no_passkey_over_its_limit(api, db_path, domain, limit):
    """limit - 1 passkeys when the request reads, `limit` when it writes: refused like the
    next one (the default limit, and one set by PASSKEYD_MAX_PASSKEYS_PER_ENTITY)."""
    domain.limiter.max_factors = limit
    api.create_service()
    for _ in range(limit - 1):
        api.create_factor(identity="user-0001")
    columns = [r[1] for r in rows(db_path, "PRAGMA table_info(factors)") if r[1] != "seq"]
    values = ", ".join(
        {"sid": "'YF' || lower(hex(randomblob(16)))", "registration_challenge": "randomblob(32)"}
        .get(c, c) for c in columns
    )  # fmt: skip
    last = f"INSERT INTO factors ({', '.join(columns)}) SELECT {values} FROM factors LIMIT 1"
    with changed_by_another_process(db_path, (last, ())):
        r = api.post_json(
            f"{api.svc}/Passkeys/Factors", {"friendly_name": "alice", "identity": "user-0001"}
        )
    full = api.post_json(
        f"{api.svc}/Passkeys/Factors", {"friendly_name": "alice", "identity": "user-0001"}
    )
    assert (r.status_code, r.json()["code"]) == (full.status_code, full.json()["code"]), r.text
    assert r.status_code == 429 and f"it holds {limit} passkeys" in r.json()["message"]
    assert rows(db_path, "SELECT count(*) FROM factors") == [(limit,)]


def test_a_registration_whose_factor_was_deleted_meanwhile_is_not_found(api, db_path):
    """404 challenge not found, as if it had been deleted before; not "already verified"."""
    api.create_service()
    factor = api.create_factor(identity="user-0001")
    credential = Authenticator().create(factor["options"], ORIGIN)
    with changed_by_another_process(db_path, ("DELETE FROM factors WHERE sid = ?",
                                              (factor["sid"],))):  # fmt: skip
        r = api.verify_factor(credential)
    assert (r.status_code, r.json()["code"]) == (404, 60391), r.text
    assert rows(db_path, "SELECT count(*) FROM factors") == [(0,)]


def test_an_assertion_is_verified_while_another_process_holds_the_lock(api, db_path, monkeypatch):
    """ApproveChallenge parses, reads and verifies the assertion before it takes the write
    lock (so another worker process's batch does not hold up that CPU work), then waits
    for the lock, and approves once it is free."""
    api.create_service()
    api.register("user-0001")
    challenge = api.challenge(identity="user-0001")
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    verified_at: list[float] = []
    verify = authentication_module.verify_authentication

    def timed_verify(*args, **kwargs):
        verified_at.append(time.monotonic())
        return verify(*args, **kwargs)

    monkeypatch.setattr(authentication_module, "verify_authentication", timed_verify)
    with changed_by_another_process(db_path) as committed_at:
        r = api.approve(assertion)
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    assert len(verified_at) == 1 and verified_at[0] < committed_at[0]


def test_foreign_assertions_spend_no_more_than_the_account_s_failure_budget(api, db_path, clock):
    """The account's budget for foreign passkeys is read before the lock. Here another
    process spends it all while this request waits for the lock: the request, which
    passed the first check, is refused with 429 and counts nothing, so concurrent
    foreign assertions cannot fail past the budget by as many as they are."""
    api.create_service()
    api.register("user-0001")
    stranger = Authenticator()
    stranger.create(api.create_factor("user-0002")["options"], ORIGIN)  # never verified
    assertion = stranger.get(api.challenge()["options"], ORIGIN)
    rule = DEFAULT_RULES["failed_auth"]
    key = f"failed_auth:{api.account_sid}"
    window = clock() - clock() % rule.window
    spend_it_all = ("INSERT INTO rate_limits (key, window_start, count) VALUES (?, ?, ?)",
                    (key, window, rule.limit))  # fmt: skip
    with changed_by_another_process(db_path, spend_it_all):
        r = api.approve(assertion)
    assert (r.status_code, r.json()["code"]) == (429, 20429), r.text
    assert rows(db_path, "SELECT count FROM rate_limits WHERE key = ?", (key,)) == [(rule.limit,)]
    assert rows(db_path, "SELECT failed_attempts FROM challenges WHERE status = 'pending'") == [
        (0,)
    ]


def test_a_service_update_changes_the_row_as_stored_not_as_read_before(api, domain, monkeypatch):
    """A request's service was read (from this process's cache) before another process's
    rename committed; the update wrote the whole row back as read: the rename, answered
    200, was undone. Seen on PostgreSQL replicas in 42 of 150 sequential rounds."""
    sid = api.create_service()["sid"]
    stale = domain.store.get_service(api.account_sid, sid)
    assert api.post_form(f"/v2/Services/{sid}", {"FriendlyName": "renamed"}).status_code == 200
    monkeypatch.setattr(domain.store, "get_service", lambda *args: stale)
    r = api.post_form(f"/v2/Services/{sid}", {"Passkeys.RelyingParty.Origins": ORIGIN})
    assert r.status_code == 200, r.text
    monkeypatch.undo()
    stored = api.get(f"/v2/Services/{sid}").json()
    assert stored["friendly_name"] == "renamed"
    assert stored["passkeys"]["relying_party"]["origins"] == [ORIGIN]
    assert r.json()["friendly_name"] == "renamed"


def test_a_webhook_update_changes_the_row_as_stored_not_as_read_before(api, domain, monkeypatch):
    """As for services: a webhook disabled by one request came back enabled when another,
    which had read it before, renamed it."""
    api.create_service()
    hook = create_webhook(api, "https://hooks.example.com/x")
    url = f"{api.svc}/Webhooks/{hook['sid']}"
    stale = domain.store.get_webhook(api.account_sid, api.service_sid, hook["sid"])
    assert api.post_form(url, {"Status": "disabled"}).status_code == 200
    monkeypatch.setattr(domain.store, "get_webhook", lambda *args: stale)
    r = api.post_form(url, {"FriendlyName": "renamed"})
    assert r.status_code == 200, r.text
    monkeypatch.undo()
    stored = api.get(url).json()
    assert (stored["status"], stored["friendly_name"]) == ("disabled", "renamed")


def test_a_factor_joins_its_user_whose_entity_was_deleted_and_made_again_meanwhile(
    api, domain, monkeypatch
):
    """PostgreSQL lets requests for one user write at once: a new factor's entity can be
    deleted under it (ENTITY_GONE), then made again by another request first (ENTITY_EXISTS).
    Each such refusal means another request changed the user; the factor is tried again
    (it was answered 503 after two, 17 times in 280 P1s racing an entity deletion)."""
    api.create_service()
    api.register("user-0001")
    store = domain.store
    real = store.insert_factor
    outcomes = []

    def changed_meanwhile(factor, *args, **kw):
        if len(outcomes) == 0:  # its entity deleted meanwhile
            domain.entities.delete(api.account_sid, api.service_sid, "user-0001")
        elif len(outcomes) == 1:  # ... and made again by another request, first
            domain.entities.create(api.account_sid, api.service_sid, "user-0001")
        outcome = real(factor, *args, **kw)
        outcomes.append(outcome.name)
        return outcome

    monkeypatch.setattr(store, "insert_factor", changed_meanwhile)
    factor = api.create_factor("user-0001")
    assert outcomes == ["ENTITY_GONE", "ENTITY_EXISTS", "INSERTED"]
    entity = api.get(f"{api.svc}/Entities/user-0001").json()
    assert factor["entity_sid"] == entity["sid"]
    listed = api.get(f"{api.svc}/Entities/user-0001/Factors").json()["factors"]
    assert [f["sid"] for f in listed] == [factor["sid"]]


def test_a_factor_whose_entity_keeps_changing_is_refused_as_unavailable(api, domain, monkeypatch):
    """Under a user made and deleted without end, a factor is tried a few times, then
    answered 503 (try again) with nothing stored, rather than tried for ever."""
    api.create_service()
    api.post_form(f"{api.svc}/Entities", {"Identity": "user-0001"})
    store = domain.store
    real = store.insert_factor
    attempts = []

    def always_changed(factor, *args, **kw):
        attempts.append(1)
        if store.get_entity(api.account_sid, api.service_sid, "user-0001") is None:
            domain.entities.create(api.account_sid, api.service_sid, "user-0001")
        else:
            domain.entities.delete(api.account_sid, api.service_sid, "user-0001")
        return real(factor, *args, **kw)

    monkeypatch.setattr(store, "insert_factor", always_changed)
    r = api.post_json(
        f"{api.svc}/Passkeys/Factors", {"friendly_name": "alice", "identity": "user-0001"}
    )
    assert (r.status_code, r.json()["code"]) == (503, 20503), r.text
    assert 2 < len(attempts) <= 8
    monkeypatch.undo()
    assert api.snapshot()["factors"] == []


def test_a_passkey_made_while_its_user_is_deleted_has_its_deletion_announced(
    api, db_path, domain, monkeypatch
):
    """The deletion reads the user's factors (to announce each one's deletion) before it
    deletes them all; a factor made in between (on PostgreSQL, where the two are not under
    one lock) was deleted with no factor.deleted event. Here it is made right after that
    read: the deletion reads again, and announces both."""
    from passkeyd.domain.models import PasskeySettings

    api.create_service()
    first = api.register("user-0001")
    create_webhook(api, "https://hooks.example.com/x", "factor.deleted")
    store, read = domain.store, domain.store.list_factors
    made: list[str] = []

    def read_then_one_made_by_another(*args):
        found = read(*args)
        if not made:
            factor, _ = domain.registrations.create_factor(
                api.account_sid, api.service_sid, friendly_name="bob",
                identity="user-0001", config=PasskeySettings(),
            )  # fmt: skip
            made.append(factor.sid)
        return found

    monkeypatch.setattr(store, "list_factors", read_then_one_made_by_another)
    assert api.delete(f"{api.svc}/Entities/user-0001").status_code == 204
    announced = rows(db_path, "SELECT payload FROM webhook_deliveries"
                     " WHERE event_type = 'factor.deleted'")  # fmt: skip
    sids = sorted(json.loads(payload)["factor_sid"] for (payload,) in announced)
    assert sids == sorted([first["sid"], made[0]])
    assert rows(db_path, "SELECT sid FROM factors") == []


def test_a_user_deleted_and_made_again_while_being_deleted_has_no_deletion_announced_twice(
    api, db_path, domain, monkeypatch
):
    """Right after this deletion read the user and its passkey, another request deleted the
    user (announcing the passkey's deletion) and made it again, with no passkey. This
    deletion then deleted the new entity in the old one's name: the passkey's deletion
    announced a second time, and the audit record naming the old SID. It reads again."""
    api.create_service()
    passkey = api.register("user-0001")
    old = api.get(f"{api.svc}/Entities/user-0001").json()["sid"]
    create_webhook(api, "https://hooks.example.com/x", "factor.deleted")
    store, read = domain.store, domain.store.list_factors
    new: list[str] = []

    def read_then_user_made_again_by_another(*args):
        found = read(*args)
        if not new:
            monkeypatch.setattr(store, "list_factors", read)
            domain.entities.delete(api.account_sid, api.service_sid, "user-0001")
            new.append(domain.entities.create(api.account_sid, api.service_sid, "user-0001").sid)
        return found

    monkeypatch.setattr(store, "list_factors", read_then_user_made_again_by_another)
    assert api.delete(f"{api.svc}/Entities/user-0001").status_code == 204
    announced = rows(db_path, "SELECT payload FROM webhook_deliveries")
    assert [json.loads(p)["factor_sid"] for (p,) in announced] == [passkey["sid"]]
    assert rows(db_path, "SELECT sid FROM entities") == []
    events = api.get("/v2/AuditEvents", params={"PageSize": 5}).json()["audit_events"]
    assert (events[0]["action"], events[0]["resource"]) == ("delete_entity", new[0])
    assert new[0] != old


def test_an_approval_whose_counter_was_passed_meanwhile_is_refused_as_a_clone(api, db_path):
    """The passkey signed in elsewhere (its counter moved to 30) while this assertion (20),
    verified against the counter read before, waited for the write lock: refused at the
    write as a counter that did not grow (403 60324, step sign_count), counted as a failed
    attempt on the challenge, which stays pending; the counter stays 30."""
    api.create_service()
    factor = api.register("user-0001")
    challenge = api.challenge(identity="user-0001")
    assertion = api.authenticator.get(challenge["options"], ORIGIN, sign_count=20)
    moved = ("UPDATE factors SET sign_count = 30 WHERE sid = ?", (factor["sid"],))
    with changed_by_another_process(db_path, moved):
        r = api.approve(assertion)
    assert (r.status_code, r.json()["code"]) == (403, 60324), r.text
    assert rows(db_path, "SELECT status, failed_attempts FROM challenges") == [("pending", 1)]
    assert rows(db_path, "SELECT sign_count FROM factors") == [(30,)]
    audit = api.get("/v2/AuditEvents", params={"PageSize": 1}).json()["audit_events"][0]
    assert (audit["action"], audit["step"]) == ("approve_challenge", "sign_count")
