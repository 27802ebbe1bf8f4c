"""Every parser of untrusted input, fuzzed: only passkeyd's own errors come out.

The ceremony parsers may raise only `CeremonyError` (a `MalformedResponse` when decoding
fails); `b64url_decode` only `ValueError`, as documented; identity, SID, form and page
parsing only `DomainError`. Random input is mixed with valid ceremonies from the software
authenticator that are then bit-flipped, truncated, extended and spliced, which is what
reaches the attestationObject CBOR, authenticatorData and COSE key parsers.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import cbor2
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from webauthn.helpers import decode_credential_public_key, decoded_public_key_to_cryptography

from passkeyd.api.params import Form, page_request, parse_form_bytes
from passkeyd.api.routes.passkeys import requested_config
from passkeyd.domain.errors import DomainError, InvalidIdentity, InvalidParameter
from passkeyd.domain.identity import check_identity
from passkeyd.domain.ids import is_sid
from passkeyd.webauthn import (
    AuthenticationResponse,
    CeremonyError,
    ClientData,
    MalformedResponse,
    RegisteredCredential,
    RegistrationResponse,
    VerifiedAssertion,
    b64url_decode,
    b64url_encode,
    parse_authentication,
    parse_registration,
    verify_authentication,
)
from passkeyd.webauthn.parsing import parse_client_data
from tests.authenticator import b64url, unb64url

from .strategies import (
    B64ISH,
    CBOR,
    CEREMONIES,
    CHALLENGE,
    JSON,
    POLICY,
    RP_ID,
    USER_HANDLE,
    Tally,
    ceremony,
    client_data_json,
    credential_bodies,
    fuzz,
    mutated_assertion,
    mutated_registration,
    mutations,
    swap_cose_key,
    verify_reg,
    with_attestation,
)
from .support import report

# --- base64url --------------------------------------------------------------------------------


def test_b64url_decode_returns_bytes_or_raises_value_error():
    tally = Tally()

    @fuzz(500)
    @given(st.one_of(st.text(), B64ISH, st.binary(), JSON))
    def prop(value: Any) -> None:
        try:
            decoded = tally.run(b64url_decode, value)
        except ValueError:
            return
        assert isinstance(value, str) and isinstance(decoded, bytes)

    prop()
    report(f"b64url_decode: {tally.count} inputs, slowest {tally.slowest * 1000:.1f} ms")


def test_b64url_decode_reads_every_encoding_browsers_and_sdks_send():
    tally = Tally()

    @fuzz(300)
    @given(st.binary(max_size=200), st.booleans(), st.booleans())
    def prop(data: bytes, padded: bool, standard: bool) -> None:
        text = b64url_encode(data)
        if padded:
            text += "=" * (-len(text) % 4)
        if standard:
            text = text.replace("-", "+").replace("_", "/")
        assert tally.run(b64url_decode, text) == data

    prop()
    report(f"b64url_decode round trip: {tally.count} inputs")


# --- the credential JSON ----------------------------------------------------------------------


def test_parse_client_data_refuses_with_malformed_response_only():
    tally = Tally()

    @fuzz(500)
    @given(st.one_of(client_data_json().map(b64url), B64ISH, JSON))
    @example(b64url(b"[" * 100_000))  # deep nesting is refused, not a RecursionError
    @example(b64url(b'{"a":' * 50_000))
    @example(b64url(b'"\\ud800"'))
    def prop(value: Any) -> None:
        try:
            parsed = tally.run(parse_client_data, value)
        except MalformedResponse as exc:
            assert exc.step.name == "CLIENT_DATA"
            return
        assert isinstance(parsed, ClientData)
        assert isinstance(parsed.type, str) and isinstance(parsed.origin, str)
        assert isinstance(parsed.challenge, bytes) and isinstance(parsed.cross_origin, bool)

    prop()
    report(f"parse_client_data: {tally.count} inputs, slowest {tally.slowest * 1000:.1f} ms")


@pytest.mark.parametrize(
    ("parse", "result"),
    [(parse_registration, RegistrationResponse), (parse_authentication, AuthenticationResponse)],
)
def test_credential_parsers_refuse_with_malformed_response_only(parse, result):
    tally = Tally()

    @fuzz(500)
    @given(st.one_of(credential_bodies(), credential_bodies(), JSON))
    @example({"type": "public-key", "authenticatorAttachment": [], "response": {}})
    @example({"type": "public-key", "authenticatorAttachment": {}, "response": {}})
    def prop(body: Any) -> None:
        try:
            parsed = tally.run(parse, body)
        except MalformedResponse:
            return
        assert isinstance(parsed, result)

    prop()
    report(f"{parse.__name__}: {tally.count} inputs, slowest {tally.slowest * 1000:.1f} ms")


# --- registration: attestationObject, authenticatorData, COSE key -------------------------------


@st.composite
def hostile_registrations(draw: st.DrawFn) -> dict[str, Any]:
    return draw(mutated_registration(ceremony(*draw(st.sampled_from(CEREMONIES))).registration))


def test_verify_registration_refuses_hostile_attestations_with_ceremony_errors_only():
    tally = Tally()
    deep = {"fmt": "none", "attStmt": {}, "authData": b"\x81" * 100_000 + b"\x00"}

    @fuzz(500)
    @given(hostile_registrations())
    @example(with_attestation(ceremony(-7, "none").registration, b"\x81" * 100_000 + b"\x00"))
    @example(with_attestation(ceremony(-7, "none").registration, b"\xa1\x00" * 60_000))
    @example(with_attestation(ceremony(-7, "none").registration, cbor2.dumps(deep)))
    def prop(body: dict[str, Any]) -> None:
        try:
            credential = tally.run(verify_reg, body)
        except CeremonyError:
            return
        assert isinstance(credential, RegisteredCredential)

    prop()
    report(
        f"verify_registration (CBOR/authData/COSE mutations): {tally.count} inputs,"
        f" slowest {tally.slowest * 1000:.1f} ms"
    )


OFF_CURVE_ES256 = {1: 2, 3: -7, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32}


@st.composite
def cose_keys(draw: st.DrawFn) -> dict[Any, Any]:
    """COSE keys near the real ones: known labels with random or truncated values."""
    real = cbor2.loads(ceremony(*draw(st.sampled_from(CEREMONIES[::2]))).registered.public_key)
    key = dict(real)
    for label in draw(st.lists(st.sampled_from([1, 3, -1, -2, -3]), min_size=1, max_size=3)):
        value = key.get(label)
        if isinstance(value, bytes) and draw(st.booleans()):
            key[label] = draw(mutations(value))
        else:
            key[label] = draw(st.integers(-300, 300) | st.binary(max_size=64) | CBOR)
    return key


def test_a_registration_that_verifies_stores_a_usable_public_key():
    """§7.1.20: what is stored must be a credential public key, or every later sign-in
    with it fails. With `none` attestation nothing else looks at the key."""
    tally = Tally()
    accepted = 0

    @fuzz(300)
    @given(cose_keys())
    @example(OFF_CURVE_ES256)  # an ES256 key whose point is not on P-256
    def prop(key: dict[Any, Any]) -> None:
        nonlocal accepted
        try:
            credential = tally.run(
                verify_reg, swap_cose_key(ceremony(-7, "none").registration, cbor2.dumps(key))
            )
        except CeremonyError:
            return
        accepted += 1
        decoded = decode_credential_public_key(credential.public_key)
        decoded_public_key_to_cryptography(decoded)  # raises for a key that cannot verify

    prop()
    report(f"verify_registration (COSE keys): {tally.count} inputs, {accepted} accepted")


# --- authentication: authenticatorData, signature, clientDataJSON --------------------------------


@st.composite
def hostile_assertions(draw: st.DrawFn) -> tuple[Any, Any, dict[str, Any]]:
    """(ceremony, original, assertion with one field mutated or replaced)."""
    cer = ceremony(*draw(st.sampled_from(CEREMONIES[::2])))
    return cer, cer.assertion, draw(mutated_assertion(cer.assertion))


def _verify_assertion(cer: Any, body: Any) -> VerifiedAssertion:
    return verify_authentication(
        parse_authentication(body),
        expected_challenge=CHALLENGE,
        expected_rp_id=RP_ID,
        expected_origins=POLICY,
        expected_user_handle=USER_HANDLE,
        credential_public_key=cer.registered.public_key,
        stored_sign_count=0,
        require_user_verification=False,
    )


def _signed_parts(body: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    response = body["response"]
    return tuple(
        b64url_decode(response[k]) for k in ("authenticatorData", "clientDataJSON", "signature")
    )  # type: ignore[return-value]


def test_verify_authentication_refuses_hostile_assertions_and_never_a_forgery():
    tally = Tally()
    accepted = 0
    cer = ceremony(-7, "none")
    deep_ext = unb64url(cer.assertion["response"]["authenticatorData"])
    deep_ext = deep_ext[:32] + bytes([deep_ext[32] | 0x80]) + deep_ext[33:37] + b"\x81" * 100_000
    deep = {**cer.assertion, "response": {**cer.assertion["response"]}}
    deep["response"]["authenticatorData"] = b64url(deep_ext)

    @fuzz(500)
    @given(hostile_assertions())
    @example((cer, cer.assertion, deep))
    def prop(case: tuple[Any, Any, dict[str, Any]]) -> None:
        nonlocal accepted
        cer, original, body = case
        try:
            verified = tally.run(_verify_assertion, cer, body)
        except CeremonyError:
            return
        accepted += 1
        assert isinstance(verified, VerifiedAssertion)
        # Whatever was accepted signed exactly what the authenticator signed.
        assert _signed_parts(body) == _signed_parts(original)

    prop()
    report(
        f"verify_authentication (authData/signature/clientData mutations): {tally.count}"
        f" inputs, {accepted} accepted (each with the original signed bytes)"
    )


# --- identities and SIDs ----------------------------------------------------------------------

IDENTITY_ORACLE = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")


def _valid_identity(value: object) -> bool:
    return (
        isinstance(value, str)
        and 8 <= len(value) <= 64
        and IDENTITY_ORACLE.fullmatch(value) is not None
    )


def test_check_identity_accepts_exactly_the_documented_identities():
    """8 to 64 characters, dash-separated ASCII letters and digits: nothing else."""
    tally = Tally()
    near = st.from_regex(r"[A-Za-z0-9]{1,20}(-[A-Za-z0-9]{1,20}){0,3}[\n\r\t -]?", fullmatch=True)

    @fuzz(500)
    @given(st.one_of(near, near, st.text(max_size=70), JSON))
    @example("user-0001\n")
    @example("\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668")  # Arabic-Indic digits
    def prop(value: Any) -> None:
        try:
            accepted = tally.run(check_identity, value) == value
        except InvalidIdentity:
            accepted = False
        assert accepted == _valid_identity(value), repr(value)

    prop()
    report(f"check_identity: {tally.count} inputs")


def test_is_sid_accepts_exactly_prefix_and_32_hex_digits():
    tally = Tally()
    hex32 = st.text(alphabet="0123456789abcdefABCDEF", min_size=31, max_size=33)
    near = st.tuples(st.sampled_from(["AC", "VA", "YF", "YC", "YE", "SK"]), hex32).map("".join)
    suffix = st.sampled_from(["", "\n", " ", "\x00", "g", "\r\n"])

    @fuzz(500)
    @given(st.one_of(st.tuples(near, suffix).map("".join), st.text(max_size=40), JSON))
    @example("AC" + "0" * 32 + "\n")
    def prop(value: Any) -> None:
        for prefix in ("AC", "VA", "YF"):
            got = tally.run(is_sid, value, prefix)
            expected = isinstance(value, str) and bool(
                re.fullmatch(prefix + "[0-9a-fA-F]{32}", value)
            )
            assert got is expected, (repr(value), prefix)

    prop()
    report(f"is_sid: {tally.count} calls")


# --- forms, queries, factor config ------------------------------------------------------------


def test_parse_form_bytes_reads_forms_and_refuses_only_with_invalid_parameter():
    tally = Tally()

    @fuzz(500)
    @given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
    @example(b"\xff\xfe")
    @example(b"a=%ff%fe&b=%")
    def prop(raw: bytes) -> None:
        try:
            form = tally.run(parse_form_bytes, raw)
        except InvalidParameter:
            return
        assert isinstance(form, Form)

    prop()
    report(f"parse_form_bytes: {tally.count} inputs")


def test_parse_form_bytes_round_trips_every_pair():
    """Every pair comes back as sent, unless one holds a NUL, which refuses the form."""
    tally = Tally()
    text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)

    @fuzz(300)
    @given(st.lists(st.tuples(text, text), max_size=8))
    def prop(pairs: list[tuple[str, str]]) -> None:
        raw = urlencode(pairs).encode()
        if any("\x00" in k + v for k, v in pairs):
            with pytest.raises(InvalidParameter):
                tally.run(parse_form_bytes, raw)
            return
        form = tally.run(parse_form_bytes, raw)
        for key in {k for k, _ in pairs}:
            assert form.get_all(key) == [v for k, v in pairs if k == key]

    prop()
    report(f"parse_form_bytes round trip: {tally.count} inputs")


QUERY_KEYS = st.sampled_from(["PageSize", "Page", "PageToken", "Order", "x"])
QUERY_VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(-(10**30), 10**30).map(str),
    st.text(alphabet="0123456789", min_size=4000, max_size=5000),
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=6),
    st.from_regex(r"PT[0-9]{1,25}", fullmatch=True),
)


def test_page_request_refuses_only_with_domain_errors():
    tally = Tally()

    @fuzz(500)
    @given(st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=5))
    @example([("Page", "\u00b2")])  # superscript two: str.isdigit() is True, int() refuses
    @example([("Page", "1" * 5000)])  # over Python's 4300-digit int() limit
    def prop(pairs: list[tuple[str, str]]) -> None:
        try:
            page, number = tally.run(page_request, Form(pairs))
        except DomainError:
            return
        assert 1 <= page.page_size <= 1000 and number >= 0

    prop()
    report(f"page_request: {tally.count} inputs")


def test_factor_config_refuses_only_with_domain_errors():
    tally = Tally()
    config = st.fixed_dictionaries(
        {},
        optional={
            "relying_party": st.fixed_dictionaries(
                {}, optional={"id": JSON, "name": JSON, "origins": JSON}
            )
            | JSON,
            "relyingParty": JSON,
            "authenticator_attachment": JSON,
            "discoverableCredentials": JSON,
            "user_verification": JSON,
            "attestation": JSON,
        },
    )

    @fuzz(400)
    @given(config | JSON)
    def prop(value: Any) -> None:
        try:
            tally.run(requested_config, value)
        except DomainError:
            return

    prop()
    report(f"requested_config (factor config): {tally.count} inputs")


def test_every_ceremony_fixture_really_verifies():
    """The mutation fuzzers start from valid ceremonies: prove they are."""
    for alg, fmt in [(-7, "none"), (-7, "packed"), (-8, "none"), (-257, "packed")]:
        cer = ceremony(alg, fmt)
        assert verify_reg(cer.registration).credential_id == cer.registered.credential_id
        assert _verify_assertion(cer, cer.assertion).sign_count == 1
