"""What the other official Twilio SDKs send, byte for byte as each writes it (seen on the
wire from twilio-go 1.30.9, twilio-php 8.12.0 and twilio-java 12.0.0 pointed at passkeyd):
each is read as the API's own spelling, and nothing else is let through with it."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.conftest import ORIGIN, RP


def _factor(api, **body):
    r = api.post_json(f"{api.svc}/Passkeys/Factors", body)
    assert r.status_code == 201, r.text
    return r.json()


# --- twilio-go --------------------------------------------------------------------------------


def test_go_sends_an_unset_attachment_as_an_empty_string(api):
    """`ApprovePasskeysChallengeRequest.AuthenticatorAttachment` has no omitempty: a
    browser's null (or a field left unset) goes out as "". It was refused 400 60377."""
    api.create_service()
    api.register("user-0001")
    challenge = api.challenge(identity="user-0001")
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    assertion["authenticatorAttachment"] = ""
    r = api.approve(assertion)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"


def test_go_sends_an_unset_identity_as_an_empty_string(api):
    """As a factor request without one (or with null): a new user's, with an identity made
    up for it. It was refused 400 60367."""
    api.create_service()
    factor = _factor(api, friendly_name="bob", identity="", config={"relying_party": {}})
    assert str(uuid.UUID(factor["identity"])) == factor["identity"]


# --- twilio-php -------------------------------------------------------------------------------


def test_php_sends_a_request_without_fields_as_an_empty_array(api):
    """`json_encode([])` is `[]`: a challenge request with no identity is a usernameless
    one, as `{}` is. It was refused 400 60300 ("must be a JSON object")."""
    api.create_service()
    api.register("user-0001")
    r = api.post_raw(f"{api.svc}/Passkeys/Challenges", b"[]", "application/json")
    assert r.status_code == 201, r.text
    challenge = r.json()
    assert (
        challenge["identity"] == "" and challenge["options"]["publicKey"]["allowCredentials"] == []
    )
    assert api.approve(api.authenticator.get(challenge["options"], ORIGIN)).status_code == 200


@pytest.mark.parametrize("body", [b"[1]", b'["identity"]', b"[{}]", b"[[]]"])
def test_an_array_with_anything_in_it_is_still_refused(api, body):
    api.create_service()
    before = api.snapshot()
    r = api.post_raw(f"{api.svc}/Passkeys/Challenges", body, "application/json")
    assert (r.status_code, r.json()["code"]) == (400, 60300), r.text
    assert "JSON object" in r.json()["message"]
    assert api.snapshot() == before


# --- twilio-java ------------------------------------------------------------------------------


def test_java_sends_its_enum_constants_names(api):
    """Jackson writes an enum's constant name: `PLATFORM`, `PREFERRED`, `PUBLIC_KEY`,
    `CROSS_PLATFORM`. Every registration and approval from twilio-java 12 was refused."""
    api.create_service()
    factor = _factor(
        api,
        friendly_name="carol",
        identity="user-0003",
        config={
            "relying_party": RP,
            "authenticator_attachment": "CROSS_PLATFORM",
            "discoverable_credentials": "PREFERRED",
            "user_verification": "REQUIRED",
        },
    )
    assert factor["config"]["authenticator_attachment"] == "cross-platform"
    assert factor["config"]["discoverable_credentials"] == "preferred"
    assert factor["config"]["user_verification"] == "required"
    selection = factor["options"]["publicKey"]["authenticatorSelection"]
    assert selection["authenticatorAttachment"] == "cross-platform"
    assert selection["userVerification"] == "required"

    credential = api.authenticator.create(factor["options"], ORIGIN)
    credential.update(type="PUBLIC_KEY", authenticatorAttachment="PLATFORM")
    credential["response"]["transports"] = ["INTERNAL", "HYBRID", "SMART_CARD"]
    r = api.verify_factor(credential)
    assert r.status_code == 200, r.text

    challenge = api.challenge(identity="user-0003")
    (allowed,) = challenge["options"]["publicKey"]["allowCredentials"]
    assert allowed["transports"] == ["internal", "hybrid", "smart-card"]  # were left out
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    assertion.update(type="PUBLIC_KEY", authenticatorAttachment="CROSS_PLATFORM")
    r = api.approve(assertion)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "field, value",
    [
        ("authenticator_attachment", "ANYWHERE"),
        ("authenticator_attachment", "Platform"),  # neither the API's value nor Java's
        ("user_verification", "REQUIRED_"),
        ("discoverable_credentials", "preferred "),
    ],
)
def test_a_config_value_no_sdk_writes_is_refused(api, field, value):
    api.create_service()
    before = api.snapshot()
    r = api.post_json(
        f"{api.svc}/Passkeys/Factors",
        {"friendly_name": "carol", "identity": "user-0003", "config": {field: value}},
    )
    assert (r.status_code, r.json()["code"]) == (400, 60370), r.text
    assert api.snapshot() == before


@pytest.mark.parametrize(
    "field, value, code",
    [
        ("type", "public_key", 60377),
        ("type", "PUBLIC-KEY", 60377),  # no SDK writes it
        ("type", "PUBLIC_\u212aEY", 60377),  # a Kelvin sign, which lower() makes a k
        ("authenticatorAttachment", "CROSS-PLATFORM", 60377),
        ("type", "Public_Key", 60377),
        ("type", "", 60377),
        ("authenticatorAttachment", "Cross-Platform", 60377),
        ("authenticatorAttachment", "CROSS PLATFORM", 60377),
        ("authenticatorAttachment", False, 60377),
    ],
)
def test_a_credential_enum_no_sdk_writes_is_refused(api, field, value, code):
    api.create_service()
    api.register("user-0001")
    challenge = api.challenge(identity="user-0001")
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    assertion[field] = value
    before = api.snapshot()
    r = api.approve(assertion)
    assert (r.status_code, r.json()["code"]) == (400, code), r.text
    assert api.snapshot() == before


# --- API key secrets --------------------------------------------------------------------------


def test_api_key_secrets_are_letters_and_digits(domain, api):
    """twilio-go refuses a password with any other character before sending a request
    (ApiError 21224); `token_urlsafe` made secrets with - or _ two times in three."""
    for _ in range(24):
        key, secret = domain.accounts.create_api_key(api.account_sid)
        assert re.fullmatch(r"[A-Za-z0-9]{32}", secret), secret
        assert domain.accounts.authenticate(key.sid, secret) == api.account_sid


# --- a usernameless challenge on a service without authenticator criteria ---------------------


def test_a_usernameless_challenge_needs_only_the_services_rp_id(api):
    """A service whose passkeys name their own criteria and origins (the factor's `config`)
    has none of its own: a usernameless challenge asks at its RP id, with user verification
    `preferred`, and the passkey that answers is checked against its own policy. It was
    refused 400 60393, "Authenticator criteria are missing from the request"."""
    r = api.post_form(
        "/v2/Services", {"FriendlyName": "bare", "Passkeys.RelyingParty.Id": "example.com"}
    )
    assert r.status_code == 201, r.text
    api.service_sid = r.json()["sid"]
    factor = _factor(
        api,
        friendly_name="dave",
        identity="user-0004",
        config={
            "relying_party": RP,
            "authenticator_attachment": "platform",
            "discoverable_credentials": "required",
            "user_verification": "preferred",
        },
    )
    assert api.verify_factor(api.authenticator.create(factor["options"], ORIGIN)).status_code == 200
    challenge = api.challenge()
    public_key = challenge["options"]["publicKey"]
    assert public_key["rpId"] == "example.com"
    assert public_key["rp"] == {"id": "example.com", "name": "example.com"}
    assert public_key["userVerification"] == "preferred"
    r = api.approve(api.authenticator.get(challenge["options"], ORIGIN))
    assert r.status_code == 200, r.text
    assert r.json()["identity"] == "user-0004"
    # The factor's own origins are what it answers from: another origin is refused.
    challenge = api.challenge()
    r = api.approve(api.authenticator.get(challenge["options"], "https://evil.example"))
    assert r.status_code == 403, r.text
