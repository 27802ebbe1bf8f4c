"""The four Passkeys endpoints (JSON bodies): P1 Factors, P2 VerifyFactor,
P3 Challenges, P4 ApproveChallenge."""

from __future__ import annotations

import functools
import re
from typing import Any

from starlette.routing import Route

from passkeyd.domain.errors import (
    DomainError,
    FactorConfigInvalid,
    InvalidParam,
    RelyingPartyMissing,
)
from passkeyd.domain.models import PasskeySettings
from passkeyd.domain.policy import (
    ATTACHMENTS,
    ATTESTATION,
    DISCOVERABLE,
    MAX_NAME_LENGTH,
    MAX_ORIGINS,
    USER_VERIFICATION,
    check_hints,
    invalid_origin,
)
from passkeyd.webauthn import related_origins

from ..edge import Call, endpoint
from ..params import pick, read_json, spellings
from ..serializers import challenge_json, factor_json, new_factor_json

PASSKEYS = "/v2/Services/{service_sid}/Passkeys"


_CONSTANT = re.compile(r"[A-Z]+(?:_[A-Z]+)*")


def _enum_value(value: Any) -> Any:
    """An enum's value as the API writes it (`cross-platform`), also when sent as
    twilio-java 12 sends it: its enum constant's name (`CROSS_PLATFORM`, `PREFERRED`,
    `PUBLIC_KEY`, `SMART_CARD`; Jackson writes a name where no `@JsonValue` says
    otherwise). Only such a name: ASCII capitals, words joined by `_`."""
    if isinstance(value, str) and value.isupper() and _CONSTANT.fullmatch(value):
        return value.lower().replace("_", "-")
    return value


def _optional_str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise FactorConfigInvalid(f"Factor config invalid: {name} must be a string")


_CONFIG_FIELDS = (
    "relying_party",
    "authenticator_attachment",
    "discoverable_credentials",
    "user_verification",
    "attestation",
    "hints",  # passkeyd extension: WebAuthn L3 hints for this registration
)
_RELYING_PARTY_FIELDS = ("id", "name", "origins")


def _refuse_unknown_config(data: dict[str, Any], fields: tuple[str, ...], where: str) -> None:
    """A misspelt setting (`user_verificaton: required`) would be dropped, and the passkey
    registered under the service's setting instead: refused (60370), as unknown fields of
    the request itself are."""
    for key, value in data.items():
        if value is not None and key not in _known(fields):
            raise FactorConfigInvalid(
                f"Factor config invalid: {key[:100]!r} is not a field of {where}"
                f" ({', '.join(fields)})"
            )


# What a factor without `config` asks for: nothing. One, immutable, for every such request:
# making it (a frozen dataclass whose 15 fields are each set through object.__setattr__)
# cost about 20,000 instructions, a hundredth of a registration.
_NO_CONFIG = PasskeySettings()


def requested_config(config: Any) -> PasskeySettings:
    """The factor `config` object (snake_case or camelCase), validated."""
    if config is None:
        return _NO_CONFIG
    if not isinstance(config, dict):
        raise FactorConfigInvalid("Factor config invalid or not provided: config must be an object")
    _refuse_unknown_config(config, _CONFIG_FIELDS, "config")
    rp = pick(config, "relying_party")
    if rp is not None and not isinstance(rp, dict):
        raise RelyingPartyMissing("Relying party invalid: config.relying_party must be an object")
    rp = rp or {}
    _refuse_unknown_config(rp, _RELYING_PARTY_FIELDS, "config.relying_party")
    origins = pick(rp, "origins")
    if isinstance(origins, str):
        origins = [o.strip() for o in origins.split(",")]
    if origins is not None and (
        not isinstance(origins, list) or not all(isinstance(o, str) for o in origins)
    ):
        raise FactorConfigInvalid("Factor config invalid: relying_party.origins must be strings")
    if origins is not None and len(origins) > MAX_ORIGINS:
        raise FactorConfigInvalid(
            f"Factor config invalid: relying_party.origins has more than {MAX_ORIGINS}"
        )
    if origins is not None and (problem := invalid_origin(o for o in origins if o)):
        raise FactorConfigInvalid(f"Factor config invalid: relying_party.origins: {problem}")
    name = pick(rp, "name")
    if isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
        raise FactorConfigInvalid(
            "Factor config invalid: relying_party.name is over 255 characters"
        )
    hints = pick(config, "hints")
    if isinstance(hints, str):
        hints = [h.strip() for h in hints.split(",") if h.strip()]
    if hints is not None and (
        not isinstance(hints, list) or not all(isinstance(h, str) for h in hints)
    ):
        raise FactorConfigInvalid("Factor config invalid: hints must be a list of strings")
    if hints is not None:  # in order of preference, each once; as WebAuthn writes them
        hints = tuple(dict.fromkeys(_enum_value(h).lower() for h in hints))
        if (problem := check_hints(hints, "hints")) is not None:
            raise FactorConfigInvalid(f"Factor config invalid: {problem}")
    settings = PasskeySettings(
        rp_id=_optional_str(pick(rp, "id"), "relying_party.id"),
        rp_name=_optional_str(pick(rp, "name"), "relying_party.name"),
        rp_origins=tuple(o for o in origins if o) if origins is not None else None,
        authenticator_attachment=_optional_str(
            _enum_value(pick(config, "authenticator_attachment")), "authenticator_attachment"
        ),
        discoverable_credentials=_optional_str(
            _enum_value(pick(config, "discoverable_credentials")), "discoverable_credentials"
        ),
        user_verification=_optional_str(
            _enum_value(pick(config, "user_verification")), "user_verification"
        ),
        attestation=_optional_str(_enum_value(pick(config, "attestation")), "attestation"),
        hints=hints,
    )
    for name, value, allowed in (
        ("authenticator_attachment", settings.authenticator_attachment, ATTACHMENTS),
        ("discoverable_credentials", settings.discoverable_credentials, DISCOVERABLE),
        ("user_verification", settings.user_verification, USER_VERIFICATION),
        ("attestation", settings.attestation, ATTESTATION),
    ):
        if value and value not in allowed:
            raise FactorConfigInvalid(
                f"Factor config invalid: {name} must be one of {', '.join(allowed)}"
            )
    return settings


def _refuse_unknown_fields(call: Call, data: dict[str, Any], fields: tuple[str, ...]) -> None:
    """A request with a field it does not have (null aside, as SDKs send unset ones), or
    with parameters in its URL's query: whatever it meant would be lost. A challenge for a
    user without its `identity` is a usernameless one, which anyone's passkey answers; a
    factor without its `identity` is a new user's. twilio-python 9.8.3 sends its request
    object's repr as one form field, `CreatePasskeysChallengeRequest`. (400 60300, the
    Passkeys parameter error.)"""
    names = ", ".join(fields)
    if call.request.scope["query_string"]:
        raise InvalidParam(
            f"Invalid parameter: this request's fields go in its body ({names}), not in the"
            " URL's query"
        )
    for key, value in data.items():
        if value is not None and key not in _known(fields):
            hint = ""
            if key.startswith("CreatePasskeys") or key.startswith("CreateNewPasskeys"):
                hint = " (twilio-python 9.8.3 sends its request object so: use 9.8.4 or later)"
            raise InvalidParam(
                f"Invalid parameter: {key[:100]!r} is not a field of this request ({names}){hint}"
            )


@functools.cache
def _known(fields: tuple[str, ...]) -> frozenset[str]:
    """Every spelling `pick` reads of these fields."""
    return frozenset(name for field in fields for name in spellings(field))


async def _service_first(call: Call) -> None:
    """404 20404 for a service that is not there, before a refusal of the body's fields:
    as a valid request to it answers, and P2 and P4 answer whatever their body holds."""
    await call.run(call.domain.services.get, call.account_sid, call.path("service_sid"))


_FACTOR_FIELDS = ("friendly_name", "identity", "config")
# user_verification: passkeyd extension, what this sign-in asks of user verification
_CHALLENGE_FIELDS = ("identity", "factor_sid", "user_verification")


@endpoint
async def create_factor(call: Call) -> tuple[int, Any]:
    data = await read_json(call.request, code=60300, form_fallback=True, strict=True)
    try:
        _refuse_unknown_fields(call, data, _FACTOR_FIELDS)
        config = requested_config(pick(data, "config"))
    except DomainError:
        await _service_first(call)
        raise
    factor, options = await call.run_steps(
        call.domain.registrations.create_factor_steps,
        call.account_sid,
        call.path("service_sid"),
        friendly_name=pick(data, "friendly_name"),
        identity=_absent_as_none(pick(data, "identity")),  # twilio-go sends an unset one as ""
        config=config,
    )
    return 201, new_factor_json(factor, options, call.base)


# twilio-python 9.8.3 to 9.10.3 send a credential's keys in snake_case: their request
# classes read and write `raw_id`, `client_data_json` and so on (9.10.4 writes WebAuthn's).
_SNAKE_CASE_CREDENTIAL = {
    "raw_id": "rawId",
    "authenticator_attachment": "authenticatorAttachment",
    "client_extension_results": "clientExtensionResults",
}
_SNAKE_CASE_RESPONSE = {
    "client_data_json": "clientDataJSON",
    "attestation_object": "attestationObject",
    "authenticator_data": "authenticatorData",
    "user_handle": "userHandle",
}


def _webauthn_keys(data: dict[str, Any]) -> dict[str, Any]:
    """The credential with WebAuthn's own (camelCase) keys, each taken from its snake_case
    spelling when only that was sent, and its enums as WebAuthn writes them."""
    response = data.get("response")
    if isinstance(response, dict) and not _SNAKE_CASE_RESPONSE.keys().isdisjoint(response):
        data = {**data, "response": _aliased(response, _SNAKE_CASE_RESPONSE)}
        data = _aliased(data, _SNAKE_CASE_CREDENTIAL)
    elif not _SNAKE_CASE_CREDENTIAL.keys().isdisjoint(data):
        data = _aliased(data, _SNAKE_CASE_CREDENTIAL)
    return _webauthn_enums(data)


_ATTACHMENTS_WRITTEN = (None, "platform", "cross-platform")


def _webauthn_enums(data: dict[str, Any]) -> dict[str, Any]:
    """`authenticatorAttachment` and `type` as WebAuthn writes them, also from the SDKs that
    write them otherwise: twilio-go sends an unset (or a browser's null) attachment as ""
    (its field has no omitempty), twilio-java 12 its enum constants' names (`PLATFORM`,
    `CROSS_PLATFORM`, `PUBLIC_KEY`), in the response's `transports` too (`INTERNAL`,
    `HYBRID`: they were left out as unknown). Anything else goes on to be refused."""
    attachment, ctype = data.get("authenticatorAttachment"), data.get("type")
    response = data.get("response")
    named = response.get("transports") if isinstance(response, dict) else None
    if not isinstance(named, list) or not any(isinstance(t, str) and t.isupper() for t in named):
        named = None  # no constant names among them
    if attachment in _ATTACHMENTS_WRITTEN and ctype in (None, "public-key") and named is None:
        return data  # as browsers and the other SDKs send them
    out = dict(data)
    out["authenticatorAttachment"] = None if attachment == "" else _enum_value(attachment)
    if ctype is not None:
        out["type"] = _enum_value(ctype)
    if named is not None:
        out["response"] = {**data["response"], "transports": [_enum_value(t) for t in named]}
    return out


def _aliased(data: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    out = dict(data)
    for snake, camel in aliases.items():
        if out.get(camel) is None and out.get(snake) is not None:
            out[camel] = out[snake]
    return out


@endpoint
async def verify_factor(call: Call) -> tuple[int, Any]:
    data = await read_json(call.request, code=60434, form_fallback=False)
    factor = await call.run_steps(
        call.domain.registrations.verify_factor_steps,
        call.account_sid,
        call.path("service_sid"),
        _webauthn_keys(data),
    )
    return 200, factor_json(factor, call.base, call.domain.reports.status_of(factor))


def _absent_as_none(value: Any) -> Any:
    """None for a field not given: missing, null, or "" (as Twilio writes "none" in its
    answers). Anything else goes on to be checked: `false`, `0` or `[]` must not turn a
    challenge for a user into a usernameless one, which anyone's passkey answers."""
    return None if value is None or value == "" else value


@endpoint
async def create_challenge(call: Call) -> tuple[int, Any]:
    data = await read_json(call.request, code=60300, form_fallback=True, strict=True)
    try:
        _refuse_unknown_fields(call, data, _CHALLENGE_FIELDS)
    except DomainError:
        await _service_first(call)
        raise
    challenge = await call.run_steps(
        call.domain.authentications.create_challenge_steps,
        call.account_sid,
        call.path("service_sid"),
        identity=_absent_as_none(pick(data, "identity")),
        factor_sid=_absent_as_none(pick(data, "factor_sid")),
        user_verification=_absent_as_none(_enum_value(pick(data, "user_verification"))),
    )
    return 201, challenge_json(challenge, call.base, call.domain.clock(), endpoint="Challenges")


@endpoint
async def approve_challenge(call: Call) -> tuple[int, Any]:
    data = await read_json(call.request, code=60433, form_fallback=False)
    challenge = await call.run_steps(
        call.domain.authentications.approve_challenge_steps,
        call.account_sid,
        call.path("service_sid"),
        _webauthn_keys(data),
    )
    return 200, challenge_json(
        challenge, call.base, call.domain.clock(), endpoint="ApproveChallenge"
    )


@endpoint
async def well_known(call: Call) -> tuple[int, Any]:
    """The `/.well-known/webauthn` document (Related Origin Requests) for the service's web
    origins, for the customer's site to serve on its RP id's domain. passkeyd extension."""
    service = await call.run(call.domain.services.get, call.account_sid, call.path("service_sid"))
    return 200, {"origins": related_origins(service.passkeys.rp_origins or ())}


routes = [
    Route(PASSKEYS + "/Factors", create_factor, methods=["POST"]),
    Route(PASSKEYS + "/VerifyFactor", verify_factor, methods=["POST"]),
    Route(PASSKEYS + "/Challenges", create_challenge, methods=["POST"]),
    Route(PASSKEYS + "/ApproveChallenge", approve_challenge, methods=["POST"]),
    Route(PASSKEYS + "/WellKnown", well_known, methods=["GET"]),
]

# The ceremony endpoints by the last segment of their path, for the app's direct dispatch.
HOT = {
    "Factors": create_factor,
    "VerifyFactor": verify_factor,
    "Challenges": create_challenge,
    "ApproveChallenge": approve_challenge,
}
