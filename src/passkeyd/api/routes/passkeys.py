"""The four Passkeys endpoints (JSON bodies): P1 Factors, P2 VerifyFactor,
P3 Challenges, P4 ApproveChallenge."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from passkeyd.domain.errors import FactorConfigInvalid, RelyingPartyMissing
from passkeyd.domain.models import PasskeySettings
from passkeyd.domain.policy import (
    ATTACHMENTS,
    ATTESTATION,
    DISCOVERABLE,
    MAX_NAME_LENGTH,
    MAX_ORIGINS,
    USER_VERIFICATION,
    invalid_origin,
)
from passkeyd.webauthn import related_origins

from ..edge import Call, endpoint
from ..params import pick, read_json
from ..serializers import challenge_json, factor_json, new_factor_json

PASSKEYS = "/v2/Services/{service_sid}/Passkeys"


def _optional_str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise FactorConfigInvalid(f"Factor config invalid: {name} must be a string")


def requested_config(config: Any) -> PasskeySettings:
    """The factor `config` object (snake_case or camelCase), validated."""
    if config is None:
        return PasskeySettings()
    if not isinstance(config, dict):
        raise FactorConfigInvalid("Factor config invalid or not provided: config must be an object")
    rp = pick(config, "relying_party")
    if rp is not None and not isinstance(rp, dict):
        raise RelyingPartyMissing("Relying party invalid: config.relying_party must be an object")
    rp = rp or {}
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
    settings = PasskeySettings(
        rp_id=_optional_str(pick(rp, "id"), "relying_party.id"),
        rp_name=_optional_str(pick(rp, "name"), "relying_party.name"),
        rp_origins=tuple(o for o in origins if o) if origins is not None else None,
        authenticator_attachment=_optional_str(
            pick(config, "authenticator_attachment"), "authenticator_attachment"
        ),
        discoverable_credentials=_optional_str(
            pick(config, "discoverable_credentials"), "discoverable_credentials"
        ),
        user_verification=_optional_str(pick(config, "user_verification"), "user_verification"),
        attestation=_optional_str(pick(config, "attestation"), "attestation"),
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


@endpoint
async def create_factor(call: Call) -> tuple[int, Any]:
    data = await read_json(call.request, code=60300, form_fallback=True)
    factor, options = await call.run_steps(
        call.domain.registrations.create_factor_steps,
        call.account_sid,
        call.path("service_sid"),
        friendly_name=pick(data, "friendly_name"),
        identity=pick(data, "identity"),
        config=requested_config(pick(data, "config")),
    )
    return 201, new_factor_json(factor, options, call.base)


@endpoint
async def verify_factor(call: Call) -> tuple[int, Any]:
    data = await read_json(call.request, code=60434, form_fallback=False)
    factor = await call.run_steps(
        call.domain.registrations.verify_factor_steps,
        call.account_sid,
        call.path("service_sid"),
        data,
    )
    return 200, factor_json(factor, call.base)


def _absent_as_none(value: Any) -> Any:
    """None for a field not given: missing, null, or "" (as Twilio writes "none" in its
    answers). Anything else goes on to be checked: `false`, `0` or `[]` must not turn a
    challenge for a user into a usernameless one, which anyone's passkey answers."""
    return None if value is None or value == "" else value


@endpoint
async def create_challenge(call: Call) -> tuple[int, Any]:
    data = await read_json(call.request, code=60300, form_fallback=True)
    challenge = await call.run_steps(
        call.domain.authentications.create_challenge_steps,
        call.account_sid,
        call.path("service_sid"),
        identity=_absent_as_none(pick(data, "identity")),
        factor_sid=_absent_as_none(pick(data, "factor_sid")),
    )
    return 201, challenge_json(challenge, call.base, call.domain.clock(), endpoint="Challenges")


@endpoint
async def approve_challenge(call: Call) -> tuple[int, Any]:
    data = await read_json(call.request, code=60433, form_fallback=False)
    challenge = await call.run_steps(
        call.domain.authentications.approve_challenge_steps,
        call.account_sid,
        call.path("service_sid"),
        data,
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
