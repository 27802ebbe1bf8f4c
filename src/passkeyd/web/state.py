"""What every handler shares: the demo's parts, the browser's session, same-origin checks and
the JSON replies the page script reads."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from passkeyd.digits import ascii_int
from passkeyd.webauthn.origins import related_origins

from .config import DemoConfig
from .messages import APP_ERRORS, SOMETHING_WENT_WRONG, verify_sentence
from .pages import PageContext
from .service import DemoService
from .session import COOKIE, Session, SessionCodec
from .users import InvalidName, Users
from .verify import PasskeydUnreachable, VerifyClient, VerifyError

log = logging.getLogger("passkeyd.web")

MAX_BODY = 64 * 1024  # passkeyd's own limit: a credential never comes near it


@dataclass(slots=True)
class Demo:
    config: DemoConfig
    service: DemoService
    verify: VerifyClient
    users: Users
    sessions: SessionCodec

    def page_context(self) -> PageContext:
        return PageContext(
            rp_id=self.service.rp_id,
            service_sid=self.service.sid,
            passkeyd_url=self.config.passkeyd_url,
            ceremony_timeout_ms=int(self.config.ceremony_timeout * 1000),
            user_verification=self.service.user_verification,
            origins=tuple(related_origins(self.service.origins)),
        )


def demo_of(request: Request) -> Demo:
    demo: Demo = request.app.state.demo
    return demo


def session_of(request: Request) -> Session:
    return demo_of(request).sessions.loads(request.cookies.get(COOKIE), time.time())


def store_session(request: Request, response: Response, session: Session) -> Response:
    codec = demo_of(request).sessions
    response.set_cookie(
        COOKIE,
        codec.dumps(session, time.time()),
        max_age=codec.max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def same_origin(request: Request) -> bool:
    """A state-changing request must come from this site's own pages. Browsers send Origin on
    every POST; its absence means a non-browser client, which the demo has no use for."""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    return bool(origin and host) and origin == f"{request.url.scheme}://{host}"


class Refusal(Exception):
    """A request the demo answers with a sentence: `status` and the sentence to show."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status, self.sentence = status, sentence

    @classmethod
    def app(cls, status: int, reason: str) -> Refusal:
        return cls(status, APP_ERRORS[reason])


# What a handler may raise that ends in a sentence for the person.
REFUSALS = (Refusal, InvalidName, VerifyError, PasskeydUnreachable)


def refusal_of(exc: Exception) -> Refusal:
    """Any of REFUSALS as a status and the sentence a person reads; passkeyd's detail goes to
    the log only."""
    if isinstance(exc, Refusal):
        return exc
    if isinstance(exc, InvalidName):
        return Refusal.app(400, exc.reason)
    if isinstance(exc, VerifyError):
        if exc.status == 401:  # the operator's to fix, and the page cannot say so
            log.error(
                "passkeyd refused the demo's credentials (401 %s): start the demo with the"
                " account's current auth token (rotated?) or a valid API key",
                exc.code,
            )
        else:
            log.info("passkeyd refused: %s %s %s", exc.status, exc.code, exc.message)
        # 4xx is the request's fault (the person's); 401 and 5xx are the operator's to fix.
        status = exc.status if 400 <= exc.status < 500 and exc.status != 401 else 502
        sentence = verify_sentence(exc.code, exc.message)
        if sentence == SOMETHING_WENT_WRONG and status == 400:  # what the page sent
            sentence = APP_ERRORS["bad_request"]
        return Refusal(status, sentence)
    log.error("passkeyd unreachable: %s", exc)
    return Refusal.app(502, "unreachable")


def json_reply(payload: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers={"Cache-Control": "no-store"})


async def _body(request: Request, content_type: str) -> bytes:
    if not same_origin(request):
        raise Refusal.app(403, "cross_site")
    if request.headers.get("content-type", "").split(";")[0].strip() != content_type:
        raise Refusal.app(415, "bad_request")
    # Read up to the limit, not the whole body first: a client may send any length.
    length = ascii_int(request.headers.get("content-length", ""))
    if length is not None and length > MAX_BODY:
        raise Refusal.app(413, "bad_request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise Refusal.app(413, "bad_request")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, from this site's pages; a Refusal for anything else."""
    raw = await _body(request, "application/json")
    try:
        data = json.loads(raw or b"{}")
    except ValueError as exc:
        raise Refusal.app(400, "bad_request") from exc
    if not isinstance(data, dict):
        raise Refusal.app(400, "bad_request")
    return data


async def form_body(request: Request) -> dict[str, str]:
    """A form post from this site's pages (urlencoded; the first value of each field)."""
    raw = await _body(request, "application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refusal.app(400, "bad_request") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form
