"""Malformed input: a 4xx Twilio error every time, never a 500, and nothing stored changes."""

from __future__ import annotations

import sys

import pytest

from tests.authenticator import b64url, unb64url
from tests.conftest import ORIGIN

# Whether the standard library runs out of recursion on values 1,000 levels deep (orjson
# reads 1,024): Python 3.11 counts the json module's decoder and `==` on nested lists
# against the 1,000 frames of sys.getrecursionlimit(). From 3.12 C recursion has a limit of
# its own (1,500 in 3.12, more in 3.13), so they read and compare such values, and the body
# is refused for what it is (a field not of the request, a field given twice), 400 60300 all
# the same.
STDLIB_RECURSES_AT_1000 = sys.version_info < (3, 12)


def assert_refused(api, response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["status"] == status
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert "Traceback" not in body["message"]


@pytest.fixture
def registration(api):
    api.create_service()
    factor = api.create_factor()
    return api.authenticator.create(factor["options"], ORIGIN)


@pytest.fixture
def assertion(api):
    api.create_service()
    api.register()
    challenge = api.challenge(identity="user-0001")
    return api.authenticator.get(challenge["options"], ORIGIN)


def mutate(credential, path, value):
    target = credential
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return credential


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        (("response", "clientDataJSON"), "***", 60380),
        (("response", "clientDataJSON"), b64url(b"not json"), 60380),
        (("response", "clientDataJSON"), b64url(b"[1,2]"), 60380),
        (("response", "clientDataJSON"), b64url(b'{"type":"webauthn.create"}'), 60380),
        (("response", "clientDataJSON"), KeyError, 60380),
        (("response", "attestationObject"), "%%%", 60386),
        (("response", "attestationObject"), b64url(b"\xff\x00garbage"), 60386),
        (("response", "attestationObject"), b64url(b"\xa1\x01\x02"), 60386),
        (("response", "attestationObject"), KeyError, 60386),
        (("response", "transports"), "usb", 60378),
        (("response",), KeyError, 60378),
        (("response",), "a string", 60378),
        (("id",), "not base64!", 60375),
        (("authenticatorAttachment",), "sideways", 60377),
        (("type",), "password", 60377),  # the reference, h-9
    ],
)
def test_malformed_registration(api, registration, path, value, code):
    before = api.snapshot()
    assert_refused(api, api.verify_factor(mutate(registration, path, value)), 400, code)
    assert api.snapshot() == before


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        (("response", "signature"), KeyError, 60381),
        (("response", "signature"), "!!", 60381),
        (("response", "authenticatorData"), KeyError, 60379),
        (("response", "authenticatorData"), b64url(b"short"), 60379),
        (("response", "clientDataJSON"), "@@", 60380),
        (("response", "userHandle"), "not*base64", 60365),
        (("id",), KeyError, 60375),
        (("response",), KeyError, 60378),
        (("authenticatorAttachment",), 7, 60377),
    ],
)
def test_malformed_assertion(api, assertion, path, value, code):
    if path == ("id",):
        del assertion["rawId"]
    before = api.snapshot()
    assert_refused(api, api.approve(mutate(assertion, path, value)), 400, code)
    assert api.snapshot() == before


@pytest.mark.parametrize("value", ["***", 7])
def test_a_bad_raw_id_alone_is_invalid_raw_id(api, assertion, value):
    """60376 "Invalid rawId", not 60375 "Invalid id", when rawId is what names it."""
    del assertion["id"]
    assertion["rawId"] = value
    before = api.snapshot()
    assert_refused(api, api.approve(assertion), 400, 60376)
    assert api.snapshot() == before


@pytest.mark.parametrize("value", [{}, {"0": 1, "1": 2}, None])
def test_a_raw_id_that_is_no_text_beside_an_id_is_not_read(api, assertion, value):
    """What JSON.stringify makes of an ArrayBuffer ({}) or a Uint8Array, from a page that
    copies `cred.rawId` by hand: the id names the credential (a review asked for 60376; a
    second found that it would refuse such pages, which worked)."""
    assertion["rawId"] = value
    assert api.approve(assertion).status_code == 200


def test_id_may_come_as_a_padded_raw_id(api, assertion):
    raw = assertion.pop("id")
    assertion["rawId"] = raw + "=" * (-len(raw) % 4)
    assert api.approve(assertion).status_code == 200


def test_id_may_come_as_a_hex_raw_id(api, assertion):
    """As in Twilio's examples. Hex is base64url text too: read as base64url, it named
    other bytes, and the credential was not found."""
    assertion["rawId"] = unb64url(assertion.pop("id")).hex()
    r = api.approve(assertion)
    assert r.status_code == 200, r.text


def test_a_registration_may_name_its_credential_by_a_hex_raw_id_alone(api):
    api.create_service()
    factor = api.create_factor("user-0001")
    credential = api.authenticator.create(factor["options"], ORIGIN)
    credential["rawId"] = unb64url(credential.pop("id")).hex()
    r = api.verify_factor(credential)
    assert (r.status_code, r.json()["status"]) == (200, "verified"), r.text


@pytest.mark.parametrize(
    ("endpoint", "code"), [("VerifyFactor", 60434), ("ApproveChallenge", 60433)]
)
def test_bodies_that_are_not_json(api, endpoint, code):
    api.create_service()
    path = f"{api.svc}/Passkeys/{endpoint}"
    before = api.snapshot()
    cases = [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"id": "x"}', "text/plain", 415),
        (b"id=x&response=y", "application/x-www-form-urlencoded", 415),
    ]
    for content, media, status in cases:
        r = api.client.post(path, content=content, headers={"Content-Type": media}, auth=api.auth)
        assert_refused(api, r, status, code)
    assert api.snapshot() == before


def test_missing_fields_on_every_passkeys_endpoint(api):
    api.create_service()
    before = api.snapshot()
    assert_refused(api, api.post_json(f"{api.svc}/Passkeys/Factors", {}), 400, 60388)
    assert_refused(api, api.post_json(f"{api.svc}/Passkeys/VerifyFactor", {}), 400, 60378)
    assert_refused(api, api.post_json(f"{api.svc}/Passkeys/ApproveChallenge", {}), 400, 60378)
    assert api.snapshot() == before


def test_invalid_json_on_factor_creation(api):
    api.create_service()
    r = api.client.post(
        f"{api.svc}/Passkeys/Factors",
        content=b'{"friendly_name": ',
        headers={"Content-Type": "application/json"},
        auth=api.auth,
    )
    assert_refused(api, r, 400, 60300)


def test_a_json_body_led_by_a_byte_order_mark_is_read_as_json(api):
    """RFC 8259 §8.1 lets a parser ignore a BOM. It used to hide the `{` from the check that
    tells the async SDK's form bodies from JSON: a body with an "=" in a value was read as
    a form, its fields lost, and a usernameless challenge made in place of the one asked."""
    api.create_service()
    api.register("user-0001")
    before = api.snapshot()

    def challenge(json_text: bytes):
        return api.client.post(
            f"{api.svc}/Passkeys/Challenges",
            content=b"\xef\xbb\xbf" + json_text,
            headers={"Content-Type": "application/json"},
            auth=api.auth,
        )

    r = challenge(b'{"identity": "nobody-0000", "factor_sid": "bo=gus"}')
    assert_refused(api, r, 400, 60362)  # the factor_sid it holds is read, and refused
    assert api.snapshot() == before
    r = challenge(b'{"identity": "user-0001", "x=": null}')  # (a field null is no field)
    assert r.status_code == 201, r.text
    assert r.json()["identity"] == "user-0001"


@pytest.mark.parametrize("endpoint", ["Challenges", "Factors"])
def test_a_body_nested_deeper_than_the_parser_goes_is_refused(api, endpoint):
    """1,000 levels: orjson reads them (its limit is 1,024); counting their members, and
    the standard library's check for duplicate members, could not (a RecursionError, a
    500)."""
    api.create_service()
    before = api.snapshot()
    body = b'{"identity": "user-0001", "x": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1001
    # A member twice, so that the standard library reads it again.
    twice = b'{"identity": "u", "identity": "u", "x": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1001
    for content in (body, twice):
        r = api.post_raw(f"{api.svc}/Passkeys/{endpoint}", content, "application/json")
        assert_refused(api, r, 400, 60300)
        if STDLIB_RECURSES_AT_1000 and content is twice:
            assert "nested too deeply" in r.json()["message"]
        else:
            assert "'x' is not a field of this request" in r.json()["message"]
    assert api.snapshot() == before


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("Challenges", b'{"identity": %s, "Identity": %s}'),
        ("Challenges", b'{"factor_sid": %s, "factorSid": %s}'),
        ("Factors", b'{"friendly_name": "a", "config": %s, "Config": %s}'),
        ("Factors", b'{"friendly_name": "a", "config": {"hints": %s, "Hints": %s}}'),
    ],
)
def test_a_field_spelt_twice_nested_deeper_than_a_comparison_goes_is_refused(api, endpoint, body):
    """A field under two of its spellings, each a list 1,000 levels deep: orjson reads them
    (its limit is 1,024), and, holding no colon, the body is not read again by the
    standard library; comparing the two values ran out of stack (a RecursionError, a
    500)."""
    api.create_service()
    before = api.snapshot()
    content = body % (b"[" * 1000 + b"1" + b"]" * 1000, b"[" * 1000 + b"2" + b"]" * 1000)
    r = api.post_raw(f"{api.svc}/Passkeys/{endpoint}", content, "application/json")
    assert_refused(api, r, 400, 60300)
    if STDLIB_RECURSES_AT_1000:
        assert "nested too deeply" in r.json()["message"]
    else:
        assert "is given twice, with different values" in r.json()["message"]
    assert api.snapshot() == before


@pytest.mark.parametrize("endpoint", ["Challenges", "Factors"])
def test_a_member_given_twice_with_one_value_is_read(api, endpoint):
    api.create_service()
    api.register("user-0001")
    body = b'{"identity": "user-0001", "identity": "user-0001", "friendly_name": "a"}'
    if endpoint == "Challenges":
        body = b'{"identity": "user-0001", "identity": "user-0001"}'
    r = api.post_raw(f"{api.svc}/Passkeys/{endpoint}", body, "application/json")
    assert r.status_code == 201, r.text
    assert r.json()["identity"] == "user-0001"


def test_oversized_body(api, registration):
    before = api.snapshot()
    registration["padding"] = "x" * 70_000
    assert_refused(api, api.verify_factor(registration), 413, 60300)
    r = api.post_form("/v2/Services", {"FriendlyName": "x" * 70_000})
    assert_refused(api, r, 413, 60300)
    assert api.snapshot() == before


def test_wrong_content_type_for_a_form_endpoint(api):
    r = api.client.post("/v2/Services", json={"FriendlyName": "x"}, auth=api.auth)
    assert_refused(api, r, 415, 60200)


@pytest.mark.parametrize(
    "header",
    ["Bearer abc", "Basic !!!", "Basic " + b64url(b"no-colon"), "Basic", ""],
)
def test_malformed_authorization(api, header):
    r = api.client.get("/v2/Services", headers={"Authorization": header})
    assert_refused(api, r, 401, 20003)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_a_compressed_body_is_refused_as_unsupported(api, encoding):
    import gzip

    before = api.snapshot()
    r = api.client.post(
        "/v2/Services",
        content=gzip.compress(b"FriendlyName=zipped"),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Encoding": encoding,
        },
        auth=api.auth,
    )
    assert_refused(api, r, 415, 60200)
    assert "Content-Encoding" in r.json()["message"]
    assert api.snapshot() == before


@pytest.mark.parametrize(
    ("endpoint", "code"), [("VerifyFactor", 60434), ("ApproveChallenge", 60433)]
)
def test_a_credential_sent_as_a_form_is_refused_saying_why(api, endpoint, code):
    """What the async twilio SDK puts on the wire (aiohttp form-encodes the body it was
    given as JSON, keeping only the keys of the nested response)."""
    api.create_service()
    before = api.snapshot()
    body = b"id=abc&rawId=abc&response=clientDataJSON&response=attestationObject&type=public-key"
    r = api.post_raw(f"{api.svc}/Passkeys/{endpoint}", body, "application/json")
    assert_refused(api, r, 400, code)
    assert "is a form, not JSON" in r.json()["message"]
    assert api.snapshot() == before


def test_twilio_form_parameter_names_are_read_too(api):
    """`Identity`, as Twilio's form parameters are written, was ignored: the challenge was
    made usernameless, which anyone's passkey answers."""
    api.create_service()
    api.register("user-0001")
    r = api.post_form(f"{api.svc}/Passkeys/Challenges", {"Identity": "user-0001"})
    assert r.status_code == 201, r.text
    assert r.json()["identity"] == "user-0001"
    assert len(r.json()["options"]["publicKey"]["allowCredentials"]) == 1
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"Identity": "nobody-00000"})
    assert_refused(api, r, 404, 60392)


def test_a_compressed_body_is_refused_whatever_header_comes_first(api, registration):
    import gzip

    api.create_service()
    before = api.snapshot()
    r = api.client.post(
        "/v2/Services",
        content=gzip.compress(b"FriendlyName=zipped"),
        headers=[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Encoding", "identity"),
            ("Content-Encoding", "gzip"),
        ],
        auth=api.auth,
    )
    assert_refused(api, r, 415, 60200)
    # On the two ceremony endpoints, with their own code.
    for endpoint, code in (("VerifyFactor", 60434), ("ApproveChallenge", 60433)):
        r = api.client.post(
            f"{api.svc}/Passkeys/{endpoint}",
            content=gzip.compress(b"{}"),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            auth=api.auth,
        )
        assert_refused(api, r, 415, code)
    assert api.snapshot() == before


def test_pascal_case_keys_are_read_inside_the_factor_config_too(api):
    api.create_service()
    body = {
        "FriendlyName": "a",
        "Identity": "user-0001",
        "Config": {
            "RelyingParty": {
                "Id": "other.example",
                "Name": "Other",
                "Origins": ["https://other.example"],
            },
            "UserVerification": "required",
        },
    }
    r = api.post_json(f"{api.svc}/Passkeys/Factors", body)
    assert r.status_code == 201, r.text
    options = r.json()["options"]["publicKey"]
    assert options["rp"] == {"id": "other.example", "name": "Other"}
    assert options["authenticatorSelection"]["userVerification"] == "required"


@pytest.mark.parametrize(
    "path",
    ["/v2/AuditEvents?ServiceSid=%ED%A0%80", "/v2/Services?PageSize=%FF", "/v2/Services?%C3=1"],
)
def test_a_query_whose_escapes_are_no_utf8_is_refused(api, path):
    """Read as U+FFFD, the filter matched nothing and the list came back empty; a body with
    the same bytes is refused (found by the PostgreSQL bad-input review)."""
    r = api.get(path)
    assert (r.status_code, r.json()["code"]) == (400, 60200), r.text
    assert "not UTF-8" in r.json()["message"]


def test_a_query_with_utf8_escapes_is_read(api):
    api.create_service()
    r = api.get("/v2/Services?PageSize=%31&Page=%30")  # "1", "0"
    assert r.status_code == 200 and r.json()["meta"]["page_size"] == 1
