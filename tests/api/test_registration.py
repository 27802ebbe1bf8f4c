"""Registration: P1 create factor (options) and P2 VerifyFactor, success and every refusal."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid

import pytest

from tests.authenticator import (
    AAGUID,
    AT,
    BS,
    ED,
    EDDSA,
    ES256,
    ES384,
    ES512,
    EXTENSIONS_NOT_ENDING_AUTH_DATA,
    FLOAT16_EXTENSIONS,
    LONG_FORM_EXTENSIONS,
    PS256,
    RS256,
    UP,
    UV,
    Authenticator,
    b64url,
    unb64url,
)
from tests.conftest import ORIGIN, RP, entity_handle


def refused(api, credential, status, code):
    """VerifyFactor refuses `credential` with (status, code) and changes nothing stored."""
    before = api.snapshot()
    r = api.verify_factor(credential)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert r.json()["status"] == status
    assert api.snapshot() == before
    return r.json()


# --- P1: creation options ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"user_verificaton": "required"}, "'user_verificaton' is not a field of config"),
        ({"relying_party": {"origin": ["https://x.example"]}}, "of config.relying_party"),
    ],
)
def test_a_factor_config_with_a_setting_it_has_not_is_refused(api, config, says):
    """A misspelt setting used to be dropped: the passkey was registered under the
    service's setting (`discouraged`) instead of the `required` asked for."""
    api.create_service(**{"Passkeys.UserVerification": "discouraged"})
    before = api.snapshot()
    r = api.post_json(
        f"{api.svc}/Passkeys/Factors",
        {"friendly_name": "alice", "identity": "user-0001", "config": config},
    )
    assert (r.status_code, r.json()["code"]) == (400, 60370), r.text
    assert says in r.json()["message"]
    assert api.snapshot() == before


@pytest.mark.parametrize(
    ("query", "body", "says"),
    [
        ("", {"friendly_name": "alice", "identiy": "user-0001"}, "'identiy' is not a field"),
        ("?identity=user-0001", {"friendly_name": "alice"}, "not in the URL's query"),
    ],
)
def test_a_factor_request_with_a_field_it_has_not_is_refused(api, query, body, says):
    """The identity misspelt, or in the URL's query: the factor used to be made for a new,
    generated identity, a passkey registered to a user nobody knows."""
    api.create_service()
    before = api.snapshot()
    r = api.post_json(f"{api.svc}/Passkeys/Factors{query}", body)
    assert (r.status_code, r.json()["code"]) == (400, 60300), r.text
    assert says in r.json()["message"]
    assert api.snapshot() == before


def test_create_factor_returns_creation_options_a_browser_accepts(api):
    api.create_service()
    factor = api.create_factor("user-0001")
    assert factor["sid"].startswith("YF") and len(factor["sid"]) == 34
    assert factor["status"] == "unverified"
    assert factor["factor_type"] == "passkeys"
    assert factor["binding"] is None and factor["metadata"] is None
    assert factor["url"] == (
        f"http://testserver/v2/Services/{api.service_sid}/Entities/user-0001/Factors/{factor['sid']}"
    )
    pk = factor["options"]["publicKey"]
    assert pk["rp"] == {"id": "example.com", "name": "Example"}
    assert pk["user"] == {
        "id": entity_handle(factor["entity_sid"]),
        "name": "alice",
        "displayName": "alice",
    }
    assert [p["alg"] for p in pk["pubKeyCredParams"]] == [ES256, EDDSA, RS256]
    assert all(p["type"] == "public-key" for p in pk["pubKeyCredParams"])
    assert len(unb64url(pk["challenge"])) >= 32
    assert pk["timeout"] == 600000
    assert pk["excludeCredentials"] == []
    assert pk["authenticatorSelection"] == {
        "authenticatorAttachment": "platform",
        "requireResidentKey": False,
        "residentKey": "preferred",
        "userVerification": "preferred",
    }
    assert pk["attestation"] == "none"
    assert factor["config"] == {
        "relying_party": {"id": "example.com", "name": "Example", "origins": [ORIGIN]},
        "authenticator_attachment": "platform",
        "discoverable_credentials": "preferred",
        "user_verification": "preferred",
    }


def test_each_factor_gets_a_fresh_random_challenge(api):
    api.create_service()
    challenges = {api.create_factor()["options"]["publicKey"]["challenge"] for _ in range(5)}
    assert len(challenges) == 5


def test_any_attachment_is_left_out_and_required_resident_key_is_mapped(api):
    api.create_service(**{
        "Passkeys.AuthenticatorAttachment": "any",
        "Passkeys.DiscoverableCredentials": "required",
        "Passkeys.UserVerification": "required",
    })  # fmt: skip
    selection = api.create_factor()["options"]["publicKey"]["authenticatorSelection"]
    assert selection == {
        "requireResidentKey": True,
        "residentKey": "required",
        "userVerification": "required",
    }


def test_identity_is_generated_when_absent(api):
    api.create_service()
    r = api.post_json(f"{api.svc}/Passkeys/Factors", {"friendly_name": "bob"})
    assert r.status_code == 201, r.text
    assert uuid.UUID(r.json()["identity"])
    assert r.json()["entity_sid"].startswith("YE")


def test_exclude_credentials_lists_the_entitys_verified_passkeys(api):
    api.create_service()
    verified = api.register("user-0001")
    pk = api.create_factor("user-0001")["options"]["publicKey"]
    (cred_id,) = api.authenticator.credentials
    assert pk["excludeCredentials"] == [
        {"type": "public-key", "id": b64url(cred_id), "transports": ["internal", "hybrid"]}
    ]
    assert pk["user"]["id"] == entity_handle(verified["entity_sid"])


def test_config_in_the_request_overrides_the_service(api):
    api.create_service()
    factor = api.create_factor(
        config={
            "relying_party": {
                "id": "login.example.com",
                "name": "Login",
                "origins": ["https://login.example.com"],
            },
            "authenticator_attachment": "cross-platform",
            "user_verification": "required",
        }
    )
    assert factor["config"]["relying_party"]["id"] == "login.example.com"
    assert factor["config"]["discoverable_credentials"] == "preferred"  # from the service
    sel = factor["options"]["publicKey"]["authenticatorSelection"]
    assert sel["authenticatorAttachment"] == "cross-platform"
    assert sel["userVerification"] == "required"


def test_camel_case_keys_are_accepted(api):
    api.post_form("/v2/Services", {"FriendlyName": "bare"})
    api.service_sid = api.get("/v2/Services").json()["services"][0]["sid"]
    r = api.post_json(
        f"{api.svc}/Passkeys/Factors",
        {
            "friendlyName": "carol",
            "identity": "user-camel-01",
            "config": {
                "relyingParty": {"id": "example.com", "name": "Ex", "origins": [ORIGIN]},
                "authenticatorAttachment": "platform",
                "discoverableCredentials": "required",
                "userVerification": "discouraged",
            },
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["config"]["discoverable_credentials"] == "required"


@pytest.mark.parametrize(
    ("service_form", "config", "code"),
    [
        ({}, None, 60371),
        (
            {},
            {"relying_party": {"id": "https://example.com", "name": "x", "origins": [ORIGIN]}},
            60372,
        ),
        ({}, {"relying_party": {"id": "example.com:443", "name": "x", "origins": [ORIGIN]}}, 60372),
        ({}, {"relying_party": {"id": "example.com\n", "name": "x", "origins": [ORIGIN]}}, 60372),
        ({}, {"relying_party": RP}, 60393),
        ({}, {"relying_party": RP, "authenticator_attachment": "platform"}, 60393),
        ({}, {"relying_party": RP, "user_verification": "sometimes"}, 60370),
        ({}, {"relying_party": "example.com"}, 60371),
        ({}, "not an object", 60370),
        ({}, {"relying_party": {"id": "example.com", "name": "x", "origins": [1]}}, 60370),
        (
            {},
            {"relying_party": {"id": "example.com", "name": "x" * 256, "origins": [ORIGIN]}},
            60370,
        ),
        ({}, {"relying_party": {"id": "example.com", "name": "x", "origins": ["a b"]}}, 60370),
        (
            {},
            {
                "relying_party": {
                    "id": "example.com",
                    "name": "x",
                    "origins": [f"https://{i}.example.com" for i in range(51)],
                }
            },
            60370,
        ),
    ],
)
def test_factor_without_a_usable_policy_is_refused(api, service_form, config, code):
    api.post_form("/v2/Services", {"FriendlyName": "bare", **service_form})
    api.service_sid = api.get("/v2/Services").json()["services"][0]["sid"]
    before = api.snapshot()
    body = {"friendly_name": "alice", "identity": "user-0001"}
    if config is not None:
        body["config"] = config
    r = api.post_json(f"{api.svc}/Passkeys/Factors", body)
    assert (r.status_code, r.json()["code"]) == (400, code), r.text
    assert api.snapshot() == before


def test_missing_criteria_message_lists_the_fields(api):
    api.post_form("/v2/Services", {"FriendlyName": "bare"})
    api.service_sid = api.get("/v2/Services").json()["services"][0]["sid"]
    r = api.post_json(
        f"{api.svc}/Passkeys/Factors",
        {"friendly_name": "a", "identity": "user-0001", "config": {"relying_party": RP}},
    )
    message = r.json()["message"]
    for name in ("authenticator_attachment", "discoverable_credentials", "user_verification"):
        assert name in message


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"identity": "user-0001"}, 60388),
        ({"friendly_name": "", "identity": "user-0001"}, 60388),
        ({"friendly_name": "a", "identity": "short"}, 60367),
        ({"friendly_name": "a", "identity": "has_underscore"}, 60367),
        ({"friendly_name": "a", "identity": "x" * 65}, 60367),
        ({"friendly_name": "a" * 256, "identity": "user-0001"}, 60300),
        # given, but no string: invalid, not "not provided" (found by the bad-input review)
        ({"friendly_name": 7, "identity": "user-0001"}, 60300),
        ({"friendly_name": ["alice"], "identity": "user-0001"}, 60300),
        ({"friendly_name": None, "identity": "user-0001"}, 60388),
    ],
)
def test_bad_factor_fields_are_refused(api, body, code):
    api.create_service()
    before = api.snapshot()
    r = api.post_json(f"{api.svc}/Passkeys/Factors", body)
    assert (r.status_code, r.json()["code"]) == (400, code), r.text
    assert api.snapshot() == before


def test_factor_on_another_accounts_service_is_not_found(api, other_api):
    api.create_service()
    before = api.snapshot()
    r = other_api.post_json(
        f"{api.svc}/Passkeys/Factors", {"friendly_name": "a", "identity": "user-0001"}
    )
    assert (r.status_code, r.json()["code"]) == (404, 20404)
    assert api.snapshot() == before


# --- P2: successful registrations ----------------------------------------------------------


@pytest.mark.parametrize("attestation", ["none", "packed"])
@pytest.mark.parametrize("alg", [ES256, EDDSA, RS256])
def test_registration_verifies_each_algorithm_and_format(api, alg, attestation):
    api.create_service()
    authenticator = Authenticator(alg=alg, attestation=attestation)
    factor = api.register("user-0001", authenticator=authenticator)
    assert factor["status"] == "verified"
    assert factor["metadata"] == {
        "aaguid": str(uuid.UUID(bytes=AAGUID)),
        "authenticator_name": "Apple Passwords",  # the community AAGUID list's name
        "credential_id": factor["metadata"]["credential_id"],  # checked below
        "backup_eligible": True,
        "backed_up": True,
        "clone_warning": False,
        "backup_eligible_changed": False,
    }
    assert "options" not in factor and "binding" not in factor
    (cred_id,) = authenticator.credentials
    assert factor["metadata"]["credential_id"] == b64url(cred_id)  # as the browser's `id`
    with contextlib.closing(sqlite3.connect(api.db_path)) as db:
        row = db.execute(
            "SELECT credential_id, algorithm, sign_count, transports, fmt, backup_eligible,"
            " backed_up, attachment FROM factors WHERE sid = ?",
            (factor["sid"],),
        ).fetchone()
    assert row == (cred_id, alg, 0, '["internal","hybrid"]', attestation, 1, 1, "platform")


def test_registration_then_authentication_is_the_whole_ceremony(api):
    api.create_service()
    factor = api.register("user-0001")
    challenge = api.challenge(identity="user-0001")
    r = api.approve(api.authenticator.get(challenge["options"], ORIGIN))
    assert r.status_code == 200 and r.json()["factor_sid"] == factor["sid"]


@pytest.mark.parametrize(
    ("configured", "origin", "rp_id"),
    [
        ("example.com", "https://example.com", "example.com"),
        ("https://login.example.com/", "https://login.example.com", "example.com"),
        ("localhost", "http://localhost:5173", "localhost"),
        ("android:apk-key-hash:Zm9vYmFy", "android:apk-key-hash:Zm9vYmFy", "example.com"),
        # A host and port without a scheme, with a trailing / (stored verbatim, it matched
        # nothing).
        ("example.com:8443/", "https://example.com:8443", "example.com"),
    ],
)
def test_configured_origins_are_matched(api, configured, origin, rp_id):
    api.create_service(**{
        "Passkeys.RelyingParty.Origins": configured,
        "Passkeys.RelyingParty.Id": rp_id,
    })  # fmt: skip
    factor = api.create_factor()
    r = api.verify_factor(api.authenticator.create(factor["options"], origin))
    assert r.status_code == 200, r.text


def test_a_subdomain_of_a_listed_origin_is_not_accepted(api):
    api.create_service()
    factor = api.create_factor()
    refused(
        api, api.authenticator.create(factor["options"], "https://evil.example.com"), 400, 60380
    )


# --- P2: one refusal per verification step -------------------------------------------------


@pytest.fixture
def pending(api):
    """A service and an unverified factor waiting for its registration."""
    api.create_service()
    return api.create_factor()


def test_step_7_1_7_wrong_client_data_type(api, pending):
    """400 60380, "Client data invalid": the reference's table names a wrong type there."""
    cred = api.authenticator.create(pending["options"], ORIGIN, type="webauthn.get")
    body = refused(api, cred, 400, 60380)
    assert "clientData.type" in body["message"]


def test_step_7_1_8_unknown_challenge(api, pending):
    cred = api.authenticator.create(pending["options"], ORIGIN, challenge=b64url(b"x" * 32))
    refused(api, cred, 404, 60391)


def test_step_7_1_9_origin_not_listed(api, pending):
    """400 60380, "Client data invalid": the reference's error table names a wrong origin
    there (as a wrong type); it was 403 60311 (found by the reference audit)."""
    body = refused(
        api, api.authenticator.create(pending["options"], "https://evil.test"), 400, 60380
    )
    assert "clientData.origin 'https://evil.test' is not" in body["message"]


def test_step_7_1_10_cross_origin_refused(api, pending):
    cred = api.authenticator.create(pending["options"], ORIGIN, cross_origin=True)
    assert "§7.1.10" in refused(api, cred, 403, 60311)["message"]


def test_step_7_1_10_top_origin_without_cross_origin(api, pending):
    cred = api.authenticator.create(pending["options"], ORIGIN, top_origin=ORIGIN)
    assert "crossOrigin is not" in refused(api, cred, 403, 60311)["message"]


def test_step_7_1_10_the_rps_own_origin_is_no_top_origin_unless_listed(api, pending):
    """A cross-origin ceremony is accepted only inside a page the service lists among its
    top origins: with none listed, not even inside one of its own origins."""
    cred = api.authenticator.create(
        pending["options"], ORIGIN, cross_origin=True, top_origin=ORIGIN
    )
    message = refused(api, cred, 403, 60311)["message"]
    assert "§7.1.10" in message and f"topOrigin '{ORIGIN}' is not" in message
    api.create_service(**{"Passkeys.TopOrigins": ORIGIN})
    factor = api.create_factor()
    cred = api.authenticator.create(factor["options"], ORIGIN, cross_origin=True, top_origin=ORIGIN)
    assert api.verify_factor(cred).json()["status"] == "verified"


def test_step_7_1_14_rp_id_hash_of_another_rp(api, pending):
    cred = api.authenticator.create(pending["options"], ORIGIN, rp_id="evil.test")
    body = refused(api, cred, 403, 60311)
    assert "rpIdHash" in body["message"]


def test_step_7_1_15_user_not_present(api, pending):
    cred = api.authenticator.create(pending["options"], ORIGIN, flags=UV | AT)
    body = refused(api, cred, 403, 60311)
    assert "user present" in body["message"]


def test_step_7_1_16_user_not_verified_when_required(api):
    api.create_service(**{"Passkeys.UserVerification": "required"})
    factor = api.create_factor()
    cred = Authenticator(uv=False).create(factor["options"], ORIGIN)
    body = refused(api, cred, 403, 60311)
    assert "user verified" in body["message"]


def test_user_not_verified_is_fine_when_only_preferred(api, pending):
    cred = Authenticator(uv=False).create(pending["options"], ORIGIN)
    assert api.verify_factor(cred).status_code == 200


def test_step_7_1_17_backed_up_but_not_backup_eligible(api, pending):
    cred = api.authenticator.create(pending["options"], ORIGIN, flags=UP | UV | BS | AT)
    assert "§7.1.17" in refused(api, cred, 403, 60311)["message"]


def test_step_7_1_20_algorithm_not_offered(api, pending):
    """400 60385, "Public key invalid": the reference's table names an unsupported alg."""
    cred = api.authenticator.create(pending["options"], ORIGIN, alg=PS256)
    body = refused(api, cred, 400, 60385)
    assert "algorithm" in body["message"]


@pytest.mark.parametrize(
    ("claimed", "actual", "change", "message"),
    [
        (ES256, ES384, {}, "an ES256 key must be on the P-256 curve"),
        (ES256, ES512, {}, "an ES256 key must be on the P-256 curve"),
        (ES512, ES256, {}, "an ES512 key must be on the P-521 curve"),
        (EDDSA, ES256, {}, "an EdDSA key must be a COSE OKP key"),
        (RS256, ES256, {}, "an RS256 key must be a COSE RSA key"),
        # Integers only: py_webauthn reads `true` and `1.0` as P-256.
        (ES256, ES256, {-1: True}, "an ES256 key must be on the P-256 curve"),
        (ES256, ES256, {-1: 1.0}, "an ES256 key must be on the P-256 curve"),
        (ES256, ES256, {1: 2.0}, "an ES256 key must be a COSE EC2 key"),
        (ES384, ES384, {-1: 2.0}, "an ES384 key must be an EC2 P-384 point"),
        # Labels too: Python's dict finds 1, -1 and 3 under true, -1.0 and 3.0.
        (ES256, ES256, {"relabel": (1, True)}, "a label neither an integer nor text"),
        (ES256, ES256, {"relabel": (-1, -1.0)}, "a label neither an integer nor text"),
        (ES256, ES256, {"relabel": (3, 3.0)}, "a label neither an integer nor text"),
    ],
)
def test_step_7_1_20_key_not_of_its_algorithm(api, claimed, actual, change, message):
    """A key whose `alg` is one the service offers but whose type or curve is another
    algorithm's (§5.8.5: an ES256 key MUST be on P-256) used to be stored under that `alg`,
    passing a service's `Algorithms=ES256` with a P-384 or P-521 key."""
    import cbor2

    api.create_service(**{"Passkeys.Algorithms": "-7,-8,-35,-36,-257"})
    factor = api.create_factor()
    cred = Authenticator(alg=actual).create(factor["options"], ORIGIN)
    attestation = cbor2.loads(unb64url(cred["response"]["attestationObject"]))
    auth_data = attestation["authData"]
    key_at = 55 + int.from_bytes(auth_data[53:55], "big")  # after the credential id
    key = cbor2.loads(auth_data[key_at:])
    key[3] = claimed
    if "relabel" in change:
        label, other = change["relabel"]
        key = {(other if k == label else k): v for k, v in key.items()}
    else:
        key.update(change)
    attestation["authData"] = auth_data[:key_at] + cbor2.dumps(key)
    cred["response"]["attestationObject"] = b64url(cbor2.dumps(attestation))
    body = refused(api, cred, 400, 60385)
    assert message in body["message"] and "§7.1.20" in body["message"]


def test_step_7_1_22_packed_attestation_signature_invalid(api, pending):
    good = Authenticator(attestation="packed").create(pending["options"], ORIGIN)
    # Re-sign nothing: swap in another authenticator's attestation over different data.
    other = Authenticator(attestation="packed").create(pending["options"], ORIGIN)
    import cbor2

    att = cbor2.loads(unb64url(good["response"]["attestationObject"]))
    att["attStmt"] = cbor2.loads(unb64url(other["response"]["attestationObject"]))["attStmt"]
    good["response"]["attestationObject"] = b64url(cbor2.dumps(att))
    body = refused(api, good, 403, 60311)
    assert "attestation statement" in body["message"]


@pytest.mark.parametrize(
    "statement",
    [{"alg": -7, "sig": b"\x00" * 8}, {"note": "keys no format defines"}],
    ids=["known-fields", "unknown-keys"],
)
def test_step_7_1_22_none_attestation_with_a_statement(api, pending, statement):
    """§8.7: a none attestation statement is the empty map, nothing else."""
    import cbor2

    cred = api.authenticator.create(pending["options"], ORIGIN)
    att = cbor2.loads(unb64url(cred["response"]["attestationObject"]))
    att["attStmt"] = statement
    cred["response"]["attestationObject"] = b64url(cbor2.dumps(att))
    assert "§7.1.22" in refused(api, cred, 403, 60311)["message"]


def test_step_7_1_26_credential_already_registered(api):
    api.create_service()
    api.register("user-0001", credential_id=b"\x01" * 32)
    factor = api.create_factor("user-0002")
    cred = Authenticator().create(factor["options"], ORIGIN, credential_id=b"\x01" * 32)
    body = refused(api, cred, 403, 60311)
    assert "already registered" in body["message"]


def test_step_7_1_25_a_credential_id_over_1023_bytes_is_refused(api, pending):
    cred = api.authenticator.create(pending["options"], ORIGIN, credential_id=b"\x02" * 1024)
    message = refused(api, cred, 403, 60311)["message"]
    assert "§7.1.25" in message and "over 1023 bytes" in message
    cred = api.authenticator.create(pending["options"], ORIGIN, credential_id=b"\x02" * 1023)
    factor = api.verify_factor(cred).json()
    assert factor["status"] == "verified"
    assert unb64url(factor["metadata"]["credential_id"]) == b"\x02" * 1023


def test_attested_credential_data_naming_an_empty_credential_id_is_60387(api, pending):
    """A credentialIdLength of 0 (§6.5.1) names no credential: refused as no attested
    credential data, before the id the response gives is compared with it."""
    cred = api.authenticator.create(
        pending["options"], ORIGIN, credential_id=b"", id=b64url(b"\x03" * 32)
    )
    assert "no attested credential data" in refused(api, cred, 400, 60387)["message"]


def test_attested_credential_data_missing(api, pending):
    cred = api.authenticator.create(pending["options"], ORIGIN, flags=UP | UV, attested=False)
    refused(api, cred, 400, 60387)


def test_attested_credential_data_after_a_cleared_at_flag_is_60387(api, pending):
    """The data is there, the flag that says so is not: it was refused as bytes after
    authenticatorData's end (60386), not as credential data missing (found by the
    bad-input review)."""
    import cbor2

    cred = api.authenticator.create(pending["options"], ORIGIN, flags=UP | UV)
    attestation = cbor2.loads(unb64url(cred["response"]["attestationObject"]))
    data = attestation["authData"]
    attestation["authData"] = data[:32] + bytes([data[32] & ~0x40]) + data[33:]
    cred["response"]["attestationObject"] = b64url(cbor2.dumps(attestation))
    assert "AT flag is not set" in refused(api, cred, 400, 60387)["message"]


def test_id_that_is_not_the_attested_credential(api, pending):
    cred = api.authenticator.create(pending["options"], ORIGIN, id=b64url(b"\x09" * 32))
    refused(api, cred, 400, 60375)


def test_verifying_a_verified_factor_again_is_illegal(api, pending):
    cred = api.authenticator.create(pending["options"], ORIGIN)
    assert api.verify_factor(cred).status_code == 200
    refused(api, cred, 403, 60383)


def test_registration_after_the_timeout_has_expired(api, pending, clock):
    clock.advance(601)
    refused(api, api.authenticator.create(pending["options"], ORIGIN), 403, 60323)


def test_verify_factor_on_another_accounts_service(api, other_api, pending):
    cred = api.authenticator.create(pending["options"], ORIGIN)
    before = api.snapshot()
    r = other_api.post_json(f"{api.svc}/Passkeys/VerifyFactor", cred)
    assert (r.status_code, r.json()["code"]) == (404, 20404)
    assert api.snapshot() == before


def test_verify_factor_with_a_challenge_from_another_service(api, pending):
    cred = api.authenticator.create(pending["options"], ORIGIN)
    first = api.service_sid
    api.create_service()
    refused(api, cred, 404, 60391)
    api.service_sid = first
    assert api.verify_factor(cred).status_code == 200


def test_attestation_conveyance_is_a_service_setting(api):
    service = api.create_service(**{"Passkeys.Attestation": "direct"})
    assert service["passkeys"]["attestation"] == "direct"
    factor = api.create_factor()
    assert factor["options"]["publicKey"]["attestation"] == "direct"
    authenticator = Authenticator(attestation="packed")
    r = api.verify_factor(authenticator.create(factor["options"], ORIGIN))
    assert r.status_code == 200, r.text


def test_unknown_attestation_conveyance_is_refused(api):
    before = api.snapshot()
    r = api.post_form("/v2/Services", {"FriendlyName": "x", "Passkeys.Attestation": "always"})
    assert (r.status_code, r.json()["code"]) == (400, 60200)
    assert api.snapshot() == before


def test_a_factor_config_origin_that_could_never_match_is_refused(api):
    api.create_service()
    before = api.snapshot()
    config = {
        "relying_party": {"id": "example.com", "name": "x", "origins": '["https://a.example.com"]'}
    }
    r = api.post_json(
        f"{api.svc}/Passkeys/Factors",
        {"friendly_name": "a", "identity": "user-0001", "config": config},
    )
    assert (r.status_code, r.json()["code"]) == (400, 60370), r.text
    assert "no scheme and host" in r.json()["message"]
    assert api.snapshot() == before


# --- The letter of WebAuthn: what a review of §6.1, §7.1 and §8 found accepted ------------


def _attestation(cred):
    import cbor2

    return cbor2.loads(unb64url(cred["response"]["attestationObject"]))


def _with_attestation(cred, attestation, tail=b""):
    import cbor2

    cred["response"]["attestationObject"] = b64url(cbor2.dumps(attestation) + tail)
    return cred


def test_step_7_1_13_bytes_after_the_attestation_object_are_refused(api, pending):
    """§7.1.13 decodes the attestationObject as one CBOR item: `cbor2.loads` ignored what
    followed it, and such a registration was verified."""
    cred = api.authenticator.create(pending["options"], ORIGIN)
    cred = _with_attestation(cred, _attestation(cred), tail=b"junk")
    assert "bytes after" in refused(api, cred, 400, 60386)["message"]


@pytest.mark.parametrize(
    ("extensions", "says"),
    list(EXTENSIONS_NOT_ENDING_AUTH_DATA.values()),
    ids=list(EXTENSIONS_NOT_ENDING_AUTH_DATA),
)
def test_6_1_registration_authenticator_data_after_its_extensions(api, pending, extensions, says):
    """§6.1: the extensions are one CBOR map, and nothing follows them. Both were verified."""
    cred = api.authenticator.create(pending["options"], ORIGIN)
    attestation = _attestation(cred)
    auth_data = bytearray(attestation["authData"])
    auth_data[32] |= ED
    attestation["authData"] = bytes(auth_data) + extensions
    body = refused(api, _with_attestation(cred, attestation), 400, 60386)
    assert says in body["message"]


def test_6_1_extensions_written_unlike_cbor2_writes_them_are_read_as_sent(api, pending):
    """The control: the same float16 extensions with nothing after them verify."""
    cred = api.authenticator.create(pending["options"], ORIGIN)
    attestation = _attestation(cred)
    auth_data = bytearray(attestation["authData"])
    auth_data[32] |= ED
    attestation["authData"] = bytes(auth_data) + FLOAT16_EXTENSIONS
    r = api.verify_factor(_with_attestation(cred, attestation))
    assert r.status_code == 200, r.text


def test_6_1_extensions_not_in_ctap2_canonical_form_are_malformed(api, pending):
    """CTAP2 canonical CBOR: extensions whose integer is written longer than it needs end
    where the layout check says, but py_webauthn, writing them again, finds a byte left
    over. Refused as malformed (400 60386, saying why), not verified and not a 500."""
    cred = api.authenticator.create(pending["options"], ORIGIN)
    attestation = _attestation(cred)
    auth_data = bytearray(attestation["authData"])
    auth_data[32] |= ED
    attestation["authData"] = bytes(auth_data) + LONG_FORM_EXTENSIONS
    body = refused(api, _with_attestation(cred, attestation), 400, 60386)
    assert "CTAP2 canonical" in body["message"]


@pytest.mark.parametrize(
    ("alg", "edit", "says"),
    [
        (ES256, lambda k: {**k, -2: b"\x00" + k[-2]}, "coordinates must be 32 bytes"),
        (ES256, lambda k: {**k, -3: k[-3] + b"\x00" * 32}, "coordinates must be 32 bytes"),
        (ES512, lambda k: {**k, -2: b"\x00" + k[-2]}, "coordinates must be 66 bytes"),
        (EDDSA, lambda k: {**k, -2: k[-2][:31]}, "coordinates must be 32 bytes"),
        (ES256, lambda k: {**k, -4: b"\x01" * 32}, "holds private key parts"),
        (RS256, lambda k: {**k, -1: k[-1][:128]}, "must be from 2048 to 4096 bits"),
        (RS256, lambda k: {**k, -1: b"\xff" * 1024}, "must be from 2048 to 4096 bits"),
        (RS256, lambda k: {**k, -2: b"\xff" * 8}, "exponent must be odd, from 3 to 2^32-1"),
        (RS256, lambda k: {**k, -2: b"\x01\x00\x00"}, "exponent must be odd"),
        (RS256, lambda k: {**k, -2: b"\x01"}, "exponent must be odd"),
        (-48, lambda k: {**k, -1: k[-1][:-1]}, "ML-DSA-44 key's public key must be 1312 bytes"),
        (-50, lambda k: {**k, -1: k[-1] + b"\x00"}, "public key must be 2592 bytes"),
        (-49, lambda k: {**k, -2: b"\x01" * 32}, "holds private key parts"),
        (-48, lambda k: {**k, 1: 2}, "an ML-DSA-44 key must be a COSE AKP key"),
    ],
    ids=[
        "es256-x-33",
        "es256-y-64",
        "es512-x-67",
        "eddsa-x-31",
        "private-d",
        "rsa-1024",
        "rsa-8192",
        "rsa-e-2^64-1",
        "rsa-e-even",
        "rsa-e-1",
        "ml-dsa-44-pub-1311",
        "ml-dsa-87-pub-2593",
        "ml-dsa-65-priv",
        "ml-dsa-44-ec2",
    ],  # fmt: skip
)
def test_step_7_1_20_a_malformed_public_key_is_refused(api, alg, edit, says):
    """RFC 9053 §7.1.1 keeps a coordinate's leading zeros (so its size is the curve's), RFC
    8812 asks 2048 bits of an RSA key, and a public key holds no private part: py_webauthn
    reads coordinates of any length as integers, and each of these was stored. An RSA key
    of more than 4096 bits, or with an exponent of 2^32 or more, was stored too, and cost
    up to 100x a normal key's verification at every later assertion."""
    import cbor2

    api.create_service(**{"Passkeys.Algorithms": "-7,-8,-35,-36,-257,-48,-49,-50"})
    factor = api.create_factor()
    cred = Authenticator(alg=alg).create(factor["options"], ORIGIN)
    attestation = _attestation(cred)
    auth_data = attestation["authData"]
    key_at = 55 + int.from_bytes(auth_data[53:55], "big")  # after the credential id
    key = edit(cbor2.loads(auth_data[key_at:]))
    attestation["authData"] = auth_data[:key_at] + cbor2.dumps(key)
    body = refused(api, _with_attestation(cred, attestation), 400, 60385)
    assert says in body["message"] and "§7.1.20" in body["message"]


def _full_packed(leaf):
    return Authenticator(attestation="packed", x5c=[leaf.der], attestation_key=leaf.key)


def _reshaped_leaf(pki, root, **shape):
    """An attestation leaf under `root` in a shape CertificateBuilder cannot write
    (`pki.reshaped`: X.509 v1, or v3 without extensions), signed again by `root`."""
    from cryptography import x509

    leaf = pki.attestation_leaf(root, AAGUID)
    der = pki.reshaped(leaf, signer=root.key, **shape)
    return pki.Issued(x509.load_der_x509_certificate(der), leaf.key)


@pytest.mark.parametrize(
    ("leaf_of", "says"),
    [
        (lambda pki, root: pki.attestation_leaf(root, AAGUID, unit="Web Server"), "subject OU"),
        (lambda pki, root: pki.attestation_leaf(root, AAGUID, is_ca=True), "is a CA"),
        (lambda pki, root: _reshaped_leaf(pki, root, version1=True), "not X.509 version 3"),
        (lambda pki, root: _reshaped_leaf(pki, root, extensions=False), "no Basic Constraints"),
        (lambda pki, root: pki.attestation_leaf(root, b"\x01" * 16), "another authenticator"),
        (
            lambda pki, root: pki.attestation_leaf(root, AAGUID, aaguid_critical=True),
            "AAGUID extension is marked critical",
        ),
    ],
    ids=["ou", "ca", "v1", "no-basic-constraints", "aaguid-extension", "aaguid-extension-critical"],
)
def test_step_7_1_22_a_packed_certificate_must_meet_8_2_1_under_any_policy(
    api, pending, leaf_of, says
):
    """§8.2 is the packed format's own verification procedure, and its certificate
    requirements (§8.2.1, the AAGUID extension) are part of it: they were checked only when
    the service required trusted attestation. By default such a registration was verified."""
    from tests import pki

    root = pki.ca("Vendor Root")
    cred = _full_packed(leaf_of(pki, root)).create(pending["options"], ORIGIN)
    body = refused(api, cred, 403, 60311)
    assert says in body["message"] and "§7.1.22" in body["message"]
    honest = _full_packed(pki.attestation_leaf(root, AAGUID)).create(pending["options"], ORIGIN)
    r = api.verify_factor(honest)
    assert (r.status_code, r.json()["status"]) == (200, "verified"), r.text


@pytest.mark.parametrize("sig", ["text", 7, [b"x"], None])
def test_an_es384_packed_attestation_whose_sig_is_no_bytes_is_malformed(api, sig):
    """It was a 500 (TypeError from cryptography) where the library's path answered 403."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests import pki

    api.create_service(**{"Passkeys.Algorithms": "-7,-35"})
    leaf = pki.attestation_leaf(pki.ca("Vendor Root"), AAGUID, curve=ec.SECP384R1())
    device = Authenticator(attestation="packed", x5c=[leaf.der], attestation_key=leaf.key)
    cred = device.create(api.create_factor()["options"], ORIGIN)
    attestation = _attestation(cred)
    attestation["attStmt"]["sig"] = sig
    assert refused(api, _with_attestation(cred, attestation), 400, 60386)["message"]


@pytest.mark.parametrize("alg", [-7.0, True, "-7", None])
@pytest.mark.parametrize("full", [False, True], ids=["self", "x5c"])
def test_a_packed_attestation_whose_alg_is_no_integer_is_malformed(api, alg, full):
    """§8.2: `alg` is a COSEAlgorithmIdentifier, an integer. The statement is not signed,
    and py_webauthn compared it with ==: a CBOR float -7.0 passed for -7. Nothing stored."""
    from tests import pki

    api.create_service()
    device = Authenticator(attestation="packed")
    if full:
        device = _full_packed(pki.attestation_leaf(pki.ca("Vendor Root"), AAGUID))
    cred = device.create(api.create_factor()["options"], ORIGIN)
    attestation = _attestation(cred)
    assert attestation["attStmt"]["alg"] == ES256
    attestation["attStmt"]["alg"] = alg
    before = api.snapshot()
    body = refused(api, _with_attestation(cred, attestation), 400, 60386)
    assert "alg is not an integer" in body["message"]
    assert api.snapshot() == before


@pytest.mark.parametrize("alg", [ES256, ES384])
def test_step_7_1_22_a_packed_attestation_signed_with_es384_verifies(api, alg):
    """§8.2: `sig` is verified with the certificate's key and the statement's `alg`, which
    need not be the credential's: a P-384 attestation key signs with ES384, which py_webauthn
    cannot verify (it refused every such registration). A wrong signature still fails."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests import pki

    api.create_service(**{"Passkeys.Algorithms": "-7,-35"})
    leaf = pki.attestation_leaf(pki.ca("Vendor Root"), AAGUID, curve=ec.SECP384R1())
    device = Authenticator(alg=alg, attestation="packed", x5c=[leaf.der], attestation_key=leaf.key)
    cred = device.create(api.create_factor()["options"], ORIGIN)
    assert _attestation(cred)["attStmt"]["alg"] == ES384
    r = api.verify_factor(cred)
    assert (r.status_code, r.json()["status"]) == (200, "verified"), r.text
    cred = device.create(api.create_factor()["options"], ORIGIN)
    attestation = _attestation(cred)
    attestation["attStmt"]["sig"] = leaf.key.sign(b"something else", ec.ECDSA(hashes.SHA384()))
    body = refused(api, _with_attestation(cred, attestation), 403, 60311)
    assert "packed attestation statement did not verify" in body["message"]


def _es384_self_attestation(api):
    """A pending factor on a service offering ES384, and an ES384 key's packed self
    attestation of it (the credential, and the key that made it)."""
    api.create_service(**{"Passkeys.Algorithms": "-7,-35"})
    device = Authenticator(alg=ES384, attestation="packed")
    cred = device.create(api.create_factor()["options"], ORIGIN)
    (stored,) = device.credentials.values()
    return cred, stored.key


def test_step_7_1_22_an_es384_self_attestation_verifies(api):
    cred, _ = _es384_self_attestation(api)
    assert _attestation(cred)["attStmt"]["alg"] == ES384
    r = api.verify_factor(cred)
    assert (r.status_code, r.json()["status"]) == (200, "verified"), r.text


@pytest.mark.parametrize("alg", [ES256, ES512, RS256])
def test_step_7_1_22_an_es384_self_attestation_naming_another_alg_is_refused(api, alg):
    """§8.2: a self attestation's `alg` is the credential key's. The signature is the key's
    own, right over the right data: only the `alg` is not its algorithm."""
    cred, _ = _es384_self_attestation(api)
    attestation = _attestation(cred)
    attestation["attStmt"]["alg"] = alg
    body = refused(api, _with_attestation(cred, attestation), 403, 60311)
    assert "§7.1.22" in body["message"] and "does not match the key" in body["message"]


@pytest.mark.parametrize("signer", ["other-data", "other-key"])
def test_step_7_1_22_an_es384_self_attestation_with_a_wrong_signature_is_refused(api, signer):
    """§8.2: `sig` must verify with the credential key over authenticatorData and the
    clientData's hash: not its signature of anything else, nor another P-384 key's."""
    import hashlib

    from tests.authenticator import Key

    cred, key = _es384_self_attestation(api)
    attestation = _attestation(cred)
    signed = (
        attestation["authData"]
        + hashlib.sha256(unb64url(cred["response"]["clientDataJSON"])).digest()
    )
    attestation["attStmt"]["sig"] = (
        key.sign(signed + b"!") if signer == "other-data" else Key.generate(ES384).sign(signed)
    )
    body = refused(api, _with_attestation(cred, attestation), 403, 60311)
    assert "§7.1.22" in body["message"] and "did not verify" in body["message"]


@pytest.mark.parametrize("fmt", ["Packed", "packed ", "x-vendor", "NONE"])
def test_step_7_1_21_an_unknown_attestation_format_is_refused(api, pending, fmt):
    """§7.1.20: `fmt` is matched case-sensitively against the formats supported."""
    cred = Authenticator(attestation="packed").create(pending["options"], ORIGIN)
    attestation = _attestation(cred)
    attestation["fmt"] = fmt
    body = refused(api, _with_attestation(cred, attestation), 403, 60311)
    assert f"attestation format {fmt!r} is not supported" in body["message"]


@pytest.mark.parametrize("attestation", ["packed", "none"])
def test_a_client_data_token_binding_is_not_read(api, pending, attestation):
    """L3 has no token binding step: Edge Legacy's clientData said `tokenBinding:
    {"status": "not-supported"}`, and every attestation but `none` was refused for it (by
    py_webauthn's verify_registration_response, which read it)."""
    client_data = json.dumps(
        {
            "type": "webauthn.create",
            "challenge": pending["options"]["publicKey"]["challenge"],
            "origin": ORIGIN,
            "tokenBinding": {"status": "not-supported"},
        }
    ).encode()
    device = Authenticator(attestation=attestation)
    cred = device.create(pending["options"], ORIGIN, client_data=client_data)
    r = api.verify_factor(cred)
    assert (r.status_code, r.json()["status"]) == (200, "verified"), r.text


def test_step_7_1_22_a_packed_x5c_without_a_certificate_is_refused(api, pending):
    """§8.2: x5c holds the attestation certificate; an empty one was read as self attestation."""
    cred = Authenticator(attestation="packed").create(pending["options"], ORIGIN)
    attestation = _attestation(cred)
    attestation["attStmt"]["x5c"] = []
    body = refused(api, _with_attestation(cred, attestation), 403, 60311)
    assert "x5c holds no certificate" in body["message"]


def test_8_6_a_fido_u2f_credential_key_is_p256(api):
    """§8.6 turns the credential key into a raw P-256 point, or fails: a fido-u2f
    registration of an ES512 key was verified."""
    from tests import pki

    api.create_service(**{"Passkeys.Algorithms": "-7,-36"})
    factor = api.create_factor()
    leaf = pki.attestation_leaf(pki.ca("U2F Root"), b"\x00" * 16)
    u2f = Authenticator(
        attestation="fido-u2f",
        alg=ES512,
        aaguid=b"\x00" * 16,
        x5c=[leaf.der],
        attestation_key=leaf.key,
    )
    body = refused(api, u2f.create(factor["options"], ORIGIN), 403, 60311)
    assert "fido-u2f credential key must be an ES256 P-256 key" in body["message"]


def test_a_raw_id_naming_another_credential_than_id_is_refused(api, pending):
    """py_webauthn refuses `id != rawId`; passkeyd took `id` and never read `rawId`."""
    import os

    cred = api.authenticator.create(pending["options"], ORIGIN)
    cred["rawId"] = b64url(os.urandom(32))
    assert "rawId" in refused(api, cred, 400, 60376)["message"]


def test_a_raw_id_that_is_no_text_beside_an_id_is_not_read(api, pending):
    """An ArrayBuffer copied by hand, as JSON.stringify writes it: the id names the
    credential."""
    cred = api.authenticator.create(pending["options"], ORIGIN)
    cred["rawId"] = {}
    r = api.verify_factor(cred)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("encoding", ["hex", "base64", "base64url"])
def test_a_raw_id_in_any_encoding_of_the_same_credential_is_accepted(api, pending, encoding):
    import base64

    cred = api.authenticator.create(pending["options"], ORIGIN)
    raw = unb64url(cred["id"])
    cred["rawId"] = {
        "hex": raw.hex(),
        "base64": base64.b64encode(raw).decode(),
        "base64url": cred["id"],
    }[encoding]
    r = api.verify_factor(cred)
    assert r.status_code == 200, r.text


def test_step_7_1_5_a_byte_order_mark_before_client_data_is_stripped(api, pending):
    """§7.1.5: "UTF-8 decode", which strips a leading BOM; clientDataJSON starting with
    one was refused as not JSON."""
    pk = pending["options"]["publicKey"]
    bom = b"\xef\xbb\xbf"
    client_data = bom + Authenticator._client_data("webauthn.create", pk["challenge"], ORIGIN)
    cred = api.authenticator.create(pending["options"], ORIGIN, client_data=client_data)
    r = api.verify_factor(cred)
    assert (r.status_code, r.json()["status"]) == (200, "verified"), r.text


def test_a_packed_certificate_in_ber_passes_a_policy_that_does_not_trust_attestation(api, pending):
    """A Basic Constraints with its CA FALSE written out (BER where DER is due: Chromium's
    virtual authenticator wrote it until 2021) cannot be read by cryptography, so §8.2.1
    cannot be checked: by default the registration stands on its verified signature, as it
    did before §8.2.1 was checked there. (A service that trusts attestation refuses it:
    tests/webauthn/test_trust.py.)"""
    from cryptography import x509

    from tests import pki

    ber = x509.UnrecognizedExtension(
        x509.oid.ExtensionOID.BASIC_CONSTRAINTS, b"\x30\x03\x01\x01\x00"
    )
    leaf = pki.attestation_leaf(pki.ca("Vendor Root"), AAGUID, extras=[ber])
    r = api.verify_factor(_full_packed(leaf).create(pending["options"], ORIGIN))
    assert (r.status_code, r.json()["status"]) == (200, "verified"), r.text
    # Its subject still reads, and is still checked (§8.2.1).
    other = api.create_factor("user-0002")
    web = pki.attestation_leaf(pki.ca("Vendor Root"), AAGUID, unit="Web Server", extras=[ber])
    body = refused(api, _full_packed(web).create(other["options"], ORIGIN), 403, 60311)
    assert "subject OU" in body["message"]


def test_step_7_1_13_an_attestation_object_with_a_key_given_twice_is_refused(api, pending):
    """py_webauthn#265: Python keeps the last of two values for one key, so `{fmt: none,
    fmt: packed}` would be read as packed. Refused, as py_webauthn's parser refuses it."""
    import cbor2

    cred = api.authenticator.create(pending["options"], ORIGIN)
    attestation = _attestation(cred)
    body = b"".join(
        cbor2.dumps(k) + cbor2.dumps(v)
        for k, v in [("fmt", "packed"), ("fmt", "none"), ("attStmt", {})]
        + [("authData", attestation["authData"])]
    )
    cred["response"]["attestationObject"] = b64url(bytes([0xA4]) + body)
    assert "not valid CBOR" in refused(api, cred, 400, 60386)["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("attStmt", 5), ("attStmt", b"none"), ("fmt", 5), ("fmt", 10**5000)],
    ids=["attstmt-int", "attstmt-bytes", "fmt-int", "fmt-bignum"],
)
def test_step_7_1_13_an_attestation_object_of_the_wrong_shape_is_malformed(
    api, pending, field, value
):
    """fmt is text and attStmt a map (§6.5): otherwise the attestation object is malformed
    (400 60386). A 5000-digit fmt was a 500 (Python's limit on int-to-text conversion)."""
    cred = api.authenticator.create(pending["options"], ORIGIN)
    attestation = _attestation(cred)
    attestation[field] = value
    refused(api, _with_attestation(cred, attestation), 400, 60386)


def test_step_7_1_22_a_packed_certificate_whose_subject_cannot_be_read_is_refused(api, pending):
    """A subject cryptography cannot read (its countryName an INTEGER) cannot meet §8.2.1:
    it skipped every certificate check, and was verified."""
    from tests import pki

    leaf = pki.attestation_leaf(pki.ca("Vendor Root"), AAGUID, unit="Web Server")
    at = leaf.der.index(b"\x06\x03\x55\x04\x06\x13\x02SE")  # countryName, PrintableString
    der = leaf.der[: at + 5] + b"\x02" + leaf.der[at + 6 :]
    device = Authenticator(attestation="packed", x5c=[der], attestation_key=leaf.key)
    body = refused(api, device.create(pending["options"], ORIGIN), 403, 60311)
    assert "subject cannot be read" in body["message"]


@pytest.mark.parametrize("x5c", [{}, None, "", b"", 0, [b"x", "y"]])
def test_step_7_1_13_an_x5c_that_is_no_array_of_certificates_is_malformed(api, pending, x5c):
    """An x5c of {} or null was read as none at all, and a self attestation verified."""
    cred = Authenticator(attestation="packed").create(pending["options"], ORIGIN)
    attestation = _attestation(cred)
    attestation["attStmt"]["x5c"] = x5c
    assert "x5c" in refused(api, _with_attestation(cred, attestation), 400, 60386)["message"]


def test_a_factor_form_whose_fields_are_separated_by_semicolons_is_refused(api):
    """`friendly_name=a;identity=alice`, as curl sends what it is given: read as one value
    (`;` no longer separates fields), the identity was lost and the factor made for a new
    user. A `;` in a value an encoder wrote (%3B) is a `;` like any other character."""
    api.create_service()
    before = api.snapshot()
    r = api.post_raw(
        f"{api.svc}/Passkeys/Factors",
        b"friendly_name=a;identity=user-0001",
        "application/x-www-form-urlencoded",
    )
    assert (r.status_code, r.json()["code"]) == (400, 60300), r.text
    assert "separated by ';'" in r.json()["message"]
    assert api.snapshot() == before
    r = api.post_raw(
        f"{api.svc}/Passkeys/Factors",
        b"friendly_name=a%3Bidentity%3Dx&identity=user-0001",
        "application/x-www-form-urlencoded",
    )
    assert r.status_code == 201, r.text
    assert (r.json()["friendly_name"], r.json()["identity"]) == ("a;identity=x", "user-0001")


@pytest.mark.parametrize("alg", [ES256, ES384, -8, "x5c"])
@pytest.mark.parametrize("change", ["no alg", "no sig", "sig text"])
def test_a_packed_attestation_without_alg_or_sig_bytes_is_malformed_whoever_verifies_it(
    api, alg, change
):
    """§8.2: `alg` and `sig` are both required. py_webauthn verifies the statement of an
    ES256 or EdDSA key, and a certificate's, passkeyd a self attestation by an ES384 key;
    the first were refused as not verifying (403 60311), the second as malformed (400
    60386). Malformed for all."""
    from tests import pki

    api.create_service(**{"Passkeys.Algorithms": "-7,-35,-8"})
    if alg == "x5c":
        device = _full_packed(pki.attestation_leaf(pki.ca("Vendor Root"), AAGUID))
    else:
        device = Authenticator(attestation="packed", alg=alg)
    cred = device.create(api.create_factor()["options"], ORIGIN)
    attestation = _attestation(cred)
    statement = attestation["attStmt"]
    if change == "no alg":
        del statement["alg"]
    elif change == "no sig":
        del statement["sig"]
    else:
        statement["sig"] = "text"
    body = refused(api, _with_attestation(cred, attestation), 400, 60386)
    assert "lacks its alg or sig bytes" in body["message"]
