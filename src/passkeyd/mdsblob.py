"""A FIDO Metadata Service BLOB (MDS3 §3.1.7), as downloaded from https://mds3.fidoalliance.org/:
a JWS in compact form whose header carries the signing certificate chain (`x5c`), and whose
payload is the metadata (`no`, `nextUpdate`, `entries`).

`verify_blob` takes it as MDS3 §3.2 says a relying party does: the chain must lead to the FIDO
Alliance's roots (GlobalSign Root R46 and Root CA - R3, shipped in data/, or a root the
operator names), valid at the time of verification, and the signature must verify with the
leaf's key. Nothing is fetched. MDS3 §3.2 step 4 asks for the chain's CRLs: given them
(downloaded beside the BLOB, `crls`), each certificate of the chain below its root must be
covered by a current CRL of its issuer that does not list it; not given them, a revoked
signing certificate is trusted until it expires.
"""

from __future__ import annotations

import binascii
import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import verification

from passkeyd.webauthn.encoding import b64url_decode
from passkeyd.webauthn.trust import chain_to

# The roots the production BLOB's chain leads to: GlobalSign Root R46 since 2026-08-21, and
# GlobalSign Root CA - R3 before (each file entry gives its SHA-256 fingerprint).
FIDO_MDS_ROOT = Path(__file__).resolve().parent / "data" / "fido-mds-root.pem"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


class BlobError(ValueError):
    """A BLOB that cannot be read, or must not be trusted: the message says why."""


def load_roots(path: Path) -> list[x509.Certificate]:
    """The certificates of a PEM file (one or more) or of one DER certificate."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BlobError(f"cannot read the root certificate file {path}: {exc.strerror}") from exc
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise BlobError(f"{path} holds no certificate in PEM or DER") from exc


# Under the FIDO roots, the BLOB's signing certificate must be for a host of FIDO's domain:
# GlobalSign's roots vouch for many thousands of TLS certificates, and any of their holders
# could otherwise sign a BLOB that lists their own roots for any authenticator.
FIDO_DOMAIN = "fidoalliance.org"


def verify_blob(
    blob: bytes,
    roots: Sequence[x509.Certificate],
    at: datetime.datetime,
    *,
    signer_domain: str | None = None,
    roots_named: str = "the FIDO Metadata Service root",
    crls: Sequence[x509.CertificateRevocationList] | None = None,
) -> dict[str, Any]:
    """The payload of a BLOB whose signature and certificate chain verify, leading to one of
    `roots` at `at` (and, with `signer_domain`, whose signing certificate names a host of
    that domain; with `crls`, none of whose certificates is revoked: `check_revocation`);
    else BlobError, whatever is wrong with it (`roots_named` is what an error calls the
    roots)."""
    try:
        return _verify(blob, roots, at, signer_domain, roots_named, crls)
    except BlobError:
        raise
    except Exception as exc:  # what a library raised on content it could not take
        raise BlobError(f"it cannot be read ({type(exc).__name__}: {exc})") from exc


def _verify(
    blob: bytes,
    roots: Sequence[x509.Certificate],
    at: datetime.datetime,
    signer_domain: str | None,
    roots_named: str,
    crls: Sequence[x509.CertificateRevocationList] | None,
) -> dict[str, Any]:
    parts = blob.strip().split(b".")
    if len(parts) != 3:
        raise BlobError("it is not a JWS in compact form (three base64url parts joined by dots)")
    header = _json_part(parts[0], "header")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise BlobError(f"its alg {alg!r} is not one of {', '.join(ALGORITHMS)}")
    if header.get("crit"):  # RFC 7515 §4.1.11: extensions this reader does not know
        raise BlobError(f"its header marks {header['crit']!r} critical, unknown to passkeyd")
    signed = parts[0] + b"." + parts[1]
    if "x5u" in header:  # (MDS3 §3.2 step 5: fetched; an offline service does not)
        raise BlobError("its header names its chain by URL (x5u): passkeyd fetches nothing")
    if "x5c" not in header:  # MDS3 §3.2 step 5: then the trust anchor itself signed it
        _verify_by_a_root(roots, alg, signed, parts[2], at)
    else:
        certificates = _chain(header["x5c"])
        try:
            path = chain_to(certificates[0], certificates[1:], roots, at)
        except verification.VerificationError as exc:
            raise BlobError(
                f"its certificate chain (x5c) does not lead to {roots_named}"
                f" at {at:%Y-%m-%d %H:%M} UTC: {exc}"
            ) from exc
        if signer_domain is not None:
            _check_signer(certificates[0], signer_domain)
        _verify_signature(certificates[0], alg, signed, parts[2])
        if crls is not None:
            check_revocation(path, crls, at)
    payload = _json_part(parts[1], "payload")
    if not isinstance(payload.get("no"), int) or isinstance(payload.get("no"), bool):
        raise BlobError("its payload has no serial number (no)")
    next_update = payload.get("nextUpdate")
    if not isinstance(next_update, str) or not _iso_date(next_update):
        raise BlobError("its payload has no nextUpdate date")
    if not isinstance(payload.get("entries"), list):
        raise BlobError("its payload has no entries")
    return payload


def load_crls(path: Path) -> list[x509.CertificateRevocationList]:
    """The CRLs of a file (PEM, one or more, or one DER CRL, as CAs publish them), or of
    every file of a directory."""
    if path.is_dir():
        return [crl for file in sorted(path.iterdir()) if file.is_file() for crl in load_crls(file)]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BlobError(f"cannot read the CRL file {path}: {exc.strerror}") from exc
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            return [
                x509.load_pem_x509_crl(b"-----BEGIN X509 CRL-----" + part)
                for part in data.split(b"-----BEGIN X509 CRL-----")[1:]
            ]
        return [x509.load_der_x509_crl(data)]
    except ValueError as exc:
        raise BlobError(f"{path} holds no CRL in PEM or DER") from exc


def crl_urls(certificate: x509.Certificate) -> list[str]:
    """Where the certificate's issuer publishes the CRL that would list it (its CRL
    distribution points' URLs)."""
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except x509.ExtensionNotFound:
        return []
    return [
        name.value
        for point in points.value
        for name in point.full_name or ()
        if isinstance(name, x509.UniformResourceIdentifier)
    ]


def chain_crl_urls(
    blob: bytes, roots: Sequence[x509.Certificate], at: datetime.datetime
) -> list[str]:
    """The URLs of the CRLs that `check_revocation` needs for a BLOB's validated chain."""
    header = _json_part(blob.strip().split(b".")[0], "header")
    if "x5c" not in header:
        return []
    certificates = _chain(header["x5c"])
    try:
        path = chain_to(certificates[0], certificates[1:], roots, at)
    except verification.VerificationError as exc:
        raise BlobError(f"its certificate chain (x5c) does not lead to the root: {exc}") from exc
    return list(dict.fromkeys(url for c in path[:-1] for url in crl_urls(c)))


def check_revocation(
    path: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime.datetime,
) -> None:
    """MDS3 §3.2 step 4: each certificate of the validated `path` below its root (the trust
    anchor, which no CRL revokes) must be covered by a CRL that its issuer signed, current at
    `at` (issued before it, next update after it), and no such CRL may list it; else
    BlobError. A CRL signed by another key than the issuer's, or by an issuer whose key usage
    does not allow it, covers nothing."""
    for certificate, issuer in zip(path, path[1:], strict=False):
        current = [crl for crl in crls if _issued_current(crl, issuer, at)]
        name = certificate.subject.rfc4514_string()
        if not current:
            where = ", ".join(crl_urls(certificate)) or "its issuer's CRL distribution point"
            raise BlobError(
                f"no current CRL of {issuer.subject.rfc4514_string()} was given for its"
                f" certificate {name} (download it from {where})"
            )
        for crl in current:
            revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
            if revoked is not None:
                raise BlobError(
                    f"its certificate {name} (serial {certificate.serial_number:x}) is revoked"
                    f" since {revoked.revocation_date_utc:%Y-%m-%d}"
                    f" (CRL of {issuer.subject.rfc4514_string()})"
                )


def _issued_current(
    crl: x509.CertificateRevocationList, issuer: x509.Certificate, at: datetime.datetime
) -> bool:
    if crl.issuer != issuer.subject:
        return False
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.crl_sign:
            return False
    except x509.ExtensionNotFound:
        pass
    try:
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            return False
    except Exception:  # a key type or algorithm the library cannot check it with
        return False
    next_update = crl.next_update_utc
    return crl.last_update_utc <= at and next_update is not None and at < next_update


def _json_part(part: bytes, name: str) -> dict[str, Any]:
    try:
        value = orjson.loads(b64url_decode(part.decode("ascii")))
    except (UnicodeDecodeError, ValueError) as exc:  # (orjson.JSONDecodeError is a ValueError)
        raise BlobError(f"its {name} is not base64url-encoded JSON") from exc
    if not isinstance(value, dict):
        raise BlobError(f"its {name} is not a JSON object")
    return value


def _chain(x5c: Any) -> list[x509.Certificate]:
    if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
        raise BlobError("its header has no certificate chain (x5c)")
    certificates = []
    for i, text in enumerate(x5c):
        try:  # RFC 7515 §4.1.6: base64 (not base64url) DER
            certificate = x509.load_der_x509_certificate(binascii.a2b_base64(text))
            # (cryptography reads these lazily: a malformed one raises when first asked)
            certificate.version, certificate.subject, certificate.extensions  # noqa: B018
        except Exception as exc:
            raise BlobError(f"certificate {i} of its x5c is not a base64 DER certificate") from exc
        certificates.append(certificate)
    return certificates


def _check_signer(leaf: x509.Certificate, domain: str) -> None:
    """The leaf's subjectAltName names a host of `domain` (as a TLS certificate must, CN not
    counted)."""
    try:
        names = leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    for name in names:
        name = name.lower().rstrip(".")
        if name == domain or name.endswith("." + domain):
            return
    raise BlobError(
        f"its signing certificate is for {', '.join(names) or 'no host (no subjectAltName)'},"
        f" not a host of {domain}: under the FIDO roots only FIDO signs the BLOB"
    )


def _verify_by_a_root(
    roots: Sequence[x509.Certificate],
    alg: str,
    signed: bytes,
    encoded: bytes,
    at: datetime.datetime,
) -> None:
    for root in roots:
        if not root.not_valid_before_utc <= at <= root.not_valid_after_utc:
            continue
        try:
            _verify_signature(root, alg, signed, encoded)
            return
        except BlobError:
            continue
    raise BlobError("it has no certificate chain (x5c), and no root checked against signed it")


def _verify_signature(leaf: x509.Certificate, alg: str, signed: bytes, encoded: bytes) -> None:
    try:
        signature = b64url_decode(encoded.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BlobError("its signature is not base64url") from exc
    digest = _HASHES[alg[2:]]()
    key = leaf.public_key()
    try:
        if alg.startswith("ES"):
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
                key.curve, _CURVES[alg]
            ):
                raise BlobError(f"its alg is {alg}, but the signing certificate's key is not")
            size = (key.curve.key_size + 7) // 8
            if len(signature) == 2 * size:  # RFC 7518 §3.4: r and s, each `size` bytes
                signature = encode_dss_signature(
                    int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
                )  # (a DER signature, as some tools write, is taken as it is)
            key.verify(signature, signed, ec.ECDSA(digest))
            return
        if not isinstance(key, rsa.RSAPublicKey):
            raise BlobError(f"its alg is {alg}, but the signing certificate's key is not RSA")
        if alg.startswith("RS"):
            key.verify(signature, signed, padding.PKCS1v15(), digest)
        else:
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            key.verify(signature, signed, pss, digest)
    except InvalidSignature as exc:
        raise BlobError("its signature does not verify with its signing certificate") from exc


def _iso_date(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10
