"""Per-service passkey policy: validation, and resolving a factor's policy from the request
and the service."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from passkeyd.webauthn import DEFAULT_ALGORITHMS, Step, VerificationFailed
from passkeyd.webauthn.origins import ipv4_label, origin_problem

from .errors import (
    CriteriaMissing,
    DomainError,
    InvalidParameter,
    RelyingPartyIdInvalid,
    RelyingPartyMissing,
)
from .models import PasskeyPolicy, PasskeySettings

ATTACHMENTS = ("platform", "cross-platform", "any")
DISCOVERABLE = ("required", "preferred", "discouraged")
USER_VERIFICATION = ("required", "preferred", "discouraged")
ATTESTATION = ("none", "indirect", "direct", "enterprise")
# any: attestation is verified as far as it goes, and trusted whatever signed it; checked: a
# certificate chain, when there is one, must lead to a root the FIDO metadata lists for the
# model (none and self attestation are accepted, as WebAuthn §7.1 step 24 lets a relying
# party accept them); trusted: every attestation must (none and self are refused).
ATTESTATION_POLICIES = ("any", "checked", "trusted")
COUNTER_POLICIES = ("refuse", "flag")
CONDITIONAL_CREATE = ("refuse", "allow")
HINTS = ("security-key", "client-device", "hybrid")  # WebAuthn L3 PublicKeyCredentialHint
MAX_AAGUIDS = 200
MAX_ORIGINS = 50
MAX_ORIGIN_LENGTH = 512
MAX_NAME_LENGTH = 255


def check_friendly_name(
    name: str, error: type[DomainError] = InvalidParameter, field: str = "FriendlyName"
) -> None:
    """A resource's name: 1 to MAX_NAME_LENGTH characters, not only spaces."""
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise error(f"Invalid parameter: {field} must be 1 to {MAX_NAME_LENGTH} characters")


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_RP_ID = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_ORIGIN_CHARS = re.compile(r"^[\x21-\x7e]+$")


def valid_rp_id(value: str) -> bool:
    """A domain: no scheme, port or path (`localhost` counts); not an IP address, which
    browsers refuse as an RP id (a last label that is a number makes the host an IPv4
    address to the URL parser: `127.0.0.1`, `10.1`, `0x7f.1`)."""
    if len(value) > 253 or not _RP_ID.fullmatch(value):
        return False
    return not ipv4_label(value.rsplit(".", 1)[-1])


def invalid_origin(values: Iterable[str]) -> str | None:
    """What is wrong with the first origin that cannot be one (it, quoted, and why), or
    None when all are acceptable."""
    for value in values:
        shown = repr(value[:80] + ("..." if len(value) > 80 else ""))
        if len(value) > MAX_ORIGIN_LENGTH:
            return f"{shown} is longer than {MAX_ORIGIN_LENGTH} characters"
        if not _ORIGIN_CHARS.fullmatch(value):
            return f"{shown} is empty or has a space or a character outside printable ASCII"
        if (problem := origin_problem(value)) is not None:
            return f"{shown} {problem}"
    return None


def canonical_aaguid(value: str) -> str | None:
    """An AAGUID in its lowercase dashed form, or None when it is not one."""
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


def check_authenticator_lists(settings: PasskeySettings, aaguid: str) -> None:
    """A service's AAGUID deny list, then its allow list (when it has one).

    Raises VerificationFailed(ATTESTATION_TRUST) naming the list. Without trusted
    attestation the AAGUID is whatever the authenticator claims: these lists then keep
    honest authenticators in or out, and only `AttestationPolicy=trusted` makes them binding.
    """
    key = aaguid.lower()
    if settings.aaguid_deny and key in settings.aaguid_deny:
        raise VerificationFailed(
            Step.ATTESTATION_TRUST, f"authenticator {key} is on this service's AAGUID deny list"
        )
    if settings.aaguid_allow and key not in settings.aaguid_allow:
        raise VerificationFailed(
            Step.ATTESTATION_TRUST,
            f"authenticator {key} is not on this service's AAGUID allow list",
        )


def _set(value: str | None) -> str | None:
    return value if value else None  # an empty string means unset


def resolve_policy(requested: PasskeySettings, service: PasskeySettings) -> PasskeyPolicy:
    """Each field from the request, else from the service; refuse what neither has.

    Raises RelyingPartyMissing (60371), RelyingPartyIdInvalid (60372), CriteriaMissing (60393).
    """
    rp_id = _set(requested.rp_id) or _set(service.rp_id)
    rp_name = _set(requested.rp_name) or _set(service.rp_name)
    origins = requested.rp_origins or service.rp_origins
    if not rp_id and not rp_name and not origins:
        raise RelyingPartyMissing("Relying party invalid or not provided")
    if not rp_id or not valid_rp_id(rp_id):
        raise RelyingPartyIdInvalid("Relying party id invalid or not provided")
    rp_id = rp_id.lower()  # as a browser has it (a service stored before this may not be)
    if not rp_name or not origins:
        raise RelyingPartyMissing("Relying party name and origins are required")
    criteria = {
        "authenticator_attachment": _set(requested.authenticator_attachment)
        or _set(service.authenticator_attachment),
        "discoverable_credentials": _set(requested.discoverable_credentials)
        or _set(service.discoverable_credentials),
        "user_verification": _set(requested.user_verification) or _set(service.user_verification),
    }
    missing = [name for name, value in criteria.items() if value is None]
    if missing:
        raise CriteriaMissing(
            "Authenticator criteria are missing from the request: " + ", ".join(missing)
        )
    return PasskeyPolicy(
        rp_id=rp_id,
        rp_name=rp_name,
        rp_origins=tuple(origins),
        authenticator_attachment=str(criteria["authenticator_attachment"]),
        discoverable_credentials=str(criteria["discoverable_credentials"]),
        user_verification=str(criteria["user_verification"]),
        attestation=_set(requested.attestation)
        or _set(service.attestation)
        # Trusted (or checked) attestation needs a certificate chain: ask for one.
        or ("direct" if checks_attestation(service.attestation_policy) else "none"),
        top_origins=tuple(service.top_origins or ()),
        algorithms=tuple(service.algorithms or DEFAULT_ALGORITHMS),
        origins_from_service=not requested.rp_origins,
        user_verification_from_service=not _set(requested.user_verification),
        hints=requested.hints if requested.hints is not None else service.hints or (),
    )


def check_hints(hints: tuple[str, ...] | None, name: str) -> str | None:
    """What is wrong with a list of hints (`name` says where it was given), or None."""
    if hints is None:
        return None
    unknown = [h for h in hints if h not in HINTS]
    if unknown:
        return f"{name} must list hints among {', '.join(HINTS)} (not {unknown[0][:40]!r})"
    return None


def usernameless_request(service: PasskeySettings) -> tuple[str, str, str]:
    """The RP id, RP name and user verification a usernameless challenge asks with: the
    service's. It names no passkey, so the service's RP id must be set. Its name defaults
    to the RP id, and user verification to `preferred`, WebAuthn's own default. The
    service's attachment and discoverable-credential criteria are registration's, and
    what it answers with is checked against the answering passkey's policy (its RP id,
    origins and user verification) at approval.

    Raises RelyingPartyMissing (60371), RelyingPartyIdInvalid (60372)."""
    rp_id = _set(service.rp_id)
    if not rp_id:
        raise RelyingPartyMissing(
            "Relying party invalid or not provided: a challenge without an identity asks at"
            " the service's Passkeys.RelyingParty.Id, and the service has none"
        )
    if not valid_rp_id(rp_id):
        raise RelyingPartyIdInvalid("Relying party id invalid or not provided")
    rp_id = rp_id.lower()
    return rp_id, _set(service.rp_name) or rp_id, _set(service.user_verification) or "preferred"


def origins_in_force(
    policy: PasskeyPolicy, service: PasskeySettings
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The origins and top origins a passkey signs in from: the service's current ones
    while the service still has the passkey's RP id, so that an origin added to the service
    (an Android app, a new subdomain) works for the passkeys already registered, and one
    taken off (a retired subdomain, or all of them) stops working for them. The origins a
    factor's request named itself stay its own (top origins are always the service's). A
    passkey of an RP id the service no longer has keeps what it was registered with."""
    if not _has_rp_of(service, policy):
        return policy.rp_origins, policy.top_origins
    top_origins = tuple(service.top_origins or ())
    if policy.origins_from_service:
        return tuple(service.rp_origins or ()), top_origins
    return policy.rp_origins, top_origins


def service_requires_user_verification(policy: PasskeyPolicy, service: PasskeySettings) -> bool:
    """Whether the service's current setting requires user verification of this passkey:
    `required` on a service that still has the passkey's RP id applies to the passkeys
    already registered under its laxer settings, as the other security policies do (a
    service raised to `required` is obeyed at once). A factor whose own request named its
    user verification keeps that, as it was registered under it."""
    return (
        policy.user_verification_from_service
        and service.user_verification == "required"
        and _has_rp_of(service, policy)
    )


def _has_rp_of(service: PasskeySettings, policy: PasskeyPolicy) -> bool:
    """The service still has the passkey's RP id (stored RP ids are lower-case; a service's
    stored before that may not be)."""
    return bool(service.rp_id) and str(service.rp_id).lower() == policy.rp_id


def checks_attestation(attestation_policy: str | None) -> bool:
    """Whether a service's attestation chains are checked against the FIDO metadata, and
    so its attested passkeys held to their model's status at sign-in: `trusted`, `checked`."""
    return attestation_policy in ("trusted", "checked")
