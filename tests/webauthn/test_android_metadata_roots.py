"""android-key and android-safetynet under a service that trusts attestation (trusted,
checked): py_webauthn's verifiers for those formats refuse a chain that leads to no root they
ship (Google's hardware attestation roots, GlobalSign's) before passkeyd's own trust check
(§7.1.24), though §8.4 and §8.5 name no root. The roots the metadata lists for the AAGUID are
given to them too, so a model whose metadata vouches for its own root (the FIDO conformance
tools' Android test authenticators, with their downloadable statements: Server-
ServerAuthenticatorAttestationResponse-Resp-A and Resp-B P-1) registers; without such an
entry, or under `any`, the chain is refused as before."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import struct
import time

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pyasn1.codec.der import encoder
from webauthn.helpers.asn1.android_key import AuthorizationList, KeyDescription

from passkeyd.webauthn import (
    CeremonyError,
    MetadataEntry,
    OriginPolicy,
    Step,
    TrustStore,
    parse_registration,
    verify_registration,
)
from tests import pki
from tests.authenticator import Key, b64url

RP_ID, ORIGIN = "example.com", "https://example.com"
ANDROID = bytes.fromhex("b93fd961f2e6462fb12282002247de78")
KEY_DESCRIPTION = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.1.17")
NOW = datetime.datetime.now(datetime.UTC)


def _key_description(challenge: bytes) -> bytes:
    """A KeyDescription (attestationChallenge = clientDataHash, TEE origin GENERATED, purpose
    SIGN), written with py_webauthn's own schema."""
    kd = KeyDescription()
    kd["attestationVersion"], kd["attestationSecurityLevel"] = 3, 1
    kd["keymasterVersion"], kd["keymasterSecurityLevel"] = 4, 1
    kd["attestationChallenge"], kd["uniqueId"] = challenge, b""
    tee = AuthorizationList()
    purpose = tee["purpose"].clone()
    purpose.append(2)
    tee["purpose"], tee["origin"] = purpose, 0
    kd["softwareEnforced"], kd["teeEnforced"] = AuthorizationList(), tee
    return encoder.encode(kd)


def _certificate(name: str, issuer: pki.Issued, public_key, extensions=()) -> bytes:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=365))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    from cryptography.hazmat.primitives.serialization import Encoding

    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(Encoding.DER)


def _registration(fmt: str, root: pki.Issued, middle: pki.Issued):
    challenge = os.urandom(32)
    client_data = json.dumps(
        {"type": "webauthn.create", "challenge": b64url(challenge), "origin": ORIGIN}
    ).encode()
    client_data_hash = hashlib.sha256(client_data).digest()
    key = Key.generate(-7 if fmt == "android-key" else -257)
    credential_id = os.urandom(32)
    auth_data = (
        hashlib.sha256(RP_ID.encode()).digest() + bytes([0x41]) + struct.pack(">I", 0)
        + ANDROID + struct.pack(">H", 32) + credential_id + key.cose()
    )  # fmt: skip
    signed = auth_data + client_data_hash
    if fmt == "android-key":
        leaf = _certificate(
            "Android Keystore Key", middle, key.private.public_key(),
            [x509.UnrecognizedExtension(KEY_DESCRIPTION, _key_description(client_data_hash))],
        )  # fmt: skip
        statement = {"alg": -7, "sig": key.sign(signed), "x5c": [leaf, middle.der, root.der]}
    else:
        leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        leaf = _certificate("attest.android.com", middle, leaf_key.public_key())
        header = {"alg": "RS256", "x5c": [base64.b64encode(c).decode() for c in (leaf, middle.der)]}
        body = {
            "nonce": base64.b64encode(hashlib.sha256(signed).digest()).decode(),
            "timestampMs": int(time.time() * 1000), "apkPackageName": "com.example",
            "ctsProfileMatch": True, "basicIntegrity": True,
        }  # fmt: skip
        jws = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
        signature = leaf_key.sign(jws.encode(), padding.PKCS1v15(), hashes.SHA256())
        statement = {"ver": "12685023", "response": f"{jws}.{b64url(signature)}".encode()}
    attestation = cbor2.dumps({"fmt": fmt, "attStmt": statement, "authData": auth_data})
    credential = {
        "id": b64url(credential_id), "rawId": b64url(credential_id), "type": "public-key",
        "response": {"clientDataJSON": b64url(client_data),
                     "attestationObject": b64url(attestation)},
    }  # fmt: skip
    return parse_registration(credential), challenge


def _verify(fmt: str, store: TrustStore | None, root: pki.Issued, middle: pki.Issued):
    response, challenge = _registration(fmt, root, middle)
    return verify_registration(
        response,
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origins=OriginPolicy.build(rp_id=RP_ID, origins=[ORIGIN]),
        require_user_verification=False,
        expected_algorithms=(-7, -257),
        trust_store=store,
    )


def _cas(fmt: str) -> tuple[pki.Issued, pki.Issued]:
    if fmt == "android-key":
        root = pki.ca("Vendor Android Root")
        return root, pki.ca("Vendor Android Intermediate", root)
    root = pki.rsa_ca("Vendor SafetyNet Root")
    return root, pki.rsa_ca("Vendor SafetyNet Intermediate", root)


@pytest.mark.parametrize("fmt", ["android-key", "android-safetynet"])
def test_a_model_whose_metadata_lists_its_root_registers(fmt):
    root, middle = _cas(fmt)
    aaguid = "b93fd961-f2e6-462f-b122-82002247de78"
    store = TrustStore([MetadataEntry("Vendor Android", aaguid, (), (root.der,))])
    registered = _verify(fmt, store, root, middle)
    assert registered.fmt == fmt and registered.metadata is not None
    assert registered.metadata.description == "Vendor Android"


@pytest.mark.parametrize("fmt", ["android-key", "android-safetynet"])
@pytest.mark.parametrize("listed", ["no trust store (any)", "another model", "another root"])
def test_a_root_no_entry_of_the_model_lists_is_refused_as_before(fmt, listed):
    root, middle = _cas(fmt)
    aaguid = "b93fd961-f2e6-462f-b122-82002247de78"
    store = {
        "no trust store (any)": None,
        "another model": TrustStore(
            [MetadataEntry("Other", "00000000-0000-4000-8000-000000000001", (), (root.der,))]
        ),
        "another root": TrustStore(
            [MetadataEntry("Vendor Android", aaguid, (), (_cas(fmt)[0].der,))]
        ),
    }[listed]
    with pytest.raises(CeremonyError) as refused:
        _verify(fmt, store, root, middle)
    assert refused.value.step is Step.ATTESTATION_STATEMENT
