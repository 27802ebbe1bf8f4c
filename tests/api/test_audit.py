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
    # The refusal names the challenge it refused, not only the service in its path.
    assert refused["resource"] == challenge["sid"]
    assert events[0]["resource"] == challenge["sid"]
    assert events[0]["request_id"] == r.headers["Twilio-Request-Id"]
    assert all(e["actor"] == api.account_sid for e in events)
    assert events[3]["resource"] == factor["sid"] or events[4]["resource"] == factor["sid"]
    # Another account sees none of it.
    assert other_api.get("/v2/AuditEvents").json()["audit_events"] == []


def test_a_refused_approval_names_its_challenge_or_else_its_service(api):
    service = api.create_service()["sid"]
    api.register("user-0001")
    challenge = api.challenge(identity="user-0001")
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    assert api.approve(assertion).status_code == 200
    assert api.approve(assertion).status_code == 403  # a replay: already responded
    unknown = api.authenticator.get(challenge["options"], ORIGIN, challenge="AAAA")
    assert api.approve(unknown).status_code == 404  # no such challenge: none to name
    events = api.get("/v2/AuditEvents", params={"PageSize": 50}).json()["audit_events"]
    assert [(e["outcome"], e["code"], e["resource"]) for e in events[:3]] == [
        ("refused", 60391, service),
        ("refused", 60322, challenge["sid"]),
        ("ok", None, challenge["sid"]),
    ]


def test_audit_filters_by_service(api):
    first = api.create_service()["sid"]
    second = api.create_service()["sid"]
    api.post_form(f"/v2/Services/{second}", {"FriendlyName": "renamed"})
    events = api.get("/v2/AuditEvents", params={"ServiceSid": second}).json()["audit_events"]
    assert [e["action"] for e in events] == ["update_service", "create_service"]
    assert first not in str(events)


def test_head_is_a_read_not_audited(api):
    sid = api.create_service()["sid"]
    for path in (f"/v2/Services/{sid}", "/v2/Services/VA" + "0" * 32):
        api.client.head(path, auth=api.auth)
    events = api.get("/v2/AuditEvents", params={"PageSize": 50}).json()["audit_events"]
    assert [e["action"] for e in events] == ["create_service"]


def test_a_client_gone_before_its_body_ended_is_no_server_error(api, client, caplog):
    """It did nothing, and nobody hears the answer: no 500, no traceback, no audit record."""
    import base64

    basic = base64.b64encode(f"{api.auth[0]}:{api.auth[1]}".encode())
    messages = iter(
        [
            {"type": "http.request", "body": b"FriendlyName=a", "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v2/Services",
        "raw_path": b"/v2/Services",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", b"Basic " + basic),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", b"100"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    with caplog.at_level("INFO"):
        client.portal.call(client.app, scope, receive, send)
    assert sent[0]["status"] == 499
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert api.get("/v2/AuditEvents").json()["audit_events"] == []
    assert api.get("/v2/Services").json()["services"] == []


def test_an_entity_is_recorded_by_its_sid_when_made_and_when_deleted(api):
    """Its identity (which names the user, in the path) was the deletion's resource, while
    its creation recorded its SID: one entity's two records did not match."""
    api.create_service()
    made = api.post_form(f"{api.svc}/Entities", {"Identity": "user-0001"})
    assert made.status_code == 201, made.text
    assert api.delete(f"{api.svc}/Entities/user-0001").status_code == 204
    assert api.delete(f"{api.svc}/Entities/user-0001").status_code == 404
    events = api.get("/v2/AuditEvents", params={"PageSize": 50}).json()["audit_events"]
    assert [(e["action"], e["outcome"], e["resource"]) for e in events[:3]] == [
        ("delete_entity", "refused", "user-0001"),  # no entity: the path is all there is
        ("delete_entity", "ok", made.json()["sid"]),
        ("create_entity", "ok", made.json()["sid"]),
    ]
