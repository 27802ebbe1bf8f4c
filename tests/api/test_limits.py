"""Rate limits (429, 20429 / 60326, Retry-After) and size limits, each a clear 4xx."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from passkeyd import cli
from passkeyd.api import create_app
from passkeyd.domain import Domain
from passkeyd.domain.limits import (
    DEFAULT_RULES,
    MAX_FACTORS_PER_ENTITY,
    MAX_PENDING_CHALLENGES_PER_ENTITY,
    RateLimiter,
    Rule,
    parse_rules,
)
from passkeyd.settings import Settings, SettingsError
from passkeyd.storage import SQLiteStore
from passkeyd.storage.windows import RateWindows
from tests.authenticator import Authenticator
from tests.conftest import ORIGIN, Api


@pytest.fixture(params=["database", "memory"])
def limited(request, db_path, clock) -> Iterator[Api]:
    """An API whose limits are small enough to reach in a test, with its windows in the
    rate_limits table (several processes) or in the process (one process, the default)."""
    rules = {"challenge": Rule(5, 60), "approve": Rule(4, 60), "factor": Rule(3, 60),
             "failed_auth": Rule(6, 60), "usernameless": Rule(8, 60)}  # fmt: skip
    windows = RateWindows(60) if request.param == "memory" else None
    store = SQLiteStore(str(db_path), windows=windows)
    store.migrate()
    domain = Domain(store, clock, rate_limits=rules, max_failed_attempts_per_challenge=5)
    account, token = domain.accounts.create_account()
    with TestClient(create_app(domain)) as client:
        yield Api(client, db_path, account.sid, (account.sid, token))
    if windows is not None:  # every hit was counted in memory, none in the table
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            assert db.execute("SELECT count(*) FROM rate_limits").fetchone() == (0,)


def assert_429(response, code=20429):
    assert (response.status_code, response.json()["code"]) == (429, code), response.text
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # and in the body, where the SDKs can read it (TwilioRestException.details)
    assert response.json()["details"] == {"retry_after": int(response.headers["Retry-After"])}


def test_defaults_stop_a_flood_from_one_identity_within_100_a_minute():
    per_service = {"usernameless"}
    assert all(
        rule.limit <= 100 and rule.window == 60
        for name, rule in DEFAULT_RULES.items()
        if name not in per_service
    )
    assert DEFAULT_RULES["usernameless"] == Rule(600, 60)
    assert MAX_FACTORS_PER_ENTITY == MAX_PENDING_CHALLENGES_PER_ENTITY == 100
    assert parse_rules("off") == {}
    assert parse_rules("challenge=7/30")["challenge"] == Rule(7, 30)


@pytest.mark.parametrize("spec", ["challenge=\u00b2/60", "challenge=5/\u0665", "factor=+5/60"])
def test_a_rate_limit_not_in_ascii_digits_is_a_settings_error(spec):
    """A "²" passed str.isdigit() and then failed int(): a traceback, not exit 3."""
    with pytest.raises(SettingsError, match="PASSKEYD_RATE_LIMITS"):
        Settings.from_env({"PASSKEYD_RATE_LIMITS": spec})


def test_a_rule_given_twice_is_a_settings_error():
    """One of the two was silently in force (found by the operations review)."""
    with pytest.raises(SettingsError, match="challenge is given twice"):
        Settings.from_env({"PASSKEYD_RATE_LIMITS": "challenge=10/60, challenge=5/60"})
    assert parse_rules("challenge=10/60,factor=5/60")["factor"] == Rule(5, 60)


def test_challenge_creation_is_limited_per_identity(limited, clock):
    api = limited
    api.create_service()
    api.register("user-0001")
    api.register("user-0002")
    for _ in range(5):
        api.challenge(identity="user-0001")
    before = api.snapshot()
    assert_429(api.post_json(f"{api.svc}/Passkeys/Challenges", {"identity": "user-0001"}))
    assert api.snapshot() == before
    api.challenge(identity="user-0002")  # another identity is not affected
    clock.advance(60)
    api.challenge(identity="user-0001")  # a new window


def test_challenges_asked_for_by_factor_count_against_their_user(limited):
    """By FactorSid or by identity, one budget per user: the FactorSid form used to be
    counted by no rule at all."""
    api = limited
    api.create_service()
    factor = api.register("user-0001")
    for i in range(5):
        body = {"factor_sid": factor["sid"]} if i % 2 else {"identity": "user-0001"}
        api.challenge(**body)
    before = api.snapshot()
    for body in ({"factor_sid": factor["sid"]}, {"identity": "user-0001"}):
        assert_429(api.post_json(f"{api.svc}/Passkeys/Challenges", body))
    assert api.snapshot() == before


def test_usernameless_challenges_are_limited_per_service(limited):
    api = limited
    api.create_service()
    api.register("user-0001")
    for _ in range(8):
        api.challenge()
    before = api.snapshot()
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {})
    assert_429(r)
    assert "usernameless" in r.json()["message"]
    assert api.snapshot() == before
    api.challenge(identity="user-0001")  # a user's own challenges are counted apart
    api.create_service()  # another service has its own budget
    api.challenge()


def test_approvals_that_verify_spend_nothing(limited):
    api = limited
    api.create_service()
    api.register("user-0001")
    for _ in range(4):  # as many as the identity's failure budget, all valid
        challenge = api.challenge(identity="user-0001")
        assert api.approve(api.authenticator.get(challenge["options"], ORIGIN)).status_code == 200
    challenge = api.challenge(identity="user-0001")  # the same window
    bad = api.authenticator.get(challenge["options"], "https://evil.test")
    assert api.approve(bad).status_code == 403  # the budget is untouched: not 429


def test_factor_creation_is_limited_per_entity_with_60326(limited):
    api = limited
    api.create_service()
    for _ in range(3):
        api.create_factor("user-0001")
    assert_429(
        api.post_json(
            f"{api.svc}/Passkeys/Factors", {"friendly_name": "a", "identity": "user-0001"}
        ),
        code=60326,
    )


def test_failed_approvals_are_limited_per_identity_yet_a_valid_assertion_always_passes(
    limited,
):
    api = limited
    api.create_service()
    api.register("user-0001")
    api.register("user-0002", authenticator=(other := Authenticator()))
    first = api.challenge(identity="user-0001")
    for _ in range(4):  # the identity's budget: 4 failures a minute
        bad = api.authenticator.get(first["options"], "https://evil.test")
        assert api.approve(bad).status_code == 403
    # Spent: an assertion that fails is answered 429 (and still counts on its challenge)...
    assert_429(api.approve(api.authenticator.get(first["options"], "https://evil.test")))
    spent = api.get(f"{api.svc}/Entities/user-0001/Challenges/{first['sid']}").json()
    assert spent["status"] == "denied"  # its fifth failure spent it
    assert spent["date_responded"] is not None and spent["date_responded"] >= spent["date_created"]
    # A valid assertion for it is refused now, saying why.
    late = api.approve(api.authenticator.get(first["options"], ORIGIN))
    assert (late.status_code, late.json()["code"]) == (403, 60322), late.text
    assert "denied after 5 failed attempts" in late.json()["message"]
    # ... but one that verifies is approved: failing in a user's name cannot lock them out.
    second = api.challenge(identity="user-0001")
    assert_429(api.approve(api.authenticator.get(second["options"], "https://evil.test")))
    ok = api.approve(api.authenticator.get(second["options"], ORIGIN))
    assert (ok.status_code, ok.json()["status"]) == (200, "approved"), ok.text
    # Another identity's budget is its own.
    theirs = api.challenge(identity="user-0002")
    assert api.approve(other.get(theirs["options"], "https://evil.test")).status_code == 403


def test_foreign_passkeys_share_a_failure_budget_per_account_that_locks_out_no_user(limited):
    api = limited
    api.create_service()
    owner, neighbour, stranger = Authenticator(), Authenticator(), Authenticator()
    api.register("user-0001", authenticator=owner)
    api.register("user-0002", authenticator=neighbour)
    stranger.create(api.create_factor("user-0003")["options"], ORIGIN)  # never verified
    (neighbours_passkey,) = neighbour.credentials

    def refused(response):
        assert response.status_code in (401, 403, 404), response.text

    # The owner's own failures spend the owner's budget (4 a minute), not the account's.
    mine = api.challenge(identity="user-0001")
    for _ in range(3):
        refused(api.approve(owner.get(mine["options"], "https://evil.test")))
    # Six foreign assertions: a passkey the service does not know, and a neighbour's passkey
    # offered to another user's challenge. Neither spends anyone's own tries.
    usernameless, theirs = api.challenge(), api.challenge(identity="user-0001")
    for _ in range(3):
        refused(api.approve(stranger.get(usernameless["options"], ORIGIN)))
        refused(
            api.approve(neighbour.get(theirs["options"], ORIGIN, credential_id=neighbours_passkey))
        )
    fresh = api.challenge()
    before = api.snapshot()
    assert_429(api.approve(stranger.get(fresh["options"], ORIGIN)))
    assert_429(
        api.approve(neighbour.get(theirs["options"], ORIGIN, credential_id=neighbours_passkey))
    )
    assert api.snapshot() == before
    # Every user offering their own passkey still signs in.
    assert api.approve(owner.get(mine["options"], ORIGIN)).status_code == 200
    ok = api.approve(neighbour.get(api.challenge(identity="user-0002")["options"], ORIGIN))
    assert ok.status_code == 200, ok.text


def test_a_test_suite_signing_one_user_in_over_and_over_meets_no_default_limit(api):
    """An app's integration tests sign one test user in again and again within a minute,
    and check refusals, each leaving its challenge pending. With the defaults none of that
    meets a limit: with 20 pending challenges and 30 challenges a minute, the 21st was
    refused 429."""
    api.create_service()
    api.register("user-0001")
    for i in range(60):
        options = api.challenge(identity="user-0001")["options"]
        if i % 3:  # a refusal the suite checks: its challenge stays pending
            r = api.approve(api.authenticator.get(options, "https://evil.test"))
            assert (r.status_code, r.json()["code"]) == (403, 60324), r.text
        else:
            r = api.approve(api.authenticator.get(options, ORIGIN))
            assert (r.status_code, r.json()["status"]) == (200, "approved"), r.text
    for _ in range(25):  # and passkeys for one user, past the old bound of 20
        api.create_factor("user-0001")


def test_an_entity_holds_a_bounded_number_of_passkeys(api, clock):
    """With the default limits, an entity fills up to its bound at once (no rate limit is
    met on the way), and the next one is refused as Twilio refuses too many factors for an
    entity (429 60326), until the unverified ones' registrations expire."""
    api.create_service()
    for _ in range(MAX_FACTORS_PER_ENTITY):
        api.create_factor("user-0001")
    clock.advance(100)
    before = api.snapshot()
    r = api.post_json(
        f"{api.svc}/Passkeys/Factors", {"friendly_name": "a", "identity": "user-0001"}
    )
    assert (r.status_code, r.json()["code"]) == (429, 60326), r.text
    assert "it holds 100 passkeys" in r.json()["message"]
    # (the SDKs keep no headers of an error: the wait is in the body's details too)
    assert r.headers["Retry-After"] == "500" == str(r.json()["details"]["retry_after"])
    assert api.snapshot() == before
    clock.advance(500)  # the first registrations expired: room again
    r = api.post_json(
        f"{api.svc}/Passkeys/Factors", {"friendly_name": "a", "identity": "user-0001"}
    )
    assert r.status_code == 201, r.text


def test_an_entity_full_of_verified_passkeys_says_to_delete_one(db_path, clock):
    store = SQLiteStore(str(db_path))
    store.migrate()
    domain = Domain(store, clock, max_factors_per_entity=2)
    account, token = domain.accounts.create_account()
    with TestClient(create_app(domain)) as client:
        api = Api(client, db_path, account.sid, (account.sid, token))
        api.create_service()
        first = api.register("user-0001")
        api.register("user-0001")
        r = api.post_json(
            f"{api.svc}/Passkeys/Factors", {"friendly_name": "a", "identity": "user-0001"}
        )
        assert (r.status_code, r.json()["code"]) == (429, 60326), r.text
        assert r.json()["message"].endswith("the most one entity may; delete one")
        assert r.headers["Retry-After"] == str(24 * 3600)
        api.delete(f"{api.svc}/Entities/user-0001/Factors/{first['sid']}")
        r = api.post_json(
            f"{api.svc}/Passkeys/Factors", {"friendly_name": "a", "identity": "user-0001"}
        )
        assert r.status_code == 201, r.text


def test_an_entity_holds_a_bounded_number_of_pending_challenges(api, clock):
    api.create_service()
    api.register("user-0001")
    for i in range(MAX_PENDING_CHALLENGES_PER_ENTITY):
        api.challenge(identity="user-0001")
        if i % 50 == 49:
            clock.advance(60)  # stay under the per-minute rate limit
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"identity": "user-0001"})
    assert (r.status_code, r.json()["code"]) == (429, 20429), r.text
    assert "pending" in r.json()["message"]
    # Retry-After is when the first of them expires (they were made 120 s ago and are
    # pending through their expiration_date, 600 s after), not a minute: then, and only
    # then, there is room again.
    wait = int(r.headers["Retry-After"])
    assert wait == 600 - 120 + 1
    clock.advance(wait - 1)
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"identity": "user-0001"})
    assert (r.status_code, r.headers["Retry-After"]) == (429, "1"), r.text
    clock.advance(1)
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"identity": "user-0001"})
    assert r.status_code == 201, r.text


def test_a_valid_assertion_does_not_read_the_identity_s_failure_budget(
    limited, monkeypatch: pytest.MonkeyPatch
):
    """The budget only decides how a failing assertion is answered, so an approval does not
    read it (on PostgreSQL or several workers, one query fewer per sign-in)."""
    api = limited
    api.create_service()
    api.register("user-0001")
    checked: list[str] = []
    real_check = RateLimiter.check

    def check(self: RateLimiter, rule_name: str, key: str) -> None:
        checked.append(rule_name)
        real_check(self, rule_name, key)

    monkeypatch.setattr(RateLimiter, "check", check)
    ok = api.approve(api.authenticator.get(api.challenge(identity="user-0001")["options"], ORIGIN))
    assert ok.status_code == 200, ok.text
    assert "approve" not in checked
    bad = api.authenticator.get(api.challenge(identity="user-0001")["options"], "https://evil.test")
    assert api.approve(bad).status_code == 403
    assert checked.count("approve") == 1


def test_the_size_limits_are_settings_that_reach_the_serving_domain(tmp_path):
    env = {
        "PASSKEYD_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "PASSKEYD_MAX_PASSKEYS_PER_ENTITY": "3",
        "PASSKEYD_MAX_PENDING_CHALLENGES_PER_ENTITY": "2",
        "PASSKEYD_MAX_FAILED_ATTEMPTS_PER_CHALLENGE": "5",
    }
    domain = cli._domain(Settings.from_env(env), migrate=True)
    try:
        assert (domain.limiter.max_factors, domain.limiter.max_pending_challenges) == (3, 2)
        assert domain.authentications.max_failed_attempts == 5
    finally:
        domain.store.close()
    defaults = Settings.from_env({})
    assert (defaults.max_passkeys_per_entity, defaults.max_pending_challenges_per_entity) == (
        MAX_FACTORS_PER_ENTITY,
        MAX_PENDING_CHALLENGES_PER_ENTITY,
    )
    assert defaults.max_failed_attempts_per_challenge == 0  # as at Twilio: none spends it
    for name, value in (("PASSKEYD_MAX_PASSKEYS_PER_ENTITY", "0"),
                        ("PASSKEYD_MAX_PENDING_CHALLENGES_PER_ENTITY", "many"),
                        ("PASSKEYD_MAX_FAILED_ATTEMPTS_PER_CHALLENGE", "-1")):  # fmt: skip
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})


def test_an_entity_s_bounds_follow_the_configured_sizes(db_path, clock):
    """Bounds of 3 passkeys and 2 pending challenges: the 4th passkey and the 3rd pending
    challenge are refused, and the refusals name the configured bound."""
    store = SQLiteStore(str(db_path))
    store.migrate()
    domain = Domain(store, clock, max_factors_per_entity=3, max_pending_challenges_per_entity=2)
    account, token = domain.accounts.create_account()
    with TestClient(create_app(domain)) as client:
        api = Api(client, db_path, account.sid, (account.sid, token))
        api.create_service()
        api.register("user-0001")
        api.create_factor("user-0001")
        api.create_factor("user-0001")
        before = api.snapshot()
        r = api.post_json(
            f"{api.svc}/Passkeys/Factors", {"friendly_name": "a", "identity": "user-0001"}
        )
        assert (r.status_code, r.json()["code"]) == (429, 60326), r.text
        assert "it holds 3 passkeys" in r.json()["message"]
        assert api.snapshot() == before
        api.challenge(identity="user-0001")
        api.challenge(identity="user-0001")
        r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"identity": "user-0001"})
        assert (r.status_code, r.json()["code"], r.headers["Retry-After"]) == (429, 20429, "601")
        assert "at most 2" in r.json()["message"]
