"""The demo's ASGI application: pages, the ceremony endpoints, the browser helper and page
script under /static, security headers, and /healthz."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import account, ceremonies
from .config import DemoConfig
from .service import DemoService
from .session import SessionCodec
from .state import Demo
from .users import Users
from .verify import VerifyClient

SECURITY_HEADERS = {
    # Only this site's own scripts and styles: the pages have no inline script to allow.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self';"
    " img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none';"
    " object-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "service_sid": request.app.state.demo.service.sid})


def create_app(
    config: DemoConfig, service: DemoService, *, sessions: SessionCodec | None = None
) -> Starlette:
    """The demo for a prepared service (see service.prepare_service). Its Verify client and
    user map open with the application's lifespan and close with it."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        users = Users(config.users_db)
        async with VerifyClient(
            config.passkeyd_url, config.account_sid, config.auth_token
        ) as verify:
            app.state.demo = Demo(config, service, verify, users, sessions or SessionCodec())
            try:
                yield
            finally:
                users.close()

    return Starlette(
        routes=[
            *account.routes,
            *ceremonies.routes,
            Route("/healthz", healthz, methods=["GET"]),
            Mount("/static", StaticFiles(packages=[("passkeyd.web", "static")]), name="static"),
        ],
        middleware=[Middleware(SecurityHeaders)],
        lifespan=lifespan,
    )
