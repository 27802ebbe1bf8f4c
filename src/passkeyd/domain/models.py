"""Entities of the domain, in Python names and typed values (the wire format lives at the edge)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from passkeyd.records import record
from passkeyd.webauthn import DEFAULT_ALGORITHMS


class FactorStatus(enum.StrEnum):
    UNVERIFIED = "unverified"
    VERIFIED = "verified"


class ChallengeStatus(enum.StrEnum):
    PENDING = "pending"
    EXPIRED = "expired"
    APPROVED = "approved"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Account:
    sid: str
    friendly_name: str
    token_hash: bytes
    date_created: int
    # The token sealed with the server's key: webhooks are signed with it, as Twilio does.
    token_sealed: bytes | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    sid: str
    account_sid: str
    friendly_name: str
    secret_hash: bytes
    revoked: bool
    date_created: int


@dataclass(frozen=True, slots=True)
class PasskeySettings:
    """Passkey settings as a service stores them: any field may be unset (None)."""

    rp_id: str | None = None
    rp_name: str | None = None
    rp_origins: tuple[str, ...] | None = None
    authenticator_attachment: str | None = None
    discoverable_credentials: str | None = None
    user_verification: str | None = None
    attestation: str | None = None  # passkeyd extension: none|indirect|direct|enterprise
    # passkeyd extensions (README "passkeyd extensions"):
    attestation_policy: str | None = None  # any (default) | trusted
    aaguid_allow: tuple[str, ...] | None = None
    aaguid_deny: tuple[str, ...] | None = None
    top_origins: tuple[str, ...] | None = None  # pages that may embed a ceremony
    counter_policy: str | None = None  # refuse (default) | flag
    # allow: a registration need not show user presence (L3 §7.1 step 15's conditional
    # create: Chrome's and Safari's automatic passkey upgrades); refuse (default)
    conditional_create: str | None = None
    algorithms: tuple[int, ...] | None = None  # COSE ids offered and accepted
    # WebAuthn L3 hints (security-key, client-device, hybrid), most preferred first: which
    # authenticator the browser offers first, in creation and request options
    hints: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class PasskeyPolicy:
    """Passkey settings with every field resolved: what a factor is bound to."""

    rp_id: str
    rp_name: str
    rp_origins: tuple[str, ...]
    authenticator_attachment: str
    discoverable_credentials: str
    user_verification: str
    attestation: str = "none"
    top_origins: tuple[str, ...] = ()
    algorithms: tuple[int, ...] = DEFAULT_ALGORITHMS  # what the creation options offered
    # The origins are the service's (the factor's request named none): sign-ins then check
    # the service's current ones. False for factors stored before this field existed.
    origins_from_service: bool = False
    # Likewise its user verification: a service's `required` then applies to its sign-ins.
    # False for factors stored before this field existed: they sign in as they did.
    user_verification_from_service: bool = False
    hints: tuple[str, ...] = ()  # what the creation options had


@dataclass(frozen=True, slots=True)
class Service:
    sid: str
    account_sid: str
    friendly_name: str
    passkeys: PasskeySettings
    settings: dict[str, Any]
    date_created: int
    date_updated: int
    seq: int = 0


@record
class Entity:
    sid: str
    account_sid: str
    service_sid: str
    identity: str
    date_created: int
    date_updated: int
    seq: int = 0


@record
class Credential:
    """A verified passkey: what a factor holds once registration succeeded."""

    credential_id: bytes
    public_key: bytes
    algorithm: int
    sign_count: int
    transports: tuple[str, ...]
    aaguid: str
    fmt: str
    backup_eligible: bool
    backed_up: bool
    authenticator_attachment: str | None
    authenticator_name: str | None = None  # from the AAGUID, at registration
    clone_warning: bool = False  # a counter went backwards (CounterPolicy flag)
    backup_eligible_changed: bool = False  # BE differed from registration in an assertion
    # Registered under trusted attestation: the metadata entry that vouched for it (an AAGUID,
    # or a U2F key identifier) and its chain's certificates (`trust.fingerprint`: the hex
    # SHA-256 of their public keys), which its sign-ins re-check against the metadata's status
    # reports. None otherwise.
    attested_model: str | None = None
    attested_certificates: tuple[str, ...] = ()
    # A client-side discoverable credential (a sign-in needs no username): as the browser
    # said (credProps' `rk`), or true when its options required one. None: not known.
    discoverable: bool | None = None


@record
class Factor:
    sid: str
    account_sid: str
    service_sid: str
    entity_sid: str
    identity: str
    friendly_name: str
    status: FactorStatus
    policy: PasskeyPolicy
    registration_challenge: bytes | None
    registration_expires: int
    credential: Credential | None
    date_last_approved: int | None
    date_created: int
    date_updated: int
    seq: int = 0


@record
class Challenge:
    sid: str
    account_sid: str
    service_sid: str
    entity_sid: str
    identity: str
    factor_sid: str
    challenge: bytes
    rp_id: str
    user_verification: str
    options: dict[str, Any]
    status: ChallengeStatus
    failed_attempts: int
    date_created: int
    date_updated: int
    date_responded: int | None
    expiration_date: int
    seq: int = 0
    allowed_credentials: tuple[bytes, ...] = field(default=())

    def effective_status(self, now: int) -> ChallengeStatus:
        """Expiry is evaluated lazily: a pending challenge past its date reads as expired."""
        if self.status is ChallengeStatus.PENDING and now > self.expiration_date:
            return ChallengeStatus.EXPIRED
        return self.status


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A page of `page_size` records in the list's order: the first, those right after the
    record `after`, or (paging back) those right before the record `before`."""

    page_size: int
    after: int | None = None
    descending: bool = False
    before: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    has_more: bool  # more records lie beyond, in the direction it was read (`backward`)
    backward: bool = False

    @property
    def first_seq(self) -> int | None:
        return self.items[0].seq if self.items else None

    @property
    def last_seq(self) -> int | None:
        return self.items[-1].seq if self.items else None


@dataclass(frozen=True, slots=True)
class Webhook:
    sid: str
    account_sid: str
    service_sid: str
    friendly_name: str
    event_types: tuple[str, ...]
    webhook_url: str
    webhook_method: str
    status: str
    version: str
    date_created: int
    date_updated: int
    seq: int = 0


@record
class Delivery:
    """One event to POST to one webhook, written in the transaction of the change."""

    event_sid: str
    event_type: str
    webhook_sid: str
    account_sid: str
    url: str
    payload: dict[str, str]


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """An outbox row a dispatcher has claimed (leased) for sending."""

    seq: int
    delivery: Delivery
    attempts: int
    lease_until: int = 0  # the claim's lease: only its holder may record the outcome
    date_created: int = 0  # when the event was queued


@record
class AuditEvent:
    """Who did what to which resource, when, and how it ended (the step that refused)."""

    account_sid: str
    service_sid: str
    actor: str  # the account or API key SID that authenticated
    action: str  # the route, e.g. approve_challenge
    resource: str  # the SID (or identity) acted on, when known
    outcome: str  # ok | refused
    code: int  # Twilio error code, 0 when ok
    step: str  # WebAuthn step that refused, "" otherwise
    request_id: str
    date_created: int
    seq: int = 0


@dataclass(frozen=True, slots=True)
class RateHit:
    """One hit to count against a rate-limit window, inside another write's transaction."""

    key: str
    window_start: int
    limit: int
    # The rule's window in seconds: a stored window that starts more than this after the
    # hit's was dated by a clock that has since stepped back, and the hit replaces it
    # (0: never; kept as a hit of a just-ended window, which counts alone).
    window: int = 0

    @property
    def stale_after(self) -> int:
        """A stored window starting after this was dated by a clock since stepped back."""
        return self.window_start + self.window if self.window else 2**62
