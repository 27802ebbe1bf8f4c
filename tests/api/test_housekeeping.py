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
