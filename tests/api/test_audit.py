"""The audit trail records every change and ceremony, readable through the API."""

from __future__ import annotations

from tests.conftest import ORIGIN


def test_changes_and_ceremonies_are_audited_with_the_refusing_step(api, other_api):
    api.create_service()
    factor = api.register("user-0001")
    challenge = api.challenge(identity="user-0001")
    api.approve(api.authenticator.get(challenge["options"], "https://evil.test"))
    r = api.approve(api.authenticator.get(challenge["options"], ORIGIN))
    events = api.get("/v2/AuditEvents", params={"PageSize": 50}).json()["audit_events"]
    actions = [(e["action"], e["outcome"]) for e in reversed(events)]
    assert actions == [
        ("create_service", "ok"),
        ("create_factor", "ok"),
        ("verify_factor", "ok"),
        ("create_challenge", "ok"),
        ("approve_challenge", "refused"),
        ("approve_challenge", "ok"),
    ]
    refused = events[1]
    assert (refused["code"], refused["step"]) == (60324, "origin")
    assert events[0]["resource"] == challenge["sid"]
    assert events[0]["request_id"] == r.headers["Twilio-Request-Id"]
    assert all(e["actor"] == api.account_sid for e in events)
    assert events[3]["resource"] == factor["sid"] or events[4]["resource"] == factor["sid"]
    # Another account sees none of it.
    assert other_api.get("/v2/AuditEvents").json()["audit_events"] == []


def test_audit_filters_by_service(api):
    first = api.create_service()["sid"]
    second = api.create_service()["sid"]
    api.post_form(f"/v2/Services/{second}", {"FriendlyName": "renamed"})
    events = api.get("/v2/AuditEvents", params={"ServiceSid": second}).json()["audit_events"]
    assert [e["action"] for e in events] == ["update_service", "create_service"]
    assert first not in str(events)
