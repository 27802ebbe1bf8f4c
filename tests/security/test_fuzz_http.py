"""Hostile bodies, queries, paths and credentials through the HTTP API (in process).

Whatever arrives, the answer is never a 5xx, and every refusal is Twilio's error body
`{code, message, more_info, status}`. Deeply nested JSON and CBOR are refused with a 4xx.
"""

from __future__ import annotations

import base64
import os
from typing import Any
from urllib.parse import quote, urlencode

import cbor2
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from passkeyd.webauthn import b64url_decode
from tests.authenticator import b64url, unb64url
from tests.conftest import ORIGIN, Api

from .conftest import Server
from .strategies import (
    B64ISH,
    JSON,
    Tally,
    credential_bodies,
    fuzz,
    json_bytes,
    mutated_assertion,
    mutated_registration,
    with_attestation,
)
from .support import assert_not_server_error, assert_twilio_error, report

MEDIA_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/vnd.api+json",
        "",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
    ]
)


class Target:
    """Account A with two services: S (a verified passkey, a pending factor, challenges)
    where ceremonies are fuzzed, and W, without entities, where webhooks are fuzzed (so no
    event is ever due to a fuzzed webhook URL)."""

    def __init__(self, server: Server) -> None:
        self.api = server.account("fuzz")
        self.webhook_service = self.api.create_service()["sid"]
        self.api.create_service()  # the ceremonies' service (the last one made is api.svc)
        self.factor = self.api.register("user-0001")
        (self.credential_id,) = self.api.authenticator.credentials
        self.pending = self.api.create_factor("user-0002")
        self.challenge = self.api.challenge(identity="user-0001")
        hook = self.api.post_form(
            f"/v2/Services/{self.webhook_service}/Webhooks",
            {"FriendlyName": "h", "WebhookUrl": "http://127.0.0.1:9/x", "EventTypes": "*"},
        )
        assert hook.status_code == 201, hook.text
        self.webhook = hook.json()["sid"]
        self.requests = 0
        self.server_errors = 0

    def send(self, method: str, path: str, **kw: Any) -> Any:
        kw.setdefault("auth", self.api.auth)
        self.requests += 1
        response = self.api.client.request(method, path, **kw)
        if response.status_code >= 500:
            self.server_errors += 1
        if method == "HEAD":  # no body to check
            assert response.status_code < 500, (path, response.status_code)
        else:
            assert_not_server_error(response)
        return response

    @property
    def svc(self) -> str:
        return self.api.svc

    def report(self, what: str, tally: Tally) -> None:
        report(
            f"HTTP {what}: {tally.count} inputs, {self.requests} requests,"
            f" {self.server_errors} 5xx, slowest input {tally.slowest * 1000:.0f} ms"
            + (f" ({tally.slowest_input})" if os.environ.get("PASSKEYD_FUZZ_VERBOSE") else "")
        )


@pytest.fixture
def target(server: Server) -> Target:
    return Target(server)


PASSKEYS = ["Factors", "VerifyFactor", "Challenges", "ApproveChallenge"]


def test_hostile_json_on_the_passkeys_endpoints(target):
    tally = Tally()
    bodies = st.one_of(
        credential_bodies(),
        JSON,
        st.fixed_dictionaries(
            {},
            optional={
                "friendly_name": JSON,
                "identity": st.sampled_from(["user-0001", "user-0003"]) | JSON,
                "factor_sid": st.just(target.factor["sid"]) | JSON,
                "factorSid": JSON,
                "config": JSON,
            },
        ),
    )

    @fuzz(400)
    @given(st.sampled_from(PASSKEYS), bodies, MEDIA_TYPES)
    @example("VerifyFactor", {"authenticatorAttachment": [], "response": {}}, "application/json")
    @example("ApproveChallenge", {"authenticatorAttachment": {}, "id": "AA"}, "application/json")
    def prop(endpoint: str, body: Any, media: str) -> None:
        path = f"{target.svc}/Passkeys/{endpoint}"
        tally.run(
            target.send, "POST", path, content=json_bytes(body), headers={"Content-Type": media}
        )

    prop()
    target.report("JSON bodies on /Passkeys/*", tally)


def test_mutated_registrations_through_verify_factor(target):
    """Valid registrations for a real pending factor, then one part mutated: this reaches
    the attestationObject CBOR, authenticatorData and COSE key parsers through HTTP."""
    tally = Tally()
    api: Api = target.api
    made = [0]

    def fresh_registration() -> dict[str, Any]:
        made[0] += 1
        factor = api.create_factor(f"reg-{made[0]:08d}")
        return api.authenticator.create(factor["options"], ORIGIN)

    @fuzz(250)
    @given(st.data())
    def prop(data: st.DataObject) -> None:
        body = data.draw(mutated_registration(fresh_registration()))
        tally.run(target.send, "POST", f"{target.svc}/Passkeys/VerifyFactor", json=body)

    prop()
    target.report("mutated registrations on VerifyFactor", tally)


def test_mutated_assertions_through_approve_challenge(target):
    tally = Tally()
    api: Api = target.api
    approved = 0

    @fuzz(250)
    @given(st.data())
    def prop(data: st.DataObject) -> None:
        nonlocal approved
        options = api.challenge()["options"]  # usernameless: a fresh pending challenge
        original = api.authenticator.get(options, ORIGIN, target.credential_id)
        body = data.draw(mutated_assertion(original))
        response = tally.run(
            target.send, "POST", f"{target.svc}/Passkeys/ApproveChallenge", json=body
        )
        if response.status_code == 200:
            approved += 1
            sent, signed = body["response"], original["response"]
            for key in ("authenticatorData", "clientDataJSON", "signature"):
                assert b64url_decode(sent[key]) == b64url_decode(signed[key]), key

    prop()
    target.report(f"mutated assertions on ApproveChallenge ({approved} approved)", tally)


FORM_KEYS = [
    "FriendlyName", "Name", "CodeLength", "Identity", "Passkeys.RelyingParty.Id",
    "Passkeys.RelyingParty.Name", "Passkeys.RelyingParty.Origins",
    "Passkeys.AuthenticatorAttachment", "Passkeys.DiscoverableCredentials",
    "Passkeys.UserVerification", "Passkeys.Attestation", "LookupEnabled", "Psd2Enabled",
    "Push.IncludeDate", "Totp.TimeStep", "Totp.CodeLength", "Totp.Skew", "TtsName",
    "EventTypes", "WebhookUrl", "Status", "Version", "FactorType",
]  # fmt: skip
FORM_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["true", "false", "1", "platform", "required", "*", "enabled", "v2"]),
    st.integers(-(10**6), 10**6).map(str),
    st.text(alphabet="0123456789", min_size=4290, max_size=4400),
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=4),
    st.sampled_from(
        [
            "http://127.0.0.1:9/x",
            "https://[::1",
            "http://a:99999/",
            "http://u:p@127.0.0.1/",
            "http://a\x00b/",
            "http://" + "a" * 300 + "/",
            "ftp://x",
            "http://..",
        ]
    ),
)
FORM_MEDIA = "application/x-www-form-urlencoded"
FORMS = st.lists(st.tuples(st.sampled_from(FORM_KEYS) | st.text(max_size=12), FORM_VALUES))


def _form_targets(target: Target) -> list[tuple[str, str]]:
    svc, w = target.svc, f"/v2/Services/{target.webhook_service}"
    ent = f"{svc}/Entities/user-0001"
    return [
        ("POST", "/v2/Services"),
        ("POST", svc),
        ("POST", f"{svc}/Entities"),
        ("POST", f"{ent}/Factors/{target.factor['sid']}"),
        ("POST", f"{ent}/Factors"),
        ("POST", f"{ent}/Challenges"),
        ("POST", f"{ent}/Challenges/{target.challenge['sid']}"),
        ("POST", f"{ent}/Challenges/{target.challenge['sid']}/Notifications"),
        ("POST", f"{w}/Webhooks"),
        ("POST", f"{w}/Webhooks/{target.webhook}"),
        ("POST", f"{svc}/Passkeys/Factors"),  # form fallback
        ("POST", f"{svc}/Passkeys/Challenges"),  # form fallback
    ]


def test_hostile_forms_on_every_form_endpoint(target):
    tally = Tally()
    targets = _form_targets(target)

    @fuzz(500)
    @given(
        st.sampled_from(targets), FORMS, st.sampled_from(["", "application/x-www-form-urlencoded"])
    )
    @example(("POST", "/v2/Services"), [("FriendlyName", "x"), ("CodeLength", "1" * 5000)], "")
    def prop(where: tuple[str, str], pairs: list[tuple[str, str]], media: str) -> None:
        method, path = where
        headers = {"Content-Type": media} if media else {}
        tally.run(target.send, method, path, content=urlencode(pairs), headers=headers)

    prop()
    target.report("form bodies on form endpoints", tally)


def test_hostile_raw_bodies_on_every_post_endpoint(target):
    tally = Tally()
    targets = _form_targets(target) + [("POST", f"{target.svc}/Passkeys/{e}") for e in PASSKEYS]
    raw = st.one_of(
        st.binary(max_size=400),
        st.sampled_from(
            [b"{", b"[", b"null", b"1e999", b'{"a":NaN}', b'{"a":1,"a":2}', b"\xef\xbb\xbf{}"]
        ),
        st.text(max_size=100).map(str.encode),
    )

    @fuzz(500)
    @given(st.sampled_from(targets), raw, MEDIA_TYPES)
    def prop(where: tuple[str, str], body: bytes, media: str) -> None:
        method, path = where
        tally.run(target.send, method, path, content=body, headers={"Content-Type": media})

    prop()
    target.report("raw bodies on POST endpoints", tally)


QUERY_KEYS = ["PageSize", "Page", "PageToken", "Order", "Status", "FactorSid", "x"]
QUERY_VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(-(10**30), 10**30).map(str),
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=6),
    st.text(alphabet="0123456789", min_size=4290, max_size=4400),
    st.from_regex(r"PT[0-9]{1,25}", fullmatch=True),
    st.sampled_from(["asc", "desc", "pending", "approved", "YF" + "0" * 32]),
)


def test_hostile_queries_on_every_get_endpoint(target):
    tally = Tally()
    svc, ent = target.svc, f"{target.svc}/Entities/user-0001"
    w = f"/v2/Services/{target.webhook_service}"
    paths = [
        "/v2/Services", svc, f"{svc}/Entities", ent, f"{ent}/Factors",
        f"{ent}/Factors/{target.factor['sid']}", f"{ent}/Challenges",
        f"{ent}/Challenges/{target.challenge['sid']}", f"{w}/Webhooks",
        f"{w}/Webhooks/{target.webhook}",
    ]  # fmt: skip

    @fuzz(500)
    @given(
        st.sampled_from(paths),
        st.lists(st.tuples(st.sampled_from(QUERY_KEYS), QUERY_VALUES), max_size=4),
    )
    @example("/v2/Services", [("Page", "\u00b2")])  # superscript two
    @example("/v2/Services", [("Page", "1" * 4301)])  # over Python's int() digit limit
    def prop(path: str, pairs: list[tuple[str, str]]) -> None:
        tally.run(target.send, "GET", path, params=pairs)

    prop()
    target.report("queries on GET endpoints", tally)


SEGMENTS = st.one_of(
    st.sampled_from(
        ["v2", "Services", "Entities", "Factors", "Challenges", "Webhooks", "Passkeys", "..", ""]
    ),
    st.text(max_size=20).map(lambda s: quote(s, safe="")),
    st.from_regex(r"(VA|YF|YC|YE|YW)[0-9a-f]{32}", fullmatch=True),
)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_random_paths_methods_and_credentials(target):
    tally = Tally()
    good = _basic(*target.api.auth)
    headers = st.one_of(
        st.just(good),
        st.just(good),
        st.text(max_size=40).map(lambda s: s.encode("utf-8", "replace").decode("latin-1")),
        st.tuples(st.text(max_size=40), st.text(max_size=40)).map(lambda t: _basic(*t)),
        st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode()),
        st.just(_basic(target.api.account_sid, "wrong")),
    )
    methods = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"])

    @fuzz(500)
    @given(methods, st.lists(SEGMENTS, min_size=1, max_size=7), headers, B64ISH)
    def prop(method: str, segments: list[str], authorization: str, body: str) -> None:
        path = "/" + "/".join([segments[0] or "v2", *segments[1:]])  # no "//" authority
        if path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
            return
        value = authorization.strip().encode("latin-1", "replace")
        headers = {"Authorization": value} if value else {}
        tally.run(target.send, method, path, headers=headers, content=body.encode(), auth=None)

    prop()
    target.report("random paths, methods and Authorization headers", tally)


# --- deep nesting -----------------------------------------------------------------------------


def test_deeply_nested_json_and_cbor_are_refused_cleanly(target):
    api: Api = target.api
    svc = target.svc
    sent = 0

    def refused(path: str, body: bytes, status: int, code: int | None = None) -> None:
        nonlocal sent
        sent += 1
        r = target.send("POST", path, content=body, headers={"Content-Type": "application/json"})
        error = assert_twilio_error(r)
        assert r.status_code == status, r.text
        if code is not None:
            assert error["code"] == code, r.text

    for endpoint in PASSKEYS:
        path = f"{svc}/Passkeys/{endpoint}"
        refused(path, b"[" * 100_000 + b"]" * 100_000, 413)  # 100k deep: over 64 KiB
        refused(path, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400)  # within 64 KiB
        refused(path, b"[" * 32_000 + b"]" * 32_000, 400)
    # Deep nesting inside the fields a ceremony decodes, behind a valid challenge.
    factor = api.create_factor("deep-0001")
    registration = api.authenticator.create(factor["options"], ORIGIN)
    verify = f"{svc}/Passkeys/VerifyFactor"
    deep_client_data = {**registration["response"], "clientDataJSON": b64url(b"[" * 40_000)}
    refused(verify, json_bytes({**registration, "response": deep_client_data}), 400, 60380)
    deep_cbor = b"\x81" * 40_000 + b"\x00"
    refused(verify, json_bytes(with_attestation(registration, deep_cbor)), 400, 60386)
    att = cbor2.loads(unb64url(registration["response"]["attestationObject"]))
    auth_data = att["authData"]
    key_at = 37 + 16 + 2 + int.from_bytes(auth_data[53:55], "big")
    att["authData"] = auth_data[:key_at] + deep_cbor
    refused(verify, json_bytes(with_attestation(registration, cbor2.dumps(att))), 400, 60386)
    challenge = api.challenge()
    assertion = api.authenticator.get(challenge["options"], ORIGIN, target.credential_id)
    auth_data = unb64url(assertion["response"]["authenticatorData"])
    extended = auth_data[:32] + bytes([auth_data[32] | 0x80]) + auth_data[33:37] + deep_cbor
    body = {**assertion, "response": {**assertion["response"]}}
    body["response"]["authenticatorData"] = b64url(extended)
    refused(f"{svc}/Passkeys/ApproveChallenge", json_bytes(body), 400, 60379)
    report(f"deep nesting (JSON 10k-100k levels, CBOR 40k levels): {sent} requests, all 4xx")
