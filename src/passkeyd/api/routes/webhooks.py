"""/v2/Services/{VA}/Webhooks: create, list, fetch, update, delete (form-encoded)."""

from __future__ import annotations

import functools
from typing import Any

import anyio.to_thread
from starlette.routing import Route

from passkeyd.domain.errors import DomainError
from passkeyd.domain.models import PageRequest

from ..edge import Call, endpoint
from ..pagination import list_page, page_payload
from ..params import Form, read_form
from ..serializers import webhook_json

WEBHOOKS = "/v2/Services/{service_sid}/Webhooks"


def _fields(form: Form) -> dict[str, Any]:
    return {
        "friendly_name": form.get("FriendlyName"),
        # None when not given (an update leaves them); given empty, refused as required
        "event_types": [t.strip() for v in given for t in v.split(",") if t.strip()]
        if (given := form.get_all("EventTypes"))
        else None,
        "webhook_url": form.get("WebhookUrl"),
        "status": form.get("Status"),
        "version": form.get("Version"),
    }


@endpoint
async def create_webhook(call: Call) -> tuple[int, Any]:
    form = await read_form(call.request)
    # Validating the URL resolves its host: never on the event loop, whatever the store.
    webhook = await anyio.to_thread.run_sync(
        functools.partial(
            call.domain.webhooks.create, call.account_sid, call.path("service_sid"), **_fields(form)
        )
    )
    return 201, webhook_json(webhook, call.base)


@endpoint
async def list_webhooks(call: Call) -> tuple[int, Any]:
    try:
        page, number = await list_page(call, Form(list(call.request.query_params.multi_items())))
    except DomainError:  # a service that is not there is 404 whatever the query holds
        service_sid = call.path("service_sid")
        await call.run(call.domain.webhooks.list, call.account_sid, service_sid, PageRequest(1))
        raise
    result = await call.run(
        call.domain.webhooks.list, call.account_sid, call.path("service_sid"), page
    )
    return page_payload(
        call, "webhooks", result, number, page.page_size, lambda w: webhook_json(w, call.base)
    )


@endpoint
async def fetch_webhook(call: Call) -> tuple[int, Any]:
    webhook = await call.run(
        call.domain.webhooks.get, call.account_sid, call.path("service_sid"), call.path("sid")
    )
    return 200, webhook_json(webhook, call.base)


@endpoint
async def update_webhook(call: Call) -> tuple[int, Any]:
    form = await read_form(call.request)
    webhook = await anyio.to_thread.run_sync(
        functools.partial(
            call.domain.webhooks.update,
            call.account_sid,
            call.path("service_sid"),
            call.path("sid"),
            **_fields(form),
        )
    )
    return 200, webhook_json(webhook, call.base)


@endpoint
async def delete_webhook(call: Call) -> tuple[int, Any]:
    await call.run(
        call.domain.webhooks.delete, call.account_sid, call.path("service_sid"), call.path("sid")
    )
    return 204, None


routes = [
    Route(WEBHOOKS, create_webhook, methods=["POST"]),
    Route(WEBHOOKS, list_webhooks, methods=["GET"]),
    Route(WEBHOOKS + "/{sid}", fetch_webhook, methods=["GET"]),
    Route(WEBHOOKS + "/{sid}", update_webhook, methods=["POST"]),
    Route(WEBHOOKS + "/{sid}", delete_webhook, methods=["DELETE"]),
]
