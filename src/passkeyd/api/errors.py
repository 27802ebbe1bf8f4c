"""The one error table: domain and ceremony errors -> (HTTP status, Twilio code).

Bodies are Twilio's `{code, message, more_info, status}`. Unknown exceptions become a
500 whose body names only the request id; the detail goes to the log.
"""

from __future__ import annotations

from typing import Any

from passkeyd.domain import errors as e
from passkeyd.webauthn import MalformedResponse, Step

TABLE: dict[type[e.DomainError], tuple[int, int]] = {
    e.NotFound: (404, 20404),
    e.Unauthenticated: (401, 20003),
    e.InvalidParameter: (400, 60200),
    e.InvalidParam: (400, 60300),
    e.InvalidRequest: (400, 60306),
    e.EntityExists: (409, 60301),
    e.FactorUnverified: (403, 60318),
    e.ChallengeAlreadyResponded: (403, 60322),
    e.ChallengeExpired: (403, 60323),
    e.FactorSidInvalid: (400, 60362),
    e.InvalidIdentity: (400, 60367),
    e.FactorTypeInvalid: (400, 60369),
    e.FactorConfigInvalid: (400, 60370),
    e.RelyingPartyMissing: (400, 60371),
    e.RelyingPartyIdInvalid: (400, 60372),
    e.InvalidPageSize: (400, 60373),
    e.InvalidPageToken: (400, 60374),
    e.FactorRelyingPartyMismatch: (400, 60382),
    e.IllegalFactorStatus: (403, 60383),
    e.UserDisplayNameMissing: (400, 60388),
    e.FactorNotFound: (404, 60390),
    e.ChallengeNotFound: (404, 60391),
    e.EntityNotFound: (404, 60392),
    e.CriteriaMissing: (400, 60393),
}

# Input that could not be decoded: 400, with the code of the field at fault.
MALFORMED: dict[Step, int] = {
    Step.CREDENTIAL_ID: 60375,
    Step.RAW_ID: 60376,
    Step.AUTHENTICATOR_ATTACHMENT: 60377,
    Step.CREDENTIAL_TYPE: 60377,  # (the reference, h-9: an invalid `type` or attachment)
    Step.RESPONSE: 60378,
    Step.CLIENT_DATA: 60380,
    Step.AUTHENTICATOR_DATA: 60379,
    Step.SIGNATURE_ENCODING: 60381,
    Step.USER_HANDLE_ENCODING: 60365,
    Step.ATTESTATION_OBJECT: 60386,
    Step.ATTESTED_CREDENTIAL_DATA: 60387,
    Step.PUBLIC_KEY: 60385,
}
# Checks that refuse a field the reference's error table names: 400 with that field's code
# ("Client data invalid": a wrong `type`; "Public key invalid": an algorithm not offered),
# rather than the ceremony's 403.
FAILED_FIELD: dict[Step, int] = {
    Step.TYPE: 60380,
    Step.ALGORITHM: 60385,
}
REGISTRATION_FAILED = (403, 60311)
ASSERTION_FAILED = (403, 60324)
INTERNAL = (500, 20500)
UNAVAILABLE = (503, 20503)


class HttpError(Exception):
    """An error only the HTTP edge can make (content type, body size, method, route)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def classify(error: e.DomainError) -> tuple[int, int, str]:
    """(status, code, message) for a domain error."""
    if isinstance(error, e.RegistrationRefused | e.AssertionRefused):
        ceremony = error.error
        message = f"{error.message} (WebAuthn step: {ceremony.step.value})"
        if isinstance(ceremony, MalformedResponse):
            return 400, MALFORMED.get(ceremony.step, 60300), message
        if ceremony.step in FAILED_FIELD:
            return 400, FAILED_FIELD[ceremony.step], message
        if ceremony.step is Step.ORIGIN and isinstance(error, e.RegistrationRefused):
            # The error table's 60380 names a wrong origin; for an approval, the challenge
            # table's 60324 (403) does, and that is kept.
            return 400, 60380, message
        status, code = (
            REGISTRATION_FAILED if isinstance(error, e.RegistrationRefused) else ASSERTION_FAILED
        )
        return status, code, message
    if isinstance(error, e.TooManyRequests):  # 20429, or 60326 for factors: its own code
        return 429, error.code, error.message
    for cls in type(error).__mro__:
        if cls in TABLE:
            status, code = TABLE[cls]
            return status, code, error.message
    return 400, 60300, error.message
