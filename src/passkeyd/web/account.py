"""The pages: sign in, sign up, and the signed-in account page with its passkeys, which a
person renames or deletes with plain form posts (Post/Redirect/Get on success; on a refusal
the page is shown again with the sentence)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .messages import APP_ERRORS, NOTICES
from .pages import account_page, signin_page, signup_page
from .passkeys import Passkey, verified_passkeys
from .session import Session
from .state import (
    REFUSALS,
    Demo,
    Refusal,
    demo_of,
    form_body,
    refusal_of,
    session_of,
    store_session,
)
from .users import clean_name
from .verify import VerifyError

NO_STORE = {"Cache-Control": "no-store"}


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=NO_STORE)


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


def _with_a_browser_id(request: Request, response: Response) -> Response:
    """A page whose script starts ceremonies gives the browser its id first: two tabs that
    each started one with no id yet would each get one, and keep only the later."""
    session = session_of(request)
    if session.browser is None:
        return store_session(request, response, session.with_browser())
    return response


async def signin(request: Request) -> Response:
    if session_of(request).identity is not None:
        return _see_other("/account")
    html = signin_page(demo_of(request).page_context(), notice=_notice(request))
    return _with_a_browser_id(request, HTMLResponse(html, headers=NO_STORE))


async def signup(request: Request) -> Response:
    if session_of(request).identity is not None:
        return _see_other("/account")
    html = signup_page(demo_of(request).page_context())
    return _with_a_browser_id(request, HTMLResponse(html, headers=NO_STORE))


async def before_the_script(request: Request) -> Response:
    """The sign-in or sign-up form sent before demo.js took it over (still loading, or
    JavaScript off): the page again, saying why nothing happened. The form posts, so the
    name typed does not end up in the address bar and the history, as a GET form's did."""
    ctx = demo_of(request).page_context()
    error = APP_ERRORS["needs_javascript"]
    html = signin_page(ctx, error=error) if request.url.path == "/" else signup_page(ctx, error)
    return HTMLResponse(html, status_code=400, headers=NO_STORE)


async def _passkeys(demo: Demo, identity: str) -> tuple[list[Passkey], str | None]:
    """The user's passkeys, and their entity SID (their passkeys' user handle) while the
    service still has it."""
    try:
        factors = await demo.verify.list_factors(demo.service.sid, identity)
        entity = next((f.get("entity_sid") for f in factors if f.get("entity_sid")), None)
        if entity is None:  # no factor left: the page still tells the browser none is
            entity = (await demo.verify.fetch_entity(demo.service.sid, identity)).get("sid")
    except VerifyError as exc:
        if exc.code == 20404:  # every passkey and the entity were deleted
            return [], None
        raise
    return verified_passkeys(factors), entity if isinstance(entity, str) else None


async def _account(
    request: Request, identity: str, *, status: int = 200, error: str | None = None
) -> Response:
    demo = demo_of(request)
    passkeys: list[Passkey] | None
    entity: str | None = None
    try:
        passkeys, entity = await _passkeys(demo, identity)
    except REFUSALS as exc:
        passkeys, error, status = None, refusal_of(exc).sentence, 502
    html = account_page(
        demo.page_context(),
        name=demo.users.name_of(identity) or identity,
        passkeys=passkeys,
        entity_sid=entity,
        notice=None if error else _notice(request),
        error=error,
    )
    return HTMLResponse(html, status_code=status, headers=NO_STORE)


async def account(request: Request) -> Response:
    identity = session_of(request).identity
    if identity is None:
        return _see_other("/")
    return await _account(request, identity)


async def _change_passkey(request: Request, *, delete: bool) -> Response:
    identity = session_of(request).identity
    if identity is None:
        return _see_other("/")
    demo = demo_of(request)
    sid = request.path_params["sid"]
    try:
        form = await form_body(request)
        if delete and form.get("last") != "confirmed":
            passkeys, _ = await _passkeys(demo, identity)
            if [p.sid for p in passkeys] == [sid]:  # the last one, and nobody was asked
                return await _account(
                    request, identity, status=409, error=APP_ERRORS["last_passkey"]
                )
        if delete:
            await demo.verify.delete_factor(demo.service.sid, identity, sid)
        else:
            name = clean_name(form.get("FriendlyName"), kind="passkey_name")
            await demo.verify.rename_factor(demo.service.sid, identity, sid, name)
    except REFUSALS as exc:
        if isinstance(exc, VerifyError) and exc.code == 20404:
            # Deleted meanwhile (in another tab), or not this user's passkey at all.
            refusal = Refusal.app(404, "passkey_gone")
        else:
            refusal = refusal_of(exc)
        return await _account(request, identity, status=refusal.status, error=refusal.sentence)
    return _see_other(f"/account?notice={'deleted' if delete else 'renamed'}")


async def rename_passkey(request: Request) -> Response:
    return await _change_passkey(request, delete=False)


async def delete_passkey(request: Request) -> Response:
    return await _change_passkey(request, delete=True)


async def signout(request: Request) -> Response:
    try:
        await form_body(request)
    except Refusal as exc:
        return HTMLResponse(exc.sentence, status_code=exc.status, headers=NO_STORE)
    demo_of(request).sessions.revoke(session_of(request), time.time())
    return store_session(request, _see_other("/?notice=signed-out"), Session())


routes = [
    Route("/", signin, methods=["GET"]),
    Route("/", before_the_script, methods=["POST"]),
    Route("/signup", signup, methods=["GET"]),
    Route("/signup", before_the_script, methods=["POST"]),
    Route("/account", account, methods=["GET"]),
    Route("/account/passkeys/{sid}/rename", rename_passkey, methods=["POST"]),
    Route("/account/passkeys/{sid}/delete", delete_passkey, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
]
