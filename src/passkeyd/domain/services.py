"""Verify Services and the passkey policy they hold."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from passkeyd.webauthn import SUPPORTED_ALGORITHMS

from .clock import Clock
from .errors import InvalidParameter, NotFound, RelyingPartyIdInvalid
from .ids import new_sid
from .models import Page, PageRequest, PasskeySettings, Service
from .policy import (
    ATTACHMENTS,
    ATTESTATION,
    ATTESTATION_POLICIES,
    CONDITIONAL_CREATE,
    COUNTER_POLICIES,
    DISCOVERABLE,
    MAX_AAGUIDS,
    MAX_NAME_LENGTH,
    MAX_ORIGINS,
    USER_VERIFICATION,
    canonical_aaguid,
    check_friendly_name,
    check_hints,
    invalid_origin,
    valid_rp_id,
)
from .store import Store

# The other Verify service settings, with Twilio's defaults. Stored, echoed, not acted on.
DEFAULT_SETTINGS: dict[str, Any] = {
    "code_length": 6,
    "lookup_enabled": False,
    "psd2_enabled": False,
    "skip_sms_to_landlines": False,
    "dtmf_input_required": False,
    "tts_name": None,
    "do_not_share_warning_enabled": False,
    "custom_code_enabled": False,
    "push": {"include_date": False, "apn_credential_sid": None, "fcm_credential_sid": None},
    "totp": {"issuer": None, "time_step": 30, "code_length": 6, "skew": 1},
    "default_template_sid": None,
    "whatsapp": {"msg_service_sid": None, "from": None},
    "verify_event_subscription_enabled": False,
}


def _canonical(settings: PasskeySettings) -> PasskeySettings:
    """The RP id in lower case, as browsers take it (and hash it: `Example.com` would give
    an rpIdHash no authenticator makes, and browsers refuse it in the options)."""
    if settings.rp_id and settings.rp_id != settings.rp_id.lower():
        return replace(settings, rp_id=settings.rp_id.lower())
    return settings


def validate_passkeys(settings: PasskeySettings) -> None:
    """Refuse values no passkey ceremony could use. Raises RelyingPartyIdInvalid (60372)
    for an RP id that is not a domain (a scheme, a port, a path), else InvalidParameter
    (60200)."""
    if settings.rp_id and not valid_rp_id(settings.rp_id):
        raise RelyingPartyIdInvalid(
            "Relying party id invalid: Passkeys.RelyingParty.Id must be a domain,"
            " with no scheme, port or path"
        )
    if settings.rp_name is not None and len(settings.rp_name) > MAX_NAME_LENGTH:
        raise InvalidParameter("Invalid parameter: Passkeys.RelyingParty.Name is too long")
    if settings.rp_origins is not None:
        if len(settings.rp_origins) > MAX_ORIGINS:
            raise InvalidParameter(
                f"Invalid parameter: Passkeys.RelyingParty.Origins has more than {MAX_ORIGINS}"
            )
        if (problem := invalid_origin(settings.rp_origins)) is not None:
            raise InvalidParameter(f"Invalid parameter: Passkeys.RelyingParty.Origins: {problem}")
    for name, value, allowed in (
        ("AuthenticatorAttachment", settings.authenticator_attachment, ATTACHMENTS),
        ("DiscoverableCredentials", settings.discoverable_credentials, DISCOVERABLE),
        ("UserVerification", settings.user_verification, USER_VERIFICATION),
        ("Attestation", settings.attestation, ATTESTATION),
        ("AttestationPolicy", settings.attestation_policy, ATTESTATION_POLICIES),
        ("CounterPolicy", settings.counter_policy, COUNTER_POLICIES),
        ("ConditionalCreate", settings.conditional_create, CONDITIONAL_CREATE),
    ):
        if value and value not in allowed:
            raise InvalidParameter(
                f"Invalid parameter: Passkeys.{name} must be one of {', '.join(allowed)}"
            )
    if settings.top_origins is not None:
        if len(settings.top_origins) > MAX_ORIGINS:
            raise InvalidParameter(
                f"Invalid parameter: Passkeys.TopOrigins has more than {MAX_ORIGINS}"
            )
        if (problem := invalid_origin(settings.top_origins)) is not None:
            raise InvalidParameter(f"Invalid parameter: Passkeys.TopOrigins: {problem}")
    for name, aaguids in (
        ("AaguidAllow", settings.aaguid_allow),
        ("AaguidDeny", settings.aaguid_deny),
    ):
        if aaguids is None:
            continue
        if len(aaguids) > MAX_AAGUIDS:
            raise InvalidParameter(
                f"Invalid parameter: Passkeys.{name} has more than {MAX_AAGUIDS} AAGUIDs"
            )
        if any(canonical_aaguid(a) != a for a in aaguids):
            raise InvalidParameter(f"Invalid parameter: Passkeys.{name} must list AAGUIDs")
    if (problem := check_hints(settings.hints, "Passkeys.Hints")) is not None:
        raise InvalidParameter(f"Invalid parameter: {problem}")
    if settings.algorithms is not None and (
        not settings.algorithms or any(a not in SUPPORTED_ALGORITHMS for a in settings.algorithms)
    ):
        supported = ", ".join(str(a) for a in SUPPORTED_ALGORITHMS)
        raise InvalidParameter(
            f"Invalid parameter: Passkeys.Algorithms must be COSE algorithms among {supported}"
        )


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class Services:
    store: Store
    clock: Clock

    def create(
        self,
        account_sid: str,
        *,
        friendly_name: str,
        passkeys: PasskeySettings,
        settings: dict[str, Any],
    ) -> Service:
        check_friendly_name(friendly_name)
        validate_passkeys(passkeys)
        passkeys = _canonical(passkeys)
        now = self.clock()
        service = Service(
            sid=new_sid("VA"),
            account_sid=account_sid,
            friendly_name=friendly_name,
            passkeys=passkeys,
            settings=_merge(DEFAULT_SETTINGS, settings),
            date_created=now,
            date_updated=now,
        )
        self.store.insert_service(service)
        return service

    def get(self, account_sid: str, sid: str) -> Service:
        service = self.store.get_service(account_sid, sid)
        if service is None:
            raise NotFound(f"The requested resource /Services/{sid} was not found")
        return service

    def list(self, account_sid: str, page: PageRequest) -> Page:
        return self.store.list_services(account_sid, page)

    def update(
        self,
        account_sid: str,
        sid: str,
        *,
        friendly_name: str | None,
        passkeys: dict[str, Any],
        settings: dict[str, Any],
    ) -> Service:
        """Partial update: only the fields given change, in the row as stored when the
        write takes it (not as cached here: a change just made elsewhere would be lost)."""
        self.get(account_sid, sid)  # not found before invalid
        if friendly_name is not None:
            check_friendly_name(friendly_name)
        # Only the values given are checked: one stored by an earlier release that a later
        # one refuses must not block changing something else.
        validate_passkeys(replace(PasskeySettings(), **passkeys))
        now = self.clock()

        def change(service: Service) -> Service:
            return replace(
                service,
                friendly_name=service.friendly_name if friendly_name is None else friendly_name,
                passkeys=_canonical(replace(service.passkeys, **passkeys)),
                settings=_merge(service.settings, settings),
                date_updated=now,
            )

        updated = self.store.update_service(account_sid, sid, change)
        if updated is None:
            raise NotFound(f"The requested resource /Services/{sid} was not found")
        return updated

    def delete(self, account_sid: str, sid: str) -> None:
        if not self.store.delete_service(account_sid, sid):
            raise NotFound(f"The requested resource /Services/{sid} was not found")
