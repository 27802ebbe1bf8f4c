"""/v2/AuditEvents (passkeyd extension): the account's audit trail, newest first."""

from __future__ import annotations

import functools
from typing import Any

import anyio.to_thread
from starlette.routing import Route

from passkeyd.domain.clock import iso
from passkeyd.domain.models import AuditEvent

from ..edge import Call, endpoint
from ..pagination import list_page, page_payload
from ..params import Form


def audit_json(e: AuditEvent) -> dict[str, Any]:
    return {
        "account_sid": e.account_sid,
        "service_sid": e.service_sid,
        "actor": e.actor,
        "action": e.action,
        "resource": e.resource,
        "outcome": e.outcome,
        "code": e.code or None,
        "step": e.step or None,
        "request_id": e.request_id,
        "date_created": iso(e.date_created),
    }


@endpoint
async def list_audit_events(call: Call) -> tuple[int, Any]:
    query = Form(list(call.request.query_params.multi_items()))
    page, number = await list_page(call, query, descending=True)
    service_sid = query.get("ServiceSid") or None
    # It flushes the buffered events first, a write: in a thread, which waits its turn.
    result = await anyio.to_thread.run_sync(
        functools.partial(call.domain.audit.list, call.account_sid, page, service_sid=service_sid)
    )
    filters = [("ServiceSid", service_sid)] if service_sid else []
    return page_payload(call, "audit_events", result, number, page.page_size, audit_json,
                        filters=filters)  # fmt: skip


routes = [Route("/v2/AuditEvents", list_audit_events, methods=["GET"])]
