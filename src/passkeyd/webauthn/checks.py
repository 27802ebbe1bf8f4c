"""Checks shared by both ceremonies, each raising the step it belongs to."""

from __future__ import annotations

import hashlib
import hmac
import io

import cbor2
from webauthn.helpers.structs import AuthenticatorDataFlags

from .errors import MalformedResponse, Step, VerificationFailed
from .origins import OriginPolicy
from .parsing import ClientData


def _shown(value: object, limit: int = 100) -> str:
    """A value the client sent, quoted for a refusal's message: what a browser put there is
    no secret, and seeing it is how a misconfigured origin is found. Printable ASCII only,
    cut at `limit`."""
    text = "".join(c if " " <= c <= "~" else "?" for c in str(value)[:limit])
    return f"'{text}'" + ("..." if len(str(value)) > limit else "")


def check_client_data(
    client_data: ClientData,
    *,
    expected_type: str,
    expected_challenge: bytes,
    expected_origins: OriginPolicy,
) -> None:
    """§7.1.7-11 / §7.2.10-14, in that order."""
    if client_data.type != expected_type:
        raise VerificationFailed(Step.TYPE, f"clientData.type must be {expected_type}")
    if not hmac.compare_digest(client_data.challenge, expected_challenge):
        raise VerificationFailed(Step.CHALLENGE, "clientData.challenge does not match")
    if not expected_origins.accepts(client_data.origin):
        raise VerificationFailed(
            Step.ORIGIN,
            f"clientData.origin {_shown(client_data.origin)} is not an origin of this service",
        )
    top = client_data.top_origin
    if client_data.cross_origin:
        # §7.1.10-11: an iframe ceremony is accepted only inside a page the RP named.
        if top is None:
            raise VerificationFailed(
                Step.CROSS_ORIGIN, "a cross-origin ceremony must name its topOrigin"
            )
        if not expected_origins.accepts_top(top):
            raise VerificationFailed(
                Step.CROSS_ORIGIN,
                f"topOrigin {_shown(top)} is not a top origin this service allows",
            )
    elif top is not None:  # §7.2.14: a topOrigin is only ever sent with crossOrigin true
        raise VerificationFailed(Step.CROSS_ORIGIN, "topOrigin is present but crossOrigin is not")


def check_authenticator_flags(
    rp_id_hash: bytes,
    flags: AuthenticatorDataFlags,
    *,
    expected_rp_id: str,
    require_user_verification: bool,
    require_user_presence: bool = True,
) -> None:
    """§7.1.14-17 / §7.2.15-18, in that order. (Only a registration may waive user
    presence: §7.1 step 15 checks it unless the ceremony's mediation was `conditional`.)"""
    expected = hashlib.sha256(expected_rp_id.encode("utf-8")).digest()
    if not hmac.compare_digest(rp_id_hash, expected):
        raise VerificationFailed(Step.RP_ID_HASH, "rpIdHash is not the hash of this RP id")
    if require_user_presence and not flags.up:
        raise VerificationFailed(Step.USER_PRESENT, "the user was not present")
    if require_user_verification and not flags.uv:
        raise VerificationFailed(Step.USER_VERIFIED, "user verification is required")
    if flags.bs and not flags.be:
        raise VerificationFailed(Step.BACKUP_FLAGS, "backed up but not backup eligible")


_AT, _ED = 0x40, 0x80
# The COSE key of some EdDSA authenticators says a map of 3 items and holds 4 (its `x`
# uncounted); py_webauthn reads it as 4, and so does the walk below, so that such a key is
# refused for what it is (its labels are text: §7.1.20), not as bytes after the key.
_MISCOUNTED_EDDSA_KEY = bytes.fromhex("a301634f4b500327206745643235353139")


def check_authenticator_data_layout(data: bytes, step: Step = Step.AUTHENTICATOR_DATA) -> None:
    """§6.1: authenticatorData is rpIdHash, flags and signCount, then the attested
    credential data when AT is set (whose public key is one CBOR map), then the extensions
    when ED is set (one CBOR map), and nothing after. py_webauthn finds where each CBOR map
    ends by encoding it again, which is not where it ended as sent when the authenticator
    encoded it otherwise (a float16, a long-form integer): bytes after the extensions, or
    extensions that were not a map, went unseen. Each map is read here as sent. Raises
    MalformedResponse(`step`: the attestation object's, in a registration)."""
    if len(data) < 37:
        raise MalformedResponse(step, "authenticatorData is under 37 bytes")
    flags, end = data[32], 37
    if flags & _AT:
        if len(data) < end + 18:
            raise MalformedResponse(step, "the attested credential data is cut short")
        end += 18 + int.from_bytes(data[end + 16 : end + 18], "big")
        if data[end : end + len(_MISCOUNTED_EDDSA_KEY)] == _MISCOUNTED_EDDSA_KEY:
            data = data[:end] + b"\xa4" + data[end + 1 :]
        end = _end_of_map(data, end, "the credential public key", step)
    if flags & _ED:
        end = _end_of_map(data, end, "the extensions", step)
    if end != len(data):
        raise MalformedResponse(
            step,
            f"authenticatorData has {len(data) - end} bytes after its last field",
        )


def _end_of_map(data: bytes, start: int, what: str, step: Step) -> int:
    """Where the CBOR map at `start` ends."""
    if start >= len(data):
        raise MalformedResponse(step, f"{what} is missing")
    stream = io.BytesIO(data)
    stream.seek(start)
    try:
        item = cbor2.CBORDecoder(stream, allow_duplicate_keys=False).decode()
    except Exception as exc:  # cbor2 raises assorted types on bad input
        raise MalformedResponse(step, f"{what} is not CBOR") from exc
    if not isinstance(item, dict):
        raise MalformedResponse(step, f"{what} is not a CBOR map")
    return stream.tell()
