"""The JSON endpoints behind the page script: each ceremony's options, then its result.

Sign-up and "add a passkey" create a Verify factor (its options go to
navigator.credentials.create) and finish with VerifyFactor; sign-in creates a challenge (for
a name, or for any discoverable passkey) and finishes with ApproveChallenge. A ceremony only
signs in the browser that started it: its factor or challenge SID must be pending in that
browser's session. passkeyd has accepted the credential by then; the check decides only
whether *this* browser gets the session, which stops a page elsewhere from signing a visitor
in as someone else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .passkeys import passkey_from_factor
from .state import (
    REFUSALS,
    Demo,
    Refusal,
    demo_of,
    json_body,
    json_reply,
    refusal_of,
    session_of,
    store_session,
)
from .users import clean_name
from .verify import VerifyError

log = logging.getLogger("passkeyd.web")

Endpoint = Callable[[Request], Awaitable[Response]]


def answers_with_sentences(handler: Endpoint) -> Endpoint:
    """Every refusal becomes `{"error": sentence}` with a fitting status."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except REFUSALS as exc:
            refusal = refusal_of(exc)
            reply: dict[str, Any] = {"error": refusal.sentence}
            if isinstance(exc, VerifyError) and exc.details.get("signal_unknown_credential"):
                # A passkey of this service's user that the service no longer has: the page
                # tells the browser (signalUnknownCredential), so that the device stops
                # offering it. Not for any 60390: a passkey made for another service with the
                # same RP id (every demo on localhost) would be deleted from the device.
                reply["unknown_credential"] = True
            return json_reply(reply, refusal.status)

    return wrapped


def _credential(body: dict[str, Any]) -> dict[str, Any]:
    credential = body.get("credential")
    if not isinstance(credential, dict):
        raise Refusal.app(400, "bad_request")
    return credential


async def has_passkeys(demo: Demo, identity: str) -> bool:
    try:
        factors = await demo.verify.list_factors(demo.service.sid, identity)
    except VerifyError as exc:
        if exc.code == 20404:  # no entity yet: nobody finished signing up with this name
            return False
        raise
    return any(f.get("status") == "verified" for f in factors)


async def _taken_meanwhile(demo: Demo, identity: str, factor_sid: str) -> bool:
    """The name has a verified passkey other than `factor_sid`."""
    factors = await demo.verify.list_factors(demo.service.sid, identity)
    return any(f.get("status") == "verified" and f.get("sid") != factor_sid for f in factors)


async def _registration_options(request: Request, identity: str, name: str) -> Response:
    demo = demo_of(request)
    factor = await demo.verify.create_factor(
        demo.service.sid, identity=identity, friendly_name=name
    )
    session = demo.sessions.start(session_of(request), str(factor["sid"]), time.time())
    return store_session(request, json_reply({"options": factor["options"]}), session)


@answers_with_sentences
async def signup_options(request: Request) -> Response:
    """POST {name}: creation options for a new account's first passkey."""
    body = await json_body(request)
    name = clean_name(body.get("name"))
    demo = demo_of(request)
    if session_of(request).identity is not None:  # (a sign-up page left open in a tab)
        raise Refusal.app(409, "signed_in_already")
    identity = demo.users.identity_for_new(name)
    # A name whose sign-up never finished has no passkey and may be taken again; one whose
    # sign-up finished stays its owner's, even after the owner deleted every passkey.
    if demo.users.is_claimed(identity) or await has_passkeys(demo, identity):
        raise Refusal.app(409, "name_taken")
    return await _registration_options(request, identity, name)


@answers_with_sentences
async def add_passkey_options(request: Request) -> Response:
    """POST {}: creation options for another passkey of the signed-in user."""
    await json_body(request)
    identity = session_of(request).identity
    if identity is None:
        raise Refusal.app(401, "signed_out")
    name = demo_of(request).users.name_of(identity) or identity
    return await _registration_options(request, identity, name)


async def _label_another_passkey(demo: Demo, identity: str, factor: dict[str, Any]) -> None:
    """An added passkey is labelled by its authenticator model where passkeyd names it
    ("iCloud Keychain"), else "Passkey", numbered past the labels the user's other passkeys
    have: it was labelled with the account's name, like the first, and the account page
    could not tell them apart. (The name the device shows for it, the options' user.name,
    stays the account's.)"""
    label = passkey_from_factor(factor).authenticator_name or "Passkey"
    try:
        others = {
            str(f.get("friendly_name"))
            for f in await demo.verify.list_factors(demo.service.sid, identity)
            if f.get("sid") != factor.get("sid")
        }
        number = 2
        labelled = label
        while labelled in others:
            labelled, number = f"{label} {number}", number + 1
        await demo.verify.rename_factor(demo.service.sid, identity, str(factor["sid"]), labelled)
    except REFUSALS as exc:  # the passkey was added all the same: only its label is the name
        log.warning("labelling the added passkey %s failed: %s", factor.get("sid"), exc)


@answers_with_sentences
async def verify_passkey(request: Request) -> Response:
    """POST {credential}: the new passkey (credential.toJSON()) to VerifyFactor."""
    credential = _credential(await json_body(request))
    demo = demo_of(request)
    session = session_of(request)
    factor = await demo.verify.verify_factor(demo.service.sid, credential)
    sid, identity = str(factor["sid"]), str(factor["identity"])
    started_here = demo.sessions.started(session, sid, time.time())
    if not started_here or session.identity not in (None, identity):
        # Verified by now, but refused here: it must not stay as a passkey of that account
        # (this browser was told it failed).
        await demo.verify.delete_factor(demo.service.sid, identity, sid)
        reason = "not_this_browser" if not started_here else "signed_in_already"
        raise Refusal.app(403 if reason == "not_this_browser" else 409, reason)
    if session.identity is None and (
        demo.users.is_claimed(identity) or await _taken_meanwhile(demo, identity, sid)
    ):
        # Another browser finished signing up with this name first (anyone may start a
        # sign-up for any name not yet taken, and finish it later): this passkey must not
        # join that account.
        await demo.verify.delete_factor(demo.service.sid, identity, sid)
        raise Refusal.app(409, "name_taken")
    notice = "signed-up" if session.identity is None else "added"
    if session.identity is not None:
        await _label_another_passkey(demo, identity, factor)
    demo.users.claim(identity)
    demo.sessions.finish(session, sid)
    session = session.signed_in(identity)
    return store_session(request, json_reply({"redirect": f"/account?notice={notice}"}), session)


@answers_with_sentences
async def signin_options(request: Request) -> Response:
    """POST {name?}: request options for that name's passkeys, or for any discoverable one."""
    body = await json_body(request)
    demo = demo_of(request)
    raw_name = body.get("name")
    identity = None
    if isinstance(raw_name, str) and raw_name.strip():
        identity = demo.users.identity_of(clean_name(raw_name))
        if identity is None:
            raise Refusal.app(404, "name_unknown")
    challenge = await demo.verify.create_challenge(demo.service.sid, identity=identity)
    session = demo.sessions.start(session_of(request), str(challenge["sid"]), time.time())
    return store_session(request, json_reply({"options": challenge["options"]}), session)


@answers_with_sentences
async def signin_approve(request: Request) -> Response:
    """POST {credential}: the assertion (credential.toJSON()) to ApproveChallenge."""
    credential = _credential(await json_body(request))
    demo = demo_of(request)
    session = session_of(request)
    challenge = await demo.verify.approve_challenge(demo.service.sid, credential)
    sid = str(challenge["sid"])
    if not demo.sessions.started(session, sid, time.time()):
        raise Refusal.app(403, "not_this_browser")
    if challenge.get("status") != "approved" or not challenge.get("identity"):
        raise Refusal.app(403, "not_approved")
    # The identity comes from passkeyd: for a sign-in without a name, the passkey named it.
    demo.users.claim(str(challenge["identity"]))  # (a users file from before claims)
    demo.sessions.finish(session, sid)
    signed_in = session.signed_in(str(challenge["identity"]))
    if signed_in.sid != session.sid:  # signed in over another user's session: end that one
        demo.sessions.revoke(session, time.time())
    session = signed_in
    return store_session(request, json_reply({"redirect": "/account?notice=signed-in"}), session)


routes = [
    Route("/api/signup/options", signup_options, methods=["POST"]),
    Route("/api/passkeys/options", add_passkey_options, methods=["POST"]),
    Route("/api/passkeys/verify", verify_passkey, methods=["POST"]),
    Route("/api/signin/options", signin_options, methods=["POST"]),
    Route("/api/signin/approve", signin_approve, methods=["POST"]),
]
