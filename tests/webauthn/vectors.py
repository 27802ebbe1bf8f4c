"""Load the recorded WebAuthn vectors in tests/vectors/ and run them through passkeyd's own
verification layer (`passkeyd.webauthn`), at the time each vector was recorded."""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

from OpenSSL.crypto import X509Store

from passkeyd.webauthn import (
    SUPPORTED_ALGORITHMS,
    MetadataEntry,
    OriginPolicy,
    StatusReport,
    TrustStore,
    b64url_decode,
    parse_authentication,
    parse_registration,
    verify_authentication,
    verify_registration,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
# The W3C L3 §16 vectors' attestation root, and the AAGUID of each of its models.
SPEC_ROOT = json.loads((VECTORS / "roots" / "go-webauthn-w3c-l3-attestation-root.json").read_text())


def spec_store(*reports: StatusReport) -> TrustStore:
    """Metadata for the W3C vectors' models, each with `reports`."""
    root = bytes.fromhex(SPEC_ROOT["certificate_der_hex"])
    return TrustStore(
        MetadataEntry(f"W3C test {alg}", aaguid, root_certificates=(root,), status_reports=reports)
        for alg, aaguid in SPEC_ROOT["aaguids"].items()
    )


def load_vectors() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(VECTORS.glob("*.json"))}


def verification_time(vector: dict[str, Any]) -> datetime.datetime | None:
    stamp = vector.get("verification_time")
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


@contextmanager
def library_clock(at: datetime.datetime | None) -> Iterator[None]:
    """Set py_webauthn's clock, and only its clock, to `at`.

    Certificates in recorded attestations expire, and py_webauthn gives no way to pass a
    verification time. Like py_webauthn's own tests (tests/helpers/x509store.py), this hands
    its chain validation an X509Store whose time is set, and gives its SafetyNet timestamp
    check (responses live 10 s) the same time. passkeyd's own trust check takes the time
    as an argument and needs no patch.
    """
    if at is None:
        yield
        return
    chains = sys.modules["webauthn.helpers.validate_certificate_chain"]
    stamps = sys.modules["webauthn.helpers.verify_safetynet_timestamp"]

    def store() -> X509Store:
        s = X509Store()
        s.set_time(at.replace(tzinfo=None))
        return s

    with (
        mock.patch.object(chains, "_generate_new_cert_store", store),
        mock.patch.object(stamps, "time", SimpleNamespace(time=at.timestamp)),
    ):
        yield


def origin_policy(vector: dict[str, Any]) -> OriginPolicy:
    return OriginPolicy.build(
        rp_id=vector["rp_id"],
        origins=vector["origins"],
        top_origins=vector.get("top_origins", ()),
    )


def register(
    vector: dict[str, Any],
    *,
    trust_store: TrustStore | None = None,
    algorithms: tuple[int, ...] = SUPPORTED_ALGORITHMS,
    require_attestation_chain: bool = True,
) -> Any:
    """passkeyd's registration verification of the vector (raises CeremonyError);
    `require_attestation_chain=False` with a trust store is the `checked` policy."""
    reg = vector["registration"]
    at = verification_time(vector)
    with library_clock(at):
        return verify_registration(
            parse_registration(reg["credential"]),
            expected_challenge=b64url_decode(reg["challenge"]),
            expected_rp_id=vector["rp_id"],
            expected_origins=origin_policy(vector),
            require_user_verification=reg.get("require_user_verification", False),
            expected_algorithms=algorithms,
            trust_store=trust_store,
            verification_time=at,
            require_attestation_chain=require_attestation_chain,
        )


def authenticate(vector: dict[str, Any], public_key: bytes | None = None) -> Any:
    """passkeyd's authentication verification of the vector (raises CeremonyError)."""
    auth = vector["authentication"]
    response = parse_authentication(auth["credential"])
    key = public_key or b64url_decode(auth["credential_public_key"])
    return verify_authentication(
        response,
        expected_challenge=b64url_decode(auth["challenge"]),
        expected_rp_id=vector["rp_id"],
        expected_origins=origin_policy(vector),
        expected_user_handle=response.user_handle or b"",
        credential_public_key=key,
        stored_sign_count=auth.get("sign_count") or 0,
        require_user_verification=auth.get("require_user_verification", False),
    )
