"""The WebAuthn options JSON (L3 `PublicKeyCredential*OptionsJSON`) that browsers accept."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .encoding import b64url_encode

# ES256, EdDSA, RS256: what passkey providers and security keys create.
DEFAULT_ALGORITHMS: tuple[int, ...] = (-7, -8, -257)
TIMEOUT_MS = 600_000


def credential_descriptors(
    credentials: Iterable[tuple[bytes, Sequence[str]]],
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for credential_id, transports in credentials:
        descriptor: dict[str, Any] = {"type": "public-key", "id": b64url_encode(credential_id)}
        if transports:
            descriptor["transports"] = list(transports)
        out.append(descriptor)
    return out


def creation_options(
    *,
    rp_id: str,
    rp_name: str,
    user_id: bytes,
    user_name: str,
    challenge: bytes,
    exclude: Iterable[tuple[bytes, Sequence[str]]],
    authenticator_attachment: str,
    resident_key: str,
    user_verification: str,
    algorithms: Sequence[int] = DEFAULT_ALGORITHMS,
    attestation: str = "none",
    hints: Sequence[str] = (),
) -> dict[str, Any]:
    selection: dict[str, Any] = {}
    if authenticator_attachment in ("platform", "cross-platform"):  # `any` is not WebAuthn
        selection["authenticatorAttachment"] = authenticator_attachment
    selection["requireResidentKey"] = resident_key == "required"
    selection["residentKey"] = resident_key
    selection["userVerification"] = user_verification
    options: dict[str, Any] = {
        "rp": {"id": rp_id, "name": rp_name},
        "user": {"id": b64url_encode(user_id), "name": user_name, "displayName": user_name},
        "challenge": b64url_encode(challenge),
        "pubKeyCredParams": [{"type": "public-key", "alg": a} for a in algorithms],
        "timeout": TIMEOUT_MS,
        "excludeCredentials": credential_descriptors(exclude),
        "authenticatorSelection": selection,
        "attestation": attestation,
        # Whether the passkey made is discoverable (a sign-in with no username finds it),
        # which the browser reports in clientExtensionResults (L3 §10.1.3)
        "extensions": {"credProps": True},
    }
    if hints:
        options["hints"] = list(hints)
    return {"publicKey": options}


def request_options(
    *,
    rp_id: str,
    rp_name: str,
    challenge: bytes,
    allow: Iterable[tuple[bytes, Sequence[str]]],
    user_verification: str,
    hints: Sequence[str] = (),
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "challenge": b64url_encode(challenge),
        "timeout": TIMEOUT_MS,
        "rpId": rp_id,
        "allowCredentials": credential_descriptors(allow),
        "userVerification": user_verification,
        # Not a request option; Twilio's examples carry it and its quickstart reads it.
        "rp": {"id": rp_id, "name": rp_name},
    }
    if hints:
        options["hints"] = list(hints)
    return {"publicKey": options}
