"""Ceremony errors: every refusal names the WebAuthn step that refused.

`MalformedResponse` means the client's input could not be decoded at all;
`VerificationFailed` means it decoded but a check of WebAuthn L3 §7.1
(registration) or §7.2 (authentication) refused it.
"""

from __future__ import annotations

import enum


class Step(enum.Enum):
    """The step of a ceremony that refused. Values cite WebAuthn L3 (reg §7.1 / auth §7.2),
    numbered as the editor's draft numbers them (w3c/webauthn main, 146d0db, July 2026),
    its hidden steps (`<li>` items) counted."""

    # Decoding the credential (before the numbered checks).
    CREDENTIAL_ID = "credential id"
    RAW_ID = "rawId"
    AUTHENTICATOR_ATTACHMENT = "authenticatorAttachment"
    CREDENTIAL_TYPE = "credential type"
    RESPONSE = "response"
    CLIENT_DATA = "clientDataJSON"
    ATTESTATION_OBJECT = "attestationObject"
    AUTHENTICATOR_DATA = "authenticatorData"
    SIGNATURE_ENCODING = "signature"
    USER_HANDLE_ENCODING = "userHandle"
    # The numbered checks.
    TYPE = "§7.1.7/§7.2.10 clientData.type"
    CHALLENGE = "§7.1.8/§7.2.11 clientData.challenge"
    ORIGIN = "§7.1.9/§7.2.12 clientData.origin"
    CROSS_ORIGIN = "§7.1.10-11/§7.2.13-14 clientData.crossOrigin/topOrigin"
    RP_ID_HASH = "§7.1.14/§7.2.15 rpIdHash"
    USER_PRESENT = "§7.1.15/§7.2.16 user present"
    USER_VERIFIED = "§7.1.16/§7.2.17 user verified"
    BACKUP_FLAGS = "§7.1.17/§7.2.18 backup flags"
    ATTESTED_CREDENTIAL_DATA = "§7.1.13 attested credential data"
    PUBLIC_KEY = "§7.1.20 credential public key"
    ALGORITHM = "§7.1.20 public key algorithm"
    ATTESTATION_STATEMENT = "§7.1.22 attestation statement"
    ATTESTATION_TRUST = "§7.1.24 attestation trustworthiness"
    CREDENTIAL_ID_LENGTH = "§7.1.25 credential id length"
    CREDENTIAL_REGISTERED = "§7.1.26 credential id already registered"
    CREDENTIAL_ALLOWED = "§7.2.5 credential in allowCredentials"
    USER_HANDLE = "§7.2.6 userHandle owner"
    CREDENTIAL_OWNER = "§7.2.6 credential of the identified user"
    SIGNATURE = "§7.2.21 signature"
    SIGN_COUNT = "§7.2.22 signature counter"
    # The relying party's own policy, once the numbered checks have passed.
    AUTHENTICATOR_STATUS = "authenticator status (FIDO MDS3 §3.1.4)"


class CeremonyError(Exception):
    """Root of every ceremony failure raised by `passkeyd.webauthn`."""

    def __init__(self, step: Step, detail: str) -> None:
        super().__init__(f"{step.value}: {detail}")
        self.step = step
        self.detail = detail


class MalformedResponse(CeremonyError):
    """The credential could not be decoded."""


class VerificationFailed(CeremonyError):
    """The credential decoded, but a verification step refused it."""
