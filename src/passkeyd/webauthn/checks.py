"""Checks shared by both ceremonies, each raising the step it belongs to."""

from __future__ import annotations

import hashlib
import hmac

from webauthn.helpers.structs import AuthenticatorDataFlags

from .errors import Step, VerificationFailed
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
    """§7.1.7-10 / §7.2.11-14, in that order."""
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
        # §7.1.10: an iframe ceremony is accepted only inside a page the RP named.
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
) -> None:
    """§7.1.14-17 / §7.2.15-18, in that order."""
    expected = hashlib.sha256(expected_rp_id.encode("utf-8")).digest()
    if not hmac.compare_digest(rp_id_hash, expected):
        raise VerificationFailed(Step.RP_ID_HASH, "rpIdHash is not the hash of this RP id")
    if not flags.up:
        raise VerificationFailed(Step.USER_PRESENT, "the user was not present")
    if require_user_verification and not flags.uv:
        raise VerificationFailed(Step.USER_VERIFIED, "user verification is required")
    if flags.bs and not flags.be:
        raise VerificationFailed(Step.BACKUP_FLAGS, "backed up but not backup eligible")
