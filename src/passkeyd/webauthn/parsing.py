"""Decode the JSON form of a PublicKeyCredential into bytes and typed fields.

Only decoding happens here: no policy, no verification. Every failure is a
`MalformedResponse` naming the field, so the API can answer with the right code.
"""

from __future__ import annotations

import binascii
import contextlib
import re
from typing import Any

import orjson

from passkeyd.records import record

from .encoding import b64url_decode
from .errors import MalformedResponse, Step

ATTACHMENTS = frozenset({"platform", "cross-platform"})
TRANSPORTS = frozenset({"usb", "nfc", "ble", "smart-card", "internal", "hybrid", "cable"})


@record
class ClientData:
    raw: bytes
    type: str
    challenge: bytes
    origin: str
    cross_origin: bool
    top_origin: str | None


@record
class RegistrationResponse:
    credential_id: bytes | None
    authenticator_attachment: str | None
    client_data: ClientData
    attestation_object: bytes
    transports: tuple[str, ...]
    # credProps' `rk` from clientExtensionResults: a discoverable credential? None: not said
    resident_key: bool | None = None


@record
class AuthenticationResponse:
    credential_id: bytes
    authenticator_attachment: str | None
    client_data: ClientData
    authenticator_data: bytes
    signature: bytes
    user_handle: bytes | None


def _field_bytes(container: dict[str, Any], key: str, step: Step) -> bytes:
    value = container.get(key)
    if value is None or value == "":
        raise MalformedResponse(step, f"{key} is required")
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise MalformedResponse(step, f"{key} is not base64url") from exc


def parse_client_data(encoded: Any) -> ClientData:
    if encoded is None or encoded == "":
        raise MalformedResponse(Step.CLIENT_DATA, "clientDataJSON is required")
    try:
        raw = b64url_decode(encoded)
    except ValueError as exc:
        raise MalformedResponse(Step.CLIENT_DATA, "clientDataJSON is not base64url") from exc
    try:
        # §7.1.5/§7.2.8: UTF-8 decode, stripping a leading byte order mark. (`raw` keeps it:
        # the signature covers the bytes as sent.)
        data = orjson.loads(raw[3:] if raw.startswith(_BOM) else raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedResponse(Step.CLIENT_DATA, "clientDataJSON is not JSON") from exc
    if not isinstance(data, dict):
        raise MalformedResponse(Step.CLIENT_DATA, "clientDataJSON is not a JSON object")
    ctype, challenge, origin = data.get("type"), data.get("challenge"), data.get("origin")
    if not isinstance(ctype, str) or not isinstance(origin, str):
        raise MalformedResponse(Step.CLIENT_DATA, "clientDataJSON lacks type or origin")
    if not isinstance(challenge, str):
        raise MalformedResponse(Step.CLIENT_DATA, "clientDataJSON lacks a challenge")
    try:
        challenge_bytes = b64url_decode(challenge)
    except ValueError as exc:
        raise MalformedResponse(
            Step.CLIENT_DATA, "clientDataJSON challenge is not base64url"
        ) from exc
    cross_origin = data.get("crossOrigin", False)
    top_origin = data.get("topOrigin")
    if not isinstance(cross_origin, bool) or not (
        top_origin is None or isinstance(top_origin, str)
    ):
        raise MalformedResponse(Step.CLIENT_DATA, "clientDataJSON crossOrigin/topOrigin malformed")
    return ClientData(raw, ctype, challenge_bytes, origin, cross_origin, top_origin)


_BOM = b"\xef\xbb\xbf"
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


def _credential_id(body: dict[str, Any], *, required: bool) -> bytes | None:
    """The credential id from `id`, else `rawId` (hex or base64url), else `keyId`. A `rawId`
    beside an `id` must name the same credential (in either encoding)."""
    ident = body.get("id")
    if ident not in (None, ""):
        try:
            credential_id = b64url_decode(ident)
        except ValueError as exc:
            raise MalformedResponse(Step.CREDENTIAL_ID, "id is not base64url") from exc
        raw = body.get("rawId")
        # A rawId that is no text beside an id names nothing, and is not read: a page that
        # writes `rawId: cred.rawId` by hand sends an ArrayBuffer as JSON.stringify does, {}.
        if isinstance(raw, str) and raw and credential_id not in _readings(raw):
            raise MalformedResponse(Step.RAW_ID, "rawId and id name different credentials")
        return credential_id
    for key in ("rawId", "keyId"):
        raw = body.get(key)
        if raw in (None, ""):
            continue
        step = Step.RAW_ID if key == "rawId" else Step.CREDENTIAL_ID
        if not isinstance(raw, str):
            raise MalformedResponse(step, f"{key} is not a string")
        readings = _readings(raw)
        if not readings:
            raise MalformedResponse(step, f"{key} is not base64url or hex")
        return readings[0]
    if required:
        raise MalformedResponse(Step.CREDENTIAL_ID, "id is required")
    return None


def _readings(raw: str) -> list[bytes]:
    """What a `rawId` may encode: its bytes as hex (Twilio's examples), then as base64url.
    Hex comes first: hex text is base64url too, and would decode to other bytes; a
    base64url id of 16 bytes or more is all hex digits with a chance under 1e-10."""
    readings = [binascii.unhexlify(raw)] if _HEX.fullmatch(raw) else []
    with contextlib.suppress(ValueError):
        readings.append(b64url_decode(raw))
    return readings


def _common(body: Any) -> tuple[dict[str, Any], str | None]:
    if not isinstance(body, dict):
        raise MalformedResponse(Step.RESPONSE, "the credential must be a JSON object")
    ctype = body.get("type")
    if ctype not in (None, "public-key"):
        raise MalformedResponse(Step.CREDENTIAL_TYPE, "type must be public-key")
    attachment = body.get("authenticatorAttachment")
    if attachment is not None and (
        not isinstance(attachment, str) or attachment not in ATTACHMENTS
    ):
        raise MalformedResponse(
            Step.AUTHENTICATOR_ATTACHMENT,
            "authenticatorAttachment must be platform or cross-platform",
        )
    response = body.get("response")
    if not isinstance(response, dict):
        raise MalformedResponse(Step.RESPONSE, "response is required")
    return response, attachment


def parse_registration(body: Any) -> RegistrationResponse:
    response, attachment = _common(body)
    credential_id = _credential_id(body, required=False)
    client_data = parse_client_data(response.get("clientDataJSON"))
    attestation_object = _field_bytes(response, "attestationObject", Step.ATTESTATION_OBJECT)
    transports = response.get("transports") or []
    if not isinstance(transports, list) or not all(isinstance(t, str) for t in transports):
        raise MalformedResponse(Step.RESPONSE, "transports must be a list of strings")
    known = tuple(dict.fromkeys(t for t in transports if t in TRANSPORTS))
    return RegistrationResponse(
        credential_id, attachment, client_data, attestation_object, known, _resident_key(body)
    )


def _resident_key(body: dict[str, Any]) -> bool | None:
    """credProps' `rk` (L3 §10.1.3), which the browser reports of the credential it made: a
    client extension output, unsigned, so informative only. One not in its shape is taken as
    not said, as one not asked for would be (§7.1 step 4's outputs are the RP's to judge)."""
    results = body.get("clientExtensionResults")
    props = results.get("credProps") if isinstance(results, dict) else None
    rk = props.get("rk") if isinstance(props, dict) else None
    return rk if isinstance(rk, bool) else None


def parse_authentication(body: Any) -> AuthenticationResponse:
    response, attachment = _common(body)
    credential_id = _credential_id(body, required=True)
    assert credential_id is not None
    client_data = parse_client_data(response.get("clientDataJSON"))
    authenticator_data = _field_bytes(response, "authenticatorData", Step.AUTHENTICATOR_DATA)
    signature = _field_bytes(response, "signature", Step.SIGNATURE_ENCODING)
    user_handle: bytes | None = None
    if response.get("userHandle") not in (None, ""):
        user_handle = _field_bytes(response, "userHandle", Step.USER_HANDLE_ENCODING)
    return AuthenticationResponse(
        credential_id, attachment, client_data, authenticator_data, signature, user_handle
    )
