"""Authentication: P3 create challenge and P4 ApproveChallenge, success and every refusal."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from tests.authenticator import (
    BE,
    BS,
    ED,
    EXTENSIONS_NOT_ENDING_AUTH_DATA,
    FLOAT16_EXTENSIONS,
    LONG_FORM_EXTENSIONS,
    UP,
    UV,
    Authenticator,
    b64url,
    unb64url,
)
from tests.conftest import ORIGIN, approved_meanwhile


def refused(api, assertion, status, code):
    """ApproveChallenge refuses with (status, code) and changes nothing stored."""
    before = api.snapshot()
    r = api.approve(assertion)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert api.snapshot() == before
    return r.json()


def sign_count(api, factor_sid):
    with contextlib.closing(sqlite3.connect(api.db_path)) as db:
        row = db.execute("SELECT sign_count FROM factors WHERE sid = ?", (factor_sid,)).fetchone()
    return row[0]


@pytest.fixture
def alice(api):
    """A service with one verified passkey for identity user-0001."""
    api.create_service()
    return api.register("user-0001")


# --- P3: request options -------------------------------------------------------------------


def test_challenge_for_an_identity_lists_its_passkeys(api, alice, clock):
    challenge = api.challenge(identity="user-0001")
    assert challenge["sid"].startswith("YC")
    assert challenge["status"] == "pending" and challenge["responded_reason"] == "none"
    assert challenge["identity"] == "user-0001"
    assert challenge["entity_sid"] == alice["entity_sid"]
    assert challenge["factor_sid"] == ""
    assert challenge["factor_type"] == "passkeys"
    assert challenge["url"] == f"http://testserver{api.svc}/Passkeys/Challenges"
    pk = challenge["options"]["publicKey"]
    (cred_id,) = api.authenticator.credentials
    assert pk["allowCredentials"] == [
        {"type": "public-key", "id": b64url(cred_id), "transports": ["internal", "hybrid"]}
    ]
    assert pk["rpId"] == "example.com"
    assert pk["rp"] == {"id": "example.com", "name": "Example"}
    assert pk["userVerification"] == "preferred"
    assert pk["timeout"] == 600000
    assert len(unb64url(pk["challenge"])) >= 32
    assert challenge["date_created"] < challenge["expiration_date"]


def test_usernameless_challenge_allows_any_passkey(api, alice):
    challenge = api.challenge()
    assert challenge["options"]["publicKey"]["allowCredentials"] == []
    assert (challenge["entity_sid"], challenge["identity"], challenge["factor_sid"]) == ("", "", "")


@pytest.mark.parametrize("value", [False, 0, [], {}])
@pytest.mark.parametrize("field", ["identity", "factor_sid"])
def test_a_falsy_identity_or_factor_is_refused_not_made_usernameless(api, alice, field, value):
    """A usernameless challenge takes anyone's passkey: only an identity not given (missing,
    null or "") asks for one. `false` or `0` used to as well."""
    before = api.snapshot()
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {field: value})
    code = 60367 if field == "identity" else 60362
    assert (r.status_code, r.json()["code"]) == (400, code), r.text
    assert api.snapshot() == before


def test_a_challenge_request_with_a_field_it_has_not_is_refused(api, alice):
    """What a field passkeyd does not know meant would be lost, and a request for a user
    without its identity is a usernameless challenge, which anyone's passkey answers.
    twilio-python 9.8.3 sends its request object's repr as a form field: that request used
    to make a usernameless challenge."""
    before = api.snapshot()
    form = {"CreatePasskeysChallengeRequest": "<twilio...CreatePasskeysChallengeRequest object>"}
    r = api.post_form(f"{api.svc}/Passkeys/Challenges", form)
    assert (r.status_code, r.json()["code"]) == (400, 60300), r.text
    assert "9.8.4" in r.json()["message"]
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"user": "user-0001"})
    assert (r.status_code, r.json()["code"]) == (400, 60300), r.text
    assert "'user' is not a field" in r.json()["message"]
    assert api.snapshot() == before
    # A null or empty one carries nothing: as an SDK's unset optional field.
    assert api.challenge(identity="user-0001", extra=None)["identity"] == "user-0001"


@pytest.mark.parametrize(
    ("query", "media", "content", "says"),
    [
        # curl -d and urllib label a JSON body they are given as a form: read as a form, it
        # is one field named after the whole text, with an empty value.
        (
            "",
            "application/x-www-form-urlencoded",
            b'{"identity": "user-0001"}',
            "JSON sent as a form",
        ),
        ("", "application/x-www-form-urlencoded", b"Identity", "without a value"),
        ("", "application/x-www-form-urlencoded", b"identity:user-0001", "without a value"),
        ("", "application/x-www-form-urlencoded", b"identity:user-0001=", "is not a field"),
        # `;` separated fields in HTML 4's forms; no longer (found by the bad-input review)
        ("", "application/x-www-form-urlencoded", b"x=1;identity=user-0001", "separated by ';'"),
        ("?Identity=user-0001", "application/json", b"{}", "not in the URL's query"),
        ("?FactorSid=YF" + "0" * 32, "application/json", b"{}", "not in the URL's query"),
    ],
)
def test_a_challenge_for_a_user_written_where_it_is_not_read_is_refused(
    api, alice, query, media, content, says
):
    """Each of these names a user where a challenge's request is not read, and used to be
    a usernameless challenge, which anyone's passkey answers."""
    before = api.snapshot()
    r = api.post_raw(f"{api.svc}/Passkeys/Challenges{query}", content, media)
    assert (r.status_code, r.json()["code"]) == (400, 60300), r.text
    assert says in r.json()["message"]
    assert api.snapshot() == before


@pytest.mark.parametrize("media", ["application/json", None])
@pytest.mark.parametrize("content", [b"", b"  \r\n"])
def test_an_empty_challenge_request_is_a_usernameless_one(api, alice, media, content):
    """No body at all (`requests.post(url)`): as `{}`. It was a 500 for a moment, when the
    check for duplicate members read it again."""
    headers = {"Content-Type": media} if media else {}
    r = api.client.post(
        f"{api.svc}/Passkeys/Challenges", content=content, headers=headers, auth=api.auth
    )
    assert r.status_code == 201, r.text
    assert r.json()["identity"] == ""


@pytest.mark.parametrize(
    "body",
    [
        {"identity": None, "Identity": "user-0001"},
        {"identity": "", "Identity": "user-0001"},
        {"identity": "user-0001", "Identity": ""},
    ],
)
def test_a_spelling_without_a_value_gives_way_to_one_with_it(api, alice, body):
    """`{"identity": null, "Identity": "user-0001"}` used to be read as no identity (the
    first spelling found), and so as a usernameless challenge, which anyone's passkey
    answers."""
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", body)
    assert r.status_code == 201, r.text
    assert r.json()["identity"] == "user-0001"
    assert len(r.json()["options"]["publicKey"]["allowCredentials"]) == 1


@pytest.mark.parametrize(
    ("send", "content"),
    [
        ("json", {"identity": "user-0001", "Identity": "user-0002"}),
        ("json", {"factor_sid": "YF" + "0" * 32, "FactorSid": "YF" + "1" * 32}),
        ("form", "Identity=user-0001&Identity="),
        ("form", "identity=user-0001&Identity=user-0002"),
        ("raw", b'{"identity": "user-0001", "identity": ""}'),  # orjson keeps the last
    ],
)
def test_a_field_given_twice_with_different_values_is_refused(api, alice, send, content):
    """Which one was meant? A form `Identity=user-0001&Identity=` used to be read by its
    last value, "", and so made a usernameless challenge."""
    before = api.snapshot()
    if send == "json":
        r = api.post_json(f"{api.svc}/Passkeys/Challenges", content)
    else:
        media = "application/json" if send == "raw" else "application/x-www-form-urlencoded"
        r = api.post_raw(f"{api.svc}/Passkeys/Challenges", content, media)
    assert (r.status_code, r.json()["code"]) == (400, 60300), r.text
    assert "twice" in r.json()["message"]
    assert api.snapshot() == before


@pytest.mark.parametrize("body", [{"identity": None}, {"identity": ""}, {"factor_sid": ""}])
def test_an_identity_not_given_asks_for_any_passkey(api, alice, body):
    challenge = api.challenge(**body)
    assert challenge["options"]["publicKey"]["allowCredentials"] == []


def test_challenge_for_one_factor(api, alice):
    api.register("user-0001", authenticator=Authenticator())
    challenge = api.challenge(factor_sid=alice["sid"])
    assert challenge["factor_sid"] == alice["sid"]
    assert len(challenge["options"]["publicKey"]["allowCredentials"]) == 1


def test_challenges_are_random(api, alice):
    values = {api.challenge()["options"]["publicKey"]["challenge"] for _ in range(5)}
    assert len(values) == 5


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"identity": "nobody-0000"}, 404, 60392),
        ({"identity": "bad"}, 400, 60367),
        ({"factor_sid": "YF123"}, 400, 60362),
        ({"factor_sid": "YF" + "0" * 32}, 404, 60390),
    ],
)
def test_challenge_refusals(api, alice, body, status, code):
    before = api.snapshot()
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", body)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert api.snapshot() == before


def test_challenge_for_an_unverified_factor(api, alice):
    pending = api.create_factor("user-0002")
    before = api.snapshot()
    for body in ({"factor_sid": pending["sid"]}, {"identity": "user-0002"}):
        r = api.post_json(f"{api.svc}/Passkeys/Challenges", body)
        assert (r.status_code, r.json()["code"]) == (403, 60318), r.text
    assert api.snapshot() == before


def test_challenge_for_a_factor_of_another_identity(api, alice):
    api.register("user-0002", authenticator=Authenticator())
    r = api.post_json(
        f"{api.svc}/Passkeys/Challenges", {"identity": "user-0002", "factor_sid": alice["sid"]}
    )
    assert (r.status_code, r.json()["code"]) == (404, 60390)


def test_challenge_for_a_factor_of_another_service_of_the_same_account(api, alice):
    """A factor SID names a passkey of the service in the path only: one of the account's
    other services is not found there, and nothing is stored."""
    first = api.service_sid
    api.create_service()
    before = api.snapshot()
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"factor_sid": alice["sid"]})
    assert (r.status_code, r.json()["code"]) == (404, 60390), r.text
    assert api.snapshot() == before
    api.service_sid = first
    assert api.challenge(factor_sid=alice["sid"])["factor_sid"] == alice["sid"]


def test_usernameless_challenge_needs_a_relying_party_on_the_service(api):
    api.post_form("/v2/Services", {"FriendlyName": "bare"})
    api.service_sid = api.get("/v2/Services").json()["services"][0]["sid"]
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {})
    assert (r.status_code, r.json()["code"]) == (400, 60371)


def test_async_sdk_form_body_is_accepted_for_challenges(api, alice):
    r = api.client.post(
        f"{api.svc}/Passkeys/Challenges",
        content=b"identity=user-0001",
        headers={"Content-Type": "application/json"},
        auth=api.auth,
    )
    assert r.status_code == 201, r.text
    assert r.json()["identity"] == "user-0001"


# --- P4: approvals -------------------------------------------------------------------------


def test_approval_fills_in_who_signed_in(api, alice, clock):
    challenge = api.challenge(identity="user-0001")
    clock.advance(5)
    r = api.approve(api.authenticator.get(challenge["options"], ORIGIN))
    assert r.status_code == 200, r.text
    approved = r.json()
    assert approved["status"] == "approved"
    assert approved["sid"] == challenge["sid"]
    assert (approved["entity_sid"], approved["identity"], approved["factor_sid"]) == (
        alice["entity_sid"], "user-0001", alice["sid"],
    )  # fmt: skip
    assert approved["date_responded"] is not None
    assert approved["url"] == f"http://testserver{api.svc}/Passkeys/ApproveChallenge"
    assert approved["options"] == challenge["options"]
    assert sign_count(api, alice["sid"]) == 1
    factor = api.get(f"{api.svc}/Entities/user-0001/Factors/{alice['sid']}").json()
    assert factor["metadata"]["date_last_approved"] == approved["date_responded"]


def test_usernameless_approval_learns_the_identity(api, alice):
    challenge = api.challenge()
    r = api.approve(api.authenticator.get(challenge["options"], ORIGIN))
    assert r.status_code == 200, r.text
    assert r.json()["identity"] == "user-0001"
    assert r.json()["factor_sid"] == alice["sid"]


def test_assertion_without_user_handle_is_accepted(api, alice):
    challenge = api.challenge(identity="user-0001")
    r = api.approve(api.authenticator.get(challenge["options"], ORIGIN, user_handle=None))
    assert r.status_code == 200, r.text


def test_synced_passkey_with_zero_counter_signs_in_repeatedly(api):
    api.create_service()
    synced = Authenticator(counter_step=0)
    factor = api.register("user-0001", authenticator=synced)
    for _ in range(3):
        challenge = api.challenge(identity="user-0001")
        assert api.approve(synced.get(challenge["options"], ORIGIN)).status_code == 200
    assert sign_count(api, factor["sid"]) == 0


@pytest.mark.parametrize("alg", [-7, -8, -257])
def test_approval_for_each_algorithm(api, alg):
    api.create_service()
    authenticator = Authenticator(alg=alg)
    api.register("user-0001", authenticator=authenticator)
    challenge = api.challenge(identity="user-0001")
    assert api.approve(authenticator.get(challenge["options"], ORIGIN)).status_code == 200


def test_backup_state_change_is_recorded(api):
    api.create_service()
    device = Authenticator(backed_up=False)
    factor = api.register("user-0001", authenticator=device)
    challenge = api.challenge(identity="user-0001")
    assertion = device.get(challenge["options"], ORIGIN, flags=UP | UV | BE | BS)
    assert api.approve(assertion).status_code == 200
    with contextlib.closing(sqlite3.connect(api.db_path)) as db:
        row = db.execute("SELECT backed_up FROM factors WHERE sid=?", (factor["sid"],)).fetchone()
    assert row == (1,)


# --- P4: one refusal per verification step -------------------------------------------------


@pytest.fixture
def challenge(api, alice):
    return api.challenge(identity="user-0001")


def test_step_7_2_5_credential_not_allowed_for_this_challenge(api, challenge):
    bob = Authenticator()
    api.register("user-0002", authenticator=bob)
    bob_pk = next(iter(bob.credentials))
    body = refused(api, bob.get(challenge["options"], ORIGIN, credential_id=bob_pk), 403, 60324)
    assert "allowCredentials" in body["message"]


def test_step_7_2_6_user_handle_of_another_entity(api, alice):
    other = api.register("user-0002", authenticator=Authenticator())
    challenge = api.challenge()
    handle = other["entity_sid"].encode()
    body = refused(
        api, api.authenticator.get(challenge["options"], ORIGIN, user_handle=handle), 403, 60324
    )
    assert "userHandle" in body["message"]


def test_step_7_2_6_another_users_passkey_under_a_freed_credential_id(api, alice, challenge):
    """A challenge for user-0001 lists her credential id. Her passkey is deleted while the
    challenge is pending, and another user registers a credential under that same id (ids
    are not secret, and a `none` attestation signs nothing). His assertion names an id the
    challenge allows and carries his own userHandle; he is still not the user it is for."""
    (cid,) = api.authenticator.credentials
    assert api.delete(f"{api.svc}/Entities/user-0001/Factors/{alice['sid']}").status_code == 204
    mallory = Authenticator()
    api.register("user-0002", authenticator=mallory, credential_id=cid)
    for handle in ({}, {"user_handle": None}):
        assertion = mallory.get(challenge["options"], ORIGIN, credential_id=cid, **handle)
        body = refused(api, assertion, 403, 60324)
        assert "another user" in body["message"]
    got = api.get(f"{api.svc}/Entities/user-0001/Challenges/{challenge['sid']}")
    assert got.status_code == 200 and got.json()["status"] == "pending"


def test_step_7_2_6_a_challenge_for_one_passkey_takes_no_other(api, alice):
    """A challenge made for a factor SID accepts that factor only: not a new one of the
    same user registered under the deleted one's credential id."""
    (cid,) = api.authenticator.credentials
    challenge = api.challenge(factor_sid=alice["sid"])
    assert api.delete(f"{api.svc}/Entities/user-0001/Factors/{alice['sid']}").status_code == 204
    again = Authenticator()
    api.register("user-0001", authenticator=again, credential_id=cid)
    assertion = again.get(challenge["options"], ORIGIN, credential_id=cid)
    assert "another user" in refused(api, assertion, 403, 60324)["message"]


def test_step_7_2_7_unknown_credential(api, challenge):
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    assertion["id"] = assertion["rawId"] = b64url(b"\x07" * 32)
    refused(api, assertion, 404, 60390)


def test_step_7_2_10_wrong_client_data_type(api, challenge):
    """400 60380, "Client data invalid": the reference's table names a wrong type there."""
    body = refused(
        api, api.authenticator.get(challenge["options"], ORIGIN, type="webauthn.create"), 400, 60380
    )
    assert "clientData.type" in body["message"]


def test_step_7_2_11_unknown_challenge(api, challenge):
    assertion = api.authenticator.get(challenge["options"], ORIGIN, challenge=b64url(b"z" * 32))
    refused(api, assertion, 404, 60391)


def test_step_7_2_12_wrong_origin(api, challenge):
    body = refused(
        api, api.authenticator.get(challenge["options"], "https://evil.test"), 403, 60324
    )
    # The origin received is named: it is how a misconfigured service is found.
    assert "clientData.origin 'https://evil.test' is not" in body["message"]
    assert "§7.2.12" in body["message"]


def test_step_7_2_14_cross_origin_iframe(api, challenge):
    assertion = api.authenticator.get(
        challenge["options"], ORIGIN, cross_origin=True, top_origin="https://evil.test"
    )
    message = refused(api, assertion, 403, 60324)["message"]
    assert "§7.2.13-14" in message and "topOrigin 'https://evil.test' is not" in message


def test_step_7_2_14_the_rps_own_origin_is_no_top_origin_unless_listed(api, challenge):
    """A service that lists no top origins takes no cross-origin ceremony, not even one
    embedded in a page of its own origins."""
    assertion = api.authenticator.get(
        challenge["options"], ORIGIN, cross_origin=True, top_origin=ORIGIN
    )
    message = refused(api, assertion, 403, 60324)["message"]
    assert "§7.2.13-14" in message and f"topOrigin '{ORIGIN}' is not" in message


@pytest.mark.parametrize("cross_origin", [False, None])
@pytest.mark.parametrize("top_origin", [ORIGIN, "https://evil.test"])
def test_step_7_2_14_top_origin_without_cross_origin(api, challenge, cross_origin, top_origin):
    """A topOrigin is only sent for a cross-origin ceremony, even one equal to the origin."""
    assertion = api.authenticator.get(
        challenge["options"], ORIGIN, cross_origin=cross_origin, top_origin=top_origin
    )
    assert "crossOrigin is not" in refused(api, assertion, 403, 60324)["message"]


def test_step_7_2_15_rp_id_hash_of_another_rp(api, challenge):
    body = refused(
        api, api.authenticator.get(challenge["options"], ORIGIN, rp_id="evil.test"), 403, 60324
    )
    assert "rpIdHash" in body["message"]


def test_step_7_2_16_user_not_present(api, challenge):
    body = refused(
        api, api.authenticator.get(challenge["options"], ORIGIN, flags=UV | BE | BS), 403, 60324
    )
    assert "§7.2.16" in body["message"]


def test_step_7_2_17_user_not_verified_when_required(api):
    api.create_service(**{"Passkeys.UserVerification": "required"})
    api.register("user-0001")
    challenge = api.challenge(identity="user-0001")
    assert challenge["options"]["publicKey"]["userVerification"] == "required"
    body = refused(
        api, api.authenticator.get(challenge["options"], ORIGIN, flags=UP | BE | BS), 403, 60324
    )
    assert "user verified" in body["message"]


def test_step_7_2_17_a_challenge_that_asked_for_verification_requires_it(api):
    """The challenge's own `required` is enforced, though neither the passkey's policy (its
    request named `preferred`) nor the service's current setting requires it of this
    passkey: a usernameless challenge asks with the service's setting."""
    api.create_service(**{"Passkeys.UserVerification": "required"})
    factor = api.create_factor("user-0001", config={"user_verification": "preferred"})
    credential = api.authenticator.create(factor["options"], ORIGIN, flags=UP | BE | BS | 0x40)
    assert api.verify_factor(credential).status_code == 200
    challenge = api.challenge()
    assert challenge["options"]["publicKey"]["userVerification"] == "required"
    body = refused(
        api, api.authenticator.get(challenge["options"], ORIGIN, flags=UP | BE | BS), 403, 60324
    )
    assert "user verified" in body["message"]


def test_step_7_2_18_backed_up_without_backup_eligibility(api, challenge):
    body = refused(
        api, api.authenticator.get(challenge["options"], ORIGIN, flags=UP | UV | BS), 403, 60324
    )
    assert "§7.2.18" in body["message"]


def test_step_7_2_21_bad_signature(api, challenge):
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    signature = bytearray(unb64url(assertion["response"]["signature"]))
    signature[-1] ^= 0x01
    assertion["response"]["signature"] = b64url(bytes(signature))
    body = refused(api, assertion, 403, 60324)
    assert "signature" in body["message"]


def test_step_7_2_21_signature_by_another_key(api, challenge):
    impostor = Authenticator()
    impostor.create({"rp": {"id": "example.com"}, "user": {"id": "eA"}, "challenge": "AA"}, ORIGIN)
    (cred_id,) = api.authenticator.credentials
    impostor.credentials[cred_id] = next(iter(impostor.credentials.values()))
    assertion = impostor.get(challenge["options"], ORIGIN, credential_id=cred_id)
    # Its userHandle names the impostor's user: left out (it is optional for a challenge
    # for an identity), so that the signature is what is checked, not §7.2.6's owner.
    assertion["response"].pop("userHandle", None)
    body = refused(api, assertion, 403, 60324)
    assert "§7.2.21 signature" in body["message"]


def test_step_7_2_22_counter_going_backwards(api, challenge):
    first = api.authenticator.get(challenge["options"], ORIGIN, sign_count=10)
    assert api.approve(first).status_code == 200
    second = api.challenge(identity="user-0001")
    body = refused(api, api.authenticator.get(second["options"], ORIGIN, sign_count=9), 403, 60324)
    assert "counter" in body["message"]
    third = api.challenge(identity="user-0001")
    refused(api, api.authenticator.get(third["options"], ORIGIN, sign_count=10), 403, 60324)


def test_replay_of_an_approved_assertion(api, challenge):
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    assert api.approve(assertion).status_code == 200
    refused(api, assertion, 403, 60322)


def test_expired_challenge(api, challenge, clock):
    clock.advance(601)
    refused(api, api.authenticator.get(challenge["options"], ORIGIN), 403, 60323)


def test_failed_attempts_leave_the_challenge_pending_as_at_twilio(api, alice, challenge):
    """The reference's state table: a bad signature or origin leaves a challenge `pending`
    (the Passkeys API has no `denied`). A suite that checks one refusal after another on
    one challenge, then approves it, gets its approval."""
    options = challenge["options"]
    for bad in (
        *(api.authenticator.get(options, "https://evil.test") for _ in range(6)),
        api.authenticator.get(options, ORIGIN, type="webauthn.create"),
        api.authenticator.get(options, ORIGIN, flags=0),  # no user presence
        api.authenticator.get(options, ORIGIN, rp_id="evil.test"),
        {**api.authenticator.get(options, ORIGIN), "id": "AAAA", "rawId": "AAAA"},
    ):
        assert api.approve(bad).status_code in (400, 403, 404)
        fetched = api.get(f"{api.svc}/Entities/user-0001/Challenges/{challenge['sid']}").json()
        assert (fetched["status"], fetched["date_responded"]) == ("pending", None), fetched
    r = api.approve(api.authenticator.get(options, ORIGIN))
    assert (r.status_code, r.json()["status"]) == (200, "approved"), r.text


def test_a_challenge_is_spent_after_the_configured_failed_attempts(api, domain, challenge):
    domain.authentications.max_failed_attempts = 5  # PASSKEYD_MAX_FAILED_ATTEMPTS_PER_CHALLENGE
    for _ in range(5):
        bad = api.authenticator.get(challenge["options"], "https://evil.test")
        assert api.approve(bad).json()["code"] == 60324
    fetched = api.get(f"{api.svc}/Entities/user-0001/Challenges/{challenge['sid']}").json()
    assert fetched["status"] == "denied" and fetched["date_responded"] is not None, fetched
    good = api.authenticator.get(challenge["options"], ORIGIN)
    r = api.approve(good)
    assert (r.status_code, r.json()["code"]) == (403, 60322)
    assert "denied after 5 failed attempts" in r.json()["message"]


def test_failed_attempt_leaves_the_challenge_pending_for_a_retry(api, challenge):
    assert (
        api.approve(api.authenticator.get(challenge["options"], "https://evil.test")).status_code
        == 403
    )
    r = api.approve(api.authenticator.get(challenge["options"], ORIGIN))
    assert r.status_code == 200, r.text


def test_approving_on_another_accounts_service(api, other_api, challenge):
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    before = api.snapshot()
    r = other_api.post_json(f"{api.svc}/Passkeys/ApproveChallenge", assertion)
    assert (r.status_code, r.json()["code"]) == (404, 20404)
    assert api.snapshot() == before


def test_assertion_against_another_service_of_the_same_account(api, challenge):
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    first = api.service_sid
    api.create_service()
    refused(api, assertion, 404, 60391)
    api.service_sid = first
    assert api.approve(assertion).status_code == 200


def test_deleted_passkey_cannot_sign_in(api, alice, challenge):
    assert api.delete(f"{api.svc}/Entities/user-0001/Factors/{alice['sid']}").status_code == 204
    usernameless = api.challenge()
    refused(api, api.authenticator.get(usernameless["options"], ORIGIN), 404, 60390)


def test_a_replay_racing_the_approval_is_answered_already_responded(api, alice, domain):
    """A replay that read the challenge as pending (and the counter as it was) just before
    its twin was approved is a replay (60322), not a verification failure."""
    challenge = api.challenge(identity="user-0001")
    assertion = api.authenticator.get(challenge["options"], ORIGIN)
    with approved_meanwhile(api, domain, assertion):
        r = api.approve(assertion)
    assert (r.status_code, r.json()["code"]) == (403, 60322), r.text


def test_step_7_2_6_usernameless_sign_in_needs_a_user_handle(api, alice):
    challenge = api.challenge()
    assertion = api.authenticator.get(challenge["options"], ORIGIN, user_handle=None)
    body = refused(api, assertion, 403, 60324)
    assert "userHandle" in body["message"]


def test_a_passkey_registered_with_required_verification_keeps_it_in_usernameless_sign_in(api):
    api.create_service()  # the service prefers UV; this one passkey was made requiring it
    factor = api.create_factor(config={"user_verification": "required"})
    api.verify_factor(api.authenticator.create(factor["options"], ORIGIN))
    challenge = api.challenge()
    assert challenge["options"]["publicKey"]["userVerification"] == "preferred"
    no_uv = api.authenticator.get(challenge["options"], ORIGIN, flags=UP | BE | BS)
    body = refused(api, no_uv, 403, 60324)
    assert "user verified" in body["message"]
    assert api.approve(api.authenticator.get(challenge["options"], ORIGIN)).status_code == 200


# --- a user's passkeys made under different settings --------------------------------------


def test_a_sign_in_asks_for_user_verification_as_the_passkeys_it_allows_need_it(api):
    """The options used to carry the oldest passkey's setting (discouraged), while the
    approval required UV of a newer passkey registered under `required`: a browser that
    followed the options was refused. For a mix, the request asks `preferred`, and each
    passkey is held to its own setting."""
    api.create_service(**{"Passkeys.UserVerification": "discouraged"})
    older = Authenticator(uv=False)  # a security key without a PIN
    api.register("user-0001", authenticator=older)
    newer = Authenticator()
    factor = api.create_factor("user-0001", config={"user_verification": "required"})
    assert api.verify_factor(newer.create(factor["options"], ORIGIN)).status_code == 200

    def sign_in(authenticator, uv, identity="user-0001"):
        challenge = api.challenge(identity=identity)
        authenticator.uv = uv
        return challenge, api.approve(authenticator.get(challenge["options"], ORIGIN))

    challenge, refused = sign_in(newer, uv=False)  # the newer passkey needs UV
    assert challenge["options"]["publicKey"]["userVerification"] == "preferred"
    assert (refused.status_code, refused.json()["code"]) == (403, 60324)
    assert sign_in(newer, uv=True)[1].json()["status"] == "approved"
    assert sign_in(older, uv=False)[1].json()["status"] == "approved"

    # Only passkeys that require it: the request requires it.
    api.register("user-0002", authenticator=Authenticator())
    api.post_form(api.svc, {"Passkeys.UserVerification": "preferred"})
    factor = api.create_factor("user-0002", config={"user_verification": "required"})
    assert api.verify_factor(Authenticator().create(factor["options"], ORIGIN)).status_code == 200
    challenge = api.challenge(identity="user-0002")
    assert challenge["options"]["publicKey"]["userVerification"] == "preferred"


def test_a_service_raised_to_required_verification_requires_it_of_every_passkey(api):
    """The service's `UserVerification=required` applies at once, as its other security
    policies do: passkeys registered under a laxer setting used to go on signing in without
    user verification, the request asking only `preferred` of them."""
    api.create_service(**{"Passkeys.UserVerification": "discouraged"})
    key = Authenticator(uv=False)  # a security key without a PIN, for now
    api.register("user-0001", authenticator=key)
    assert api.post_form(api.svc, {"Passkeys.UserVerification": "required"}).status_code == 200
    challenge = api.challenge(identity="user-0001")
    assert challenge["options"]["publicKey"]["userVerification"] == "required"
    before = api.snapshot()
    r = api.approve(key.get(challenge["options"], ORIGIN))
    assert (r.status_code, r.json()["code"]) == (403, 60324), r.text
    assert "user verified" in r.json()["message"]
    assert api.snapshot() == before
    key.uv = True  # its owner set a PIN
    assert api.approve(key.get(challenge["options"], ORIGIN)).json()["status"] == "approved"


def test_a_challenge_made_before_the_service_required_verification_requires_it(api):
    """The service's `required` applies to the challenges already pending too: one made
    while the service asked `discouraged` is not approved without user verification after
    the change (it carries the laxer setting, and so does the passkey)."""
    api.create_service(**{"Passkeys.UserVerification": "discouraged"})
    key = Authenticator(uv=False)
    api.register("user-0001", authenticator=key)
    challenge = api.challenge(identity="user-0001")
    assert challenge["options"]["publicKey"]["userVerification"] == "discouraged"
    assert api.post_form(api.svc, {"Passkeys.UserVerification": "required"}).status_code == 200
    body = refused(api, key.get(challenge["options"], ORIGIN), 403, 60324)
    assert "user verified" in body["message"]
    key.uv = True
    assert api.approve(key.get(challenge["options"], ORIGIN)).json()["status"] == "approved"


def test_a_factor_whose_request_named_its_user_verification_keeps_it(api):
    """A factor made with `config.user_verification=discouraged` on a service that requires
    UV registers under its own setting, and signs in under it: it used to be registered and
    then refused at every sign-in, a passkey stored as verified that could never be used."""
    api.create_service(**{"Passkeys.UserVerification": "required"})
    key = Authenticator(uv=False)
    factor = api.create_factor(config={"user_verification": "discouraged"})
    assert api.verify_factor(key.create(factor["options"], ORIGIN)).status_code == 200
    challenge = api.challenge(identity="user-0001")
    assert challenge["options"]["publicKey"]["userVerification"] == "discouraged"
    assert api.approve(key.get(challenge["options"], ORIGIN)).json()["status"] == "approved"


def test_a_sign_in_after_the_site_moved_asks_for_the_passkeys_of_its_new_rp_id(api):
    """The request's rpId used to be the oldest passkey's: after the service moved to a new
    RP id, the user's passkey made there was left out of the options, and no sign-in by
    name could work on the new site."""
    api.create_service()
    api.register("user-0001")
    api.register("user-0002")
    moved_to = "https://login.example.org"
    api.post_form(
        api.svc,
        {
            "Passkeys.RelyingParty.Id": "example.org",
            "Passkeys.RelyingParty.Origins": moved_to,
        },
    )
    new_site = Authenticator()
    factor = api.create_factor("user-0001")
    assert api.verify_factor(new_site.create(factor["options"], moved_to)).status_code == 200

    challenge = api.challenge(identity="user-0001")
    options = challenge["options"]["publicKey"]
    assert options["rpId"] == "example.org"
    (allowed,) = options["allowCredentials"]
    (new_id,) = new_site.credentials
    assert unb64url(allowed["id"]) == new_id
    approved = api.approve(new_site.get(challenge["options"], moved_to))
    assert approved.json()["status"] == "approved", approved.text

    # A user with passkeys for the old RP id only still gets those.
    old_only = api.challenge(identity="user-0002")["options"]["publicKey"]
    assert (old_only["rpId"], len(old_only["allowCredentials"])) == ("example.com", 1)


def test_a_passkey_of_the_rp_id_the_service_left_does_not_answer_its_new_challenges(api):
    """A usernameless challenge asks at the service's current RP id. A passkey registered
    under its former one is refused (400 60382) even when its authenticator signs the new
    RP id's hash from an origin the passkey was registered with: it is another site's."""
    api.create_service()
    api.register("user-0001")
    r = api.post_form(
        api.svc,
        {
            "Passkeys.RelyingParty.Id": "login.example.com",
            "Passkeys.RelyingParty.Origins": "https://login.example.com",
        },
    )
    assert r.status_code == 200, r.text
    challenge = api.challenge()
    assert challenge["options"]["publicKey"]["rpId"] == "login.example.com"
    (old,) = api.authenticator.credentials
    assertion = api.authenticator.get(
        challenge["options"], ORIGIN, credential_id=old, rp_id="login.example.com"
    )
    body = refused(api, assertion, 400, 60382)
    assert "relying party" in body["message"]


# --- The letter of WebAuthn: what a review of §6.1 and §7.2 found accepted ----------------


def _signed(api, options, flags, tail=b"", client_data=None):
    """alice's assertion over authenticatorData with `flags` and `tail` after signCount."""
    import hashlib
    import json
    import struct

    (stored,) = api.authenticator.credentials.values()
    pk = options["publicKey"]
    client_data = (
        client_data
        or json.dumps(
            {"type": "webauthn.get", "challenge": pk["challenge"], "origin": ORIGIN}
        ).encode()
    )
    stored.sign_count += 1
    auth_data = (
        hashlib.sha256(pk["rpId"].encode()).digest()
        + bytes([flags])
        + struct.pack(">I", stored.sign_count)
        + tail
    )
    signature = stored.key.sign(auth_data + hashlib.sha256(client_data).digest())
    return {
        "id": b64url(stored.credential_id),
        "rawId": b64url(stored.credential_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
            "userHandle": b64url(stored.user_handle),
        },
    }


@pytest.mark.parametrize(
    ("tail", "says"),
    list(EXTENSIONS_NOT_ENDING_AUTH_DATA.values()),
    ids=list(EXTENSIONS_NOT_ENDING_AUTH_DATA),
)
def test_6_1_assertion_authenticator_data_after_its_extensions(api, challenge, tail, says):
    """§6.1: the extensions are one CBOR map and end authenticatorData. py_webauthn found
    their end by writing them again (a float16 as 9 bytes): up to 6 signed junk bytes, or
    extensions that were no map, were approved."""
    assertion = _signed(api, challenge["options"], UP | UV | BE | BS | ED, tail)
    assert says in refused(api, assertion, 400, 60379)["message"]
    control = _signed(api, challenge["options"], UP | UV | BE | BS | ED, FLOAT16_EXTENSIONS)
    r = api.approve(control)
    assert (r.status_code, r.json()["status"]) == (200, "approved"), r.text


def test_6_1_assertion_extensions_not_in_ctap2_canonical_form_are_malformed(api, challenge):
    """CTAP2 canonical CBOR: signed extensions whose integer is written longer than it
    needs are refused as malformed authenticatorData (400 60379), not approved and not a
    500 (py_webauthn, writing them again, finds a byte left over)."""
    assertion = _signed(api, challenge["options"], UP | UV | BE | BS | ED, LONG_FORM_EXTENSIONS)
    assert "authenticatorData is malformed" in refused(api, assertion, 400, 60379)["message"]


@pytest.mark.parametrize(
    ("registered", "asserted"), [(False, UP | UV | BE), (True, UP | UV)], ids=["0-1", "1-0"]
)
def test_step_7_2_19_a_backup_eligibility_that_changed_is_flagged_not_refused(
    api, registered, asserted
):
    """§7.2.19 compares BE with the registration's and then applies the RP's policy, which
    here is to flag, not refuse (the go-webauthn lesson): iCloud Keychain passkeys
    registered with BE=0 report BE=1 later, and password managers let users turn backup off
    for passkeys they hold. Both ways are approved and recorded on the factor."""
    api.create_service()
    device = Authenticator(backup_eligible=registered, backed_up=False)
    factor = api.register("user-0001", authenticator=device)
    challenge = api.challenge(identity="user-0001")
    r = api.approve(device.get(challenge["options"], ORIGIN, flags=asserted))
    assert (r.status_code, r.json()["status"]) == (200, "approved"), r.text
    got = api.get(f"{api.svc}/Entities/user-0001/Factors/{factor['sid']}").json()
    assert got["metadata"]["backup_eligible_changed"] is True
    assert got["metadata"]["backup_eligible"] is registered  # as registered


def test_step_7_2_8_a_byte_order_mark_before_client_data_is_stripped(api, challenge):
    pk = challenge["options"]["publicKey"]
    bom = b"\xef\xbb\xbf"
    client_data = bom + Authenticator._client_data("webauthn.get", pk["challenge"], ORIGIN)
    assertion = _signed(api, challenge["options"], UP | UV | BE | BS, client_data=client_data)
    r = api.approve(assertion)
    assert (r.status_code, r.json()["status"]) == (200, "approved"), r.text


def _unknown_passkey(r):
    assert (r.status_code, r.json()["code"]) == (404, 60390), r.text
    return r.json()


def test_an_unknown_passkey_of_a_user_of_the_service_may_be_signalled_to_the_browser(api):
    """60390's `details.signal_unknown_credential` (passkeyd): the passkey's user handle
    names a user of this service, and the service no longer has the passkey, so the page may
    tell the browser (signalUnknownCredential). Any 60390 was taken as that, and a passkey
    made for another service with the same RP id was deleted from the device."""
    first = api.create_service()["sid"]
    factor = api.register("user-0001")
    second = api.create_service()["sid"]  # the same RP id: staging beside production
    api.service_sid = second
    challenge = api.challenge()  # usernameless: the device may offer any passkey for the RP
    r = api.approve(api.authenticator.get(challenge["options"], ORIGIN))
    assert "details" not in _unknown_passkey(r)  # another service's passkey: it works there

    api.service_sid = first
    assert api.delete(f"{api.svc}/Entities/user-0001/Factors/{factor['sid']}").status_code == 204
    challenge = api.challenge()
    r = api.approve(api.authenticator.get(challenge["options"], ORIGIN))
    assert _unknown_passkey(r)["details"] == {"signal_unknown_credential": True}
    # Without a user handle (a passkey that is not discoverable), nobody can tell whose.
    anonymous = api.authenticator.get(challenge["options"], ORIGIN, user_handle=None)
    r = api.approve(anonymous)
    assert "details" not in _unknown_passkey(r)


# --- a challenge's own user verification (passkeyd extension) ------------------------------


def test_a_challenge_asking_required_verification_refuses_an_assertion_without_it(api):
    """A step-up: the service and the passkey prefer user verification, and this one
    sign-in (before a payment, say) requires it. The approval refuses an assertion without
    UV and changes nothing; the same challenge then approves one with it."""
    api.create_service()
    key = Authenticator(uv=False)
    api.register("user-0001", authenticator=key)
    assert api.challenge(identity="user-0001")["options"]["publicKey"]["userVerification"] == (
        "preferred"
    )
    challenge = api.challenge(identity="user-0001", user_verification="required")
    assert challenge["options"]["publicKey"]["userVerification"] == "required"
    before = api.snapshot()
    body = refused(api, key.get(challenge["options"], ORIGIN), 403, 60324)
    assert "user verified" in body["message"]
    assert api.snapshot() == before
    key.uv = True
    assert api.approve(key.get(challenge["options"], ORIGIN)).json()["status"] == "approved"


def test_a_usernameless_challenge_asking_required_verification_requires_it(api):
    api.create_service()
    key = Authenticator(uv=False)
    api.register("user-0001", authenticator=key)
    challenge = api.challenge(user_verification="required")
    assert challenge["options"]["publicKey"]["userVerification"] == "required"
    refused(api, key.get(challenge["options"], ORIGIN), 403, 60324)


def test_a_challenge_asking_less_verification_never_lowers_what_is_required(api):
    """`discouraged` changes what the browser is asked where nothing requires UV; where
    every passkey (here: the service) requires it, the challenge still asks and requires
    it."""
    api.create_service(**{"Passkeys.UserVerification": "required"})
    key = Authenticator(uv=False)
    factor = api.create_factor(config={"user_verification": "discouraged"})
    assert api.verify_factor(key.create(factor["options"], ORIGIN)).status_code == 200
    api.register("user-0002")
    laxer = api.challenge(identity="user-0001", user_verification="preferred")
    assert laxer["options"]["publicKey"]["userVerification"] == "preferred"
    assert api.approve(key.get(laxer["options"], ORIGIN)).json()["status"] == "approved"
    strict = api.challenge(identity="user-0002", user_verification="discouraged")
    assert strict["options"]["publicKey"]["userVerification"] == "required"
    other = Authenticator(uv=False)
    other.credentials.update(api.authenticator.credentials)
    refused(api, other.get(strict["options"], ORIGIN), 403, 60324)


@pytest.mark.parametrize("value", ["always", "", 1, True, ["required"], "Required "])
def test_a_challenge_with_an_invalid_user_verification_is_refused(api, value):
    api.create_service()
    api.register("user-0001")
    before = api.snapshot()
    r = api.post_json(
        f"{api.svc}/Passkeys/Challenges", {"identity": "user-0001", "user_verification": value}
    )
    if value == "":  # as an SDK writes a field not set: none asked
        assert r.status_code == 201, r.text
        return
    assert (r.status_code, r.json()["code"]) == (400, 60300), r.text
    assert "user_verification" in r.json()["message"]
    assert api.snapshot() == before


def test_a_challenge_takes_its_user_verification_from_a_form_and_as_twilio_java_writes_it(api):
    api.create_service()
    api.register("user-0001")
    r = api.post_form(
        f"{api.svc}/Passkeys/Challenges", {"Identity": "user-0001", "UserVerification": "required"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["options"]["publicKey"]["userVerification"] == "required"
    challenge = api.challenge(identity="user-0001", userVerification="DISCOURAGED")
    assert challenge["options"]["publicKey"]["userVerification"] == "discouraged"


def test_a_challenge_asking_discouraged_still_prefers_uv_while_a_passkey_requires_it(api):
    """The user has a passkey that requires UV and one that does not: the challenge asks
    `preferred` so the first's authenticator verifies the user; `discouraged` would make
    it skip UV and have its approval refused (reviewer's probe)."""
    api.create_service()
    strict, lax = Authenticator(), Authenticator(uv=False)
    factor = api.create_factor(config={"user_verification": "required"})
    assert api.verify_factor(strict.create(factor["options"], ORIGIN)).status_code == 200
    factor = api.create_factor(config={"user_verification": "discouraged"})
    assert api.verify_factor(lax.create(factor["options"], ORIGIN)).status_code == 200
    challenge = api.challenge(identity="user-0001", user_verification="discouraged")
    assert challenge["options"]["publicKey"]["userVerification"] == "preferred"
    assert api.approve(lax.get(challenge["options"], ORIGIN)).json()["status"] == "approved"
