"""The request wrapper every endpoint shares: auth, error table, JSON out, request id."""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

import anyio.to_thread
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from passkeyd import logs, metrics
from passkeyd.domain import Domain
from passkeyd.domain.errors import (
    AssertionRefused,
    DomainError,
    InvalidParameter,
    NotFound,
    RegistrationRefused,
    TooManyRequests,
    Unauthenticated,
)
from passkeyd.domain.models import AuditEvent
from passkeyd.domain.steps import Steps, finish
from passkeyd.records import record
from passkeyd.storage import NotCached, StorageUnavailable

from . import errors
from .params import NUL_REFUSED, header

log = logging.getLogger("passkeyd.api")
_TRACEBACK_NOW = logs.Every(10.0)
_UNAVAILABLE_LINE = logs.Throttle(1.0)  # each request's 503 is in the access log anyway
_UNHANDLED = logs.Tracebacks(60.0)
# A 503's Retry-After: the database's outages it answers (a lock held, a full disk, a
# failover) are waited out by trying again, not by giving up.
UNAVAILABLE_RETRY_AFTER_SECONDS = 1

REQUEST_ID_HEADER = "Twilio-Request-Id"
# Methods that change nothing: no write lock, no audit record (HEAD is GET without a body).
READS = frozenset({"GET", "HEAD"})
# A request whose client went away before its body ended (nginx's code for it).
CLIENT_CLOSED = 499
T = TypeVar("T")


@record
class Call:
    """What a handler gets: the request, the authenticated account, and the domain."""

    request: Request
    account_sid: str
    domain: Domain

    @property
    def base(self) -> str:
        """This server's own base URL as the client reached it, for `url` and `links`."""
        host = header(self.request.scope, b"host")
        if host:
            return f"{self.request.scope['scheme']}://{host}"
        url = self.request.url  # no Host header (HTTP/1.0): the server's own address
        return f"{url.scheme}://{url.netloc}"

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a domain call: inline for SQLite, in a worker thread for a networked store."""
        if self.request.method not in READS:
            await self.domain.store.reserve()  # it will write: take the lock without blocking
        return await _run(self.domain, fn, *args, **kwargs)

    async def run_steps(self, fn: Callable[..., Steps[T]], *args: Any, **kwargs: Any) -> T:
        """Run a use-case written in steps (`domain.steps`). Inline on SQLite, where the
        write lock is taken only at its first yield: its reads and checks (the signature's
        verification among them) run while another worker process may hold the lock,
        instead of keeping that process from writing for all of its work. (Once taken, the
        lock stays with this process's batch until the batch commits: see
        `storage.sqlite`.) In a worker thread for a networked store, straight through."""
        domain = self.domain
        steps = fn(*args, **kwargs)
        if domain.store.runs_in_threads:
            return await _run(domain, finish, steps)
        store = domain.store
        try:
            while True:
                next(steps)  # runs up to its next write
                await store.reserve()  # at once when this process's batch is open
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            steps.close()  # when reserve() failed: the use-case goes no further
            await store.settle()


async def _run(domain: Domain, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    if domain.store.runs_in_threads:
        # In the store's own threads, no more than it has connections: more would only
        # queue for the pool, and their lock hand-offs cost more CPU than the queries
        # themselves. (A hop costs 22 us of CPU there at c16, 60 us through anyio.to_thread.)
        # A request cancelled meanwhile leaves the call to finish: its transaction commits
        # or rolls back whole, and the store lets it end before it closes.
        call = functools.partial(fn, *args, **kwargs)
        future = domain.store.submit(call)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # A shutdown past its grace period cancels the requests still running, and
            # uvicorn answers them 500; a call already in its thread may yet commit (one
            # waiting for a lock, say), and a client told 500 would not know. The answer
            # waits for how it ended instead; a call not yet started never will be (503).
            if future.cancelled():
                raise StorageUnavailable("passkeyd is shutting down") from None
            return await asyncio.wrap_future(future)
    try:
        return fn(*args, **kwargs)
    finally:
        # Answer only once what this call wrote (or read from a neighbour's write) is
        # committed: SQLite commits the writes of one loop iteration together.
        await domain.store.settle()


Handler = Callable[[Call], Awaitable[tuple[int, Any]]]


class JSONResponse(Response):
    """A JSON body with its request id, its headers made directly (the hot path's reply)."""

    media_type = "application/json"

    def __init__(self, status: int, payload: Any, request_id: str) -> None:
        self.status_code = status
        self.background = None
        self.body = orjson.dumps(payload)
        self.raw_headers = [
            (b"content-length", str(len(self.body)).encode("latin-1")),
            (b"content-type", b"application/json"),
            (b"twilio-request-id", request_id.encode("latin-1")),
        ]


def json_response(status: int, payload: Any, request_id: str) -> Response:
    if status == 204:
        return Response(status_code=204, headers={REQUEST_ID_HEADER: request_id})
    response = JSONResponse(status, payload, request_id)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="passkeyd"'
    return response


def error_response(status: int, code: int, message: str, request_id: str) -> Response:
    return json_response(status, errors.body(status, code, message), request_id)


AUTHORIZATION_REPEATED = "Bad request: a request must not have two Authorization headers"


def authorization(scope: Any) -> str:
    """The request's one Authorization header ("" when none). Two are refused: which of
    them counted would depend on which a proxy put first."""
    found: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if found is not None:
                raise InvalidParameter(AUTHORIZATION_REPEATED)
            found = value
    return "" if found is None else found.decode("latin-1")


def _credentials(request: Request) -> tuple[str, str]:
    header = authorization(request.scope)
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Unauthenticated("Authenticate")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError as exc:  # binascii.Error, UnicodeDecodeError, or a character over 127
        raise Unauthenticated("Authenticate") from exc
    username, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthenticated("Authenticate")
    return username, password


def _authenticate(domain: Domain, username: str, password: str) -> str:
    """A request's first domain call: check the cached configuration is current, then
    the credentials."""
    domain.store.refresh_config()
    return domain.accounts.authenticate(username, password)


def _service_of(request: Request, payload: Any) -> str:
    """The service a request concerns: in its path, or (Services routes) the one acted on."""
    params = request.path_params
    if "service_sid" in params:
        return str(params["service_sid"])
    if str(params.get("sid", "")).startswith("VA"):
        return str(params["sid"])
    if isinstance(payload, dict) and str(payload.get("sid", "")).startswith("VA"):
        return str(payload["sid"])
    return ""


def _resource(request: Request, payload: Any) -> str:
    """The SID a request acted on: from its path, else from what it created or answered.
    (A path's identity or service SID gives way to the SID of what it answered: an entity
    is recorded by its SID, not by the identity its path names.)"""
    params = request.path_params
    for name in ("sid", "identity", "service_sid"):
        if name in params:
            if name != "sid" and isinstance(payload, dict) and "sid" in payload:
                return str(payload["sid"])
            return str(params[name])
    if isinstance(payload, dict) and isinstance(payload.get("sid"), str):
        return str(payload["sid"])
    return ""


def _refuse_nul(scope: Any) -> None:
    """A NUL in the path names nothing (404); in the query, it is a bad parameter (400).
    (PostgreSQL's text cannot hold one: it would be a 500 there.)"""
    if "\x00" in scope["path"]:
        raise NotFound("The requested resource was not found")
    raise InvalidParameter(NUL_REFUSED)


def _refuse_a_query_not_utf8(query: bytes) -> None:
    """Query parameters whose escapes are no UTF-8: read as U+FFFD, they filtered on a value
    nobody sent (a body's are refused the same way)."""
    try:
        unquote_to_bytes(query.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidParameter("Invalid parameter: the query string is not UTF-8") from exc


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: authenticate, run, map errors through the one table, then count
    the request (metrics) and log one line (without secrets) with its request id."""
    route = handler.__name__
    ceremony = metrics.CEREMONY_OF_ROUTE.get(route)

    async def run(request: Request) -> Response:
        started = time.perf_counter()
        method = request.method
        request_id = logs.new_request_id()
        domain: Domain = request.app.state.domain
        account_sid = ""
        username = ""
        response_payload: Any = None
        code = 0
        step = ""
        concerns = ""
        domain.store.request_started()
        try:
            username, password = _credentials(request)
            if domain.store.runs_in_threads:
                # From the cache on the loop when all it needs is cached (PostgreSQL while
                # it hears configuration changes); else from the database in a thread. A
                # thread hop costs about 60 us of CPU.
                try:
                    with domain.store.cached_only():
                        account_sid = _authenticate(domain, username, password)
                except NotCached:
                    account_sid = await _run(domain, _authenticate, domain, username, password)
            else:
                # Inline, without waiting for the open batch to commit (`_run` would): no
                # credential can come from an uncommitted batch, because a token or key
                # secret is answered to its creator only once its batch has committed; and
                # what else this read saw of the batch (configuration) is committed before
                # this request answers, with the batch its own call settles on, or forgotten
                # when that batch fails. Waiting here cost every request a second commit
                # wait: +25% flows/s at w1 c16.
                account_sid = _authenticate(domain, username, password)
            scope = request.scope
            # (`find`, not `in`: a bytes `in` first tries its operand as an integer, and on
            # Python 3.11 raises and formats a TypeError to learn it is none, about 2,000
            # instructions each.)
            query = scope["query_string"]
            if "\x00" in scope["path"] or query.find(b"%00") >= 0:
                _refuse_nul(scope)
            if query.find(b"%") >= 0:
                _refuse_a_query_not_utf8(query)
            status, payload = await handler(Call(request, account_sid, domain))
            response_payload = payload
            response = json_response(status, payload, request_id)
        except DomainError as exc:
            status, code, message = errors.classify(exc)
            concerns = exc.concerns
            if isinstance(exc, RegistrationRefused | AssertionRefused):
                step = exc.error.step.name.lower()
            if isinstance(exc, TooManyRequests):
                # Also in the body's `details`: the SDKs keep no headers of an error, but
                # expose `details` (TwilioRestException.details).
                wait = {"retry_after": exc.retry_after}
                payload = {**errors.body(status, code, message), "details": wait}
                response = json_response(status, payload, request_id)
                response.headers["Retry-After"] = str(exc.retry_after)
            elif exc.details:
                payload = {**errors.body(status, code, message), "details": exc.details}
                response = json_response(status, payload, request_id)
            else:
                response = error_response(status, code, message, request_id)
        except StorageUnavailable as exc:
            extra = {"request_id": request_id, "route": route}
            if _TRACEBACK_NOW():
                log.exception("storage unavailable", extra=extra)
            elif (more := _UNAVAILABLE_LINE()) is not None:
                log.error("storage unavailable: %s%s", exc, more, extra=extra)
            status, code = errors.UNAVAILABLE
            response = error_response(
                status, code, f"Service unavailable; request id {request_id}", request_id
            )
            response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
        except errors.HttpError as exc:
            status, code = exc.status, exc.code
            response = error_response(exc.status, exc.code, exc.message, request_id)
        except ClientDisconnect:
            # The client left before its body ended: nothing was done and nobody hears the
            # answer. Counted and logged as nginx's 499 (client closed), not as our error.
            status = CLIENT_CLOSED
            response = Response(status_code=status)
        except Exception as exc:
            extra = {"request_id": request_id, "route": route}
            if (earlier := _UNHANDLED.logged_at(exc, request_id)) is None:
                log.exception("unhandled error", extra=extra)
            else:  # every request's 500 has its line, with the request that has the traceback
                log.error("unhandled error: %s: %s (its traceback: %s)",
                          type(exc).__name__, logs.exception_text(exc), earlier,
                          extra=extra)  # fmt: skip
            status, code = errors.INTERNAL
            response = error_response(
                status, code, f"Internal error; request id {request_id}", request_id
            )
        finally:
            domain.store.request_finished()
        elapsed = time.perf_counter() - started
        if request.method not in READS and account_sid and status != CLIENT_CLOSED:
            full = domain.audit.record(
                AuditEvent(
                    account_sid=account_sid,
                    # (From the path: a refused NUL must not reach the audit's batch
                    # insert, which PostgreSQL would refuse, and every later batch with it.)
                    service_sid=_service_of(request, response_payload).replace("\x00", "?"),
                    actor=username,
                    action=route,
                    resource=(concerns or _resource(request, response_payload)).replace(
                        "\x00", "?"
                    ),
                    outcome="ok" if status < 400 else "refused",
                    code=code,
                    step=step,
                    request_id=request_id,
                    date_created=domain.clock(),
                )
            )
            if full:  # the timer's flushes are failing or behind: write now, off the loop
                try:
                    await anyio.to_thread.run_sync(domain.audit.flush)
                except Exception:
                    log.exception("writing the audit trail failed; will retry")
        metrics.request(route, method, status, elapsed)
        # A ceremony the database could not finish (503: locked, full, gone; 500) was
        # neither passed nor refused: counted as `refused` (step "20503"), an outage read as
        # a wave of failed sign-ins, the signal of an attack (docs: What to monitor).
        if (
            ceremony is not None
            and code not in (20003, 20404)
            and status != CLIENT_CLOSED
            and status < 500
        ):
            outcome = "success" if status < 400 else "refused"
            metrics.ceremony(ceremony, outcome, step or str(code or ""))
        logs.access(
            f"{method} {route} {status}",
            {
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "account_sid": account_sid,
                "code": code,
            },
        )
        return response

    run.__name__ = handler.__name__
    return run
