"""Certificates for attestation tests: a CA, and packed attestation leaves it signs (WebAuthn
L3 §8.2.1 certificate requirements), so a test can build a trusted or an attacker's chain."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

AAGUID_EXTENSION = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
START = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
END = datetime.datetime(2060, 1, 1, tzinfo=datetime.UTC)


@dataclass
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


def _named(name: str, issuer: Issued | None, key: Any) -> x509.CertificateBuilder:
    """A certificate of `name` for `key`, issued by `issuer` (else self-issued), valid from
    START to END."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(END)
    )


def ca(name: str, issuer: Issued | None = None, *, key_cert_sign: bool = True) -> Issued:
    """A CA: self-signed, or signed by `issuer` (an intermediate); without `key_cert_sign`,
    one whose key usage does not let it sign certificates (RFC 5280 §4.2.1.3)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _named(name, issuer, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def attestation_leaf(
    issuer: Issued,
    aaguid: bytes,
    *,
    unit: str | None = "Authenticator Attestation",
    is_ca: bool = False,
    extras: list[x509.UnrecognizedExtension] | None = None,
    aaguid_critical: bool = False,
    curve: ec.EllipticCurve | None = None,
    key: Any = None,
) -> Issued:
    """A packed attestation certificate for `aaguid`, signed by `issuer`; with another `unit`
    (OU; None: none, as a TLS certificate), `is_ca` or `aaguid_critical`, one that breaks
    §8.2.1; with `extras`, more (non-critical) extensions (one with Basic Constraints' OID
    stands for it). Its key is on `curve` (P-256 by default), or is `key` (any private key)."""
    key = key or ec.generate_private_key(curve or ec.SECP256R1())
    names = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Vendor"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Test Authenticator"),
    ]
    if unit is not None:
        names.insert(2, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    subject = x509.Name(names)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(END)
        .add_extension(
            x509.UnrecognizedExtension(AAGUID_EXTENSION, b"\x04\x10" + aaguid),
            critical=aaguid_critical,
        )
    )
    extras = extras or []
    if not any(e.oid == ExtensionOID.BASIC_CONSTRAINTS for e in extras):
        constraints = x509.BasicConstraints(ca=is_ca, path_length=None)
        builder = builder.add_extension(constraints, critical=True)
    for extension in extras:
        builder = builder.add_extension(extension, critical=False)
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key)


def reshaped(
    issued: Issued,
    *,
    version1: bool = False,
    extensions: bool = True,
    not_before: str | None = None,
    not_after: str | None = None,
    signer: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """A self-signed CA's certificate rewritten in the shapes real FIDO Metadata Service roots
    have and cryptography's CertificateBuilder cannot write, and signed again by its own key:
    X.509 v1 (`version1`; no extensions), v3 without extensions, or validity dates written as
    GeneralizedTime (`not_before`, `not_after`: "YYYYMMDDHHMMSSZ", even before 2050). A
    certificate another issued is signed again by that one's key (`signer`)."""
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.type import univ, useful
    from pyasn1_modules import rfc5280

    certificate, _ = decoder.decode(issued.der, asn1Spec=rfc5280.Certificate())
    old = certificate["tbsCertificate"]
    tbs = rfc5280.TBSCertificate()
    tbs["version"] = 0 if version1 else 2
    for name in ("serialNumber", "signature", "issuer", "validity", "subject"):
        tbs[name] = old[name]
    tbs["subjectPublicKeyInfo"] = old["subjectPublicKeyInfo"]
    if extensions and not version1:
        tbs["extensions"] = old["extensions"]
    for field, value in (("notBefore", not_before), ("notAfter", not_after)):
        if value is not None:
            time = rfc5280.Time()
            time["generalTime"] = useful.GeneralizedTime(value)
            tbs["validity"][field] = time
    signed = encoder.encode(tbs)
    certificate["tbsCertificate"] = tbs
    signature = (signer or issued.key).sign(signed, ec.ECDSA(hashes.SHA256()))
    certificate["signature"] = univ.BitString.fromOctetString(signature)
    return encoder.encode(certificate)


def rsa_ca(
    name: str,
    issuer: Issued | None = None,
    *,
    is_ca: bool = True,
    bits: int = 2048,
    critical: Sequence[x509.ExtensionType] = (),
) -> Issued:
    """A CA with an RSA key of `bits` (PKCS#1 v1.5, SHA-256 signatures): self-signed, or
    signed by `issuer`; without `is_ca`, a certificate without Basic Constraints; with
    `critical`, more extensions, marked critical."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    builder = _named(name, issuer, key)
    if is_ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    for extension in critical:
        builder = builder.add_extension(extension, critical=True)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def without_null_parameters(
    issued: Issued,
    signer: rsa.RSAPrivateKey,
    *,
    inside: bool = True,
    null: bool = False,
    edit: Callable[[Any], None] | None = None,
) -> bytes:
    """`issued` (signed by `signer` with sha256WithRSAEncryption) written as early Yubico
    attestation certificates are: the algorithm identifiers without their NULL parameters
    (RFC 4055 §5: accepted), and signed again. Without `inside`, only the outer identifier
    (then unlike the signed one, which RFC 5280 §4.1.1.2 forbids). `edit` rewrites the
    pyasn1 TBSCertificate first (a v1 leaf, a negative serial: what CertificateBuilder
    cannot write); with `null`, the identifiers keep their NULL (the same edit, for
    comparison)."""
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.type import univ
    from pyasn1_modules import rfc5280

    certificate, _ = decoder.decode(issued.der, asn1Spec=rfc5280.Certificate())
    bare = rfc5280.AlgorithmIdentifier()
    bare["algorithm"] = certificate["signatureAlgorithm"]["algorithm"]
    if null:
        bare = certificate["signatureAlgorithm"]
    tbs = certificate["tbsCertificate"]
    if edit is not None:
        edit(tbs)
    if inside:
        tbs["signature"] = bare
    signed = encoder.encode(tbs)
    certificate["signatureAlgorithm"] = bare
    signature = signer.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    certificate["signature"] = univ.BitString.fromOctetString(signature)
    return encoder.encode(certificate)
