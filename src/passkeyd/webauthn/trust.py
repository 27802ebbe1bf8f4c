"""Attestation trust (WebAuthn L3 §7.1.24): does the attestation chain to a root the FIDO
Metadata Service lists for this authenticator, and is the authenticator in good standing?

Pure: the metadata arrives as a `TrustStore` built once by the caller. Two pitfalls of the
libraries around us are avoided on purpose:

- py_webauthn skips chain validation for a format it has no roots for, so it cannot be the
  trust decision;
- fido-mds puts the attestation's own intermediates into the trust store, so a chain that
  ends in an attacker's self-signed root verifies.

Here the anchors are only the metadata's `attestationRootCertificates` for the entry the
AAGUID (or, for U2F, the leaf's key identifier) names; the certificates in the attestation
are untrusted intermediates.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import logging
import threading
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import verification

from .errors import Step, VerificationFailed

log = logging.getLogger("passkeyd.webauthn")
_PARSING = threading.Lock()

ZERO_AAGUID = "00000000-0000-0000-0000-000000000000"

# Metadata statuses that mean "do not trust this authenticator" (FIDO MDS3 §3.1.4).
REFUSED_STATUSES = frozenset(
    {
        "REVOKED",
        "ATTESTATION_KEY_COMPROMISE",
        "USER_VERIFICATION_BYPASS",
        "USER_KEY_REMOTE_COMPROMISE",
        "USER_KEY_PHYSICAL_COMPROMISE",
    }
)


@dataclass(frozen=True, slots=True)
class StatusReport:
    status: str
    effective_date: str | None = None  # ISO date; a report that is not yet effective is ignored
    certificate: bytes | None = None  # for ATTESTATION_KEY_COMPROMISE: the compromised cert


@dataclass(frozen=True, slots=True)
class MetadataEntry:
    """One authenticator model of the FIDO Metadata Service."""

    description: str
    aaguid: str | None = None
    key_identifiers: tuple[str, ...] = ()  # hex SHA-1 key ids (U2F authenticators)
    root_certificates: tuple[bytes, ...] = ()  # DER
    status_reports: tuple[StatusReport, ...] = ()
    # From the operator's own statements (PASSKEYD_MDS_STATEMENTS), not the signed metadata.
    from_operator: bool = False
    _roots: list[x509.Certificate] = field(default_factory=list, compare=False, repr=False)
    _parsed: list[bool] = field(default_factory=list, compare=False, repr=False)

    def roots(self) -> list[x509.Certificate]:
        """The root certificates this library can read, parsed on first use (most entries
        are never asked for). A few MDS roots it cannot parse (six models in the metadata of
        2026-10: RSA DS100, Samsung Pass, ...) are left out, said once in the log: they were
        a 500 for every registration naming those models."""
        if not self._parsed and self.root_certificates:
            with _PARSING:  # (PostgreSQL verifies in several threads)
                if not self._parsed:
                    self._parse_roots()
        return self._roots

    def _parse_roots(self) -> None:
        """Once (not again at each registration); marked done only when done, so that a
        second thread asking meanwhile waits rather than sees no roots."""
        with warnings.catch_warnings():
            # A few MDS roots carry a non-positive serial number; they are still the roots.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            for der in self.root_certificates:
                try:
                    self._roots.append(x509.load_der_x509_certificate(der))
                except ValueError as exc:
                    log.warning(
                        "a root certificate of %s in the metadata cannot be read (%s): left out",
                        self.description,
                        exc,
                    )
        self._parsed.append(True)

    def refused_status(self, chain: Sequence[bytes], today: str) -> str | None:
        """The first status report, effective by `today`, that refuses this chain."""
        return self.refused_status_of({fingerprint(der) for der in chain}, today)

    def refused_status_of(self, certificates: Collection[str], today: str) -> str | None:
        """`refused_status` for a chain known by its certificates' `fingerprint`s."""
        for report in self.refusing_reports(today):
            if report.certificate is not None and fingerprint(report.certificate) not in (
                certificates
            ):
                continue  # a compromised attestation key that is not this one
            return report.status
        return None

    def refusing_reports(self, today: str) -> Iterator[StatusReport]:
        """The reports of a refused status in effect by `today`, whatever they name."""
        for report in self.status_reports:
            if report.status in REFUSED_STATUSES and not (
                report.effective_date and report.effective_date > today
            ):
                yield report


class TrustStore:
    """Metadata entries indexed by AAGUID and by attestation key identifier."""

    def __init__(self, entries: Iterable[MetadataEntry], *, unavailable: str | None = None) -> None:
        """`unavailable`: why there is no metadata to trust (every trusted registration is
        refused saying so)."""
        self.unavailable = unavailable
        self._by_aaguid: dict[str, MetadataEntry] = {}
        self._by_key_id: dict[str, MetadataEntry] = {}
        for entry in entries:
            if entry.aaguid:
                self._by_aaguid[entry.aaguid.lower()] = entry
            for key_id in entry.key_identifiers:
                self._by_key_id[key_id.lower()] = entry

    def __len__(self) -> int:
        return len(self._by_aaguid) + len(self._by_key_id)

    def by_aaguid(self, aaguid: str) -> MetadataEntry | None:
        return self._by_aaguid.get(aaguid.lower())

    def by_model(self, model: str) -> MetadataEntry | None:
        """The entry `model_key` names: by AAGUID, or by a U2F key identifier."""
        return self._by_aaguid.get(model) or self._by_key_id.get(model)

    @property
    def aaguids(self) -> Mapping[str, MetadataEntry]:
        return self._by_aaguid

    @property
    def key_identifiers(self) -> Mapping[str, MetadataEntry]:
        return self._by_key_id

    def find(self, aaguid: str, leaf: x509.Certificate | None) -> MetadataEntry | None:
        """The entry for an AAGUID; for U2F (zero AAGUID) the entry for the leaf's key id,
        or else for the model its certificate names (id-fido-gen-ce-aaguid): MDS lists some
        U2F keys only so, under their FIDO2 AAGUID (a Security Key by Yubico with NFC spoken
        to over CTAP1). Either way the chain must still lead to that entry's roots."""
        if aaguid != ZERO_AAGUID:
            return self.by_aaguid(aaguid)
        if leaf is None:
            return None
        entry = self._by_key_id.get(key_identifier(leaf))
        if (entry is None or entry.from_operator) and (named := certified_aaguid(leaf)):
            # The model its certificate names, when the key id is not in the signed metadata
            # (an operator's statement listing it does not hide the signed entry, nor its
            # status reports).
            signed = self.by_aaguid(named)
            if entry is None or (signed is not None and not signed.from_operator):
                entry = signed
        return entry


@functools.lru_cache(maxsize=1024)
def fingerprint(der: bytes) -> str:
    """A certificate as a passkey's trust record keeps it, and as a status report naming it
    is matched: the hex SHA-256 of its SubjectPublicKeyInfo (the key a report of
    ATTESTATION_KEY_COMPROMISE is about). Not of its DER: its issuer's ECDSA signature
    (r, s) also verifies as (r, n - s), so anyone can make a second encoding of the
    certificate, valid under the same CA, that a DER fingerprint would not recognise; and
    a compromised key may have other certificates. (What does not read as a certificate:
    the SHA-256 of its bytes.)"""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            spki = (
                x509.load_der_x509_certificate(der)
                .public_key()
                .public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
    except Exception:  # noqa: BLE001 - not a certificate this library reads
        return hashlib.sha256(der).hexdigest()
    return hashlib.sha256(spki).hexdigest()


def model_key(entry: MetadataEntry, chain: Sequence[bytes], aaguid: str) -> str:
    """What names the entry a trusted attestation was found under, for
    `TrustStore.by_model`: the key `TrustStore.find` used. A non-zero AAGUID; for the zero
    AAGUID, the leaf's key identifier when the entry lists it (whatever AAGUID the entry
    also claims: several entries may claim the zero one), else the AAGUID the leaf names."""
    if aaguid != ZERO_AAGUID:
        return aaguid.lower()
    key_id = key_identifier(x509.load_der_x509_certificate(chain[0]))
    if key_id in {k.lower() for k in entry.key_identifiers} or not entry.aaguid:
        return key_id
    return entry.aaguid.lower()


def key_identifier(certificate: x509.Certificate) -> str:
    """MDS `attestationCertificateKeyIdentifiers`: the hex SHA-1 of the subjectPublicKey bits,
    which is RFC 5280's key identifier method 1."""
    return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest.hex()


def _policy(at: datetime.datetime) -> verification.PolicyBuilder:
    """Path validation for attestation certificates: signatures, validity at `at`, CA
    basic constraints and path length; none of the Web PKI's server/client rules (attestation
    leaves have no SAN or EKU for a host, TPM AIKs have an empty subject)."""
    permissive = verification.ExtensionPolicy.permit_all().may_be_present(
        x509.CertificatePolicies, verification.Criticality.AGNOSTIC, None
    )
    ca = permissive.require_present(
        x509.BasicConstraints, verification.Criticality.AGNOSTIC, None
    ).may_be_present(x509.KeyUsage, verification.Criticality.AGNOSTIC, _may_sign_certificates)
    return (
        verification.PolicyBuilder().time(at).extension_policies(ca_policy=ca, ee_policy=permissive)
    )


def chain_to(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime.datetime,
    *,
    bare_rsa_leaf: bool = False,
) -> list[x509.Certificate]:
    """The validated path from `leaf` to one of `roots` (signatures, validity at `at`, CA
    basic constraints, key usage and path length; `intermediates` untrusted), or
    `verification.VerificationError`. With `bare_rsa_leaf` (attestation trust), a leaf that
    a root issued itself with an RSA signature identifier lacking its NULL parameters is
    checked apart (`_issued_by_a_root_with_bare_rsa`)."""
    try:
        return _path(leaf, intermediates, roots, at)
    except verification.VerificationError:
        if not bare_rsa_leaf or not _signed_with_bare_rsa(leaf):
            raise
        return _issued_by_a_root_with_bare_rsa(leaf, roots, at)


def _path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime.datetime,
) -> list[x509.Certificate]:
    # Each root as it is (a leaf the metadata lists itself is trusted as such) and restated.
    restated = {_as_anchor(root): root for root in roots}
    store = verification.Store([*roots, *(a for a in restated if a not in roots)])
    verifier = _policy(at).store(store).build_client_verifier()
    path = verifier.verify(leaf, list(intermediates)).chain
    return [restated.get(certificate, certificate) for certificate in path]


# The DER of the AlgorithmIdentifiers sha256-, sha384- and sha512WithRSAEncryption written
# without their parameters (a NULL, RFC 4055 §5: "MUST accept ... parameters absent").
_BARE_RSA = frozenset(
    bytes.fromhex("300b06092a864886f70d0101" + last) for last in ("0b", "0c", "0d")
)


def _signed_with_bare_rsa(certificate: x509.Certificate) -> bool:
    """Whether `certificate`'s signature algorithm is RSA PKCS#1 v1.5 with SHA-2 whose
    identifier leaves out its NULL parameters, as written both outside and inside what is
    signed (RFC 5280 §4.1.1.2: the two must be the same)."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    tbs = certificate.tbs_certificate_bytes
    end = der.find(tbs) + len(tbs)
    outer = der[end : end + 13]
    # inside: after the TBS's header, version and serial number (at most 4 + 5 + 23 bytes)
    return outer in _BARE_RSA and outer in tbs[:48]


# What a leaf so signed may mark critical: what the path verifier reads of a leaf.
_KNOWN_CRITICAL = (x509.BasicConstraints, x509.KeyUsage)


def _issued_by_a_root_with_bare_rsa(
    leaf: x509.Certificate, roots: Sequence[x509.Certificate], at: datetime.datetime
) -> list[x509.Certificate]:
    """[leaf, root] for a leaf that one of `roots` issued itself with an RSA signature
    identifier lacking its NULL parameters: early "Security Key by Yubico" attestation
    certificates are (under Yubico's U2F root), and RFC 4055 §5 has them accepted, but
    cryptography's path verifier refuses them. So this one hop is checked here, to what the
    verifier checks of it: the leaf valid at `at` and marking critical nothing it does not
    read; the root valid at `at`, a CA that may sign certificates, without name constraints
    (which this check does not read) or other critical extensions it does not read, with an
    RSA key of at least 2048 bits; and the root's
    key verifying the leaf's signature under its issuer name (cryptography's
    `verify_directly_issued_by`, which reads the identifier). Only a root's own leaf: a
    path through an intermediate is not taken."""
    if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
        raise verification.VerificationError("the leaf is not valid at the time")
    # (The verifier's profile of any certificate: v3, a positive serial of at most 20
    # octets and its sign's, RFC 5280 §4.1.2.1-2; dates written as §4.1.2.5 has them.)
    if leaf.version is not x509.Version.v3:
        raise verification.VerificationError("the leaf is not an X.509 v3 certificate")
    if not 0 < leaf.serial_number < 1 << 160:
        raise verification.VerificationError("the leaf's serial number is out of range")
    if _dates_before_2050_as_generalized_time(leaf):
        raise verification.VerificationError("the leaf writes a date before 2050 wrongly")
    if _marks_unknown_critical(leaf):
        raise verification.VerificationError("the leaf marks an unknown extension critical")
    for root in roots:
        try:
            if _issued(leaf, root, at):
                return [leaf, root]
        except Exception:  # noqa: BLE001, S112 - a root cryptography cannot read issues nothing
            continue
    raise verification.VerificationError("no root issued the leaf")


def _dates_before_2050_as_generalized_time(certificate: x509.Certificate) -> bool:
    """RFC 5280 §4.1.2.5: a validity date before 2050 is a UTCTime. (Found as its
    GeneralizedTime encoding among the signed bytes.)"""
    tbs = certificate.tbs_certificate_bytes
    return any(
        date.year < 2050 and b"\x18\x0f" + date.strftime("%Y%m%d%H%M%SZ").encode() in tbs
        for date in (certificate.not_valid_before_utc, certificate.not_valid_after_utc)
    )


def _issued(leaf: x509.Certificate, root: x509.Certificate, at: datetime.datetime) -> bool:
    """Whether `root`, valid at `at`, issued `leaf` (see `_issued_by_a_root_with_bare_rsa`)."""
    key = root.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        return False
    if not root.not_valid_before_utc <= at <= root.not_valid_after_utc:
        return False
    anchor = _as_anchor(root)
    if anchor is root:  # (not restated: a root the verifier takes only as it is; not here)
        return False
    if not _may_issue(anchor) or _names_constrained(anchor) or _marks_unknown_critical(anchor):
        return False
    try:
        leaf.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _may_issue(certificate: x509.Certificate) -> bool:
    """Basic Constraints say CA, and a key usage, if given, has keyCertSign."""
    try:
        extensions = list(certificate.extensions)
    except ValueError:  # (extensions cryptography cannot read)
        return False
    constraints = next(
        (e.value for e in extensions if isinstance(e.value, x509.BasicConstraints)), None
    )
    usage = next((e.value for e in extensions if isinstance(e.value, x509.KeyUsage)), None)
    return bool(constraints and constraints.ca) and (usage is None or usage.key_cert_sign)


def _names_constrained(certificate: x509.Certificate) -> bool:
    return any(isinstance(e.value, x509.NameConstraints) for e in certificate.extensions)


def _marks_unknown_critical(certificate: x509.Certificate) -> bool:
    """A critical extension other than those the path verifier reads (it refuses the
    others: policy constraints, unknown ones), or extensions that cannot be read."""
    try:
        extensions = list(certificate.extensions)
    except ValueError:
        return True
    return any(e.critical and not isinstance(e.value, _KNOWN_CRITICAL) for e in extensions)


# Signs restated anchors (below). Their signatures are never checked: an anchor is trusted as
# it is, and the key is thrown away with the process.
_RESTATING_KEY = ec.generate_private_key(ec.SECP256R1())


@functools.lru_cache(maxsize=1024)
def _as_anchor(root: x509.Certificate) -> x509.Certificate:
    """`root` as cryptography's verifier takes a trust anchor. RFC 5280 §6.1.1 (d): a trust
    anchor is a name, a key and its constraints; its certificate's own encoding is not
    validated. cryptography's verifier also holds the anchor to the certificate profile, and
    refuses roots the FIDO Metadata Service lists for real authenticators: X.509 v1 roots
    (Ledger, SoloKeys, Token2, OpenSK and others: no Basic Constraints), and roots whose
    dates before 2050 are GeneralizedTime (HyperFIDO, KEY-ID, Feitian's and GoTrust's).
    So every root is restated: the same subject, key, validity and extensions, as a v3
    certificate written to the profile; a self-issued root without Basic Constraints (a v1
    root has none) is a CA. A root issued by another keeps what it says: without Basic
    Constraints it is no CA (the metadata lists some attestation certificates themselves,
    which anchor only their own chain, the leaf). A path through a restated root is reported
    with the original. Should a root not restate, it is left as it is (and refused as
    before)."""
    try:
        with warnings.catch_warnings():  # (a root's non-positive serial, read again here)
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            extensions = root.extensions if root.version is x509.Version.v3 else x509.Extensions([])
        builder = (
            x509.CertificateBuilder()
            .subject_name(root.subject)
            .issuer_name(root.subject)
            .public_key(root.public_key())
            .serial_number(1)
            .not_valid_before(root.not_valid_before_utc)
            .not_valid_after(root.not_valid_after_utc)
        )
        for extension in extensions:
            builder = builder.add_extension(extension.value, critical=extension.critical)
        self_issued = root.issuer.public_bytes() == root.subject.public_bytes()
        if self_issued and not any(isinstance(e.value, x509.BasicConstraints) for e in extensions):
            builder = builder.add_extension(
                x509.BasicConstraints(ca=True, path_length=None), critical=True
            )
        restated = builder.sign(_RESTATING_KEY, hashes.SHA256())
    except Exception:  # noqa: BLE001 - an unusual key or extension: the root as it is
        return root
    if restated.subject.public_bytes() != root.subject.public_bytes():
        return root  # (a name that did not re-encode the same would not match its issuers)
    return restated


def _may_sign_certificates(
    policy: object, certificate: x509.Certificate, key_usage: x509.KeyUsage | None
) -> None:
    """RFC 5280 §4.2.1.3, §6.1.4 (n): a CA whose key usage is given must have keyCertSign
    (permit_all, the base of the policy above, dropped that check)."""
    if key_usage is not None and not key_usage.key_cert_sign:
        raise ValueError("a CA certificate whose key usage leaves out keyCertSign")


_FIDO_AAGUID_OID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")


_ATTESTATION_OU = "Authenticator Attestation"


def check_packed_certificate(leaf: x509.Certificate, *, extensions: bool = True) -> None:
    """§8.2.1: a packed attestation certificate is an X.509 v3 certificate whose subject
    names the vendor (C, O, CN) with the OU "Authenticator Attestation", and which is not a
    CA. (This is what keeps an ordinary TLS certificate, issued under one of the public
    roots the metadata lists for SafetyNet, from passing as a packed attestation.) Without
    `extensions` (they could not be read), the subject only."""

    def refuse(why: str) -> VerificationFailed:
        return VerificationFailed(
            Step.ATTESTATION_STATEMENT, f"the packed attestation certificate {why} (§8.2.1)"
        )

    if leaf.version is not x509.Version.v3:
        raise refuse("is not X.509 version 3")
    subject = leaf.subject
    for oid, name in (
        (x509.NameOID.COUNTRY_NAME, "C"),
        (x509.NameOID.ORGANIZATION_NAME, "O"),
        (x509.NameOID.COMMON_NAME, "CN"),
    ):
        if not subject.get_attributes_for_oid(oid):
            raise refuse(f"has no subject {name}")
    units = [a.value for a in subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)]
    if units != [_ATTESTATION_OU]:
        raise refuse(f'has not the subject OU "{_ATTESTATION_OU}"')
    if not extensions:
        return
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise refuse("has no Basic Constraints") from None
    if constraints.ca:
        raise refuse("is a CA certificate")


def certified_aaguid(leaf: x509.Certificate) -> str | None:
    """The AAGUID an attestation certificate names (id-fido-gen-ce-aaguid), dashed; or None."""
    try:
        extension = leaf.extensions.get_extension_for_oid(_FIDO_AAGUID_OID)
    except x509.ExtensionNotFound:
        return None
    value = getattr(extension.value, "value", b"")
    # The extension value is a DER OCTET STRING holding the 16 AAGUID bytes.
    certified = value[2:] if len(value) == 18 and value[:2] == b"\x04\x10" else value
    h = certified.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def standing(
    trust_store: TrustStore,
    aaguid: str,
    today: str,
    *,
    model: str | None = None,
    certificates: Collection[str] = (),
) -> tuple[MetadataEntry, str] | None:
    """A sign-in's re-check of the passkey's model: (entry, status) once the metadata in use
    reports it REVOKED or compromised (a report effective by `today`), though it was in good
    standing when the passkey registered; None while it is not so reported. FIDO reports
    such models after they ship; without this, a trusted service went on accepting their
    passkeys for as long as they existed.

    A passkey registered under trusted attestation keeps the entry that vouched for it
    (`model`: a U2F key's too) and its chain's certificates (`fingerprint`s), so that a
    report naming one batch's certificate refuses that batch's passkeys only. Of one
    registered otherwise only the AAGUID is known: a report naming a certificate cannot be
    matched to it and refuses nothing, nor is a zero AAGUID (a U2F key) re-checked. A model
    the metadata no longer lists, or metadata that is unavailable, refuses nothing here: the
    check at registration stands."""
    if model is not None:
        entry = trust_store.by_model(model)
    elif aaguid != ZERO_AAGUID:
        entry = trust_store.by_aaguid(aaguid)
    else:
        return None
    if entry is None:
        return None
    status = entry.refused_status_of(certificates, today)
    return None if status is None else (entry, status)


class ModelRefused(VerificationFailed):
    """What a sign-in that `standing` refuses is answered: VerificationFailed
    (AUTHENTICATOR_STATUS) naming the model and its status, kept for the webhook event."""

    def __init__(self, entry: MetadataEntry, status: str) -> None:
        super().__init__(
            Step.AUTHENTICATOR_STATUS,
            f"the FIDO Metadata Service now reports {entry.description} as {status},"
            " and this service trusts only authenticators in good standing",
        )
        self.authenticator = entry.description
        self.status = status


def reported_models(trust_store: TrustStore, today: str) -> list[str]:
    """The AAGUIDs of the models with a refusing status report in effect by `today`, of the
    whole model or of one batch's certificate (whose passkeys `standing` tells apart)."""
    return [
        aaguid
        for aaguid, entry in trust_store.aaguids.items()
        if aaguid != ZERO_AAGUID and any(entry.refusing_reports(today))
    ]


def reported_model_keys(trust_store: TrustStore, today: str) -> list[str]:
    """The `model_key`s (AAGUIDs, U2F key identifiers) of the entries with a refusing status
    report in effect by `today`: the trusted passkeys registered under them are the ones
    `standing` may refuse."""
    return [
        key
        for index in (trust_store.aaguids, trust_store.key_identifiers)
        for key, entry in index.items()
        if any(entry.refusing_reports(today))
    ]


def model_aaguid(fmt: str, aaguid: str, chain: Sequence[bytes], entry: MetadataEntry) -> str:
    """The authenticator model a trusted attestation is for. A fido-u2f registration says the
    zero AAGUID, but its certificate (or its metadata entry) may name the model: the service's
    AAGUID lists apply to that, or a denied model could register over CTAP1."""
    if fmt != "fido-u2f" or aaguid != ZERO_AAGUID or not chain:
        return aaguid
    named = certified_aaguid(x509.load_der_x509_certificate(chain[0]))
    return named or (entry.aaguid.lower() if entry.aaguid else aaguid)


def check_certified_aaguid(
    leaf: x509.Certificate, aaguid: str, step: Step = Step.ATTESTATION_TRUST
) -> None:
    """§8.2.1/§8.3.1: when the attestation certificate names an AAGUID
    (id-fido-gen-ce-aaguid), it must be the one in authenticatorData (otherwise one model
    could borrow another's good standing, or allow-list entry, under a shared vendor root),
    and the extension "MUST NOT be marked as critical"."""
    try:
        critical = leaf.extensions.get_extension_for_oid(_FIDO_AAGUID_OID).critical
    except x509.ExtensionNotFound:
        return
    if critical:
        raise VerificationFailed(
            step, "the attestation certificate's AAGUID extension is marked critical"
        )
    certified = certified_aaguid(leaf)
    if certified is not None and certified != aaguid.lower():
        raise VerificationFailed(
            step,
            "the attestation certificate is for another authenticator model than the AAGUID claims",
        )


def read_leaf(der: bytes) -> tuple[x509.Certificate | None, bool]:
    """An attestation certificate for its format's own checks, and whether its extensions
    could be read. cryptography refuses a certificate's extensions written in BER where DER
    is due (a Basic Constraints with its CA FALSE written out, as Chromium's virtual
    authenticator wrote until 2021) while its version and subject still read: then those
    are checked, and the extensions cannot be. (None: no certificate at all, which the
    library's verification refused already.) A subject that cannot be read cannot meet
    §8.2.1: VerificationFailed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            leaf = x509.load_der_x509_certificate(der)
    except Exception:  # noqa: BLE001 - no certificate (the library refused it already)
        return None, False
    try:
        leaf.version, leaf.subject  # noqa: B018 - read now, or fail now
    except Exception as exc:  # noqa: BLE001 - InvalidVersion, ValueError, ...
        raise VerificationFailed(
            Step.ATTESTATION_STATEMENT, "the attestation certificate's subject cannot be read"
        ) from exc
    try:
        leaf.extensions  # noqa: B018
    except Exception:  # noqa: BLE001 - ValueError, DuplicateExtension, ...
        return leaf, False
    return leaf, True


def load_certificates(chain: Sequence[bytes], step: Step) -> list[x509.Certificate]:
    """The attestation certificates, each read whole: cryptography parses a certificate's
    parts when first read, so they are all read here, and a malformed extension or name is
    refused (VerificationFailed at `step`), not a 500 where it is first used."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            certificates = [x509.load_der_x509_certificate(der) for der in chain]
            for certificate in certificates:
                certificate.version, certificate.subject, certificate.issuer  # noqa: B018
                certificate.extensions  # noqa: B018
            if certificates:
                certificates[0].public_key()
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a malformed certificate
        # (ValueError, UnsupportedAlgorithm, InvalidVersion, DuplicateExtension, ...).
        raise VerificationFailed(step, "an attestation certificate is not valid DER") from exc
    return certificates


def verify_trust(
    *,
    fmt: str,
    aaguid: str,
    chain: Sequence[bytes],
    trust_store: TrustStore,
    verification_time: datetime.datetime,
) -> MetadataEntry:
    """§7.1.24: accept only an attestation whose chain ends at a root the metadata lists for
    this authenticator, whose metadata status is in good standing. Returns the entry.

    Raises VerificationFailed(ATTESTATION_TRUST) saying why not.
    """
    entry, _ = verify_trust_path(
        fmt=fmt,
        aaguid=aaguid,
        chain=chain,
        trust_store=trust_store,
        verification_time=verification_time,
    )
    return entry


def verify_trust_path(
    *,
    fmt: str,
    aaguid: str,
    chain: Sequence[bytes],
    trust_store: TrustStore,
    verification_time: datetime.datetime,
) -> tuple[MetadataEntry, tuple[bytes, ...]]:
    """`verify_trust`, also returning the validated path (DER, leaf to root), whose
    certificates a status report may name."""
    if not chain:
        raise VerificationFailed(
            Step.ATTESTATION_TRUST,
            f"the {fmt} attestation has no certificate chain (self or no attestation)"
            " and this service requires trusted attestation",
        )
    certificates = load_certificates(chain, Step.ATTESTATION_TRUST)
    leaf = certificates[0]
    if fmt == "packed":
        check_packed_certificate(leaf)
    if fmt in ("packed", "tpm"):  # the formats whose certificates carry the AAGUID (§8.2, §8.3)
        check_certified_aaguid(leaf, aaguid)
    if trust_store.unavailable is not None:
        raise VerificationFailed(Step.ATTESTATION_TRUST, trust_store.unavailable)
    entry = trust_store.find(aaguid, leaf)
    if entry is None:
        raise VerificationFailed(
            Step.ATTESTATION_TRUST,
            f"authenticator {aaguid} is not listed in the FIDO Metadata Service",
        )
    roots = entry.roots()
    if not roots:
        raise VerificationFailed(
            Step.ATTESTATION_TRUST, f"the metadata of {entry.description} lists no root"
        )
    listed = set(entry.root_certificates)
    if fmt == "packed" and any(
        der in listed and certificate.subject == certificate.issuer
        for der, certificate in zip(chain[1:], certificates[1:], strict=True)
    ):
        # §8.2: x5c is attestnCert and the chain to (not including) the trust anchor, which
        # the metadata supplies; an x5c that carries a self-signed root the metadata lists
        # is refused, as the FIDO conformance tools expect
        # (Server-ServerAuthenticatorAttestationResponse-Resp-5 F-10). An intermediate the
        # metadata also lists as an anchor (MDS3: "a trust anchor can be a root certificate,
        # an intermediate CA certificate or even the attestation certificate itself"; it does
        # so for Yubico, Feitian, G+D, HID, NEOWAVE, Thales, Titan...) is the device's
        # ordinary chain and is not refused; nor is a single certificate the metadata lists
        # (self-referencing).
        raise VerificationFailed(
            Step.ATTESTATION_TRUST,
            f"the attestation's x5c carries a root of {entry.description} (the trust anchor"
            " comes from the metadata, not the attestation)",
        )
    try:
        path = chain_to(leaf, certificates[1:], roots, verification_time, bare_rsa_leaf=True)
    except verification.VerificationError as exc:
        raise VerificationFailed(
            Step.ATTESTATION_TRUST,
            f"the attestation chain does not lead to a root of {entry.description}",
        ) from exc
    path_der = [c.public_bytes(serialization.Encoding.DER) for c in path]
    # The reports are checked against the whole validated path: a compromised batch may be
    # named by an intermediate the metadata lists as an anchor, or by the root.
    status = entry.refused_status([*chain, *path_der], verification_time.date().isoformat())
    if status is not None:
        raise VerificationFailed(
            Step.ATTESTATION_TRUST,
            f"the FIDO Metadata Service reports {entry.description} as {status}",
        )
    return entry, tuple(path_der)
