"""Registration ceremony (WebAuthn L3 §7.1), top to bottom in spec order.

py_webauthn's verifier for each format checks the attestation statement (except what it
cannot: packed self attestation by a key of an algorithm it has no verifier for, and ES384
packed attestation with a certificate, see `cose`; and the none
format's empty statement; and the compound format, which it does not know: each of its
statements is verified by its own format's procedure); this module takes every other step,
applies the policy it is given (origins, user verification, algorithms, trusted
attestation) and names the step of every refusal.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import hashlib
import io
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.utils import CryptographyDeprecationWarning
from webauthn.helpers import (
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    known_root_certs,
    parse_authenticator_data,
)
from webauthn.helpers.aaguid_to_string import aaguid_to_string
from webauthn.helpers.parse_attestation_statement import parse_attestation_statement
from webauthn.helpers.structs import (
    AttestationStatement,
    AttestedCredentialData,
    AuthenticatorData,
)
from webauthn.registration.formats.android_key import verify_android_key
from webauthn.registration.formats.android_safetynet import verify_android_safetynet
from webauthn.registration.formats.apple import verify_apple
from webauthn.registration.formats.fido_u2f import verify_fido_u2f
from webauthn.registration.formats.packed import verify_packed
from webauthn.registration.formats.tpm import verify_tpm

from .checks import (
    check_authenticator_data_layout,
    check_authenticator_flags,
    check_client_data,
)
from .cose import (
    ED448,
    ED25519,
    EDDSA,
    ES256,
    ES256K,
    ES384,
    ES512,
    ESP256,
    ESP384,
    ESP512,
    own_public_key,
    own_verify,
    registered_key_algorithm,
)
from .encoding import b64url_decode
from .errors import MalformedResponse, Step, VerificationFailed
from .origins import OriginPolicy
from .parsing import RegistrationResponse
from .trust import (
    MetadataEntry,
    TrustStore,
    check_certified_aaguid,
    check_packed_certificate,
    read_leaf,
    verify_trust_path,
)

MAX_CREDENTIAL_ID_LENGTH = 1023


@dataclass(frozen=True, slots=True)
class RegisteredCredential:
    credential_id: bytes
    public_key: bytes
    algorithm: int
    sign_count: int
    aaguid: str
    fmt: str
    user_verified: bool
    backup_eligible: bool
    backed_up: bool
    attestation_chain: tuple[bytes, ...] = ()  # DER, leaf first; empty for none/self
    metadata: MetadataEntry | None = None  # set when the attestation was trusted
    trusted_path: tuple[bytes, ...] = ()  # then: the validated path (DER, leaf to root)
    # The format of the statement `attestation_chain` is from: `fmt`, or for `compound` the
    # statement that was trusted (else the first with a chain, else the first).
    statement_fmt: str = ""


def verify_registration(
    response: RegistrationResponse,
    *,
    expected_challenge: bytes,
    expected_rp_id: str,
    expected_origins: OriginPolicy,
    require_user_verification: bool,
    expected_algorithms: Sequence[int],
    trust_store: TrustStore | None = None,
    verification_time: datetime.datetime | None = None,
    require_user_presence: bool = True,
    require_attestation_chain: bool = True,
) -> RegisteredCredential:
    """Verify a registration. With `trust_store`, the attestation must also chain to a root
    the metadata lists for the authenticator (§7.1.24), as of `verification_time` (now);
    `require_attestation_chain=False` accepts none and self attestation, which have none.
    `require_user_presence=False` accepts a conditional create's UP=0 (§7.1 step 15)."""
    # §7.1.7-11: clientDataJSON.
    check_client_data(
        response.client_data,
        expected_type="webauthn.create",
        expected_challenge=expected_challenge,
        expected_origins=expected_origins,
    )
    # §7.1.12-13: decode the attestation object, one CBOR map and nothing after it, and
    # its authenticatorData (§6.1), read as sent.
    # (py_webauthn's parse_attestation_object would decode it all again, for the same.)
    raw_object = _decoded_attestation_object(response.attestation_object)
    raw_auth_data, fmt = raw_object.get("authData"), raw_object.get("fmt")
    raw_statement = raw_object.get("attStmt")
    if not isinstance(fmt, str) or not isinstance(raw_auth_data, bytes):
        raise MalformedResponse(
            Step.ATTESTATION_OBJECT, "attestationObject has no fmt text or no authData bytes"
        )
    if fmt == "compound":
        substatements = _compound_statements(raw_statement)
    else:
        substatements = [(fmt, _statement_map(raw_statement))]
    if len(raw_auth_data) >= 37 and not raw_auth_data[32] & 0x40:
        # (Read first: the credential data after a cleared AT flag was refused as bytes
        # after authenticatorData's last field, 60386, not as what it is, 60387.)
        raise MalformedResponse(
            Step.ATTESTED_CREDENTIAL_DATA, "no attested credential data (the AT flag is not set)"
        )
    check_authenticator_data_layout(raw_auth_data, Step.ATTESTATION_OBJECT)
    try:
        auth_data = parse_authenticator_data(raw_auth_data)
    except Exception as exc:  # the library raises assorted types on bad CBOR
        # (It also refuses CBOR that is valid but not CTAP2's canonical form, such as an
        # integer written longer than it needs: it finds where a map ends by writing it
        # again.)
        raise MalformedResponse(
            Step.ATTESTATION_OBJECT, "attestationObject is not valid (CTAP2 canonical) CBOR"
        ) from exc
    # §7.1.14-17: rpIdHash, UP, UV, backup flags.
    check_authenticator_flags(
        auth_data.rp_id_hash,
        auth_data.flags,
        expected_rp_id=expected_rp_id,
        require_user_verification=require_user_verification,
        require_user_presence=require_user_presence,
    )
    attested = auth_data.attested_credential_data
    if not auth_data.flags.at or attested is None or not attested.credential_id:
        raise MalformedResponse(Step.ATTESTED_CREDENTIAL_DATA, "no attested credential data")
    credential_id = attested.credential_id
    if response.credential_id is not None and response.credential_id != credential_id:
        raise MalformedResponse(Step.CREDENTIAL_ID, "id is not the attested credential id")
    # §7.1.20: the key's algorithm must be one the options offered.
    try:
        algorithm = registered_key_algorithm(attested.credential_public_key)
        # The key must load: a point off its curve or a key of the wrong size could never
        # verify an assertion, so refuse it now rather than store a dead passkey.
        if own_public_key(attested.credential_public_key) is None:
            decoded_public_key_to_cryptography(
                decode_credential_public_key(attested.credential_public_key)
            )
    except MalformedResponse:
        raise
    except Exception as exc:
        raise MalformedResponse(
            Step.PUBLIC_KEY, "the credential public key is not valid COSE"
        ) from exc
    if algorithm not in expected_algorithms:
        raise VerificationFailed(Step.ALGORITHM, f"algorithm {algorithm} was not offered")
    # §7.1.21-22: the attestation statement, verified by its format's procedure; for the
    # compound format (§8.9), each of its statements by its own, and every one must verify.
    aaguid = aaguid_to_string(attested.aaguid)
    statements = [
        _verify_statement(
            sub_fmt,
            sub_statement,
            response,
            raw_auth_data,
            auth_data,
            attested,
            algorithm=algorithm,
            aaguid=aaguid,
            trust_store=trust_store,
        )
        for sub_fmt, sub_statement in substatements
    ]
    # §7.1.24: the attestation's trustworthiness, when the service requires it.
    metadata: MetadataEntry | None = None
    path: tuple[bytes, ...] = ()
    attested_by = next((v for v in statements if v.chain), statements[0])
    if trust_store is not None and (any(v.chain for v in statements) or require_attestation_chain):
        metadata, path, attested_by = _trusted_statement(
            statements,
            aaguid=aaguid,
            trust_store=trust_store,
            verification_time=verification_time or datetime.datetime.now(datetime.UTC),
        )
    # §7.1.25: credential id length.
    if len(credential_id) > MAX_CREDENTIAL_ID_LENGTH:
        raise VerificationFailed(Step.CREDENTIAL_ID_LENGTH, "credential id is over 1023 bytes")
    return RegisteredCredential(
        credential_id=credential_id,
        public_key=attested.credential_public_key,
        algorithm=algorithm,
        sign_count=auth_data.sign_count,
        aaguid=aaguid,
        fmt=fmt,
        user_verified=auth_data.flags.uv,
        backup_eligible=auth_data.flags.be,
        backed_up=auth_data.flags.bs,
        attestation_chain=attested_by.chain,
        metadata=metadata,
        trusted_path=path,
        statement_fmt=attested_by.fmt,
    )


def _decoded_attestation_object(attestation_object: bytes) -> dict[Any, Any]:
    """The attestation object as encoded (py_webauthn's parsed statement drops keys it does
    not know, and its authData is re-encoded): one CBOR map, and nothing after it, which
    `cbor2.loads` would ignore."""
    stream = io.BytesIO(attestation_object)
    try:
        # Two values for one key are refused, not the last kept (py_webauthn#265).
        decoded = cbor2.CBORDecoder(stream, allow_duplicate_keys=False).decode()
    except Exception as exc:  # cbor2 raises assorted types on bad input
        raise MalformedResponse(
            Step.ATTESTATION_OBJECT, "attestationObject is not valid CBOR"
        ) from exc
    if not isinstance(decoded, dict):
        raise MalformedResponse(Step.ATTESTATION_OBJECT, "attestationObject is not a CBOR map")
    if stream.tell() != len(attestation_object):
        raise MalformedResponse(
            Step.ATTESTATION_OBJECT,
            f"attestationObject has {len(attestation_object) - stream.tell()} bytes after it",
        )
    return decoded


MAX_COMPOUND_STATEMENTS = 8  # passkeyd's bound on §8.9's "2*": each costs a verification


@dataclass(frozen=True, slots=True)
class _Verified:
    """An attestation statement its format's verification procedure accepted."""

    fmt: str
    chain: tuple[bytes, ...]  # DER, leaf first; empty for none and self attestation
    safetynet_response: bytes | None = None


def _statement_map(raw_statement: object) -> Mapping[Any, Any] | None:
    if raw_statement is not None and not isinstance(raw_statement, Mapping):
        raise MalformedResponse(Step.ATTESTATION_OBJECT, "attestationObject's attStmt is not a map")
    return raw_statement


def _compound_statements(raw_statement: object) -> list[tuple[str, Mapping[Any, Any] | None]]:
    """§8.9: a compound attStmt is an array of at least two attestation statements, each a
    map of exactly its format identifier `fmt` (any format but compound) and its `attStmt`
    (the CDDL's `nonCompoundAttStmt`)."""
    if not isinstance(raw_statement, list):
        raise MalformedResponse(
            Step.ATTESTATION_OBJECT, "the compound attStmt is not an array of statements"
        )
    if not 2 <= len(raw_statement) <= MAX_COMPOUND_STATEMENTS:
        raise MalformedResponse(
            Step.ATTESTATION_OBJECT,
            f"the compound attStmt holds {len(raw_statement)} statements"
            f" (2 to {MAX_COMPOUND_STATEMENTS} are accepted)",
        )
    statements: list[tuple[str, Mapping[Any, Any] | None]] = []
    for item in raw_statement:
        if not isinstance(item, Mapping) or set(item) != {"fmt", "attStmt"}:
            raise MalformedResponse(
                Step.ATTESTATION_OBJECT,
                "a statement of the compound attStmt is not a map of fmt and attStmt",
            )
        if not isinstance(item["fmt"], str) or item["fmt"] == "compound":
            raise MalformedResponse(
                Step.ATTESTATION_OBJECT,
                "a statement of the compound attStmt has no fmt text, or is itself compound",
            )
        statements.append((item["fmt"], _statement_map(item["attStmt"])))
    return statements


def _verify_statement(
    fmt: str,
    raw_statement: Mapping[Any, Any] | None,
    response: RegistrationResponse,
    raw_auth_data: bytes,
    auth_data: AuthenticatorData,
    attested: AttestedCredentialData,
    *,
    algorithm: int,
    aaguid: str,
    trust_store: TrustStore | None,
) -> _Verified:
    """§7.1.22: one attestation statement of format `fmt`, by its format's verification
    procedure: py_webauthn's verifier for it, or passkeyd's own where the library has none,
    and the checks of the format the library leaves out. (The library reads only
    authenticatorData from the response's attestation object, the same for every statement
    of a compound one: the statement it verifies is `raw_statement`, parsed. A statement is
    not encoded again for it: cbor2 decodes what it cannot encode, a cyclic map through
    tags 28/29 or a MIME message, tag 36, and that was a 500.)"""
    x5c = raw_statement.get("x5c", []) if raw_statement is not None else []
    if not isinstance(x5c, list) or not all(isinstance(c, bytes) for c in x5c):
        # (An x5c of {} or null read as none at all: self attestation.)
        raise MalformedResponse(
            Step.ATTESTATION_OBJECT, "attStmt's x5c is not an array of certificates"
        )
    if fmt == "android-safetynet" and raw_statement is not None and "x5c" in raw_statement:
        # §8.5: the statement is {ver, response}, and the certificates are the JWS's, which
        # the library verifies. An x5c beside them, verified by nothing, was taken as the
        # chain to trust: a SafetyNet JWS of any Android device, with the public chain of
        # another model, passed for that model under `trusted`.
        raise MalformedResponse(
            Step.ATTESTATION_OBJECT,
            "an android-safetynet statement carries no x5c (its certificates are the JWS's)",
        )
    statement = (
        parse_attestation_statement(raw_statement)  # type: ignore[arg-type]
        if raw_statement is not None
        else AttestationStatement()
    )
    if fmt == "packed" and raw_statement is not None and raw_statement.get("x5c") == []:
        # §8.2: x5c, when present, holds the attestation certificate and its chain (an empty
        # one read as self attestation).
        raise VerificationFailed(
            Step.ATTESTATION_STATEMENT, "the packed attestation's x5c holds no certificate"
        )
    if (
        fmt in ("packed", "tpm", "android-key")
        and isinstance(raw_statement, Mapping)  # (a frozendict too: CBOR tag 55799's map)
        and "alg" in raw_statement
        and type(raw_statement["alg"]) is not int
    ):
        # §8.2, §8.3, §8.4: `alg` is a COSEAlgorithmIdentifier, an integer. The statement is
        # not signed, and the library compares it with ==: a CBOR float -7.0 (or `true` for
        # 1) passed for -7, as the COSE key's labels are refused (`cose`).
        raise MalformedResponse(
            Step.ATTESTATION_OBJECT, "the attestation statement's alg is not an integer"
        )
    if fmt == "packed" and (
        not isinstance(statement.alg, int) or not isinstance(statement.sig, bytes)
    ):
        # §8.2's syntax: both are required. (Without, a statement py_webauthn verifies was
        # refused as not verifying, 403 60311, and one passkeyd verifies itself, ES384 or
        # EdDSA's own keys, as malformed, 400 60386: now the second for all.)
        raise MalformedResponse(
            Step.ATTESTATION_OBJECT, "the packed attestation statement lacks its alg or sig bytes"
        )
    if fmt == "packed" and statement.x5c and isinstance(statement.alg, int):
        _check_packed_certificate_key(statement.alg, statement.x5c[0])
    if fmt == "fido-u2f" and algorithm != ES256:
        # §8.6: the credential key becomes a raw P-256 point (two 32-byte coordinates, which
        # `registered_key_algorithm` checked), or the registration fails.
        raise VerificationFailed(
            Step.ATTESTATION_STATEMENT, "a fido-u2f credential key must be an ES256 P-256 key"
        )
    if (
        fmt == "packed"
        and not statement.x5c
        and own_public_key(attested.credential_public_key) is not None
    ):
        assert isinstance(statement.sig, bytes) and isinstance(statement.alg, int)  # (above)
        _verify_packed_self_own(
            response,
            raw_auth_data,
            statement.alg,
            statement.sig,
            attested.credential_public_key,
            algorithm,
        )
    elif fmt == "none":
        # §8.7: a none statement has nothing to verify, only to be the empty map. (py_webauthn
        # checks less, that none of the fields it knows is set, after repeating the steps
        # above: a third of a registration's verification time.)
        if raw_statement != {}:
            raise VerificationFailed(
                Step.ATTESTATION_STATEMENT, "the none attestation statement is not empty"
            )
    elif fmt == "packed" and statement.x5c and statement.alg == ES384:
        _verify_packed_x5c_es384(response, raw_auth_data, statement.x5c, statement.sig)
    else:
        _verify_statement_with_library(
            response,
            fmt,
            statement,
            auth_data,
            attested,
            vendor_roots=_metadata_roots(fmt, attested.aaguid, trust_store),
        )
    chain = _attestation_chain(fmt, statement.x5c, statement.response)
    if fmt in ("packed", "tpm") and chain:
        # The rest of the format's own verification (§8.2, §8.3), whatever the service's
        # attestation policy: py_webauthn checks the signature and, for tpm, the certificate,
        # but neither the packed certificate's requirements (§8.2.1) nor, in either format,
        # that a certificate naming an AAGUID names the one in authenticatorData.
        # (Of one whose extensions cryptography cannot read, as BER where DER is due, the
        # subject only: the library checked its signature, and a service that trusts
        # attestation refuses it, `verify_trust`.)
        leaf, extensions = read_leaf(chain[0])
        if leaf is not None and fmt == "packed":
            check_packed_certificate(leaf, extensions=extensions)
        if leaf is not None and extensions:
            check_certified_aaguid(leaf, aaguid, Step.ATTESTATION_STATEMENT)
    return _Verified(fmt, chain, statement.response)


def _trusted_statement(
    statements: Sequence[_Verified],
    *,
    aaguid: str,
    trust_store: TrustStore,
    verification_time: datetime.datetime,
) -> tuple[MetadataEntry, tuple[bytes, ...], _Verified]:
    """§7.1.24: the metadata entry, validated path and statement of the first statement
    whose chain the metadata vouches for (`verify_trust_path`), of those with a chain (of
    all, when none has one: then each is refused for having none). One is enough for a
    compound attestation (§8.9 leaves how many to the relying party): it establishes the
    model, and every statement has verified by its own format. Refused with the first
    statement's reason when none is trusted."""
    candidates = [v for v in statements if v.chain] or list(statements)
    refusals: list[VerificationFailed] = []
    for verified in candidates:
        try:
            metadata, path = verify_trust_path(
                fmt=verified.fmt,
                aaguid=aaguid,
                chain=verified.chain,
                trust_store=trust_store,
                verification_time=verification_time,
            )
            if verified.fmt == "android-safetynet":
                _check_cts_profile_match(verified.safetynet_response)
        except VerificationFailed as exc:
            refusals.append(exc)
            continue
        return metadata, path, verified
    if len(statements) == 1:
        raise refusals[0]
    raise VerificationFailed(
        refusals[0].step,
        f"no statement of the compound attestation is trusted: {refusals[0].detail}",
    )


def _metadata_roots(fmt: str, aaguid: bytes, trust_store: TrustStore | None) -> list[bytes]:
    """For android-key and android-safetynet under a trusted or checked service, the roots
    the metadata lists for the AAGUID, PEM, as py_webauthn takes roots beside the ones it
    ships (Google's hardware attestation roots, GlobalSign's): its verifiers for those two
    formats refuse a chain that leads to no root they know (§8.4 and §8.5 ask for no
    particular root: trust is §7.1.24's, `verify_trust_path`, which checks the same chain
    against the same roots). The FIDO conformance tools' Android test authenticators chain to
    their own roots, which their metadata statements list. None under `any`."""
    if fmt not in ("android-key", "android-safetynet") or trust_store is None:
        return []
    if trust_store.unavailable is not None:
        return []
    entry = trust_store.by_aaguid(aaguid_to_string(aaguid))
    if entry is None:
        return []
    # (The roots the metadata's reading could parse: one the library cannot load would fail
    # the chain check of every registration of the model.)
    return [root.public_bytes(Encoding.PEM) for root in entry.roots()]


def _verify_statement_with_library(
    response: RegistrationResponse,
    fmt: str,
    statement: AttestationStatement,
    auth_data: AuthenticatorData,
    attested: AttestedCredentialData,
    *,
    vendor_roots: Sequence[bytes] = (),
) -> None:
    """§7.1.22: the format's verification procedure, py_webauthn's verifier for `fmt`, called
    directly: the steps before it (client data, flags, algorithm) are this module's.
    (`verify_registration_response` repeated them all, and refused a clientData
    `tokenBinding` of `not-supported`, as Edge Legacy sent, which L3 no longer reads.)"""
    client_data = response.client_data.raw
    key = attested.credential_public_key
    try:
        with _quiet_about(vendor_roots):
            if fmt == "fido-u2f":
                verified = verify_fido_u2f(
                    attestation_statement=statement,
                    client_data_json=client_data,
                    rp_id_hash=auth_data.rp_id_hash,
                    credential_id=attested.credential_id,
                    credential_public_key=key,
                    aaguid=attested.aaguid,
                    pem_root_certs_bytes=[],
                )
            elif fmt == "android-safetynet":
                verified = verify_android_safetynet(
                    attestation_statement=statement,
                    attestation_object=response.attestation_object,
                    client_data_json=client_data,
                    pem_root_certs_bytes=list(vendor_roots),
                )
            elif fmt in _KEYED_FORMATS:
                if fmt == "android-key" and statement.x5c:
                    statement = replace(statement, x5c=_with_googles_root(statement.x5c))
                verified = _KEYED_FORMATS[fmt](
                    attestation_statement=statement,
                    attestation_object=response.attestation_object,
                    client_data_json=client_data,
                    credential_public_key=key,
                    pem_root_certs_bytes=list(vendor_roots) if fmt == "android-key" else [],
                )
            else:
                raise VerificationFailed(
                    Step.ATTESTATION_STATEMENT, f"attestation format {fmt[:40]!r} is not supported"
                )
    except VerificationFailed:
        raise
    except Exception as exc:  # library errors never cross this boundary raw
        raise VerificationFailed(
            Step.ATTESTATION_STATEMENT, f"the {fmt} attestation statement did not verify"
        ) from exc
    if verified is not True:
        raise VerificationFailed(
            Step.ATTESTATION_STATEMENT, f"the {fmt} attestation statement did not verify"
        )


@contextlib.contextmanager
def _quiet_about(roots: Sequence[bytes]) -> Iterator[None]:
    """The library's loading of `roots` from the metadata: a few MDS roots carry a
    non-positive serial number (a CryptographyDeprecationWarning), and are still the roots."""
    with warnings.catch_warnings():
        if roots:
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


def _with_googles_root(x5c: list[bytes]) -> list[bytes]:
    """An android-key chain whose last certificate is Google's hardware attestation root,
    as py_webauthn knows it. py_webauthn takes the chain only when that certificate is,
    byte for byte, one of the roots it ships: but Google reissued its root with the same
    name and key (2016: root 1, until 2026-05-24; 2019 and 2022: roots 2-4), and devices
    provisioned with keyboxes of 2016-2019 (a Galaxy S9+, say) still end their chains in
    root 1. An anchor is its name and key (RFC 5280 §6.1.1 (d)): a last certificate with
    the name and key of a root py_webauthn ships is that root, and is given as it ships
    it (the one valid longest). Any other chain is left as it came."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            last = x509.load_der_x509_certificate(x5c[-1])
        key = last.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except Exception:  # noqa: BLE001 - not a certificate: py_webauthn refuses it
        return x5c
    shipped = _googles_roots().get((last.subject.public_bytes(), key))
    return x5c if shipped is None else [*x5c[:-1], shipped]


@functools.cache
def _googles_roots() -> dict[tuple[bytes, bytes], bytes]:
    """py_webauthn's Google hardware attestation roots by (name, key): the DER of the one
    valid longest."""
    roots: dict[tuple[bytes, bytes], x509.Certificate] = {}
    for pem in GOOGLE_ROOTS:
        root = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
        key = root.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        held = roots.get((root.subject.public_bytes(), key))
        if held is None or root.not_valid_after_utc > held.not_valid_after_utc:
            roots[(root.subject.public_bytes(), key)] = root
    return {named: root.public_bytes(Encoding.DER) for named, root in roots.items()}


GOOGLE_ROOTS = (
    known_root_certs.google_hardware_attestation_root_2,
    known_root_certs.google_hardware_attestation_root_3,
    known_root_certs.google_hardware_attestation_root_4,
    known_root_certs.google_hardware_attestation_root_5,
)

# The formats whose verifier takes the attestation object and the credential key.
_KEYED_FORMATS = {
    "packed": verify_packed,
    "tpm": verify_tpm,
    "apple": verify_apple,
    "android-key": verify_android_key,
}


# The key an attestation `alg` signs with (RFC 9053, RFC 8812, RFC 9864): ECDSA on its curve,
# EdDSA on its curve, or RSA. ECDSA verifies a P-256 signature as readily with a secp256k1
# key, so the curve is not implied by a signature that verifies.
_CURVE_OF_ALGORITHM: dict[int, type[ec.EllipticCurve]] = {
    ES256: ec.SECP256R1,
    ES384: ec.SECP384R1,
    ES512: ec.SECP521R1,
    ESP256: ec.SECP256R1,
    ESP384: ec.SECP384R1,
    ESP512: ec.SECP521R1,
    ES256K: ec.SECP256K1,
}
_EDWARDS_KEYS_OF_ALGORITHM: dict[int, tuple[type, ...]] = {
    EDDSA: (ed25519.Ed25519PublicKey,),  # WebAuthn §5.8.5: EdDSA keys are Ed25519
    ED25519: (ed25519.Ed25519PublicKey,),
    ED448: (ed448.Ed448PublicKey,),
}
_RSA_ALGORITHMS = frozenset((-37, -38, -39, -257, -258, -259, -65535))


def _check_packed_certificate_key(alg: int, certificate: bytes) -> None:
    """§8.2 verification procedure, x5c present: `sig` is verified "using the attestation
    public key in attestnCert with the algorithm specified in alg", so that key must be one
    `alg` signs with (the FIDO conformance tools send a secp256k1 attestation certificate
    with alg ES256, Server-ServerAuthenticatorAttestationResponse-Resp-5 F-8). A certificate
    that cannot be read, or an algorithm this does not know, is left to the verification."""
    leaf, _ = read_leaf(certificate)
    if leaf is None:
        return
    try:
        key = leaf.public_key()
    except Exception:  # noqa: BLE001 - a key type cryptography cannot load: the library decides
        return
    if alg in _CURVE_OF_ALGORITHM:
        fits = isinstance(key, ec.EllipticCurvePublicKey) and isinstance(
            key.curve, _CURVE_OF_ALGORITHM[alg]
        )
    elif alg in _EDWARDS_KEYS_OF_ALGORITHM:
        fits = isinstance(key, _EDWARDS_KEYS_OF_ALGORITHM[alg])
    elif alg in _RSA_ALGORITHMS:
        fits = isinstance(key, rsa.RSAPublicKey)
    else:
        return
    if not fits:
        raise VerificationFailed(
            Step.ATTESTATION_STATEMENT,
            f"the packed attestation's alg {alg} is not its certificate key's algorithm",
        )


def _verify_packed_x5c_es384(
    response: RegistrationResponse, auth_data: bytes, x5c: list[bytes], signature: object
) -> None:
    """Packed attestation with an attestation certificate (§8.2) whose `alg` is ES384: `sig`
    is the certificate key's signature over authenticatorData || SHA-256(clientDataJSON).
    (py_webauthn cannot verify ES384, whatever the credential's own algorithm; some
    authenticators' attestation keys are P-384.)"""
    if not isinstance(signature, bytes):  # (a text or an array was a 500: TypeError)
        raise MalformedResponse(Step.ATTESTATION_OBJECT, "attStmt sig is malformed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            public_key = x509.load_der_x509_certificate(x5c[0]).public_key()
    except Exception as exc:  # noqa: BLE001 - not a certificate, or a key it cannot read
        raise VerificationFailed(
            Step.ATTESTATION_STATEMENT, "the packed attestation certificate cannot be read"
        ) from exc
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise VerificationFailed(
            Step.ATTESTATION_STATEMENT, "the packed attestation's alg is not its certificate's"
        )
    signed = auth_data + hashlib.sha256(response.client_data.raw).digest()
    try:
        public_key.verify(signature, signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as exc:
        raise VerificationFailed(
            Step.ATTESTATION_STATEMENT, "the packed attestation statement did not verify"
        ) from exc


def _verify_packed_self_own(
    response: RegistrationResponse,
    auth_data: bytes,
    statement_alg: object,
    signature: bytes | None,
    credential_public_key: bytes,
    algorithm: int,
) -> None:
    """Packed self attestation (§8.2) by a key of an algorithm passkeyd checks itself
    (`cose.own_public_key`): `alg` is the credential's, and `sig` is its signature over
    authenticatorData || SHA-256(clientDataJSON)."""
    if statement_alg != algorithm or not signature:
        raise VerificationFailed(
            Step.ATTESTATION_STATEMENT, "the packed self attestation does not match the key"
        )
    signed = auth_data + hashlib.sha256(response.client_data.raw).digest()
    if not own_verify(credential_public_key, signature, signed):
        raise VerificationFailed(
            Step.ATTESTATION_STATEMENT, "the packed attestation statement did not verify"
        )


def _check_cts_profile_match(safetynet_response: bytes | None) -> None:
    """A trusted SafetyNet attestation is of a device that passed Android's compatibility
    test (`ctsProfileMatch`), as WebAuthn L1 §8.5 required and SimpleWebAuthn still does.
    L2 dropped the step, so under the `any` policy such a device registers; under `trusted`,
    a rooted or modified one is not what the service asked for. (py_webauthn checks only
    `basicIntegrity`; it verified the JWS this payload comes from.)"""
    try:
        payload = json.loads(b64url_decode((safetynet_response or b"").split(b".")[1].decode()))
        matched = payload.get("ctsProfileMatch") is True
    except (ValueError, IndexError, UnicodeDecodeError, AttributeError):
        matched = False
    if not matched:
        raise VerificationFailed(
            Step.ATTESTATION_TRUST,
            "the SafetyNet response says the device failed Android's compatibility test"
            " (ctsProfileMatch is not true)",
        )


def _attestation_chain(
    fmt: str, x5c: list[bytes] | None, safetynet_response: bytes | None
) -> tuple[bytes, ...]:
    """The attestation certificates, leaf first: `x5c`, or for android-safetynet the `x5c`
    of the JWS header (standard base64, RFC 7515 §4.1.6), the certificates py_webauthn
    verified the JWS with (a statement's own `x5c` is refused, `_verify_statement`)."""
    if fmt != "android-safetynet":
        return tuple(x5c or ())
    if not safetynet_response:
        return ()
    try:
        header = json.loads(b64url_decode(safetynet_response.split(b".")[0].decode("ascii")))
        return tuple(base64.b64decode(c) for c in header.get("x5c", []))
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise MalformedResponse(
            Step.ATTESTATION_OBJECT, "the SafetyNet response is not a JWS"
        ) from exc
