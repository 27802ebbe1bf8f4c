"""The compound attestation statement format (WebAuthn L3 §8.9): several self-contained
statements over one authenticatorData. Each must verify by its own format; under a trust
policy, one whose chain the metadata vouches for is enough.

No browser sends one yet, so the statements are real devices' (the recorded vectors), each
wrapped with others over the same authenticatorData and client data hash."""

from __future__ import annotations

import copy
import hashlib

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from passkeyd.metadata import OfflineMetadata
from passkeyd.webauthn import (
    CeremonyError,
    MalformedResponse,
    Step,
    TrustStore,
    VerificationFailed,
)
from passkeyd.webauthn.encoding import b64url_decode
from passkeyd.webauthn.registration import MAX_COMPOUND_STATEMENTS
from tests import pki
from tests.authenticator import b64url
from tests.webauthn.vectors import load_vectors, register, spec_store

VECTORS = load_vectors()
NONE = {"fmt": "none", "attStmt": {}}


@pytest.fixture(scope="module")
def mds() -> TrustStore:
    return OfflineMetadata().trust_store()


def parts(name: str) -> tuple[dict, bytes, bytes]:
    """The vector's attestation object, its authenticatorData, and the bytes its statements
    sign after authenticatorData (the client data hash)."""
    response = VECTORS[name]["registration"]["credential"]["response"]
    attestation = cbor2.loads(b64url_decode(response["attestationObject"]))
    client_data_hash = hashlib.sha256(b64url_decode(response["clientDataJSON"])).digest()
    return attestation, attestation["authData"], client_data_hash


def own(name: str) -> dict:
    """The vector's own statement, as a statement of a compound one."""
    attestation, _, _ = parts(name)
    return {"fmt": attestation["fmt"], "attStmt": attestation["attStmt"]}


def compound(name: str, statements: object, **top: object) -> dict:
    """The vector with its attestation object's statement replaced by `statements`."""
    vector = copy.deepcopy(VECTORS[name])
    attestation, auth_data, _ = parts(name)
    obj = {"fmt": "compound", "attStmt": statements, "authData": auth_data, **top}
    vector["registration"]["credential"]["response"]["attestationObject"] = b64url(cbor2.dumps(obj))
    return vector


def packed_by(leaf: pki.Issued, name: str, chain: list[bytes] | None = None) -> dict:
    """A packed statement over the vector's authenticatorData and client data, by `leaf`."""
    _, auth_data, client_data_hash = parts(name)
    sig = leaf.key.sign(auth_data + client_data_hash, ec.ECDSA(hashes.SHA256()))
    return {"fmt": "packed", "attStmt": {"alg": -7, "sig": sig, "x5c": chain or [leaf.der]}}


def refused(vector: dict, **kw: object) -> CeremonyError:
    with pytest.raises(CeremonyError) as refusal:
        register(vector, **kw)
    return refusal.value


SPEC = "go-webauthn-w3c-l3-packed-es256"
YUBIKEY = "py_webauthn-yubikey5-firefox-packed"


@pytest.mark.parametrize(
    "name",
    [
        SPEC,
        YUBIKEY,
        "py_webauthn-surface-pro-4-tpm",
        "py_webauthn-pixel-8a-android-key",
        "py_webauthn-apple-passkey-apple",
        "py_webauthn-android-safetynet",
        "py_webauthn-yubikey-firefox-fido-u2f",
        "go-webauthn-w3c-l3-packed-self-es256",
    ],
)
def test_a_real_statement_verifies_inside_a_compound_one(name):
    """Each format's verifier gets the statement of the compound one and the same
    authenticatorData: the credential registers as `compound`, as its own statement alone
    does (the control)."""
    alone = register(VECTORS[name])
    registered = register(compound(name, [own(name), NONE]))
    assert registered.fmt == "compound" and alone.fmt != "compound"
    assert registered.statement_fmt == alone.fmt
    assert registered.credential_id == alone.credential_id
    assert registered.attestation_chain == alone.attestation_chain


def test_every_statement_must_verify():
    """§8.9 leaves a statement that fails to the relying party: passkeyd refuses the
    registration, as it refuses that statement alone."""
    statement = own(SPEC)
    broken = copy.deepcopy(statement)
    broken["attStmt"]["sig"] = bytes(len(broken["attStmt"]["sig"]))
    assert register(compound(SPEC, [statement, statement])).fmt == "compound"  # the control
    for statements in ([statement, broken], [broken, statement], [NONE, broken]):
        error = refused(compound(SPEC, statements))
        assert isinstance(error, VerificationFailed), error
        assert error.step is Step.ATTESTATION_STATEMENT
        assert "packed attestation statement did not verify" in error.detail
    empty_not = refused(compound(SPEC, [statement, {"fmt": "none", "attStmt": {"x": 1}}]))
    assert empty_not.detail == "the none attestation statement is not empty"
    unknown = refused(compound(SPEC, [statement, {"fmt": "made-up", "attStmt": {}}]))
    assert "'made-up' is not supported" in unknown.detail


@pytest.mark.parametrize(
    ("statements", "says"),
    [
        ({"fmt": "none", "attStmt": {}}, "not an array of statements"),
        ([], "holds 0 statements"),
        ([NONE], "holds 1 statements"),
        ([NONE] * (MAX_COMPOUND_STATEMENTS + 1), f"holds {MAX_COMPOUND_STATEMENTS + 1}"),
        ([NONE, {"fmt": "compound", "attStmt": {}}], "is itself compound"),
        ([NONE, {"fmt": "compound", "attStmt": [NONE, NONE]}], "is itself compound"),
        ([NONE, {"fmt": 1, "attStmt": {}}], "has no fmt text"),
        ([NONE, {"fmt": "none"}], "not a map of fmt and attStmt"),
        ([NONE, {"fmt": "none", "attStmt": {}, "x": 1}], "not a map of fmt and attStmt"),
        ([NONE, ["none", {}]], "not a map of fmt and attStmt"),
        ([NONE, {"fmt": "packed", "attStmt": []}], "attStmt is not a map"),
        ([NONE, {"fmt": "packed", "attStmt": {"x5c": "x"}}], "x5c is not an array"),
    ],
)
def test_a_malformed_compound_statement_is_refused(statements, says):
    """The CDDL: `attStmt: [2* nonCompoundAttStmt]`, each `{fmt: text .ne "compound",
    attStmt}`. (At most MAX_COMPOUND_STATEMENTS: each costs a verification.)"""
    error = refused(compound(SPEC, statements))
    assert isinstance(error, MalformedResponse), error
    assert error.step is Step.ATTESTATION_OBJECT
    assert says in error.detail, error.detail


def test_up_to_the_bound_verifies():
    statements = [own(SPEC)] * MAX_COMPOUND_STATEMENTS
    assert register(compound(SPEC, statements)).fmt == "compound"


def test_the_compound_one_is_trusted_by_its_trusted_statement(mds):
    """One statement the metadata vouches for is enough, wherever it stands (§8.9 leaves how
    many to the relying party): it names the model, and the others verified by their own
    formats. The chain and format it records are that statement's."""
    attacker_root = pki.ca("Attacker Root")
    _, auth_data, _ = parts(YUBIKEY)
    aaguid = auth_data[37:53]
    attacker = packed_by(pki.attestation_leaf(attacker_root, aaguid), YUBIKEY)
    for statements in ([attacker, own(YUBIKEY)], [own(YUBIKEY), attacker]):
        registered = register(compound(YUBIKEY, statements), trust_store=mds)
        assert registered.metadata.description == "Security Key by Yubico with NFC"
        assert registered.attestation_chain == tuple(own(YUBIKEY)["attStmt"]["x5c"])
        assert registered.statement_fmt == "packed"
    error = refused(compound(YUBIKEY, [attacker, NONE]), trust_store=mds)
    assert error.step is Step.ATTESTATION_TRUST
    assert error.detail == (
        "no statement of the compound attestation is trusted:"
        " the attestation chain does not lead to a root of Security Key by Yubico with NFC"
    )


def test_a_compound_one_without_a_chain_is_not_trusted_and_is_accepted_when_checked():
    statements = [own("go-webauthn-w3c-l3-packed-self-es256"), NONE]
    vector = compound("go-webauthn-w3c-l3-packed-self-es256", statements)
    error = refused(vector, trust_store=spec_store())
    assert error.step is Step.ATTESTATION_TRUST
    assert "no statement of the compound attestation is trusted" in error.detail
    assert "no certificate chain" in error.detail
    # `checked`: none and self attestation have no chain
    accepted = register(vector, trust_store=spec_store(), require_attestation_chain=False)
    assert accepted.fmt == "compound" and accepted.metadata is None


def test_a_statement_certifying_another_aaguid_refuses_the_compound_one():
    """§8.2.1 inside a compound statement: a certificate that names an AAGUID must name the
    authenticatorData's, whatever the other statements say."""
    root = pki.ca("Vendor Root")
    other = pki.attestation_leaf(root, bytes(range(16)))
    error = refused(compound(SPEC, [own(SPEC), packed_by(other, SPEC)]))
    assert error.step is Step.ATTESTATION_STATEMENT, error
    assert "AAGUID" in error.detail


@pytest.mark.parametrize(
    "odd",
    [
        cbor2.CBORTag(28, {"alg": -7, "sig": b"x", "me": cbor2.CBORTag(29, 0)}),  # cyclic
        {"alg": -7, "sig": b"x", "m": cbor2.CBORTag(36, "")},  # a MIME message
    ],
    ids=["cyclic", "mime"],
)
@pytest.mark.parametrize("fmt", ["packed", "tpm", "none"])
def test_a_statement_cbor2_cannot_encode_again_is_refused_not_a_500(odd, fmt):
    """cbor2 decodes what it cannot encode (a map holding itself through tags 28/29, a MIME
    message, tag 36): a statement of a compound one encoded again for the library was an
    uncaught CBOREncodeError, a 500. The same statement alone was refused."""
    error = refused(compound(SPEC, [own(SPEC), {"fmt": fmt, "attStmt": odd}]))
    assert error.step is Step.ATTESTATION_STATEMENT, error


def test_under_checked_a_chain_the_metadata_does_not_vouch_for_is_refused_beside_self(mds):
    """`checked` accepts a compound attestation without any chain, as none/self; one with a
    chain the metadata does not vouch for is refused, wherever it stands, as it is alone."""
    _, auth_data, _ = parts(YUBIKEY)
    attacker = packed_by(pki.attestation_leaf(pki.ca("Attacker Root"), auth_data[37:53]), YUBIKEY)
    for statements in ([NONE, attacker], [attacker, NONE]):
        with pytest.raises(VerificationFailed) as refusal:
            register(
                compound(YUBIKEY, statements), trust_store=mds, require_attestation_chain=False
            )
        assert refusal.value.step is Step.ATTESTATION_TRUST
        assert "no statement of the compound attestation is trusted" in refusal.value.detail
