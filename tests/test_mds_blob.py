"""A FIDO MDS3 BLOB named by PASSKEYD_MDS_BLOB: verified (chain, signature, payload), used in
place of the packaged metadata for trust decisions and names, taken up again when the file is
replaced with a newer one, and refused at start by `serve` and `check-config` when it does
not verify.

Vectors: a production BLOB (no. 9, 2021-11, signed by mds.fidoalliance.org under GlobalSign
Root CA - R3; webauthn4j's `webauthn4j-metadata/src/test/resources/integration/component/
blob.jwt`), and the MDS3 specification's example BLOB with its example root (as python-fido2's
`tests/test_mds3.py` carries it, its ES256 signature in DER). The rest are made here, signed
by a test PKI."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import gzip
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from starlette.testclient import TestClient

from passkeyd import mdsblob, metadata
from passkeyd.api import create_app
from passkeyd.domain import Domain
from passkeyd.mdsblob import FIDO_DOMAIN, FIDO_MDS_ROOT, BlobError, load_roots, verify_blob
from passkeyd.metadata import OfflineMetadata, read_blob
from passkeyd.storage.sqlite import SQLiteStore
from tests import pki
from tests.authenticator import Authenticator
from tests.conftest import ORIGIN, Api

VECTORS = Path(__file__).parent / "vectors" / "mds3"
NOW = datetime.datetime.now(datetime.UTC)
# A model no packaged metadata lists: only a BLOB that lists it can vouch for it.
MODEL = "3c7b1c5e-2d9f-4f7b-9a51-0d6c2c0b7e01"
ICLOUD = "fbfc3007-154e-4ecc-8c0b-6e020557d7bd"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclasses.dataclass
class Pki:
    root: pki.Issued
    intermediate: pki.Issued
    leaf_cert: x509.Certificate
    leaf_key: Any  # RSA or EC private key


def signing_pki(kind: str = "ec", host: str | None = None) -> Pki:
    """A root, an intermediate, and a BLOB-signing leaf (EC P-256 or RSA 2048) under them,
    for `host` (subjectAltName) when given."""
    root = pki.ca("Test MDS Root")
    intermediate = pki.ca("Test MDS Intermediate", root)
    curves = {"ec": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
    key: Any = (
        ec.generate_private_key(curves[kind])
        if kind in curves
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "mds.test")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(intermediate.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.START)
        .not_valid_after(pki.END)
    )
    if host is not None:
        san = x509.SubjectAlternativeName([x509.DNSName(host)])
        builder = builder.add_extension(san, critical=False)
    leaf = builder.sign(intermediate.key, hashes.SHA256())
    return Pki(root, intermediate, leaf, key)


def payload(no: int = 300, entries: list[dict[str, Any]] | None = None, **extra: Any) -> dict:
    return {
        "legalHeader": "test",
        "no": no,
        "nextUpdate": "2099-01-01",
        "entries": entries if entries is not None else [],
        **extra,
    }


def entry(aaguid: str, description: str, roots: list[bytes]) -> dict[str, Any]:
    return {
        "aaguid": aaguid,
        "metadataStatement": {
            "description": description,
            "attestationRootCertificates": [base64.b64encode(r).decode() for r in roots],
        },
        "statusReports": [{"status": "FIDO_CERTIFIED_L1", "effectiveDate": "2024-01-01"}],
    }


def sign(
    p: Pki | None,
    body: dict[str, Any],
    *,
    alg: str = "ES256",
    header: dict[str, Any] | None = None,
    key: Any = None,
    x5c: list[bytes] | None = None,
) -> bytes:
    """A compact JWS of `body`, signed by the leaf of `p` (or `key`), x5c [leaf, intermediate]."""
    head: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if p is not None:
        chain = x5c if x5c is not None else [
            p.leaf_cert.public_bytes(serialization.Encoding.DER), p.intermediate.der
        ]  # fmt: skip
        head["x5c"] = [base64.b64encode(c).decode() for c in chain]
    head.update(header or {})
    signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(body).encode())}"
    signer = key if key is not None else p.leaf_key  # type: ignore[union-attr]
    digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]
    if alg.startswith("ES"):
        r, s = decode_dss_signature(signer.sign(signing_input.encode(), ec.ECDSA(digest)))
        size = (signer.curve.key_size + 7) // 8
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")  # RFC 7518 §3.4
    elif alg.startswith("RS"):
        signature = signer.sign(signing_input.encode(), padding.PKCS1v15(), digest)
    else:
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        signature = signer.sign(signing_input.encode(), pss, digest)
    return f"{signing_input}.{b64url(signature)}".encode()


# --- verification ---------------------------------------------------------------------------


def test_the_production_blob_verifies_under_the_packaged_fido_roots_in_its_time():
    blob = gzip.decompress((VECTORS / "webauthn4j-production-blob-no9.jwt.gz").read_bytes())
    at = datetime.datetime(2021, 11, 15, tzinfo=datetime.UTC)
    verified = verify_blob(blob, load_roots(FIDO_MDS_ROOT), at, signer_domain=FIDO_DOMAIN)
    assert (verified["no"], verified["nextUpdate"], len(verified["entries"])) == (
        9,
        "2021-12-01",
        98,
    )
    # Where its chain's CRLs are published (`metadata crl-urls`): GlobalSign's.
    assert mdsblob.chain_crl_urls(blob, load_roots(FIDO_MDS_ROOT), at) == [
        "http://crl.globalsign.com/gs/gsextendvalsha2g3r3.crl",
        "http://crl.globalsign.com/root-r3.crl",
    ]
    # Its signing certificate expired in 2022: today the same BLOB is refused.
    with pytest.raises(BlobError, match="does not lead to the FIDO Metadata Service root"):
        verify_blob(blob, load_roots(FIDO_MDS_ROOT), NOW)
    # Nor does it verify under another root.
    with pytest.raises(BlobError, match="does not lead"):
        verify_blob(blob, [signing_pki().root.certificate], at)


def test_the_packaged_roots_are_globalsigns_r46_and_r3():
    fingerprints = {c.fingerprint(hashes.SHA256()).hex() for c in load_roots(FIDO_MDS_ROOT)}
    assert fingerprints == {
        "4fa3126d8d3a11d1c4855a4f807cbad6cf919d3a5a88b03bea2c6372d93c40c9",  # Root R46
        "cbb522d7b7f127ad6a0113865bdf1cd4102e7d0759af635a7cf4720dc963c53b",  # Root CA - R3
    }


def test_the_specification_example_blob_verifies_under_its_example_root():
    blob = (VECTORS / "fido-mds3-spec-example-blob.jwt").read_bytes()
    root = x509.load_der_x509_certificate(
        (VECTORS / "fido-mds3-spec-example-root.der").read_bytes()
    )
    verified = verify_blob(blob, [root], datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    assert (verified["no"], verified["nextUpdate"], len(verified["entries"])) == (
        15,
        "2020-03-30",
        2,
    )
    with pytest.raises(BlobError, match="does not lead"):
        verify_blob(blob, load_roots(FIDO_MDS_ROOT), NOW)


@pytest.mark.parametrize(
    ("kind", "alg"),
    [
        ("ec", "ES256"),
        ("P-384", "ES384"),
        ("P-521", "ES512"),
        ("rsa", "RS256"),
        ("rsa", "RS512"),
        ("rsa", "PS256"),
        ("rsa", "PS384"),
    ],
)
def test_a_blob_signed_with_each_algorithm_verifies(kind, alg):
    p = signing_pki(kind)
    verified = verify_blob(sign(p, payload(301), alg=alg), [p.root.certificate], NOW)
    assert verified["no"] == 301
    # The same signature under the other algorithm of its key type is refused.
    other = {"ES": "ES256" if alg != "ES256" else "ES384", "RS": "PS256", "PS": "RS256"}
    swapped = sign(p, payload(301), alg=alg, header={"alg": other[alg[:2]]})
    with pytest.raises(BlobError):
        verify_blob(swapped, [p.root.certificate], NOW)


def test_under_the_fido_roots_only_a_fido_host_may_sign():
    """GlobalSign's roots vouch for any of its TLS customers: under them, the signing
    certificate must be for a host of fidoalliance.org (as mds.fidoalliance.org's is)."""
    for host, signs in [
        ("mds.fidoalliance.org", True),
        ("MDS3.FidoAlliance.org.", True),
        ("fidoalliance.org", True),
        ("mds.fidoalliance.org.attacker.example", False),
        ("notfidoalliance.org", False),
        (None, False),  # CN=mds.test, no subjectAltName
    ]:
        p = signing_pki(host=host)
        blob = sign(p, payload(5))
        if signs:
            assert verify_blob(blob, [p.root.certificate], NOW, signer_domain=FIDO_DOMAIN)
        else:
            with pytest.raises(BlobError, match="not a host of fidoalliance.org: under the FIDO"):
                verify_blob(blob, [p.root.certificate], NOW, signer_domain=FIDO_DOMAIN)
        # With a root of the operator's own (PASSKEYD_MDS_ROOT), its own PKI's names.
        assert verify_blob(blob, [p.root.certificate], NOW)["no"] == 5


def test_a_blob_without_x5c_is_checked_against_the_root_itself():
    """MDS3 §3.2 step 5: without x5c, the trust anchor is the signing certificate."""
    p = signing_pki()
    blob = sign(None, payload(7), key=p.root.key)
    assert verify_blob(blob, [p.root.certificate], NOW)["no"] == 7
    with pytest.raises(BlobError, match="no root checked against signed it"):
        verify_blob(blob, [signing_pki().root.certificate], NOW)


def crl(
    issuer: pki.Issued | Any,
    *revoked: x509.Certificate,
    issued: datetime.datetime | None = None,
    next_update: datetime.datetime | None = None,
    key: Any = None,
) -> x509.CertificateRevocationList:
    """A CRL of `issuer` (its name; signed by its key, or by `key`) listing `revoked`."""
    issued = issued or NOW - datetime.timedelta(days=1)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(issued)
        .next_update(next_update or NOW + datetime.timedelta(days=7))
    )
    for certificate in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(certificate.serial_number)
            .revocation_date(issued)
            .build()
        )
    return builder.sign(key or issuer.key, hashes.SHA256())


def test_given_crls_no_certificate_of_the_chain_may_be_revoked():
    """MDS3 §3.2 step 4: given CRLs, each certificate below the root must be covered by a
    current CRL its issuer signed, and listed by none; not given any, none is looked for."""
    p = signing_pki()
    blob, roots = sign(p, payload(8)), [p.root.certificate]
    leaf, middle = p.leaf_cert, p.intermediate.certificate
    of_root, of_middle = crl(p.root), crl(p.intermediate)
    assert verify_blob(blob, roots, NOW)["no"] == 8  # (none given: as before)
    assert verify_blob(blob, roots, NOW, crls=[of_middle, of_root])["no"] == 8
    expired = NOW - datetime.timedelta(hours=1)
    for crls, why in [
        ([], "no current CRL of CN=Test MDS Intermediate was given for its certificate"
             " CN=mds.test"),
        ([of_middle], "no current CRL of CN=Test MDS Root was given for its certificate"
                      " CN=Test MDS Intermediate"),
        ([crl(p.intermediate, leaf), of_root], "its certificate CN=mds.test (serial"),
        ([of_middle, crl(p.root, middle)], "its certificate CN=Test MDS Intermediate (serial"),
        # Not current, or not the issuer's: it covers nothing.
        ([crl(p.intermediate, next_update=expired), of_root], "no current CRL of CN=Test MDS"
                                                               " Intermediate"),
        ([crl(p.intermediate, issued=NOW + datetime.timedelta(hours=1)), of_root],
         "no current CRL of CN=Test MDS Intermediate"),
        ([crl(p.intermediate, key=pki.ca("Test MDS Intermediate").key), of_root],
         "no current CRL of CN=Test MDS Intermediate"),
    ]:  # fmt: skip
        with pytest.raises(BlobError, match=re.escape(why)):
            verify_blob(blob, roots, NOW, crls=crls)
    # A CRL that lists the certificate refuses it though another current one does not.
    with pytest.raises(BlobError, match="is revoked since"):
        verify_blob(blob, roots, NOW, crls=[of_middle, crl(p.intermediate, leaf), of_root])


def test_crl_files_are_read_in_pem_or_der(tmp_path):
    p = signing_pki()
    two = [crl(p.intermediate), crl(p.root)]
    pem = tmp_path / "two.pem"
    pem.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in two))
    der = tmp_path / "one.crl"
    der.write_bytes(two[0].public_bytes(serialization.Encoding.DER))
    assert [c.issuer for c in mdsblob.load_crls(pem)] == [c.issuer for c in two]
    assert [c.issuer for c in mdsblob.load_crls(der)] == [two[0].issuer]
    (tmp_path / "junk").write_bytes(b"not a CRL")
    with pytest.raises(BlobError, match="holds no CRL in PEM or DER"):
        mdsblob.load_crls(tmp_path / "junk")
    with pytest.raises(BlobError, match="cannot read the CRL file"):
        mdsblob.load_crls(tmp_path / "missing.crl")


def _x5c_v4(p: Pki) -> bytes:
    """An x5c certificate saying X.509 "v4": cryptography reads it, then raises when asked
    its version (InvalidVersion, not a ValueError)."""
    der = bytearray(p.leaf_cert.public_bytes(serialization.Encoding.DER))
    at = der.index(b"\xa0\x03\x02\x01\x02")  # [0] EXPLICIT version: v3
    der[at + 4] = 3
    return sign(p, payload(), x5c=[bytes(der), p.intermediate.der])


def _tampered_payload(p: Pki) -> bytes:
    head, _, signature = sign(p, payload(1)).split(b".")
    return b".".join([head, b64url(json.dumps(payload(2)).encode()).encode(), signature])


REFUSALS = {
    "payload changed after signing": (_tampered_payload, "signature does not verify"),
    "signed by a key other than the leaf's": (
        lambda p: sign(p, payload(), key=ec.generate_private_key(ec.SECP256R1())),
        "signature does not verify",
    ),
    "chain to another root": (
        lambda p: sign(signing_pki(), payload()),
        "does not lead to the FIDO Metadata Service root",
    ),
    "intermediate left out": (
        lambda p: sign(p, payload(), x5c=[p.leaf_cert.public_bytes(serialization.Encoding.DER)]),
        "does not lead",
    ),
    "alg none": (lambda p: sign(p, payload(), header={"alg": "none"}), "alg 'none'"),
    "alg HS256": (lambda p: sign(p, payload(), header={"alg": "HS256"}), "alg 'HS256'"),
    "alg RS256 with an EC key": (
        lambda p: sign(p, payload(), header={"alg": "RS256"}),
        "key is not RSA",
    ),
    "alg ES384 with a P-256 key": (
        lambda p: sign(p, payload(), header={"alg": "ES384"}),
        "its alg is ES384, but the signing certificate's key is not",
    ),
    "a critical extension": (
        lambda p: sign(p, payload(), header={"crit": ["b64"], "b64": False}),
        "critical",
    ),
    "chain by URL": (
        lambda p: sign(p, payload(), header={"x5u": "https://mds.example/chain"}),
        "x5u",
    ),
    "x5c not base64 DER": (lambda p: sign(p, payload(), header={"x5c": ["%%%"]}), "x5c"),
    "x5c empty": (lambda p: sign(p, payload(), header={"x5c": []}), "no certificate chain"),
    "x5c certificate of version 4": (_x5c_v4, "certificate 0 of its x5c is not a base64 DER"),
    "two parts": (lambda p: b".".join(sign(p, payload()).split(b".")[:2]), "compact form"),
    "header not JSON": (
        lambda p: b"bm90IGpzb24." + sign(p, payload()).split(b".", 1)[1],
        "header is not base64url-encoded JSON",
    ),
    "payload without no": (
        lambda p: sign(p, {"nextUpdate": "2099-01-01", "entries": []}),
        "serial number",
    ),
    "payload with no as a string": (lambda p: sign(p, payload(no="5")), "serial number"),
    "payload with a bad nextUpdate": (
        lambda p: sign(p, {**payload(), "nextUpdate": "next month"}),
        "nextUpdate",
    ),
    "payload without entries": (
        lambda p: sign(p, {"no": 1, "nextUpdate": "2099-01-01"}),
        "no entries",
    ),
    "payload not an object": (lambda p: _signed_array(p), "payload is not a JSON object"),
}


def _signed_array(p: Pki) -> bytes:
    blob = sign(p, payload())
    head = blob.split(b".")[0]
    signing_input = head + b"." + b64url(b"[1, 2]").encode()
    r, s = decode_dss_signature(p.leaf_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return signing_input + b"." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big")).encode()


@pytest.mark.parametrize("case", REFUSALS)
def test_each_flaw_is_refused_saying_why(case):
    p = signing_pki()
    make, why = REFUSALS[case]
    with pytest.raises(BlobError, match=why.replace("(", r"\(").replace(")", r"\)")):
        verify_blob(make(p), [p.root.certificate], NOW)


# --- the metadata a process uses --------------------------------------------------------------


def write_blob(path: Path, p: Pki, no: int, entries: list[dict[str, Any]]) -> None:
    path.write_bytes(sign(p, payload(no, entries)))
    os.utime(path, ns=(path.stat().st_mtime_ns + 1_000_000_000,) * 2)  # a newer mtime


@pytest.fixture
def blob_setup(tmp_path):
    p = signing_pki()
    vendor = pki.ca("Vendor Root")
    root_file = tmp_path / "mds-root.pem"
    root_file.write_bytes(p.root.certificate.public_bytes(serialization.Encoding.PEM))
    blob_file = tmp_path / "blob.jwt"
    write_blob(blob_file, p, 300, [entry(MODEL, "Blob Key", [vendor.der])])
    return p, vendor, blob_file, root_file


def test_the_blob_replaces_the_packaged_metadata(blob_setup):
    p, vendor, blob_file, root_file = blob_setup
    meta = OfflineMetadata(blob_path=blob_file, root_path=root_file)
    store = meta.trust_store()
    assert len(store) == 1
    assert store.by_aaguid(MODEL).description == "Blob Key"
    assert meta.authenticator_name(MODEL) == "Blob Key"
    packaged = OfflineMetadata().trust_store()
    assert packaged.by_aaguid(MODEL) is None and len(packaged) > 300


def test_a_newer_blob_is_taken_up_an_older_or_broken_one_is_not(blob_setup, monkeypatch, caplog):
    p, vendor, blob_file, root_file = blob_setup
    monkeypatch.setattr(metadata, "BLOB_CHECK_SECONDS", 0.0)
    meta = OfflineMetadata(blob_path=blob_file, root_path=root_file)
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key"
    caplog.set_level(logging.INFO, logger="passkeyd.metadata")

    write_blob(blob_file, p, 301, [entry(MODEL, "Blob Key v2", [vendor.der])])
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key v2"
    assert "BLOB no. 301" in caplog.text

    write_blob(blob_file, p, 299, [entry(MODEL, "Rolled back", [vendor.der])])
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key v2"
    assert "is no. 299, older than no. 301 in use: kept no. 301" in caplog.text

    blob_file.write_bytes(b"truncated download")
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key v2"
    assert (
        "not a JWS in compact form (three base64url parts joined by dots); the metadata in use"
        " is kept" in caplog.text
    )

    write_blob(blob_file, signing_pki(), 302, [entry(MODEL, "Forged", [vendor.der])])
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key v2"
    assert "does not lead to PASSKEYD_MDS_ROOT's root" in caplog.text

    blob_file.write_bytes(_x5c_v4(p))  # what cryptography raises on it is not a ValueError
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key v2"
    assert "certificate 0 of its x5c is not a base64 DER certificate" in caplog.text


def test_the_file_is_looked_at_again_only_once_a_minute(blob_setup):
    p, vendor, blob_file, root_file = blob_setup
    meta = OfflineMetadata(blob_path=blob_file, root_path=root_file)
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key"
    write_blob(blob_file, p, 301, [entry(MODEL, "Blob Key v2", [vendor.der])])
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key"  # not yet
    meta._next_check = 0.0  # a minute later
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key v2"


def test_a_blob_that_does_not_verify_in_a_worker_trusts_nothing_until_replaced(
    blob_setup, caplog, monkeypatch
):
    """`serve` refuses it at start; a worker meeting it later (the file replaced by a bad
    download before the worker's first registration) logs it and trusts no attestation, not
    the older packaged metadata (which may trust what the BLOB revoked), until a BLOB that
    verifies is there."""
    p, vendor, blob_file, root_file = blob_setup
    blob_file.write_bytes(_x5c_v4(p))
    monkeypatch.setattr(metadata, "BLOB_CHECK_SECONDS", 0.0)
    meta = OfflineMetadata(blob_path=blob_file, root_path=root_file)
    store = meta.trust_store()
    assert len(store) == 0 and "does not verify" in store.unavailable
    assert "attestation is trusted for no authenticator until it is replaced" in caplog.text
    assert meta.authenticator_name(ICLOUD) == "Apple Passwords"  # names: the community list
    write_blob(blob_file, p, 300, [entry(MODEL, "Blob Key", [vendor.der])])
    store = meta.trust_store()
    assert store.unavailable is None and store.by_aaguid(MODEL).description == "Blob Key"


def test_a_trusted_service_accepts_a_model_only_the_blob_lists(blob_setup, clock, tmp_path):
    p, vendor, blob_file, root_file = blob_setup
    aaguid = bytes.fromhex(MODEL.replace("-", ""))
    leaf = pki.attestation_leaf(vendor, aaguid)
    key = Authenticator(
        attestation="packed", aaguid=aaguid, x5c=[leaf.der], attestation_key=leaf.key
    )

    def register(meta: OfflineMetadata, name: str):
        db_path = tmp_path / f"{name}.db"
        store = SQLiteStore(str(db_path))
        store.migrate()
        served = Domain(store, clock, metadata=meta)
        with TestClient(create_app(served), base_url="http://testserver") as client:
            account, token = served.accounts.create_account(name)
            api = Api(client, db_path, account.sid, (account.sid, token))
            api.create_service(**{"Passkeys.AttestationPolicy": "trusted"})
            factor = api.create_factor()
            return api.verify_factor(key.create(factor["options"], ORIGIN))

    refused = register(OfflineMetadata(), "packaged")  # which does not know the model
    assert (refused.status_code, refused.json()["code"]) == (403, 60311), refused.text
    assert f"authenticator {MODEL} is not listed" in refused.json()["message"]
    blob = blob_file.read_bytes()
    blob_file.write_bytes(b"not a BLOB")  # a worker meets it at its first registration
    broken = register(OfflineMetadata(blob_path=blob_file, root_path=root_file), "broken")
    assert (broken.status_code, broken.json()["code"]) == (403, 60311), broken.text
    assert "(PASSKEYD_MDS_BLOB) does not verify" in broken.json()["message"]
    assert str(blob_file) not in broken.json()["message"]  # (a path is for the log)
    blob_file.write_bytes(blob)
    accepted = register(OfflineMetadata(blob_path=blob_file, root_path=root_file), "blob")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["metadata"]["authenticator_name"] == "Blob Key"


def test_read_blob_checks_the_signers_host_under_the_fido_roots_only(tmp_path, monkeypatch):
    """The FIDO roots are stood in for by a test root: under them, a signer outside
    fidoalliance.org is refused; the same root named by PASSKEYD_MDS_ROOT is not."""
    p = signing_pki()
    root_file = tmp_path / "root.pem"
    root_file.write_bytes(p.root.certificate.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setattr(mdsblob, "FIDO_MDS_ROOT", root_file)
    blob_file = tmp_path / "blob.jwt"
    blob_file.write_bytes(sign(p, payload(300)))
    with pytest.raises(BlobError, match="not a host of fidoalliance.org"):
        read_blob(blob_file)
    assert read_blob(blob_file, root_file)["no"] == 300
    fido = signing_pki(host="mds.fidoalliance.org")
    root_file.write_bytes(fido.root.certificate.public_bytes(serialization.Encoding.PEM))
    blob_file.write_bytes(sign(fido, payload(300)))
    assert read_blob(blob_file)["no"] == 300


def test_a_blob_of_fidos_older_than_the_packaged_metadata_is_refused(tmp_path, monkeypatch):
    """Under FIDO's roots, whether PASSKEYD_MDS_ROOT names them again or not."""
    fido = signing_pki(host="mds.fidoalliance.org")
    root_file = tmp_path / "root.pem"
    root_file.write_bytes(fido.root.certificate.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setattr(mdsblob, "FIDO_MDS_ROOT", root_file)
    blob_file = tmp_path / "blob.jwt"
    write_blob(blob_file, fido, 290, [])  # the packaged metadata is no. 291
    for named_root in (None, root_file):
        with pytest.raises(BlobError, match=r"no. 290, older than the metadata packaged .*291"):
            read_blob(blob_file, named_root)
    write_blob(blob_file, fido, 291, [])
    assert read_blob(blob_file)["no"] == 291


def test_a_private_metadata_service_numbers_its_blobs_from_its_own_start(blob_setup):
    """PASSKEYD_MDS_ROOT names a private or test service's root (python-fido2's example
    BLOB is no. 15): FIDO's numbering does not apply to it."""
    p, vendor, blob_file, root_file = blob_setup
    write_blob(blob_file, p, 15, [entry(MODEL, "Blob Key", [vendor.der])])
    assert read_blob(blob_file, root_file)["no"] == 15
    meta = OfflineMetadata(blob_path=blob_file, root_path=root_file)
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key"


def test_entries_of_any_shape_are_skipped_not_raised(blob_setup):
    p, vendor, blob_file, root_file = blob_setup
    odd: list[Any] = ["x", 5, None, {"metadataStatement": {"friendlyNames": "Key"}}]
    write_blob(blob_file, p, 300, [*odd, entry(MODEL, "Blob Key", [vendor.der])])
    store = OfflineMetadata(blob_path=blob_file, root_path=root_file).trust_store()
    assert len(store) == 1 and store.by_aaguid(MODEL).description == "Blob Key"


def test_read_blob_names_the_file(tmp_path):
    missing = tmp_path / "nothing.jwt"
    with pytest.raises(BlobError, match=rf"BLOB {missing} \(PASSKEYD_MDS_BLOB\): cannot read it"):
        read_blob(missing)


# --- serve and check-config -------------------------------------------------------------------


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "passkeyd.cli", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_reports_the_blob_in_use(blob_setup, tmp_path):
    p, vendor, blob_file, root_file = blob_setup
    env = {
        "PASSKEYD_DATABASE_URL": f"sqlite:///{tmp_path}/p.db",
        "PASSKEYD_MDS_BLOB": str(blob_file),
        "PASSKEYD_MDS_ROOT": str(root_file),
    }
    run = cli("check-config", env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["metadata"] == {
        "source": "PASSKEYD_MDS_BLOB",
        "file": str(blob_file),
        "no": 300,
        "next_update": "2099-01-01",
        "entries": 1,
    }
    assert not any("FIDO metadata" in w for w in report.get("warnings", []))

    blob_file.write_bytes(sign(p, {**payload(300), "nextUpdate": "2020-01-01"}))
    report = json.loads(cli("check-config", env=env, cwd=tmp_path).stdout)
    assert any(
        "PASSKEYD_MDS_BLOB, BLOB no. 300) was due for replacement on 2020-01-01" in w
        and "download a newer BLOB from https://mds3.fidoalliance.org/ and install it with" in w
        for w in report["warnings"]
    ), report


def test_check_config_without_a_blob_names_the_package_and_how_to_replace_it(tmp_path):
    run = cli(
        "check-config", env={"PASSKEYD_DATABASE_URL": f"sqlite:///{tmp_path}/p.db"}, cwd=tmp_path
    )
    report = json.loads(run.stdout)
    assert report["metadata"]["source"] == "fido-mds package"
    assert report["metadata"]["no"] == 291 and report["metadata"]["entries"] == 520
    if report["metadata"]["next_update"] < datetime.date.today().isoformat():
        advice = "install it with `passkeyd metadata install` (PASSKEYD_MDS_BLOB names where)"
        assert any(advice in w for w in report["warnings"])


def test_serve_and_check_config_refuse_a_blob_that_does_not_verify(blob_setup, tmp_path):
    p, vendor, blob_file, root_file = blob_setup
    env = {
        "PASSKEYD_DATABASE_URL": f"sqlite:///{tmp_path}/p.db",
        "PASSKEYD_MDS_BLOB": str(blob_file),  # the FIDO roots: the test PKI is not one
        "PASSKEYD_PORT": "0",
    }
    run = cli("check-config", env=env, cwd=tmp_path)
    assert run.returncode == 3
    report = json.loads(run.stdout)
    assert report["ok"] is False
    assert "does not lead to the FIDO Metadata Service root" in report["metadata"]["error"]
    run = cli("serve", env=env, cwd=tmp_path)
    assert run.returncode == 3
    assert f"configuration error: the FIDO metadata BLOB {blob_file} (PASSKEYD_MDS_BLOB)" in (
        run.stderr
    )
    assert not (tmp_path / "p.db").exists()  # said before anything was made


def test_a_root_without_a_blob_is_a_configuration_error(tmp_path):
    run = cli("check-config", env={"PASSKEYD_MDS_ROOT": "/nowhere.pem"}, cwd=tmp_path)
    assert run.returncode == 3
    assert "PASSKEYD_MDS_ROOT names the root of PASSKEYD_MDS_BLOB's chain" in run.stderr


def test_a_missing_root_file_is_named_as_the_root_setting(blob_setup, tmp_path, monkeypatch):
    p, vendor, blob_file, root_file = blob_setup
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BlobError) as refused:
        read_blob(Path("blob.jwt"), Path("elsewhere.pem"))
    assert str(refused.value) == (
        "PASSKEYD_MDS_ROOT: cannot read the root certificate file"
        f" {tmp_path / 'elsewhere.pem'}: No such file or directory"
    )
    assert read_blob(Path("blob.jwt"), Path("mds-root.pem"))["no"] == 300  # relative: to cwd


def test_metadata_install_puts_only_a_newer_verified_blob_in_place(blob_setup, tmp_path):
    """`passkeyd metadata install FILE`: what a download job runs. The BLOB at
    PASSKEYD_MDS_BLOB holds the highest `no` installed, so a replayed older BLOB is refused
    (MDS3 §3.2 step 6) across restarts too."""
    p, vendor, blob_file, root_file = blob_setup
    env = {"PASSKEYD_MDS_BLOB": str(blob_file), "PASSKEYD_MDS_ROOT": str(root_file)}
    installed = blob_file.read_bytes()  # no. 300

    def install(no: int, signer: Pki = p) -> subprocess.CompletedProcess[str]:
        download = tmp_path / f"download-{no}.jwt"
        download.write_bytes(sign(signer, payload(no, [entry(MODEL, f"v{no}", [vendor.der])])))
        return cli("metadata", "install", str(download), env=env, cwd=tmp_path)

    run = install(301)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {
        "installed": str(blob_file),
        "no": 301,
        "next_update": "2099-01-01",
        "entries": 1,
    }
    assert read_blob(blob_file, root_file)["no"] == 301
    installed = blob_file.read_bytes()
    # The same no. again (most days' download): nothing to do, and no failure for cron.
    run = install(301)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"unchanged": str(blob_file), "no": 301}
    assert blob_file.read_bytes() == installed
    for no, signer, why in [
        (299, p, f"the downloaded BLOB is no. 299, older than no. 301 at {blob_file}"),
        (302, signing_pki(), "does not lead to PASSKEYD_MDS_ROOT's root"),
    ]:
        run = install(no, signer)
        assert run.returncode == 3, run.stdout
        assert "passkeyd: not installed: " in run.stderr and why in run.stderr
        assert blob_file.read_bytes() == installed  # left as it was
    assert not list(tmp_path.glob("*.tmp"))  # no staging file left

    show = cli("metadata", "show", env=env, cwd=tmp_path)
    assert json.loads(show.stdout)["no"] == 301

    blob_file.write_bytes(b"a broken earlier download")  # replaced by one that verifies
    assert install(5000).returncode == 0
    blob_file.unlink()  # the first install
    assert install(5001).returncode == 0 and read_blob(blob_file, root_file)["no"] == 5001


def _with_crl_url(cert: x509.Certificate, issuer_key: Any, url: str) -> x509.Certificate:
    """`cert` issued again (same subject, key and serial) with a CRL distribution point."""
    point = x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .add_extension(x509.CRLDistributionPoints([point]), critical=False)
    )
    for extension in cert.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    return builder.sign(issuer_key, hashes.SHA256())


def test_metadata_install_with_crls_and_where_to_get_them(blob_setup, tmp_path):
    """`metadata crl-urls FILE` lists where the chain's CRLs are published; `metadata install
    FILE --crl F...` installs the BLOB only when none of its certificates is revoked."""
    p, vendor, blob_file, root_file = blob_setup
    env = {"PASSKEYD_MDS_BLOB": str(blob_file), "PASSKEYD_MDS_ROOT": str(root_file)}
    middle = pki.Issued(
        _with_crl_url(p.intermediate.certificate, p.root.key, "http://crl.test/root.crl"),
        p.intermediate.key,
    )
    leaf = _with_crl_url(p.leaf_cert, p.intermediate.key, "http://crl.test/middle.crl")
    p = dataclasses.replace(p, intermediate=middle, leaf_cert=leaf)
    download = tmp_path / "download.jwt"
    download.write_bytes(sign(p, payload(301, [entry(MODEL, "v301", [vendor.der])])))
    run = cli("metadata", "crl-urls", str(download), env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["http://crl.test/middle.crl", "http://crl.test/root.crl"]

    def saved(name: str, revocations: x509.CertificateRevocationList) -> str:
        path = tmp_path / name
        path.write_bytes(revocations.public_bytes(serialization.Encoding.DER))
        return str(path)

    of_root = saved("root.crl", crl(p.root))
    revoked = saved("middle.crl", crl(middle, leaf))
    run = cli("metadata", "install", str(download), "--crl", revoked, "--crl", of_root,
              env=env, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 3 and "not installed" in run.stderr and "is revoked" in run.stderr
    assert read_blob(blob_file, root_file)["no"] == 300  # left as it was
    run = cli("metadata", "install", str(download), "--crl", of_root, env=env, cwd=tmp_path)
    assert run.returncode == 3
    assert "(download it from http://crl.test/middle.crl)" in run.stderr, run.stderr
    current = saved("middle-now.crl", crl(middle))
    crls = tmp_path / "crls"  # (a directory of them: what a download job fills)
    crls.mkdir()
    os.rename(current, crls / "middle.crl")
    os.rename(of_root, crls / "root.crl")
    run = cli("metadata", "install", str(download), "--crl", str(crls), env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert read_blob(blob_file, root_file)["no"] == 301
    run = cli("metadata", "show", "--crl", str(crls), env=env, cwd=tmp_path)
    assert run.returncode == 2 and "--crl is for metadata install" in run.stderr


def test_metadata_install_needs_the_setting_and_a_file(tmp_path):
    run = cli("metadata", "install", "x.jwt", env={}, cwd=tmp_path)
    assert run.returncode == 3 and "PASSKEYD_MDS_BLOB is not set" in run.stderr
    run = cli("metadata", "install", env={"PASSKEYD_MDS_BLOB": "m.jwt"}, cwd=tmp_path)
    assert run.returncode == 2 and "needs the downloaded BLOB's file" in run.stderr


def test_metadata_install_keeps_the_files_mode_follows_a_link_and_cleans_up(blob_setup, tmp_path):
    p, vendor, blob_file, root_file = blob_setup
    real = tmp_path / "real"
    real.mkdir()
    target = real / "mds.jwt"
    blob_file.rename(target)
    target.chmod(0o640)
    link = tmp_path / "mds.jwt"
    link.symlink_to(target)
    env = {"PASSKEYD_MDS_BLOB": str(link), "PASSKEYD_MDS_ROOT": str(root_file)}
    download = tmp_path / "download.jwt"
    download.write_bytes(sign(p, payload(301)))
    download.chmod(0o600)
    run = cli("metadata", "install", str(download), env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["installed"] == str(target)
    assert link.is_symlink() and read_blob(target, root_file)["no"] == 301
    assert target.stat().st_mode & 0o777 == 0o640  # the replaced file's, not the download's

    fresh = tmp_path / "fresh" / "mds.jwt"  # nothing there yet: readable by the service
    fresh.parent.mkdir()
    env["PASSKEYD_MDS_BLOB"] = str(fresh)
    assert cli("metadata", "install", str(download), env=env, cwd=tmp_path).returncode == 0
    assert fresh.stat().st_mode & 0o777 == 0o644

    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "mds.jwt").mkdir()  # a directory where the file goes: the rename fails
    env["PASSKEYD_MDS_BLOB"] = str(blocked / "mds.jwt")
    run = cli("metadata", "install", str(download), env=env, cwd=tmp_path)
    assert run.returncode == 3 and f"cannot write in {blocked}" in run.stderr
    assert not list(blocked.glob("*.tmp"))  # the staging file is gone


def test_a_read_that_failed_is_tried_again_without_the_file_changing(
    blob_setup, monkeypatch, caplog
):
    """A BLOB refused for what may pass later (a permission fixed by chmod, a certificate
    not yet valid by this clock) is read again at the next look."""
    p, vendor, blob_file, root_file = blob_setup
    monkeypatch.setattr(metadata, "BLOB_CHECK_SECONDS", 0.0)
    meta = OfflineMetadata(blob_path=blob_file, root_path=root_file)
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key"
    write_blob(blob_file, p, 301, [entry(MODEL, "Blob Key v2", [vendor.der])])
    real = metadata.read_blob

    def refused_once(*args: Any, **kwargs: Any) -> dict[str, Any]:
        monkeypatch.setattr(metadata, "read_blob", real)
        raise BlobError("cannot read it: Permission denied")

    monkeypatch.setattr(metadata, "read_blob", refused_once)
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key"
    assert "Permission denied; the metadata in use is kept" in caplog.text
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key v2"  # same file

    write_blob(blob_file, p, 301, [entry(MODEL, "Same no.", [vendor.der])])
    assert meta.trust_store().by_aaguid(MODEL).description == "Blob Key v2"  # not newer


def test_a_blob_as_new_as_the_packaged_metadata_is_taken(blob_setup):
    p, vendor, blob_file, root_file = blob_setup
    write_blob(blob_file, p, 291, [])  # the packaged metadata's own no.
    assert read_blob(blob_file, root_file)["no"] == 291


def test_a_blob_without_x5c_needs_a_root_valid_now():
    p = signing_pki()
    blob = sign(None, payload(7), key=p.root.key)
    before = pki.START - datetime.timedelta(days=1)
    with pytest.raises(BlobError, match="no root checked against signed it"):
        verify_blob(blob, [p.root.certificate], before)


def test_metadata_show_says_when_the_packaged_metadata_cannot_be_read(monkeypatch):
    from passkeyd import cli as passkeyd_cli
    from passkeyd.settings import Settings

    def missing() -> Path:
        raise FileNotFoundError("the fido-mds package is not installed")

    monkeypatch.setattr(metadata, "mds_payload_path", missing)
    report = passkeyd_cli._metadata_report(Settings())
    assert report == {
        "source": "fido-mds package",
        "error": "the fido-mds package is not installed",
    }


def test_a_blob_past_its_next_update_is_said_once_a_day_while_in_use(
    blob_setup, monkeypatch, caplog
):
    """`serve` warns of it at start only; the download job may stop months later."""
    p, vendor, blob_file, root_file = blob_setup
    monkeypatch.setattr(metadata, "BLOB_CHECK_SECONDS", 0.0)
    blob_file.write_bytes(sign(p, {**payload(300), "nextUpdate": "2020-01-01"}))
    meta = OfflineMetadata(blob_path=blob_file, root_path=root_file)
    meta.trust_store()  # loaded
    caplog.set_level(logging.WARNING, logger="passkeyd.metadata")
    for _ in range(3):
        meta.trust_store()  # three looks at the file
    said = [r for r in caplog.records if "was due for replacement on 2020-01-01" in r.message]
    assert len(said) == 1, caplog.text
    assert "is the job that runs `passkeyd metadata install` still running?" in said[0].message
    meta._warned_on = datetime.date(2020, 1, 2)  # the next day
    meta.trust_store()
    assert len([r for r in caplog.records if "2020-01-01" in r.message]) == 2

    write_blob(blob_file, p, 301, [])  # a current one installed: nothing more is said
    meta._warned_on = None
    meta.trust_store()
    meta.trust_store()
    assert len([r for r in caplog.records if "2020-01-01" in r.message]) == 2


def test_metadata_install_writes_through_no_link_planted_beside_the_blob(blob_setup, tmp_path):
    """The BLOB's directory is often writable by the service's user. Links planted at the
    staging file's name (it was `.<name>.<pid>.tmp`, opened without O_EXCL) or at the lock's
    made an install run as root write into, and chown, any file (found by the security
    review). Now the staging file is new, of a random name, and the lock no link."""
    p, vendor, blob_file, root_file = blob_setup
    victim = tmp_path / "victim"
    victim.write_bytes(b"root:x:0:0\n")
    for pid in range(os.getpid(), os.getpid() + 400):  # the installer's pid, soon
        (blob_file.parent / f".{blob_file.name}.{pid}.tmp").symlink_to(victim)
    env = {"PASSKEYD_MDS_BLOB": str(blob_file), "PASSKEYD_MDS_ROOT": str(root_file)}
    download = tmp_path / "download.jwt"
    download.write_bytes(sign(p, payload(301)))
    run = cli("metadata", "install", str(download), env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert victim.read_bytes() == b"root:x:0:0\n" and not blob_file.is_symlink()
    assert read_blob(blob_file, root_file)["no"] == 301

    lock = blob_file.parent / f".{blob_file.name}.lock"
    lock.unlink()
    lock.symlink_to(tmp_path / "made-through-the-lock")
    download.write_bytes(sign(p, payload(302)))
    run = cli("metadata", "install", str(download), env=env, cwd=tmp_path)
    assert run.returncode == 3 and "cannot write in" in run.stderr
    assert not (tmp_path / "made-through-the-lock").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="a link owned by another user is made as root")
def test_metadata_install_follows_no_link_another_user_owns(blob_setup, tmp_path):
    """A link at PASSKEYD_MDS_BLOB, planted by the service's user, to a file it cannot
    write: an install run as root wrote the BLOB over that file (found by the security
    review). A link owned by root or the installer is followed (see the test above)."""
    p, vendor, blob_file, root_file = blob_setup
    victim = tmp_path / "shadow"
    victim.write_bytes(b"root:*:19000::::::\n")
    link = tmp_path / "planted.jwt"
    link.symlink_to(victim)
    os.lchown(link, 1234, 1234)
    env = {"PASSKEYD_MDS_BLOB": str(link), "PASSKEYD_MDS_ROOT": str(root_file)}
    download = tmp_path / "download.jwt"
    download.write_bytes(sign(p, payload(301)))
    run = cli("metadata", "install", str(download), env=env, cwd=tmp_path)
    assert run.returncode == 3
    assert f"{link} is a symbolic link owned by uid 1234" in run.stderr
    assert victim.read_bytes() == b"root:*:19000::::::\n"
