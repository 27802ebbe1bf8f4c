"""The ASGI application: routes, the Twilio-format 404/405, and /healthz."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from passkeyd.domain import Domain

from .edge import error_response, json_response
from .routes import entities, passkeys, services


async def healthz(request: Request) -> Response:
    domain: Domain = request.app.state.domain
    domain.store.ping()
    return json_response(200, {"status": "ok"}, "RQ" + secrets.token_hex(16))


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**request.scope, "method": next(iter(route.methods))})
            if match is Match.FULL:
                methods |= route.methods
    return sorted(methods)


async def http_error(request: Request, exc: Exception) -> Response:
    request_id = "RQ" + secrets.token_hex(16)
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        response = error_response(405, 20004, "Method not allowed", request_id)
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response
    if status == 404:
        message = f"The requested resource {request.url.path} was not found"
        return error_response(404, 20404, message, request_id)
    return error_response(status, 20000 + status, "Request refused", request_id)


def create_app(domain: Domain) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        domain.store.close()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *services.routes,
            *entities.routes,
            *passkeys.routes,
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # an unknown path is a Twilio 404, not a redirect
    app.state.domain = domain
    return app
