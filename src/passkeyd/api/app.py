"""The ASGI application: routes, the Twilio-format 404/405, and /healthz."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from passkeyd import logs, metrics
from passkeyd.delivery import Dispatcher
from passkeyd.domain import Domain
from passkeyd.domain.errors import InvalidParameter
from passkeyd.logs import new_request_id
from passkeyd.settings import Settings
from passkeyd.storage import StorageUnavailable

from . import openapi
from .edge import authorization, error_response, json_response
from .routes import audit, entities, passkeys, services, webhooks

log = logging.getLogger("passkeyd")
# At shutdown, how long the requests whose store calls just ended get to answer.
DRAIN_SECONDS = 5.0


_PROBE_TRACEBACK_NOW = logs.Every(60.0)
_PROBE_LINE = logs.Throttle(10.0)
# /metrics while the database does not answer: a line at most every 10 s too (a scrape, or
# anyone who reaches an open /metrics, wrote one each).
_METRICS_LINE = logs.Throttle(10.0)


async def healthz(request: Request) -> Response:
    domain: Domain = request.app.state.domain
    try:
        if domain.store.runs_in_threads:
            await anyio.to_thread.run_sync(domain.store.ping)
        else:
            domain.store.ping()
    except StorageUnavailable:
        if (more := _PROBE_LINE()) is not None:
            log.warning("health check: the database does not answer%s", more)
        return json_response(503, {"status": "unavailable", "reason": "database"}, new_request_id())
    return json_response(200, {"status": "ok"}, new_request_id())


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**request.scope, "method": next(iter(route.methods))})
            if match is Match.FULL:
                methods |= route.methods
    return sorted(methods)


async def readyz(request: Request) -> Response:
    """Ready: the database answers and its schema is the one this code expects."""
    domain: Domain = request.app.state.domain
    try:
        # First what /healthz checks: a database file deleted or replaced under passkeyd
        # still answers the schema's reads from the file it has open, while every write
        # and /healthz answer 503. Ready said 200 then, keeping the replica in rotation.
        if domain.store.runs_in_threads:
            await anyio.to_thread.run_sync(domain.store.ping)
        else:
            domain.store.ping()
        pending = await anyio.to_thread.run_sync(domain.store.pending_migrations)
        unknown = await anyio.to_thread.run_sync(domain.store.unknown_migrations)
    except Exception as exc:
        # (a probe every few seconds: the traceback once a minute, a line at most every 10 s)
        if _PROBE_TRACEBACK_NOW():
            log.warning("readiness check: the database does not answer", exc_info=True)
        elif (more := _PROBE_LINE()) is not None:
            log.warning(
                "readiness check: the database does not answer: %s%s",
                logs.exception_text(exc),
                more,
            )
        return json_response(503, {"status": "unavailable", "reason": "database"}, new_request_id())
    if pending:
        reason = f"pending migrations {pending}"
        return json_response(503, {"status": "unavailable", "reason": reason}, new_request_id())
    if unknown:
        # The next release migrated while this one serves, as a rolling upgrade does
        # (docs/deployment.md): still ready. (A process of this release refuses to *start*
        # on it, as a rollback would.) Not ready would take the whole running fleet out of
        # a balancer's rotation before any new replica is up.
        return json_response(200, {"status": "ready", "newer_schema": unknown}, new_request_id())
    return json_response(200, {"status": "ready"}, new_request_id())


async def metrics_endpoint(request: Request) -> Response:
    token: bytes | None = request.app.state.metrics_token
    if token is not None:
        try:
            header = authorization(request.scope)
        except InvalidParameter as exc:
            return error_response(400, 60200, exc.message, new_request_id())
        scheme, _, offered = header.partition(" ")
        digest = hashlib.sha256(offered.strip().encode("utf-8", "replace")).digest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(digest, token):
            response = error_response(401, 20003, "Authenticate", new_request_id())
            response.headers["WWW-Authenticate"] = 'Bearer realm="passkeyd metrics"'
            return response
    domain: Domain = request.app.state.domain
    try:
        backlog = await anyio.to_thread.run_sync(domain.store.delivery_backlog)
    except StorageUnavailable:  # the other metrics matter most now: answer with them
        if (more := _METRICS_LINE()) is not None:
            log.warning(
                "metrics: the database does not answer; the webhook backlog is stale%s", more
            )
    else:
        metrics.WEBHOOK_BACKLOG.set(backlog)
    body, content_type = metrics.render()
    return Response(body, headers={"Content-Type": content_type})


async def openapi_json(request: Request) -> Response:
    return json_response(200, openapi.document(), new_request_id())


async def docs(request: Request) -> Response:
    return HTMLResponse(openapi.DOCS_HTML)


async def http_error(request: Request, exc: Exception) -> Response:
    """A path no route serves (404), or a method its route does not (405): answered in
    Twilio's format, and logged like any API request (probes for paths show up)."""
    request_id = new_request_id()
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        code = 20004
        response = error_response(405, code, "Method not allowed", request_id)
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    elif status == 404:
        code = 20404
        # As Twilio writes it (and passkeyd's own 404s): without the API version, which is
        # the domain's in Twilio's URLs (`/Services/VA.../Nope`, not `/v2/Services/...`).
        path = request.url.path
        if path.startswith("/v2/"):
            path = path[3:]
        message = f"The requested resource {path} was not found"
        response = error_response(404, code, message, request_id)
    else:
        code = 20000 + status
        response = error_response(status, code, "Request refused", request_id)
    metrics.unmatched(request.method, status)
    logs.access(
        f"{request.method} {status}",
        {
            "request_id": request_id,
            "method": request.method,
            "route": metrics.UNMATCHED,  # as its metrics count it
            "path": request.url.path[:200],
            "status": status,
            "code": code,
        },
    )
    return response


async def purge_forever(
    domain: Domain, *, retention: int, interval: float, audit_retention: int
) -> None:
    """Every `interval` seconds, off the event loop so requests never wait on it: delete
    challenges, unfinished registrations and sent webhook deliveries over `retention`
    seconds old, audit records over `audit_retention`, and rate-limit windows that no rule
    looks back to."""
    while True:
        await anyio.sleep(interval)
        try:
            now = domain.clock()
            removed = await anyio.to_thread.run_sync(
                functools.partial(
                    domain.store.purge_expired,
                    now - retention,
                    audit_before=now - audit_retention,
                    # A window more: another replica's clock, or its longer rules in a
                    # rollout, may still count in a window this one thinks over.
                    rate_before=now - 2 * domain.limiter.longest_window(),
                )
            )
            if removed:
                log.info(
                    "purged %d expired rows (challenges, unfinished registrations and the"
                    " entities they left, sent webhook deliveries, old audit records and"
                    " rate-limit windows)",
                    removed,
                )
        except Exception:
            log.exception("purging expired challenges failed; will retry")


# The metadata is loaded this long after start (not in the way of the first /healthz), then
# looked at this often, a newer BLOB taken up (it is looked for once a minute).
METADATA_FIRST_SECONDS = 1.0
METADATA_INTERVAL_SECONDS = 20.0


async def keep_metadata_forever(domain: Domain) -> None:
    """Load the FIDO metadata, and take up a newer BLOB, in a thread: a request that needs
    them (a registration, a trusted service's sign-in or challenge, a factor's read) would
    otherwise do it on the event loop, and every request of the process wait the 50-150 ms
    it takes."""
    failed_line = logs.Throttle(3600.0)
    await anyio.sleep(METADATA_FIRST_SECONDS)
    while True:
        try:
            await anyio.to_thread.run_sync(domain.metadata.trust_store)
        except Exception as exc:  # (requests say it too, where it matters)
            if (more := failed_line()) is not None:
                log.error("the FIDO metadata cannot be read: %s%s", exc, more)
        await anyio.sleep(METADATA_INTERVAL_SECONDS)


async def flush_audit_forever(domain: Domain, interval: float = 0.2) -> None:
    """Write the audit trail and the log lines waiting in memory, every `interval`.

    On SQLite the records join the loop's group commit like a request's writes, the write
    lock taken on the loop: a write from a thread would have to win the lock against the
    other worker processes on its own, and every request of this process waits behind it
    meanwhile. A networked store writes them from a thread."""
    traceback_now = logs.Every(10.0)
    failed_line = logs.Throttle(10.0)  # retried every `interval` (0.2 s) while it fails
    while True:
        await anyio.sleep(interval)
        logs.flush()
        try:
            if domain.store.runs_in_threads:
                await anyio.to_thread.run_sync(domain.audit.flush)
            elif domain.audit.pending():
                await domain.store.reserve()
                written = domain.audit.write_pending()
                try:
                    await domain.store.settle()
                except StorageUnavailable:  # the batch's commit failed: write them again
                    domain.audit.restore(written)
                    raise
        except Exception as exc:
            if traceback_now():
                log.exception("writing the audit trail failed; will retry")
            elif (more := failed_line()) is not None:
                log.error(
                    "writing the audit trail failed; will retry: %s%s",
                    logs.exception_text(exc),
                    more,
                )


class App(Starlette):
    """Starlette, with the four ceremony endpoints (the hot path) dispatched directly: an
    exact POST path goes straight to its endpoint, which answers every error itself, so
    it needs neither the router's scan nor the exception middlewares. Anything else takes
    the usual way."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            parts = scope["path"].split("/")
            if len(parts) == 6 and parts[1] == "v2" and parts[2] == "Services":
                hot = passkeys.HOT.get(parts[5])
                if hot is not None and parts[4] == "Passkeys" and parts[3]:
                    scope["app"] = self
                    scope["path_params"] = {"service_sid": parts[3]}
                    response = await hot(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


def create_app(domain: Domain, settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        domain.store.start_group_commit(asyncio.get_running_loop())
        async with anyio.create_task_group() as tasks:
            dispatcher = Dispatcher(
                domain.store,
                domain.clock,
                domain.box,
                allow_private=domain.allow_private_webhooks,
                max_attempts=settings.webhook_max_attempts,
                per_account=settings.webhook_per_account,
                retry_base_seconds=settings.webhook_retry_base_seconds,
                # Replicas on a networked database may hold a key this one lacks; SQLite's
                # processes share one key file.
                give_back_seconds=3600 if domain.store.runs_in_threads else 0,
            )
            tasks.start_soon(dispatcher.run_forever, settings.webhook_interval_seconds)
            tasks.start_soon(
                functools.partial(
                    purge_forever,
                    domain,
                    retention=settings.challenge_retention_seconds,
                    audit_retention=settings.audit_retention_seconds,
                    interval=settings.purge_interval_seconds,
                )
            )
            tasks.start_soon(flush_audit_forever, domain)
            tasks.start_soon(keep_metadata_forever, domain)
            yield
            dispatcher.stop()  # its requests out would hold up the shutdown for up to 30 s
            tasks.cancel_scope.cancel()
        domain.store.stop_group_commit()
        if domain.store.runs_in_threads:
            # A request cancelled past the shutdown's grace waits for its call in a store
            # thread (edge._run), to answer as it ended: let those calls end, off the loop,
            # and their requests answer and add their audit records, before the last flush.
            await anyio.to_thread.run_sync(domain.store.drain)
            deadline = time.monotonic() + DRAIN_SECONDS
            while domain.store.requests_in_progress and time.monotonic() < deadline:
                await anyio.sleep(0.01)
        try:
            await anyio.to_thread.run_sync(domain.audit.flush)
        except Exception:  # shut down all the same; say what is lost
            log.exception(
                "could not write the last %d audit records at shutdown: they are lost",
                domain.audit.pending(),
            )
        domain.store.close()

    app = App(
        # Starlette tries routes in order: the ceremony endpoints, the hot path, go first.
        routes=[
            *passkeys.routes,
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/docs", docs, methods=["GET"]),
            *services.routes,
            *entities.routes,
            *webhooks.routes,
            *audit.routes,
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # an unknown path is a Twilio 404, not a redirect
    app.state.domain = domain
    # Kept as a hash, compared in constant time.
    app.state.metrics_token = (
        hashlib.sha256(settings.metrics_token.encode()).digest() if settings.metrics_token else None
    )
    return app
