"""The sealed auth tokens webhooks are signed with, across processes whose keys differ.

Found by the operations review: every `serve` wrote the bootstrap account's token back sealed
with its own key, or with none. One process started without PASSKEYD_SECRET_KEY, or with
another, left every correctly keyed process unable to sign the account's webhooks, and their
events failed after their attempts."""

from __future__ import annotations

import os

import pytest
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from passkeyd.api import create_app
from passkeyd.delivery import NOT_OUR_KEY, Dispatcher
from passkeyd.domain import Domain
from passkeyd.domain.accounts import Accounts
from passkeyd.sealing import SealingError, SecretBox
from passkeyd.settings import Settings
from passkeyd.storage import SQLiteStore
from tests.api.test_webhooks import create_webhook
from tests.conftest import Api
from tests.receiver import receiver

SID = "AC" + "0" * 31 + "1"
TOKEN = "bootstrap-token-1"
OLD, NEW, OTHER = (os.urandom(32) for _ in range(3))


@pytest.fixture
def store(db_path):
    store = SQLiteStore(str(db_path))
    store.migrate()
    yield store
    store.close()


def sealed(store: SQLiteStore, sid: str = SID) -> bytes | None:
    account = store.read_account(sid)
    assert account is not None
    return account.token_sealed


def test_a_process_without_the_key_or_with_another_leaves_the_seal_alone(store, clock):
    first = Accounts(store, clock, SecretBox(OLD)).ensure_account(SID, TOKEN)
    assert first.answers and not first.foreign_seal
    seal = sealed(store)
    assert seal is not None and SecretBox(OLD).open(seal, context=SID) == TOKEN

    keyless = Accounts(store, clock, None).ensure_account(SID, TOKEN)
    assert keyless.answers and not keyless.foreign_seal
    assert sealed(store) == seal  # (it was cleared)

    other = Accounts(store, clock, SecretBox(OTHER)).ensure_account(SID, TOKEN)
    assert other.answers and other.foreign_seal
    assert sealed(store) == seal  # (it was sealed again with the other key)

    same = Accounts(store, clock, SecretBox(OLD)).ensure_account(SID, TOKEN)
    assert same.answers and not same.foreign_seal and sealed(store) == seal  # nothing written


def test_a_process_that_read_the_token_unsealed_does_not_write_over_a_seal_made_since(
    store, clock, monkeypatch
):
    """Two starting at once: the seal is written only while the row is as it was read (a
    start with key A that read it unsealed replaced key B's seal made meanwhile, and was told
    nothing; found by the review of this change)."""
    Accounts(store, clock, None).ensure_account(SID, TOKEN)
    as_read = store.get_account(SID)
    assert Accounts(store, clock, SecretBox(OTHER)).ensure_account(SID, TOKEN).answers
    monkeypatch.setattr(store, "get_account", lambda sid: as_read)
    late = Accounts(store, clock, SecretBox(OLD)).ensure_account(SID, TOKEN)
    monkeypatch.undo()
    assert late.answers and late.foreign_seal  # judged again on what is there now
    assert SecretBox(OTHER).open(sealed(store) or b"", context=SID) == TOKEN


def test_a_token_never_sealed_is_sealed_by_the_first_process_with_a_key(store, clock):
    Accounts(store, clock, None).ensure_account(SID, TOKEN)
    assert sealed(store) is None
    assert not Accounts(store, clock, SecretBox(NEW)).ensure_account(SID, TOKEN).foreign_seal
    seal = sealed(store)
    assert seal is not None and SecretBox(NEW).open(seal, context=SID) == TOKEN


def test_the_new_key_before_the_old_opens_both_and_seals_with_the_new(store, clock):
    """Changing PASSKEYD_SECRET_KEY on purpose: new,old. The bootstrap account is sealed
    again at start-up; the others with `passkeyd accounts reseal`."""
    Accounts(store, clock, SecretBox(OLD)).ensure_account(SID, TOKEN)
    made, made_token = Accounts(store, clock, SecretBox(OLD)).create_account("made")
    both = SecretBox.from_text(f"{NEW.hex()}, {OLD.hex()}")
    assert both.open(sealed(store, made.sid) or b"", context=made.sid) == made_token

    assert not Accounts(store, clock, both).ensure_account(SID, TOKEN).foreign_seal
    assert SecretBox(NEW).open(sealed(store) or b"", context=SID) == TOKEN

    assert Accounts(store, clock, both).reseal() == (1, 0)  # the made account
    assert SecretBox(NEW).open(sealed(store, made.sid) or b"", context=made.sid) == made_token
    assert Accounts(store, clock, both).reseal() == (0, 0)  # nothing left to do
    assert Accounts(store, clock, SecretBox(OTHER)).reseal() == (0, 2)  # opens neither
    assert SecretBox(NEW).open(sealed(store) or b"", context=SID) == TOKEN  # left alone


@pytest.mark.parametrize(
    "text", [f"{NEW.hex()},", f"{NEW.hex()},nope", ",", "nope"], ids=["empty", "short", ",", "one"]
)
def test_a_key_list_with_a_bad_key_is_refused(text):
    with pytest.raises(SealingError, match="comma-separated"):
        SecretBox.from_text(text)


def test_a_process_whose_key_does_not_open_the_seal_leaves_the_delivery_unspent(
    db_path, store, clock
):
    """It gives the delivery back with its attempt unspent; a process with the key sends it,
    signed so that the Twilio SDK's validator accepts it."""
    keyed = Domain(store, clock, box=SecretBox(OLD), allow_private_webhooks=True)
    account, token = keyed.accounts.create_account("hooks")
    app = create_app(keyed, Settings(webhook_interval_seconds=600))  # its dispatcher idles
    with receiver() as rx, TestClient(app, base_url="http://testserver") as client:
        api = Api(client, db_path, account.sid, (account.sid, token))
        api.create_service()
        create_webhook(api, rx.url, "factor.created")
        api.create_factor("user-0001")

        wrong = Dispatcher(store, clock, SecretBox(OTHER), allow_private=True, max_attempts=1)
        claimed = store.claim_deliveries(now=clock(), lease_seconds=60, limit=10)
        assert [c.attempts for c in claimed] == [1]
        wrong._send(claimed[0])
        row = store._db.execute(
            "SELECT status, attempts, last_error, next_attempt_at FROM webhook_deliveries"
        ).fetchone()
        assert row == ("pending", 0, NOT_OUR_KEY, clock() + wrong.retry_base_seconds)
        assert rx.requests == []

        clock.advance(wrong.retry_base_seconds)
        right = Dispatcher(store, clock, SecretBox(OLD), allow_private=True, max_attempts=1)
        claimed = store.claim_deliveries(now=clock(), lease_seconds=60, limit=10)
        assert [c.attempts for c in claimed] == [1]  # its first attempt, whatever came before
        right._send(claimed[0])
        assert len(rx.requests) == 1
        assert wrong.give_back_seconds > 0  # (app.py sets 0 on SQLite, whose processes
        # share one key file: there is nobody to leave it to)
    received = rx.requests[0]
    signature = received.headers["X-Twilio-Signature"]
    assert RequestValidator(token).validate(rx.url, received.params, signature)


def test_a_delivery_nobody_can_sign_is_given_up_after_the_give_back_time(db_path, store, clock):
    """Left to others, unspent, only for `give_back_seconds` after its event: with no process
    holding the key (changed to a new one alone, or a key file lost) it was claimed and given
    back every few seconds forever, and never given up (found by the review of this
    change)."""
    keyed = Domain(store, clock, box=SecretBox(OLD), allow_private_webhooks=True)
    account, token = keyed.accounts.create_account("hooks")
    app = create_app(keyed, Settings(webhook_interval_seconds=600))  # its dispatcher idles
    with TestClient(app, base_url="http://testserver") as client:
        api = Api(client, db_path, account.sid, (account.sid, token))
        api.create_service()
        create_webhook(api, "http://127.0.0.1:9/x", "factor.created")
        api.create_factor("user-0001")
        wrong = Dispatcher(store, clock, SecretBox(OTHER), allow_private=True, max_attempts=2,
                           give_back_seconds=60)  # fmt: skip
        rows = []
        for _ in range(6):  # every 15 s: given back while under a minute old, then spent
            for claimed in store.claim_deliveries(now=clock(), lease_seconds=60, limit=10):
                wrong._send(claimed)
            rows.append(store._db.execute(
                "SELECT status, attempts FROM webhook_deliveries").fetchone())  # fmt: skip
            clock.advance(15)
    assert rows[:4] == [("pending", 0)] * 4
    assert rows[-1] == ("failed", 2)
