"""Authentication ceremony (WebAuthn L3 §7.2), top to bottom in spec order.

The caller has already found the credential (§7.2.5-7: by credential id, within
the challenge's allowCredentials); this module checks the assertion itself.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from webauthn.helpers import (
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    parse_authenticator_data,
)
from webauthn.helpers.algorithms import get_ec2_sig_alg
from webauthn.helpers.verify_signature import verify_signature

from passkeyd.records import record

from .checks import (
    check_authenticator_data_layout,
    check_authenticator_flags,
    check_client_data,
)
from .cose import cose_algorithm, own_public_key, own_verifier
from .errors import MalformedResponse, Step, VerificationFailed
from .origins import OriginPolicy
from .parsing import AuthenticationResponse


@record
class VerifiedAssertion:
    sign_count: int
    user_verified: bool
    backup_eligible: bool
    backed_up: bool
    counter_regressed: bool = False  # the counter did not grow (only when allowed to)


def verify_authentication(
    response: AuthenticationResponse,
    *,
    expected_challenge: bytes,
    expected_rp_id: str,
    expected_origins: OriginPolicy,
    expected_user_handle: bytes,
    credential_public_key: bytes,
    stored_sign_count: int,
    require_user_verification: bool,
    require_user_handle: bool = False,
    counter_must_grow: bool = True,
) -> VerifiedAssertion:
    """Verify an assertion. A counter that did not grow is refused (§7.2.22) unless
    `counter_must_grow` is False: then it is reported as `counter_regressed`."""
    # §7.2.6: when the user was not identified first (usernameless), the userHandle is
    # required; when given, it must name the credential's owner.
    if require_user_handle and response.user_handle is None:
        raise VerificationFailed(
            Step.USER_HANDLE, "userHandle is required when the user was not identified first"
        )
    if response.user_handle is not None and not hmac.compare_digest(
        response.user_handle, expected_user_handle
    ):
        raise VerificationFailed(Step.USER_HANDLE, "userHandle is not the owner of this credential")
    # §7.2.10-14: clientDataJSON.
    check_client_data(
        response.client_data,
        expected_type="webauthn.get",
        expected_challenge=expected_challenge,
        expected_origins=expected_origins,
    )
    check_authenticator_data_layout(response.authenticator_data)
    try:
        auth_data = parse_authenticator_data(response.authenticator_data)
    except Exception as exc:
        raise MalformedResponse(Step.AUTHENTICATOR_DATA, "authenticatorData is malformed") from exc
    # §7.2.15-18: rpIdHash, UP, UV, backup flags.
    check_authenticator_flags(
        auth_data.rp_id_hash,
        auth_data.flags,
        expected_rp_id=expected_rp_id,
        require_user_verification=require_user_verification,
    )
    # §7.2.21: signature over authenticatorData || SHA-256(clientDataJSON).
    signed = response.authenticator_data + hashlib.sha256(response.client_data.raw).digest()
    if not _signature_verifies(credential_public_key, response.signature, signed):
        raise VerificationFailed(Step.SIGNATURE, "the signature did not verify")
    # §7.2.19 compares BE with the registration's, then applies the RP's policy: here a
    # change is recorded by the caller (`backup_eligible_changed`), never refused. iCloud
    # Keychain passkeys registered with BE=0 report BE=1 later (go-webauthn#335, which
    # refused them), and password managers let their users turn backup off for passkeys
    # they hold (KeePassXC, KeePassDX).
    # §7.2.22: the counter must grow, unless both it and the stored one are zero.
    new_count = auth_data.sign_count
    regressed = bool(new_count or stored_sign_count) and new_count <= stored_sign_count
    if regressed and counter_must_grow:
        raise VerificationFailed(Step.SIGN_COUNT, "the signature counter did not increase")
    return VerifiedAssertion(
        sign_count=new_count,
        user_verified=auth_data.flags.uv,
        backup_eligible=auth_data.flags.be,
        backed_up=auth_data.flags.bs,
        counter_regressed=regressed,
    )


def _signature_verifies(credential_public_key: bytes, signature: bytes, signed: bytes) -> bool:
    """ES384, the fully-specified algorithms and Ed448 with passkeyd's own check
    (py_webauthn has none, `cose`); every other algorithm with py_webauthn's."""
    try:
        return _verifier(credential_public_key)(signature, signed)
    except Exception:  # InvalidSignature, malformed keys and library errors alike
        return False


@functools.lru_cache(maxsize=4096)
def _verifier(credential_public_key: bytes) -> Callable[[bytes, bytes], bool]:
    """How signatures by this COSE key are checked, worked out once per key bytes (the key
    decoded and loaded, about 10-20 us, its algorithm read, its ECDSA made), as a passkey
    signs in again and again. Keys are public and immutable; a failure is not cached."""
    own = own_public_key(credential_public_key)
    if own is not None:
        return own_verifier(cose_algorithm(credential_public_key), own)
    decoded = decode_credential_public_key(credential_public_key)
    alg, key = decoded.alg, decoded_public_key_to_cryptography(decoded)
    if isinstance(key, EllipticCurvePublicKey):
        # What py_webauthn's verify_signature does with such a key, its ECDSA made once:
        # each one made imports cryptography's backend again, which on Python 3.11 raises
        # and formats an AttributeError inside the import (about 6,500 instructions).
        ecdsa = get_ec2_sig_alg(alg)

        def verify_ec2(signature: bytes, signed: bytes) -> bool:
            key.verify(signature, signed, ecdsa)
            return True

        return verify_ec2

    def verify(signature: bytes, signed: bytes) -> bool:
        verify_signature(public_key=key, signature_alg=alg, signature=signature, data=signed)
        return True

    return verify
