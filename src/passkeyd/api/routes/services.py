"""/v2/Services: create, list, fetch, update, delete (form-encoded, PascalCase)."""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Route

from passkeyd.digits import ascii_int
from passkeyd.domain.errors import DomainError, InvalidParameter
from passkeyd.domain.models import PasskeySettings
from passkeyd.domain.policy import canonical_aaguid
from passkeyd.webauthn import ALGORITHM_NAMES

from ..edge import Call, endpoint
from ..pagination import list_page, page_payload
from ..params import Form, read_form
from ..serializers import service_json

_PASSKEY_FIELDS = {
    "Passkeys.RelyingParty.Id": "rp_id",
    "Passkeys.RelyingParty.Name": "rp_name",
    "Passkeys.AuthenticatorAttachment": "authenticator_attachment",
    "Passkeys.DiscoverableCredentials": "discoverable_credentials",
    "Passkeys.UserVerification": "user_verification",
}
# passkeyd extensions whose empty value unsets them.
_EXTENSION_FIELDS = {
    "Passkeys.Attestation": "attestation",
    "Passkeys.AttestationPolicy": "attestation_policy",
    "Passkeys.CounterPolicy": "counter_policy",
    "Passkeys.ConditionalCreate": "conditional_create",
}
_ORIGINS = "Passkeys.RelyingParty.Origins"
_TOP_ORIGINS = "Passkeys.TopOrigins"
_AAGUID_LISTS = {"Passkeys.AaguidAllow": "aaguid_allow", "Passkeys.AaguidDeny": "aaguid_deny"}
_ALGORITHMS = "Passkeys.Algorithms"
_HINTS = "Passkeys.Hints"
_ALGORITHM_IDS = {name.upper(): alg for alg, name in ALGORITHM_NAMES.items()}


def _csv(form: Form, key: str) -> list[str]:
    """One comma-separated value (the SDK) or repeated keys (curl, arrays)."""
    return [item.strip() for v in form.get_all(key) for item in v.split(",") if item.strip()]


def _algorithm(text: str) -> int:
    """A COSE algorithm by number (-7) or name (ES256)."""
    if text.upper() in _ALGORITHM_IDS:
        return _ALGORITHM_IDS[text.upper()]
    # ASCII digits only: int() also reads "1_0", "+7" and other scripts' digits ("-٧")
    negative = text[:1] == "-"
    number = ascii_int(text[1:] if negative else text, max_digits=10)
    if number is None:
        raise InvalidParameter(
            "Invalid parameter: Passkeys.Algorithms must list COSE algorithm numbers or names"
        )
    return -number if negative else number


def passkey_fields(form: Form) -> dict[str, Any]:
    """Only the Passkeys.* fields present in the form (updates are partial). An empty
    extension value unsets it."""
    fields: dict[str, Any] = {
        name: form.get(key) for key, name in _PASSKEY_FIELDS.items() if key in form
    }
    fields.update(
        {name: form.get(key) or None for key, name in _EXTENSION_FIELDS.items() if key in form}
    )
    if _ORIGINS in form:
        fields["rp_origins"] = tuple(_csv(form, _ORIGINS))
    if _TOP_ORIGINS in form:
        fields["top_origins"] = tuple(_csv(form, _TOP_ORIGINS)) or None
    for key, name in _AAGUID_LISTS.items():
        if key in form:
            listed = [canonical_aaguid(a) or a for a in _csv(form, key)]
            fields[name] = tuple(dict.fromkeys(listed)) or None
    if _ALGORITHMS in form:
        algorithms = [_algorithm(a) for a in _csv(form, _ALGORITHMS)]
        fields["algorithms"] = tuple(dict.fromkeys(algorithms)) or None
    if _HINTS in form:  # in order of preference; lower case, as WebAuthn writes them
        fields["hints"] = tuple(dict.fromkeys(h.lower() for h in _csv(form, _HINTS))) or None
    return fields


# The SIDs Twilio's spec gives a pattern for (twilio_verify_v2.json, CreateServiceRequest):
# stored and echoed as given, so a value of another shape would come back in a response that
# breaks the spec's own schema (`default_template_sid`). An empty value stays allowed.
_SID_PREFIX = {
    "DefaultTemplateSid": "HJ",
    "Push.ApnCredentialSid": "CR",
    "Push.FcmCredentialSid": "CR",
    "Whatsapp.MsgServiceSid": "MG",
}


def _sid_param(form: Form, key: str) -> str | None:
    value = form.get(key)
    prefix = _SID_PREFIX.get(key)
    if value and prefix and not re.fullmatch(prefix + "[0-9a-fA-F]{32}", value):
        raise InvalidParameter(f"Invalid parameter: {key} must be a {prefix} SID")
    return value


def other_settings(form: Form) -> dict[str, Any]:
    """The non-passkey Verify settings present in the form, validated."""
    out: dict[str, Any] = {}
    push: dict[str, Any] = {}
    totp: dict[str, Any] = {}
    whatsapp: dict[str, Any] = {}
    simple_bools = {
        "LookupEnabled": "lookup_enabled",
        "SkipSmsToLandlines": "skip_sms_to_landlines",
        "DtmfInputRequired": "dtmf_input_required",
        "Psd2Enabled": "psd2_enabled",
        "DoNotShareWarningEnabled": "do_not_share_warning_enabled",
        "CustomCodeEnabled": "custom_code_enabled",
        "VerifyEventSubscriptionEnabled": "verify_event_subscription_enabled",
    }
    for key, name in simple_bools.items():
        value = form.bool(key)
        if value is not None:
            out[name] = value
    if (length := form.int("CodeLength", 4, 10)) is not None:
        out["code_length"] = length
    for key, name in (("TtsName", "tts_name"), ("DefaultTemplateSid", "default_template_sid")):
        if key in form:
            out[name] = _sid_param(form, key)
    if (include_date := form.bool("Push.IncludeDate")) is not None:
        push["include_date"] = include_date
    for key, name in (
        ("Push.ApnCredentialSid", "apn_credential_sid"),
        ("Push.FcmCredentialSid", "fcm_credential_sid"),
    ):
        if key in form:
            push[name] = _sid_param(form, key)
    if "Totp.Issuer" in form:
        totp["issuer"] = form.get("Totp.Issuer")
    for key, name, low, high in (
        ("Totp.TimeStep", "time_step", 20, 60),
        ("Totp.CodeLength", "code_length", 3, 8),
        ("Totp.Skew", "skew", 0, 2),
    ):
        if (number := form.int(key, low, high)) is not None:
            totp[name] = number
    for key, name in (("Whatsapp.MsgServiceSid", "msg_service_sid"), ("Whatsapp.From", "from")):
        if key in form:
            whatsapp[name] = _sid_param(form, key)
    for name, group in (("push", push), ("totp", totp), ("whatsapp", whatsapp)):
        if group:
            out[name] = group
    return out


def _friendly_name(form: Form) -> str | None:
    return form.get("FriendlyName") if "FriendlyName" in form else form.get("Name")


@endpoint
async def create_service(call: Call) -> tuple[int, Any]:
    form = await read_form(call.request)
    service = await call.run(
        call.domain.services.create,
        call.account_sid,
        friendly_name=_friendly_name(form) or "",
        passkeys=PasskeySettings(**passkey_fields(form)),
        settings=other_settings(form),
    )
    return 201, service_json(service, call.base)


@endpoint
async def list_services(call: Call) -> tuple[int, Any]:
    query = Form(list(call.request.query_params.multi_items()))
    page, number = await list_page(call, query)
    result = await call.run(call.domain.services.list, call.account_sid, page)
    return page_payload(
        call, "services", result, number, page.page_size, lambda s: service_json(s, call.base)
    )


@endpoint
async def fetch_service(call: Call) -> tuple[int, Any]:
    return 200, service_json(
        await call.run(call.domain.services.get, call.account_sid, call.path("sid")), call.base
    )


@endpoint
async def update_service(call: Call) -> tuple[int, Any]:
    form = await read_form(call.request)
    try:
        friendly_name = _friendly_name(form)
        passkeys = passkey_fields(form)
        settings = other_settings(form)
    except DomainError:
        # A service that is not there is 404 20404 whatever the form holds, as the checks
        # the update itself makes (the Passkeys.* values) already answer.
        await call.run(call.domain.services.get, call.account_sid, call.path("sid"))
        raise
    service = await call.run(
        call.domain.services.update,
        call.account_sid,
        call.path("sid"),
        friendly_name=friendly_name,
        passkeys=passkeys,
        settings=settings,
    )
    return 200, service_json(service, call.base)


@endpoint
async def delete_service(call: Call) -> tuple[int, Any]:
    await call.run(call.domain.services.delete, call.account_sid, call.path("sid"))
    return 204, None


routes = [
    Route("/v2/Services", create_service, methods=["POST"]),
    Route("/v2/Services", list_services, methods=["GET"]),
    Route("/v2/Services/{sid}", fetch_service, methods=["GET"]),
    Route("/v2/Services/{sid}", update_service, methods=["POST"]),
    Route("/v2/Services/{sid}", delete_service, methods=["DELETE"]),
]
