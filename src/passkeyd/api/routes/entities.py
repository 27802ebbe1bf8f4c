"""Entities, and the Factors and Challenges under an entity (form-encoded)."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from passkeyd.domain.errors import DomainError, FactorTypeInvalid, InvalidParam, InvalidRequest
from passkeyd.domain.ids import is_sid
from passkeyd.domain.models import ChallengeStatus, Factor, PageRequest

from ..edge import Call, endpoint
from ..pagination import list_page, page_payload
from ..params import Form, read_form
from ..serializers import challenge_json, entity_json, factor_json

ENTITY = "/v2/Services/{service_sid}/Entities/{identity}"


def _query(call: Call) -> Form:
    return Form(list(call.request.query_params.multi_items()))


@endpoint
async def create_entity(call: Call) -> tuple[int, Any]:
    form = await read_form(call.request)
    entity = await call.run(
        call.domain.entities.create,
        call.account_sid,
        call.path("service_sid"),
        form.get("Identity") or "",
    )
    return 201, entity_json(entity, call.base)


@endpoint
async def list_entities(call: Call) -> tuple[int, Any]:
    try:
        page, number = await list_page(call, _query(call))
    except DomainError:  # a service that is not there is 404 whatever the query holds
        service_sid = call.path("service_sid")
        await call.run(call.domain.entities.list, call.account_sid, service_sid, PageRequest(1))
        raise
    result = await call.run(
        call.domain.entities.list, call.account_sid, call.path("service_sid"), page
    )
    return page_payload(
        call, "entities", result, number, page.page_size, lambda e: entity_json(e, call.base)
    )


@endpoint
async def fetch_entity(call: Call) -> tuple[int, Any]:
    entity = await call.run(
        call.domain.entities.get, call.account_sid, call.path("service_sid"), call.path("identity")
    )
    return 200, entity_json(entity, call.base)


@endpoint
async def delete_entity(call: Call) -> tuple[int, Any]:
    sid = await call.run(
        call.domain.entities.delete,
        call.account_sid,
        call.path("service_sid"),
        call.path("identity"),
    )
    return 204, {"sid": sid}  # no body: the SID is the audit record's resource, as at creation


def _factor_json(call: Call, factor: Factor) -> dict[str, Any]:
    return factor_json(factor, call.base, call.domain.reports.status_of(factor))


async def _entity_first(call: Call, under: str) -> None:
    """404 for an entity (or service) that is not there, before a refusal of the query: as
    the list itself answers, naming `under` it."""
    await call.run(
        call.domain.entities.get,
        call.account_sid,
        call.path("service_sid"),
        call.path("identity"),
        under,
    )


@endpoint
async def list_factors(call: Call) -> tuple[int, Any]:
    try:
        page, number = await list_page(call, _query(call))
    except DomainError:
        await _entity_first(call, "/Factors")
        raise
    result = await call.run(
        call.domain.entities.list_factors,
        call.account_sid,
        call.path("service_sid"),
        call.path("identity"),
        page,
    )
    status = call.domain.reports.statuses()  # (the metadata looked up once for the page)
    return page_payload(
        call,
        "factors",
        result,
        number,
        page.page_size,
        lambda f: factor_json(f, call.base, status(f)),
    )


@endpoint
async def create_entity_factor(call: Call) -> tuple[int, Any]:
    await read_form(call.request)
    # The entity must exist (20404 otherwise) before we explain where passkeys are made.
    await call.run(
        call.domain.entities.get, call.account_sid, call.path("service_sid"), call.path("identity")
    )
    raise FactorTypeInvalid(
        "Factor type invalid: passkeyd serves passkeys only; create them with"
        f" POST /v2/Services/{call.path('service_sid')}/Passkeys/Factors"
    )


@endpoint
async def fetch_factor(call: Call) -> tuple[int, Any]:
    factor = await call.run(
        call.domain.entities.get_factor,
        call.account_sid,
        call.path("service_sid"),
        call.path("identity"),
        call.path("sid"),
    )
    return 200, _factor_json(call, factor)


@endpoint
async def update_factor(call: Call) -> tuple[int, Any]:
    form = await read_form(call.request)
    service_sid, identity, sid = call.path("service_sid"), call.path("identity"), call.path("sid")
    if "AuthPayload" in form:  # how push and TOTP factors are verified: not a passkey
        await call.run(
            call.domain.entities.get_factor, call.account_sid, service_sid, identity, sid
        )
        raise InvalidParam(
            "Invalid parameter: AuthPayload does not apply to a passkeys factor; verify it with"
            f" POST /v2/Services/{service_sid}/Passkeys/VerifyFactor"
        )
    # Config.NotificationToken, Config.TimeStep, ...: push and TOTP settings; a passkey's
    # config is fixed by its creation request, so they would change nothing.
    if config := sorted({key for key, _ in form.items() if key.startswith("Config.")}):
        await call.run(
            call.domain.entities.get_factor, call.account_sid, service_sid, identity, sid
        )
        raise InvalidParam(
            f"Invalid parameter: {', '.join(config)} does not apply to a passkeys factor, whose"
            " config is set when it is created with"
            f" POST /v2/Services/{service_sid}/Passkeys/Factors"
        )
    name = form.get("FriendlyName")
    if name is None:
        factor = await call.run(
            call.domain.entities.get_factor, call.account_sid, service_sid, identity, sid
        )
    else:
        factor = await call.run(
            call.domain.entities.rename_factor, call.account_sid, service_sid, identity, sid, name
        )
    return 200, _factor_json(call, factor)


@endpoint
async def delete_factor(call: Call) -> tuple[int, Any]:
    await call.run(
        call.domain.entities.delete_factor,
        call.account_sid,
        call.path("service_sid"),
        call.path("identity"),
        call.path("sid"),
    )
    return 204, None


def _challenge_filters(
    query: Form,
) -> tuple[str, str | None, str | None, ChallengeStatus | None]:
    """(order, FactorSid, Status as given, Status) of a challenge list, validated."""
    order = (query.get("Order") or "asc").lower()
    if order not in ("asc", "desc"):
        raise InvalidRequest("Invalid Request: Order must be asc or desc")
    factor_sid = query.get("FactorSid")
    if factor_sid is not None and not is_sid(factor_sid, "YF"):
        raise InvalidRequest("Invalid Request: FactorSid is not a factor SID")
    status_text = query.get("Status")
    try:
        status = ChallengeStatus(status_text) if status_text else None
    except ValueError as exc:
        raise InvalidRequest("Invalid Request: Status is not a challenge status") from exc
    return order, factor_sid, status_text, status


@endpoint
async def list_challenges(call: Call) -> tuple[int, Any]:
    query = _query(call)
    try:
        order, factor_sid, status_text, status = _challenge_filters(query)
        page, number = await list_page(call, query, descending=order == "desc")
    except DomainError:
        await _entity_first(call, "/Challenges")
        raise
    result = await call.run(
        call.domain.entities.list_challenges,
        call.account_sid,
        call.path("service_sid"),
        call.path("identity"),
        page,
        factor_sid=factor_sid,
        status=status,
    )
    filters = [
        (k, v)
        for k, v in (
            ("FactorSid", factor_sid),
            ("Status", status_text),
            ("Order", query.get("Order")),
        )
        if v
    ]
    now = call.domain.clock()
    return page_payload(
        call,
        "challenges",
        result,
        number,
        page.page_size,
        lambda c: challenge_json(c, call.base, now),
        filters=filters,
    )


@endpoint
async def fetch_challenge(call: Call) -> tuple[int, Any]:
    challenge = await call.run(
        call.domain.entities.get_challenge,
        call.account_sid,
        call.path("service_sid"),
        call.path("identity"),
        call.path("sid"),
    )
    return 200, challenge_json(challenge, call.base, call.domain.clock())


@endpoint
async def push_only(call: Call) -> tuple[int, Any]:
    """Entity-scoped challenge create/update and notifications exist for push and TOTP."""
    await read_form(call.request)
    await call.run(
        call.domain.entities.get, call.account_sid, call.path("service_sid"), call.path("identity")
    )
    raise InvalidParam(
        "Invalid parameter: passkeys challenges are created with"
        f" POST /v2/Services/{call.path('service_sid')}/Passkeys/Challenges and answered with"
        " POST .../Passkeys/ApproveChallenge"
    )


routes = [
    Route("/v2/Services/{service_sid}/Entities", create_entity, methods=["POST"]),
    Route("/v2/Services/{service_sid}/Entities", list_entities, methods=["GET"]),
    Route(ENTITY, fetch_entity, methods=["GET"]),
    Route(ENTITY, delete_entity, methods=["DELETE"]),
    Route(ENTITY + "/Factors", list_factors, methods=["GET"]),
    Route(ENTITY + "/Factors", create_entity_factor, methods=["POST"]),
    Route(ENTITY + "/Factors/{sid}", fetch_factor, methods=["GET"]),
    Route(ENTITY + "/Factors/{sid}", update_factor, methods=["POST"]),
    Route(ENTITY + "/Factors/{sid}", delete_factor, methods=["DELETE"]),
    Route(ENTITY + "/Challenges", list_challenges, methods=["GET"]),
    Route(ENTITY + "/Challenges", push_only, methods=["POST"]),
    Route(ENTITY + "/Challenges/{sid}", fetch_challenge, methods=["GET"]),
    Route(ENTITY + "/Challenges/{sid}", push_only, methods=["POST"]),
    Route(ENTITY + "/Challenges/{sid}/Notifications", push_only, methods=["POST"]),
]
