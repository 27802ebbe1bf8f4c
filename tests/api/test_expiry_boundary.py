"""A passkeys challenge is pending through the second of its `expiration_date`.

The reference's Challenge state machine (twilio-verify-passkeys-api.md, (b)):
"`pending` | now > `expiration_date` | `expired`": at now == expiration_date it has not
expired yet, so it reads `pending` (fetch and list filters agree) and a valid assertion
approves it; one second later it is expired and P4 answers 403 60323."""

from __future__ import annotations

import calendar
import time

from tests.conftest import ORIGIN


def _epoch(iso: str) -> int:
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def _setup(api, clock):
    api.create_service()
    api.register("user-0001")
    challenge = api.challenge(identity="user-0001")
    clock.now = _epoch(challenge["expiration_date"])  # now == expiration_date
    return challenge


def _listed(api, status: str) -> list[str]:
    r = api.get(f"{api.svc}/Entities/user-0001/Challenges", params={"Status": status})
    assert r.status_code == 200, r.text
    return [c["sid"] for c in r.json()["challenges"]]


def test_a_challenge_at_its_expiration_date_is_still_pending(api, clock):
    challenge = _setup(api, clock)
    r = api.get(f"{api.svc}/Entities/user-0001/Challenges/{challenge['sid']}")
    assert r.json()["status"] == "pending"
    assert challenge["sid"] in _listed(api, "pending")
    assert challenge["sid"] not in _listed(api, "expired")
    r = api.approve(api.authenticator.get(challenge["options"], ORIGIN))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"


def test_a_second_after_its_expiration_date_it_is_expired(api, clock):
    challenge = _setup(api, clock)
    clock.advance(1)
    r = api.get(f"{api.svc}/Entities/user-0001/Challenges/{challenge['sid']}")
    assert r.json()["status"] == "expired"
    assert challenge["sid"] in _listed(api, "expired")
    assert challenge["sid"] not in _listed(api, "pending")
    r = api.approve(api.authenticator.get(challenge["options"], ORIGIN))
    assert (r.status_code, r.json()["code"]) == (403, 60323)
