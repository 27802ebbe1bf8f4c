"""Domain objects -> Twilio's snake_case JSON, with absolute `url` and `links`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from passkeyd.domain.clock import iso
from passkeyd.domain.models import (
    Challenge,
    Entity,
    Factor,
    FactorStatus,
    PasskeyPolicy,
    PasskeySettings,
    Service,
    Webhook,
)
from passkeyd.webauthn import DEFAULT_ALGORITHMS
from passkeyd.webauthn.encoding import b64url_encode


def service_url(base: str, sid: str) -> str:
    return f"{base}/v2/Services/{sid}"


def entity_url(base: str, service_sid: str, identity: str) -> str:
    return f"{service_url(base, service_sid)}/Entities/{quote(identity, safe='')}"


def _passkeys(settings: PasskeySettings | PasskeyPolicy) -> dict[str, Any]:
    origins = settings.rp_origins
    out: dict[str, Any] = {
        "relying_party": {
            "id": settings.rp_id,
            "name": settings.rp_name,
            "origins": list(origins) if origins is not None else None,
        },
        "authenticator_attachment": settings.authenticator_attachment,
        "discoverable_credentials": settings.discoverable_credentials,
        "user_verification": settings.user_verification,
    }
    if settings.attestation not in (None, "", "none"):  # passkeyd extension, shown when asked for
        out["attestation"] = settings.attestation
    if isinstance(settings, PasskeySettings):
        # passkeyd extensions: only when set, so the default stays Twilio's shape.
        for name in ("attestation_policy", "counter_policy", "conditional_create"):
            if getattr(settings, name) is not None:
                out[name] = getattr(settings, name)
        for name in ("aaguid_allow", "aaguid_deny", "top_origins", "algorithms", "hints"):
            if getattr(settings, name) is not None:
                out[name] = list(getattr(settings, name))
    else:
        if settings.top_origins:
            out["top_origins"] = list(settings.top_origins)
        if settings.algorithms != DEFAULT_ALGORITHMS:
            out["algorithms"] = list(settings.algorithms)
        if settings.hints:
            out["hints"] = list(settings.hints)
    return out


def service_json(s: Service, base: str) -> dict[str, Any]:
    url = service_url(base, s.sid)
    st = s.settings
    return {
        "sid": s.sid,
        "account_sid": s.account_sid,
        "friendly_name": s.friendly_name,
        "code_length": st["code_length"],
        "lookup_enabled": st["lookup_enabled"],
        "psd2_enabled": st["psd2_enabled"],
        "skip_sms_to_landlines": st["skip_sms_to_landlines"],
        "dtmf_input_required": st["dtmf_input_required"],
        "tts_name": st["tts_name"],
        "do_not_share_warning_enabled": st["do_not_share_warning_enabled"],
        "custom_code_enabled": st["custom_code_enabled"],
        "push": st["push"],
        "totp": st["totp"],
        "default_template_sid": st["default_template_sid"],
        "whatsapp": st["whatsapp"],
        "passkeys": _passkeys(s.passkeys),
        "verify_event_subscription_enabled": st["verify_event_subscription_enabled"],
        "date_created": iso(s.date_created),
        "date_updated": iso(s.date_updated),
        "url": url,
        "links": {
            "verification_checks": f"{url}/VerificationCheck",
            "verifications": f"{url}/Verifications",
            "rate_limits": f"{url}/RateLimits",
            "messaging_configurations": f"{url}/MessagingConfigurations",
            "entities": f"{url}/Entities",
            "webhooks": f"{url}/Webhooks",
            "access_tokens": f"{url}/AccessTokens",
        },
    }


def entity_json(e: Entity, base: str) -> dict[str, Any]:
    url = entity_url(base, e.service_sid, e.identity)
    return {
        "sid": e.sid,
        "identity": e.identity,
        "account_sid": e.account_sid,
        "service_sid": e.service_sid,
        "date_created": iso(e.date_created),
        "date_updated": iso(e.date_updated),
        "url": url,
        "links": {
            "factors": f"{url}/Factors",
            "new_factors": f"{url}/Factors",
            "challenges": f"{url}/Challenges",
        },
    }


def factor_json(f: Factor, base: str, authenticator_status: str | None = None) -> dict[str, Any]:
    """`authenticator_status`: the status the FIDO metadata reports the passkey's model in,
    when it is one that a trusted service's sign-ins refuse (REVOKED, a compromise)."""
    metadata: dict[str, Any] | None = None
    if f.status is FactorStatus.VERIFIED and f.credential is not None:
        c = f.credential
        metadata = {"aaguid": c.aaguid}
        if c.authenticator_name is not None:
            metadata["authenticator_name"] = c.authenticator_name
        # passkeyd extensions: the credential id (base64url, as a browser's `id`: what an
        # app needs to tell the browser which passkeys it still accepts, WebAuthn's
        # signalAllAcceptedCredentials), the backup flags and what assertions flagged.
        metadata["credential_id"] = b64url_encode(c.credential_id)
        metadata["backup_eligible"] = c.backup_eligible
        metadata["backed_up"] = c.backed_up
        metadata["clone_warning"] = c.clone_warning
        metadata["backup_eligible_changed"] = c.backup_eligible_changed
        # Known: the browser said (credProps), or its options required one. The latter is
        # read from the factor's policy, so that it holds too for passkeys verified before
        # schema 13, or by an older process during a rollout (which leaves the column NULL).
        discoverable = c.discoverable
        if discoverable is None and f.policy.discoverable_credentials == "required":
            discoverable = True
        if discoverable is not None:
            metadata["discoverable"] = discoverable
        if f.date_last_approved is not None:
            metadata["date_last_approved"] = iso(f.date_last_approved)
        if authenticator_status is not None:
            metadata["authenticator_status"] = authenticator_status
    return {
        "sid": f.sid,
        "account_sid": f.account_sid,
        "service_sid": f.service_sid,
        "entity_sid": f.entity_sid,
        "identity": f.identity,
        "date_created": iso(f.date_created),
        "date_updated": iso(f.date_updated),
        "friendly_name": f.friendly_name,
        "status": f.status.value,
        "factor_type": "passkeys",
        "config": _passkeys(f.policy),
        "metadata": metadata,
        "url": f"{entity_url(base, f.service_sid, f.identity)}/Factors/{f.sid}",
    }


def new_factor_json(f: Factor, options: dict[str, Any], base: str) -> dict[str, Any]:
    """P1 only: the factor plus `binding` (always null for passkeys) and `options`."""
    out = factor_json(f, base)
    out["binding"] = None
    out["options"] = options
    return out


def challenge_json(
    c: Challenge, base: str, now: int, *, endpoint: str | None = None
) -> dict[str, Any]:
    """A challenge. `endpoint` (Challenges / ApproveChallenge) marks the Passkeys form:
    its `url` is that endpoint and it carries `options`; otherwise the entity form."""
    if endpoint is not None:
        url = f"{service_url(base, c.service_sid)}/Passkeys/{endpoint}"
        links = None
    else:
        url = f"{entity_url(base, c.service_sid, c.identity)}/Challenges/{c.sid}"
        links = {"notifications": f"{url}/Notifications"}
    out: dict[str, Any] = {
        "sid": c.sid,
        "account_sid": c.account_sid,
        "service_sid": c.service_sid,
        "entity_sid": c.entity_sid,
        "identity": c.identity,
        "factor_sid": c.factor_sid,
        "date_created": iso(c.date_created),
        "date_updated": iso(c.date_updated),
        "date_responded": iso(c.date_responded),
        "expiration_date": iso(c.expiration_date),
        "status": c.effective_status(now).value,
        "responded_reason": "none",
        "details": None,
        "hidden_details": None,
        "metadata": None,
        "factor_type": "passkeys",
        "url": url,
        "links": links,
    }
    if endpoint is not None:
        out["options"] = c.options
    return out


def webhook_json(w: Webhook, base: str) -> dict[str, Any]:
    return {
        "sid": w.sid,
        "service_sid": w.service_sid,
        "account_sid": w.account_sid,
        "friendly_name": w.friendly_name,
        "event_types": list(w.event_types),
        "status": w.status,
        "version": w.version,
        "webhook_url": w.webhook_url,
        "webhook_method": w.webhook_method,
        "date_created": iso(w.date_created),
        "date_updated": iso(w.date_updated),
        "url": f"{service_url(base, w.service_sid)}/Webhooks/{w.sid}",
    }
