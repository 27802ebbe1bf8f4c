"""Domain errors. Each maps, in one table at the HTTP edge, to a status and Twilio code."""

from __future__ import annotations

from passkeyd.webauthn import CeremonyError


class DomainError(Exception):
    """Root of every refusal the domain makes. `message` is safe to show a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # The SID of what was refused, where the path names only its parent (the challenge
        # an approval answered): for the audit trail.
        self.concerns = ""
        # What the error's `details` tells a client, beside its code (a passkeyd extension).
        self.details: dict[str, object] | None = None


class NotFound(DomainError):
    """A resource named in the URL path does not exist (or belongs to another account)."""


class Unauthenticated(DomainError):
    pass


class InvalidParameter(DomainError):
    """A Verify form parameter is invalid (Twilio 60200)."""


class InvalidParam(DomainError):
    """A Passkeys/Factor parameter is invalid (Twilio 60300)."""


class InvalidRequest(DomainError):
    """A malformed SID, identity or list parameter (Twilio 60306)."""


class EntityExists(DomainError):
    pass


class FactorUnverified(DomainError):
    pass


class ChallengeAlreadyResponded(DomainError):
    pass


class ChallengeExpired(DomainError):
    pass


class FactorSidInvalid(DomainError):
    pass


class InvalidIdentity(DomainError):
    pass


class FactorTypeInvalid(DomainError):
    pass


class FactorConfigInvalid(DomainError):
    pass


class RelyingPartyMissing(DomainError):
    pass


class RelyingPartyIdInvalid(DomainError):
    pass


class InvalidPageSize(DomainError):
    pass


class InvalidPageToken(DomainError):
    pass


class FactorRelyingPartyMismatch(DomainError):
    pass


class IllegalFactorStatus(DomainError):
    pass


class UserDisplayNameMissing(DomainError):
    pass


class FactorNotFound(DomainError):
    pass


class ChallengeNotFound(DomainError):
    pass


class EntityNotFound(DomainError):
    pass


class CriteriaMissing(DomainError):
    pass


class RegistrationRefused(DomainError):
    """A VerifyFactor ceremony step refused the credential."""

    def __init__(self, error: CeremonyError) -> None:
        super().__init__(f"Factor verification failed: {error.detail}")
        self.error = error


class AssertionRefused(DomainError):
    """An ApproveChallenge ceremony step refused the assertion."""

    def __init__(self, error: CeremonyError) -> None:
        super().__init__(f"Challenge verification failed: {error.detail}")
        self.error = error


class TooManyRequests(DomainError):
    """429 with `Retry-After`; `code` is 20429, or 60326 for factor creation."""

    def __init__(self, message: str, *, retry_after: int, code: int = 20429) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)
        self.code = code
