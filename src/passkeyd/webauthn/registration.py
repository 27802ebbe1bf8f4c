"""Registration ceremony (WebAuthn L3 §7.1), top to bottom in spec order.

py_webauthn verifies the attestation statement; this module decides the policy
(origins, user verification, algorithms) and names the step of every refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webauthn.helpers import (
    decode_credential_public_key,
    parse_attestation_object,
)
from webauthn.helpers.aaguid_to_string import aaguid_to_string
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AuthenticatorAttestationResponse,
    PublicKeyCredentialType,
    RegistrationCredential,
)

from webauthn import verify_registration_response

from .checks import check_authenticator_flags, check_client_data
from .encoding import b64url_encode
from .errors import MalformedResponse, Step, VerificationFailed
from .origins import OriginPolicy
from .parsing import RegistrationResponse

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


def verify_registration(
    response: RegistrationResponse,
    *,
    expected_challenge: bytes,
    expected_rp_id: str,
    expected_origins: OriginPolicy,
    require_user_verification: bool,
    expected_algorithms: Sequence[int],
) -> RegisteredCredential:
    # §7.1.7-10: clientDataJSON.
    check_client_data(
        response.client_data,
        expected_type="webauthn.create",
        expected_challenge=expected_challenge,
        expected_origins=expected_origins,
    )
    # §7.1.12-13: decode the attestation object.
    try:
        attestation = parse_attestation_object(response.attestation_object)
    except Exception as exc:  # the library raises assorted types on bad CBOR
        raise MalformedResponse(
            Step.ATTESTATION_OBJECT, "attestationObject is not valid CBOR"
        ) from exc
    auth_data = attestation.auth_data
    # §7.1.14-17: rpIdHash, UP, UV, backup flags.
    check_authenticator_flags(
        auth_data.rp_id_hash,
        auth_data.flags,
        expected_rp_id=expected_rp_id,
        require_user_verification=require_user_verification,
    )
    attested = auth_data.attested_credential_data
    if not auth_data.flags.at or attested is None or not attested.credential_id:
        raise MalformedResponse(Step.ATTESTED_CREDENTIAL_DATA, "no attested credential data")
    credential_id = attested.credential_id
    if response.credential_id is not None and response.credential_id != credential_id:
        raise MalformedResponse(Step.CREDENTIAL_ID, "id is not the attested credential id")
    # §7.1.19: the key's algorithm must be one the options offered.
    try:
        algorithm = int(decode_credential_public_key(attested.credential_public_key).alg)
    except Exception as exc:
        raise MalformedResponse(
            Step.PUBLIC_KEY, "the credential public key is not valid COSE"
        ) from exc
    if algorithm not in expected_algorithms:
        raise VerificationFailed(Step.ALGORITHM, f"algorithm {algorithm} was not offered")
    # §7.1.20-22: the attestation statement, verified by the library for its format.
    try:
        verified = verify_registration_response(
            credential=RegistrationCredential(
                id=b64url_encode(credential_id),
                raw_id=credential_id,
                response=AuthenticatorAttestationResponse(
                    client_data_json=response.client_data.raw,
                    attestation_object=response.attestation_object,
                ),
                type=PublicKeyCredentialType.PUBLIC_KEY,
            ),
            expected_challenge=expected_challenge,
            expected_rp_id=expected_rp_id,
            expected_origin=response.client_data.origin,
            require_user_verification=require_user_verification,
            supported_pub_key_algs=[COSEAlgorithmIdentifier(a) for a in expected_algorithms],
        )
    except Exception as exc:  # library errors never cross this boundary raw
        raise VerificationFailed(
            Step.ATTESTATION_STATEMENT,
            f"the {attestation.fmt!s} attestation statement did not verify",
        ) from exc
    # §7.1.24: credential id length.
    if len(credential_id) > MAX_CREDENTIAL_ID_LENGTH:
        raise VerificationFailed(Step.CREDENTIAL_ID_LENGTH, "credential id is over 1023 bytes")
    return RegisteredCredential(
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        algorithm=algorithm,
        sign_count=verified.sign_count,
        aaguid=aaguid_to_string(attested.aaguid),
        fmt=str(getattr(verified.fmt, "value", verified.fmt)),
        user_verified=verified.user_verified,
        backup_eligible=auth_data.flags.be,
        backed_up=auth_data.flags.bs,
    )
