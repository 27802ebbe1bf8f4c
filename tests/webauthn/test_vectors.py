"""Every recorded vector in tests/vectors/ through passkeyd's own verification layer.

Each JSON file names its source (repository, commit, test) and carries its challenge, RP id,
origins, the time it was recorded at, and the result passkeyd must reach. Recorded
certificates expire: `library_clock` sets py_webauthn's clock (only its clock) to the
vector's time, the way py_webauthn's own tests do; passkeyd's trust check takes the time
as an argument.
"""

from __future__ import annotations

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from passkeyd.webauthn import CeremonyError, Step, b64url_decode, b64url_encode
from tests.webauthn.vectors import authenticate, load_vectors, register

VECTORS = load_vectors()
REGISTRATIONS = sorted(n for n, v in VECTORS.items() if "registration" in v)
AUTHENTICATIONS = sorted(n for n, v in VECTORS.items() if "authentication" in v)
FORMATS = {"none", "packed", "fido-u2f", "tpm", "android-key", "android-safetynet", "apple"}


def test_every_vector_names_its_source_and_expected_result():
    assert len(VECTORS) >= 45
    for name, vector in VECTORS.items():
        assert name.split("-")[0] in ("py_webauthn", "simplewebauthn", "go", "fido2", "java")
        assert {"repository", "commit", "path", "test"} <= set(vector["source"]), name
        assert vector["rp_id"] and vector["origins"], name
        for ceremony in ("registration", "authentication"):
            if ceremony in vector:
                assert vector[ceremony]["expected"]["result"] in ("accept", "refuse"), name
                assert vector[ceremony]["challenge"], name


@pytest.mark.parametrize("name", REGISTRATIONS)
def test_registration_vector(name):
    vector = VECTORS[name]
    expected = vector["registration"]["expected"]
    if expected["result"] == "refuse":
        with pytest.raises(CeremonyError) as refused:
            register(vector)
        assert refused.value.step is Step[expected["step"]]
        return
    registered = register(vector)
    assert registered.fmt == expected["fmt"]
    assert registered.aaguid == expected["aaguid"]
    assert registered.algorithm == expected["alg"]


@pytest.mark.parametrize("name", AUTHENTICATIONS)
def test_authentication_vector(name):
    vector = VECTORS[name]
    expected = vector["authentication"]["expected"]
    if expected["result"] == "refuse":
        with pytest.raises(CeremonyError) as refused:
            authenticate(vector)
        assert refused.value.step is Step[expected["step"]]
        return
    assert authenticate(vector).sign_count == expected["sign_count"]


def test_vectors_prove_every_format_and_algorithm():
    """The table in the README: every attestation format and every algorithm passkeyd
    accepts is proven by at least one vector it accepts."""
    accepted = [
        v["registration"]["expected"]
        for v in VECTORS.values()
        if "registration" in v and v["registration"]["expected"]["result"] == "accept"
    ]
    assert {e["fmt"] for e in accepted} == FORMATS
    assert {e["alg"] for e in accepted} == {-7, -8, -35, -36, -37, -38, -257}
    real_devices = {
        e["fmt"]
        for n, v in VECTORS.items()
        if not n.startswith("go-webauthn") and "registration" in v
        for e in [v["registration"]["expected"]]
        if e["result"] == "accept"
    }
    assert real_devices == FORMATS  # not only the W3C's synthetic vectors


@pytest.mark.parametrize("name", [n for n in REGISTRATIONS if n.startswith("go-webauthn")])
def test_spec_vector_key_registered_is_the_key_that_signs_the_assertion(name):
    """The key passkeyd extracts at registration verifies the spec's assertion."""
    vector = VECTORS[name]
    if vector["registration"]["expected"]["result"] != "accept":
        return
    registered = register(vector)
    assert registered.public_key == b64url_decode(vector["authentication"]["credential_public_key"])
    assert authenticate(vector, public_key=registered.public_key).sign_count == 0


@pytest.mark.parametrize(
    "name",
    [
        "py_webauthn-pixel-8a-android-key",
        "py_webauthn-apple-passkey-apple",
        "py_webauthn-android-safetynet",
        "simplewebauthn-android-safetynet-cts-false",
    ],
)
def test_recorded_attestation_is_refused_at_todays_date(name):
    """Without the recorded time, expired certificates (or a stale SafetyNet timestamp)
    refuse the same bytes: the time really is checked."""
    vector = dict(VECTORS[name], verification_time=None)
    with pytest.raises(CeremonyError) as refused:
        register(vector)
    assert refused.value.step is Step.ATTESTATION_STATEMENT


def _with_last_certificate(vector: dict, der: bytes) -> dict:
    """The vector with its android-key chain's last certificate replaced by `der`."""
    credential = vector["registration"]["credential"]
    attestation = cbor2.loads(b64url_decode(credential["response"]["attestationObject"]))
    attestation["attStmt"]["x5c"][-1] = der
    response = dict(
        credential["response"], attestationObject=b64url_encode(cbor2.dumps(attestation))
    )
    registration = dict(vector["registration"], credential=dict(credential, response=response))
    return dict(vector, registration=registration)


def test_android_key_chain_to_googles_2016_root_certificate_is_taken_only_with_its_key():
    """The Galaxy S9+ chain ends in Google's root 1, another certificate with the name and
    key of the roots py_webauthn ships (it refused the chain). A last certificate with that
    name and another key, or another name, is no Google root."""
    vector = VECTORS["simplewebauthn-samsung-s9-android-key"]
    attestation = cbor2.loads(
        b64url_decode(vector["registration"]["credential"]["response"]["attestationObject"])
    )
    google = x509.load_der_x509_certificate(attestation["attStmt"]["x5c"][-1])
    assert google.subject.rfc4514_string() == "2.5.4.5=f92009e853b6b045"
    assert register(vector).fmt == "android-key"

    def self_signed(name: x509.Name, key: rsa.RSAPrivateKey) -> bytes:
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(7)
            .not_valid_before(google.not_valid_before_utc)
            .not_valid_after(google.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER)
        )

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_name = x509.Name([x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, "f92009e853b6b046")])
    for forged in (self_signed(google.subject, other_key), self_signed(other_name, other_key)):
        with pytest.raises(CeremonyError) as refused:
            register(_with_last_certificate(vector, forged))
        assert refused.value.step is Step.ATTESTATION_STATEMENT


def test_android_app_origin_is_accepted_only_when_listed():
    vector = VECTORS["simplewebauthn-android-app-origin-none"]
    assert vector["origins"][0].startswith("android:apk-key-hash:")
    assert register(vector).fmt == "none"
    elsewhere = dict(vector, origins=["https://try-webauthn.appspot.com"])
    with pytest.raises(CeremonyError) as refused:
        register(elsewhere)
    assert refused.value.step is Step.ORIGIN
    # The assertion from the same app passes the origin step (and stops at the signature).
    assertion = VECTORS["simplewebauthn-android-app-origin-assertion"]
    with pytest.raises(CeremonyError) as refused:
        authenticate(dict(assertion, origins=["https://try-webauthn.appspot.com"]))
    assert refused.value.step is Step.ORIGIN


def test_top_origin_vector_needs_its_top_origin_listed():
    vector = VECTORS["go-webauthn-w3c-l3-none-es256-top-origin"]
    assert vector["top_origins"] == ["https://example.com/"]
    assert register(vector).fmt == "none"
    assert authenticate(vector).sign_count == 0
    for top_origins in ([], ["https://other.example"]):
        unlisted = dict(vector, top_origins=top_origins)
        with pytest.raises(CeremonyError) as refused:
            register(unlisted)
        assert refused.value.step is Step.CROSS_ORIGIN
        with pytest.raises(CeremonyError) as refused:
            authenticate(unlisted)
        assert refused.value.step is Step.CROSS_ORIGIN


@pytest.mark.parametrize(
    "name", ["go-webauthn-w3c-l3-none-es256", "go-webauthn-w3c-l3-packed-es256"]
)
def test_a_client_data_challenge_other_than_the_expected_one_is_refused(name):
    """§7.1.8 / §7.2.11: the vector's own signed bytes, verified against another expected
    challenge (one bit off, one byte longer, empty), are refused at the challenge step."""
    vector = VECTORS[name]
    for ceremony, verify in (("registration", register), ("authentication", authenticate)):
        expected = b64url_decode(vector[ceremony]["challenge"])
        for other in (expected[:-1] + bytes([expected[-1] ^ 1]), expected + b"\x00", b""):
            changed = dict(vector[ceremony], challenge=b64url_encode(other))
            with pytest.raises(CeremonyError) as refused:
                verify(dict(vector, **{ceremony: changed}))
            assert refused.value.step is Step.CHALLENGE, (ceremony, other)


def test_es384_is_refused_where_not_accepted():
    vector = VECTORS["go-webauthn-w3c-l3-packed-es384"]
    with pytest.raises(CeremonyError) as refused:
        register(vector, algorithms=(-7, -8, -257))
    assert refused.value.step is Step.ALGORITHM


def test_es384_assertion_with_a_wrong_signature_is_refused():
    vector = VECTORS["go-webauthn-w3c-l3-packed-es384"]
    auth = vector["authentication"]
    signature = bytearray(b64url_decode(auth["credential"]["response"]["signature"]))
    signature[-1] ^= 1
    response = dict(auth["credential"]["response"], signature=b64url_encode(bytes(signature)))
    credential = dict(auth["credential"], response=response)
    with pytest.raises(CeremonyError) as refused:
        authenticate(dict(vector, authentication=dict(auth, credential=credential)))
    assert refused.value.step is Step.SIGNATURE


@pytest.mark.parametrize(
    "name",
    [
        "simplewebauthn-tpm-sha256",
        "py_webauthn-pixel-8a-android-key",
        "go-webauthn-w3c-l3-packed-es256",
    ],
)
@pytest.mark.parametrize("alg", [-257.0, -7.0, True])
def test_an_attestation_statement_s_alg_must_be_an_integer(name, alg):
    """§8.2-8.4: `alg` is a COSEAlgorithmIdentifier. The statement is unsigned, and a CBOR
    float equal to the real one passed the library's ==. Each format's real statement,
    with its alg made a float or a boolean, is refused before any signature is checked."""
    vector = VECTORS[name]
    credential = vector["registration"]["credential"]
    attestation = cbor2.loads(b64url_decode(credential["response"]["attestationObject"]))
    assert type(attestation["attStmt"]["alg"]) is int
    attestation["attStmt"]["alg"] = alg
    response = dict(
        credential["response"], attestationObject=b64url_encode(cbor2.dumps(attestation))
    )
    registration = dict(vector["registration"], credential=dict(credential, response=response))
    with pytest.raises(CeremonyError) as refused:
        register(dict(vector, registration=registration))
    assert "alg is not an integer" in str(refused.value)


@pytest.mark.parametrize(
    "name", ["go-webauthn-w3c-l3-packed-self-es256", "simplewebauthn-packed-self"]
)
def test_an_alg_that_is_no_integer_is_refused_inside_a_self_described_statement(name):
    """The same float `alg`, in a statement wrapped in CBOR's self-described tag (55799):
    cbor2 decodes that map as a `frozendict`, a Mapping but no dict, and the check above
    was skipped for it, so -7.0 registered as -7 (found by fuzzing the attestation object)."""
    vector = VECTORS[name]
    credential = vector["registration"]["credential"]
    attestation = cbor2.loads(b64url_decode(credential["response"]["attestationObject"]))
    statement = dict(attestation["attStmt"], alg=float(attestation["attStmt"]["alg"]))
    items = b"".join(
        cbor2.dumps(k) + cbor2.dumps(v) for k, v in attestation.items() if k != "attStmt"
    )
    wrapped = b"\xa3" + items + cbor2.dumps("attStmt") + b"\xd9\xd9\xf7" + cbor2.dumps(statement)
    assert type(cbor2.loads(wrapped)["attStmt"]).__name__ == "frozendict"
    response = dict(credential["response"], attestationObject=b64url_encode(wrapped))
    registration = dict(vector["registration"], credential=dict(credential, response=response))
    with pytest.raises(CeremonyError) as refused:
        register(dict(vector, registration=registration))
    assert "alg is not an integer" in str(refused.value)
