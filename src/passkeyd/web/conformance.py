"""`passkeyd conformance`: the FIDO Alliance's conformance server API, on a Verify service.

    passkeyd conformance --port 3000 --passkeyd-url http://127.0.0.1:8080

The FIDO2 server conformance tools drive a relying party through four JSON endpoints
(fido-alliance/conformance-test-tools-resources, docs/FIDO2/Server/Conformance-Test-API.md):

    POST /attestation/options  {username, displayName, authenticatorSelection?, attestation?,
                                extensions?}      -> creation options       (Verify P1)
    POST /attestation/result   a ServerPublicKeyCredential (attestation)  (Verify P2)
    POST /assertion/options    {username, userVerification?, extensions?}
                                                  -> request options        (Verify P3)
    POST /assertion/result     a ServerPublicKeyCredential (assertion)    (Verify P4)

Each answer is a `ServerResponse`: `{"status": "ok", "errorMessage": ""}` with the options
beside, or `{"status": "failed", "errorMessage": ...}` with the status passkeyd answered (4xx),
502 when passkeyd cannot be reached. This is a relying party built on the Verify API as any
customer's backend is: every WebAuthn check is passkeyd's own. A ceremony is found by its
challenge, as Verify finds it, so no cookie is needed.

It has no authentication of its own: anyone who reaches it can register a passkey under any
username of its service. Run it for a conformance run only, on loopback (the default), with
a service of its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import DemoConfig, parse_config
from .launch import launch
from .service import DemoService
from .verify import PasskeydUnreachable, VerifyClient, VerifyError

log = logging.getLogger("passkeyd.conformance")

MAX_BODY = 64 * 1024
_RESIDENT_KEYS = ("discouraged", "preferred", "required")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class Failed(Exception):
    """A request this server refuses before passkeyd sees it."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def _failed(message: str, status: int) -> Response:
    return JSONResponse({"status": "failed", "errorMessage": message}, status)


def _ok(fields: dict[str, Any]) -> Response:
    return JSONResponse({"status": "ok", "errorMessage": "", **fields})


async def _body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise Failed(f"The request body is over {MAX_BODY} bytes", 413)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # (nested past the recursion limit)
        raise Failed("The request body is not JSON") from exc
    if not isinstance(data, dict):
        raise Failed("The request body is not a JSON object")
    return data


def _text(data: dict[str, Any], name: str, *, empty: bool = False) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not (value or empty):
        raise Failed(f"{name} is missing or not a string")
    return value


def identity_of(username: str) -> str:
    """The Verify identity of a username: Verify's identities are 8 to 64 letters and digits
    (with dashes), and the tools' usernames are e-mail addresses. 128 bits of its SHA-256,
    in hex, so the same username is the same user at registration and sign-in."""
    return hashlib.sha256(username.encode("utf-8")).hexdigest()[:32]


def _dict(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Failed(f"{name} is not an object")
    return value


def _with_extensions(options: dict[str, Any], asked: dict[str, Any]) -> dict[str, Any]:
    """The options, with the extensions the request asked for in place of passkeyd's own
    (credProps, which tells whether a passkey is discoverable): the tools compare them with
    what they asked, whole (Server-ServerPublicKeyCredentialCreationOptions-Req-1 P-1)."""
    if asked:
        options["extensions"] = asked
    return options


# What navigator.credentials.create() takes and get() does not: the tools' WebAuthn client
# refuses request options that carry any of them (and creation options that carry rpId,
# allowCredentials or userVerification) before it signs, so a sign-in's options are only
# its own fields. (Verify's P3 answers `rp` beside them.)
_CREATION_ONLY = (
    "rp", "user", "pubKeyCredParams", "excludeCredentials", "authenticatorSelection",
    "attestation",
)  # fmt: skip
_TOKEN_BINDING_STATUSES = ("present", "supported", "not-supported")


def _request_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in _CREATION_ONLY}


def _check_encoding(response: dict[str, Any]) -> None:
    """The conformance API's byte fields are unpadded base64url (Verify reads them as
    leniently as SDKs write them: base64 with padding too, h-8), and its clientData's
    `tokenBinding`, when there is one, the dictionary WebAuthn L2 §5.8.1 defines (L3, which
    passkeyd verifies to, no longer reads it): the tools send each other form and expect it
    refused."""
    for name in ("clientDataJSON", "attestationObject", "authenticatorData", "signature",
                 "userHandle"):  # fmt: skip
        value = response.get(name)
        if isinstance(value, str) and value and not _BASE64URL.fullmatch(value):
            raise Failed(f"response.{name} is not base64url")
    raw = response.get("clientDataJSON")
    if not isinstance(raw, str) or not raw:
        return  # (Verify says what is wrong with it)
    try:
        client_data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error, RecursionError):  # (nested past the recursion limit)
        return
    if not isinstance(client_data, dict) or "tokenBinding" not in client_data:
        return
    binding = client_data["tokenBinding"]
    if not isinstance(binding, dict) or binding.get("status") not in _TOKEN_BINDING_STATUSES:
        raise Failed("clientData.tokenBinding is not a TokenBinding with a known status")


def _factor_config(data: dict[str, Any]) -> dict[str, Any]:
    """The factor's own settings, from the request's authenticatorSelection and attestation
    (passkeyd checks their values: an unknown one is its 60370)."""
    selection = _dict(data, "authenticatorSelection")
    config: dict[str, Any] = {}
    if (attachment := selection.get("authenticatorAttachment")) is not None:
        config["authenticator_attachment"] = attachment
    resident = selection.get("residentKey")
    if resident not in _RESIDENT_KEYS:  # (WebAuthn: an unknown value is ignored)
        resident = None
    if resident is None and selection.get("requireResidentKey") is True:
        resident = "required"
    if resident is not None:
        config["discoverable_credentials"] = resident
    if (uv := selection.get("userVerification")) is not None:
        config["user_verification"] = uv
    if (attestation := data.get("attestation")) is not None:
        config["attestation"] = attestation
    return config


def _credential(data: dict[str, Any]) -> dict[str, Any]:
    """A `ServerPublicKeyCredential` as Verify's P2 and P4 read a credential: the tools send
    `getClientExtensionResults` for `clientExtensionResults`, and may leave out `rawId`
    (the same bytes as `id`, base64url).

    The conformance API requires `id` (unpadded base64url: the tools send one in base64 and
    expect it refused), `type` (`public-key`) and `response`, which Verify does not: its P2
    takes the credential id from the attested data when `id` is left out (the reference's
    h-9), and reads `id` as leniently as SDKs write it (h-8)."""
    credential_id = data.get("id")
    if not isinstance(credential_id, str) or not _BASE64URL.fullmatch(credential_id):
        raise Failed("id is missing or not base64url")
    if data.get("type") != "public-key":
        raise Failed('type is missing or not "public-key"')
    if not isinstance(data.get("response"), dict):
        raise Failed("response is missing or not an object")
    _check_encoding(data["response"])
    credential = dict(data)
    outputs = credential.pop("getClientExtensionResults", None)
    if outputs is not None and credential.get("clientExtensionResults") is None:
        credential["clientExtensionResults"] = outputs
    if credential.get("rawId") is None and credential.get("id") is not None:
        credential["rawId"] = credential["id"]
    return credential


def _refusals(handler: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except Failed as exc:
            return _failed(exc.message, exc.status)
        except VerifyError as exc:
            status = exc.status if 400 <= exc.status < 600 else 502
            return _failed(f"{exc.message} ({exc.code})", status)
        except PasskeydUnreachable as exc:
            log.warning("passkeyd did not answer: %s", exc)
            return _failed("passkeyd did not answer", 502)

    return wrapped


def _verify(request: Request) -> tuple[VerifyClient, str]:
    state = request.app.state
    return state.verify, state.service.sid


@_refusals
async def attestation_options(request: Request) -> Response:
    data = await _body(request)
    username = _text(data, "username")
    display_name = _text(data, "displayName", empty=True)
    asked = _dict(data, "extensions")
    verify, service_sid = _verify(request)
    factor = await verify.create_factor(
        service_sid,
        identity=identity_of(username),
        friendly_name=username,
        config=_factor_config(data),
    )
    options = dict(factor["options"]["publicKey"])
    # The name the authenticator shows the user is the account's; its display name is the
    # one asked for (the factor's friendly name, and user.name, is the username).
    options["user"] = {**options["user"], "name": username, "displayName": display_name}
    # The tools compare authenticatorSelection with what they asked, whole, too: passkeyd
    # took it as the factor's config.
    if isinstance(data.get("authenticatorSelection"), dict):
        options["authenticatorSelection"] = data["authenticatorSelection"]
    return _ok(_with_extensions(options, asked))


@_refusals
async def attestation_result(request: Request) -> Response:
    data = await _body(request)
    verify, service_sid = _verify(request)
    factor = await verify.verify_factor(service_sid, _credential(data))
    if factor.get("status") != "verified":
        raise Failed("The passkey was not verified", 403)
    return _ok({})


@_refusals
async def assertion_options(request: Request) -> Response:
    data = await _body(request)
    username = _text(data, "username")
    uv = data.get("userVerification")
    if uv is not None and not isinstance(uv, str):
        raise Failed("userVerification is not a string")
    asked = _dict(data, "extensions")
    verify, service_sid = _verify(request)
    challenge = await verify.create_challenge(
        service_sid, identity=identity_of(username), user_verification=uv
    )
    return _ok(_with_extensions(_request_options(challenge["options"]["publicKey"]), asked))


@_refusals
async def assertion_result(request: Request) -> Response:
    data = await _body(request)
    verify, service_sid = _verify(request)
    challenge = await verify.approve_challenge(service_sid, _credential(data))
    if challenge.get("status") != "approved":
        raise Failed(f"The challenge is {challenge.get('status')}, not approved", 403)
    return _ok({})


def create_app(config: DemoConfig, service: DemoService) -> Starlette:
    """The conformance server for a prepared service (see service.prepare_service)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with VerifyClient(
            config.passkeyd_url, config.account_sid, config.auth_token
        ) as verify:
            app.state.verify, app.state.service = verify, service
            yield

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service_sid": service.sid})

    async def not_here(request: Request, exc: Exception) -> Response:
        # (an unknown path, or GET on an endpoint: a ServerResponse too, not plain text)
        status = getattr(exc, "status_code", 404)
        what = "no such endpoint" if status == 404 else f"{request.method} is not allowed here"
        return _failed(f"{what}: POST /attestation/options, /attestation/result,"
                       " /assertion/options or /assertion/result", status)  # fmt: skip

    return Starlette(
        routes=[
            Route("/attestation/options", attestation_options, methods=["POST"]),
            Route("/attestation/result", attestation_result, methods=["POST"]),
            Route("/assertion/options", assertion_options, methods=["POST"]),
            Route("/assertion/result", assertion_result, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={404: not_here, 405: not_here},
        lifespan=lifespan,
    )


def _config(argv: Sequence[str] | None) -> DemoConfig:
    config = parse_config(
        argv,
        os.environ,
        prog="passkeyd conformance",
        description="The FIDO conformance tools' server API (/attestation/options and"
        " /result, /assertion/options and /result) on a Verify service of passkeyd.",
        port=3000,
    )
    if not config.service_sid:  # a service of its own: `checked` unless told otherwise
        config = replace(config, attestation_policy=config.attestation_policy or "checked")
    return config


def _started(config: DemoConfig, service: DemoService) -> None:
    if not service.created and config.attestation_policy is not None:
        log.warning(
            "--attestation-policy applies to a service made at start-up; service %s keeps"
            " its own Passkeys.AttestationPolicy",
            service.sid,
        )
    log.info(
        "conformance server for service %s at http://%s:%d (origins %s)",
        service.sid,
        config.host,
        config.port,
        ", ".join(service.origins),
    )


def main(argv: Sequence[str] | None = None) -> int:
    return launch(
        "passkeyd conformance",
        lambda: _config(argv),
        create_app,
        started=_started,
        friendly_name="passkeyd conformance",
    )


if __name__ == "__main__":
    raise SystemExit(main())
