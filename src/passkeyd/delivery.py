"""Webhook delivery: claim due outbox rows, POST them signed as Twilio signs, retry.

Each event is POSTed form-encoded with `X-Twilio-Signature` (base64 HMAC-SHA1, keyed with
the account's auth token, over the URL followed by every parameter name and value in
name order), so `twilio.request_validator.RequestValidator` accepts it, and with
`I-Twilio-Idempotency-Token` set to the event's uuid. A delivery is retried with
exponential backoff until a 2xx arrives or the attempts run out; a sender that dies
mid-delivery lets its lease run out and the delivery is retried, so an event is sent more
than once only when a delivery was not acknowledged.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import http.client
import logging
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import anyio
import anyio.to_thread

from . import logs
from .domain.clock import Clock
from .domain.models import ClaimedDelivery
from .domain.webhooks import UNRESOLVED, resolve_target
from .metrics import WEBHOOK_DELIVERIES
from .sealing import SealingError, SecretBox
from .storage import Store

log = logging.getLogger("passkeyd.webhooks")

USER_AGENT = "passkeyd-webhooks/1"
CANNOT_SIGN = "cannot sign"  # a delivery's error that is this service's, not the receiver's
# This process's PASSKEYD_SECRET_KEY does not open the account's sealed token, which another
# process's key may: the delivery is left to those, unspent, for `give_back_seconds` after
# its event (then its attempts are spent like a failing receiver's, and it is given up).
NOT_OUR_KEY = (
    f"{CANNOT_SIGN}: the account's token is sealed with a key this process's"
    " PASSKEYD_SECRET_KEY does not hold"
)
NO_KEY_WARNING_SECONDS = 600  # how often a process without a key says its events wait


def twilio_signature(token: str, url: str, params: Mapping[str, str]) -> str:
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a vetted address, with the certificate still checked for the URL's host."""

    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=ssl.create_default_context())
        self._tls_host = host

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._tls_host)  # type: ignore[attr-defined]


class NoAnswer(Exception):  # noqa: N818 - it names what happened
    """Connected, but the answer did not come within the timeout or the deadline."""


def _cut(connection: http.client.HTTPConnection) -> None:
    """End a request from another thread: whatever it is waiting for fails at once."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class Outgoing:
    """The requests out, which `stop()` ends at once: a shutdown waited for each, up to its
    deadline (30 s for a receiver answering a byte at a time), past a supervisor's grace
    period, and the audit records still in memory were written only after them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: set[http.client.HTTPConnection] = set()
        self.stopped = False

    def add(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if self.stopped:
                raise ConnectionAbortedError("shutting down")
            self._connections.add(connection)

    def discard(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            connections = list(self._connections)
        for connection in connections:
            _cut(connection)


def post_form(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    address: str | None,
    timeout: float,
    deadline: float | None = None,
    outgoing: Outgoing | None = None,
) -> int:
    """POST and return the status. Connects to `address` when given (the one that was
    vetted, so DNS cannot be rebound between the check and the connection); never follows
    redirects. `timeout` bounds each wait on the socket, `deadline` the whole request (a
    receiver that answers a byte at a time cannot keep it going), `outgoing` lets a
    shutdown end it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = _PinnedHTTPSConnection(address or host, host, port, timeout)
    else:
        connection = http.client.HTTPConnection(address or host, port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # Set by the deadline's cut before it cuts: the request thread, woken by the cut, may
    # look before the timer's thread has ended (`is_alive()` was a race, lost under load).
    cut = threading.Event()

    def cut_at_deadline() -> None:
        cut.set()
        _cut(connection)

    timer = threading.Timer(deadline, cut_at_deadline) if deadline else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        if outgoing is not None:
            outgoing.add(connection)
        connection.connect()
        if outgoing is not None and outgoing.stopped:  # (stopped while it connected)
            raise ConnectionAbortedError("shutting down")
        try:
            connection.request("POST", target, body=body, headers={"Host": parts.netloc, **headers})
            response = connection.getresponse()
            response.read(65536)
        except (TimeoutError, http.client.RemoteDisconnected, ConnectionError) as exc:
            if cut.is_set() or isinstance(exc, TimeoutError):
                raise NoAnswer from exc  # timed out, or cut at the deadline
            raise
        return int(response.status)
    finally:
        if timer is not None:
            timer.cancel()
        connection.close()
        if outgoing is not None:
            outgoing.discard(connection)


@dataclass
class Dispatcher:
    store: Store
    clock: Clock
    box: SecretBox | None
    allow_private: bool = False
    max_attempts: int = 10
    retry_base_seconds: int = 5
    lease_seconds: int = 60
    timeout_seconds: float = 10.0  # per wait on the socket
    deadline_seconds: float = 30.0  # per request: well inside the lease, so never sent twice
    in_flight: int = 16  # deliveries being sent at once; each ends well inside its lease
    per_account: int = 4  # of which at most this many for one account's webhooks
    # How long a delivery this process cannot sign (NOT_OUR_KEY) is left to other processes,
    # its attempts unspent: replicas on PostgreSQL. 0 on the embedded SQLite default, whose
    # processes share one key file.
    give_back_seconds: int = 3600
    _said_not_our_key: logs.Every = field(default_factory=lambda: logs.Every(60.0))
    # A database gone: the claim is retried every interval; its traceback once a minute.
    _claim_traceback_now: logs.Every = field(default_factory=lambda: logs.Every(60.0))
    _claim_failed_line: logs.Throttle = field(default_factory=lambda: logs.Throttle(10.0))
    _outgoing: Outgoing = field(default_factory=Outgoing)

    def _post(self, claimed: ClaimedDelivery) -> str | None:
        """POST one delivery; None on a 2xx, else why it failed (no secret in it)."""
        d = claimed.delivery
        # As stored now: the cache is refreshed by requests, and a token rotated since the
        # last one would sign with the old token, which the receiver no longer takes.
        account = self.store.read_account(d.account_sid)
        if account is None or account.token_sealed is None or self.box is None:
            return (
                f"{CANNOT_SIGN}: the account's token is not sealed (it was made or rotated"
                " without PASSKEYD_SECRET_KEY: rotate it with the key set; the account of"
                " PASSKEYD_ACCOUNT_SID is sealed when passkeyd serve starts with the key)"
            )
        try:
            token = self.box.open(account.token_sealed, context=account.sid)
        except SealingError:
            return NOT_OUR_KEY
        reason, addresses = resolve_target(
            d.url, allow_private=self.allow_private, owner=d.account_sid
        )
        if reason == UNRESOLVED:  # DNS may know it later (a new name, a resolver down)
            return f"look-up failed: the URL {reason}"
        if reason:
            return f"target refused: the URL {reason}"
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": USER_AGENT,
            # Over the URL the receiver is asked for: without a fragment, never sent.
            "X-Twilio-Signature": twilio_signature(token, d.url.partition("#")[0], d.payload),
            "I-Twilio-Idempotency-Token": d.event_sid,
        }
        try:
            status = post_form(
                d.url,
                urlencode(d.payload).encode(),
                headers,
                address=addresses[0] if addresses else None,
                timeout=self.timeout_seconds,
                deadline=self.deadline_seconds,
                outgoing=self._outgoing,
            )
        except NoAnswer:  # connected, maybe sent; the answer did not come in time
            return (
                f"no answer within {self.timeout_seconds:g} s (or {self.deadline_seconds:g} s"
                " in all)"
            )
        except Exception as exc:  # any failure of one delivery is that delivery's failure
            return f"connection failed: {type(exc).__name__}"
        return None if 200 <= status < 300 else f"answered HTTP {status}"

    def _send(self, claimed: ClaimedDelivery) -> None:
        """POST one claimed delivery and record how it went. Blocking: run it in a thread."""
        error = self._post(claimed)
        now = self.clock()
        retry_at = None
        if error is not None and self._outgoing.stopped:
            # Cut by the shutdown: not the receiver's failure. Given back, its attempt
            # unspent, to the next process (the receiver may have had it: not acknowledged).
            self.store.finish_delivery(
                claimed.seq,
                now=now,
                delivered=False,
                retry_at=now,
                error=error,
                lease_until=claimed.lease_until,
                attempt_spent=False,
            )
            return
        if error == NOT_OUR_KEY and now - claimed.date_created < self.give_back_seconds:
            # Not the delivery's failure: given back, its attempt unspent (said once a minute).
            if self._said_not_our_key():
                log.warning(
                    "webhook %s event %s: %s; left to a process that holds it for up to %d s"
                    " after the event, then given up like a failing receiver's (give every"
                    " process the same key; to change it: PASSKEYD_SECRET_KEY=new,old and"
                    " passkeyd accounts reseal)",
                    claimed.delivery.webhook_sid, claimed.delivery.event_type, error,
                    self.give_back_seconds,
                )  # fmt: skip
            self.store.finish_delivery(
                claimed.seq,
                now=now,
                delivered=False,
                retry_at=now + self.retry_base_seconds,
                error=error,
                lease_until=claimed.lease_until,
                attempt_spent=False,
            )
            return
        if error is None:
            WEBHOOK_DELIVERIES.labels("delivered").inc()
        elif claimed.attempts < self.max_attempts and not error.startswith("target refused"):
            # The clock counts whole seconds: `now` may be up to 1 s behind the failure, so
            # the retry is a second later, never sooner than its delay after the failure.
            delay = min(3600, self.retry_base_seconds * 2 ** (claimed.attempts - 1))
            retry_at = now + delay + 1
            WEBHOOK_DELIVERIES.labels("retry").inc()
        else:
            WEBHOOK_DELIVERIES.labels("failed").inc()
        if error:
            log.warning(
                "webhook %s event %s attempt %d: %s; %s",
                claimed.delivery.webhook_sid, claimed.delivery.event_type,
                claimed.attempts, error,
                f"retried in {retry_at - now} s" if retry_at is not None else "given up",
            )  # fmt: skip
        self.store.finish_delivery(
            claimed.seq,
            now=now,
            delivered=error is None,
            retry_at=retry_at,
            error=error,
            lease_until=claimed.lease_until,
        )

    def stop(self) -> None:
        """Shutting down: end the requests out at once rather than wait up to their
        deadline; each is given back, its attempt unspent, to the next process."""
        self._outgoing.stop()

    async def _wait_for_a_key(self, interval: float) -> None:
        """Without PASSKEYD_SECRET_KEY no token can sign: claim nothing, so every event
        waits, whole and with none of its attempts spent, for a process started with the
        key; and say so while any wait (the webhook backlog metric counts them)."""
        while True:
            try:
                waiting = await anyio.to_thread.run_sync(self.store.delivery_backlog)
            except Exception:
                waiting = 0  # the database's own errors are logged where they matter
            if waiting:
                log.warning(
                    "%d webhook deliveries wait: PASSKEYD_SECRET_KEY is not set, so they"
                    " cannot be signed; start passkeyd with it, after rotating (with the key"
                    " set) the token of every account made or rotated without it, whose"
                    " deliveries would otherwise fail",
                    waiting,
                )
            await anyio.sleep(max(interval, NO_KEY_WARNING_SECONDS))

    async def run_forever(self, interval: float) -> None:
        """Keep up to `in_flight` deliveries going at once, each on its own, at most one
        per webhook and `per_account` per account (the store's claims see to it): a target
        that is slow or never answers holds up only its own events, and one account's
        webhooks cannot take every sender. Due ones are claimed as soon as a sender is free,
        else every `interval` seconds."""
        senders = anyio.CapacityLimiter(self.in_flight)
        freed = anyio.Event()  # set by each sender that finishes
        busy = 0

        async def send(claimed: ClaimedDelivery) -> None:
            nonlocal busy
            try:
                await anyio.to_thread.run_sync(self._send, claimed, limiter=senders)
            except Exception:
                log.exception("webhook delivery failed; its lease will run out and it is retried")
            finally:
                busy -= 1
                freed.set()

        if self.box is None:
            await self._wait_for_a_key(interval)
            return
        async with anyio.create_task_group() as tasks:
            while True:
                # A fresh event before looking: a sender that finishes while the claim runs
                # (and may have let its webhook's next delivery go) wakes the next wait.
                freed = anyio.Event()
                claimed: list[ClaimedDelivery] = []
                if busy < self.in_flight:
                    try:
                        claimed = await anyio.to_thread.run_sync(
                            functools.partial(
                                self.store.claim_deliveries,
                                now=self.clock(),
                                lease_seconds=self.lease_seconds,
                                limit=self.in_flight - busy,
                                per_account=self.per_account,
                            )
                        )
                    except Exception as exc:
                        if self._claim_traceback_now():
                            log.exception("claiming webhook deliveries failed; will retry")
                        elif (more := self._claim_failed_line()) is not None:
                            log.error(
                                "claiming webhook deliveries failed; will retry: %s%s",
                                logs.exception_text(exc),
                                more,
                            )
                for delivery in claimed:
                    busy += 1
                    tasks.start_soon(send, delivery)
                if claimed and busy < self.in_flight:
                    continue  # there may be more due at once
                with anyio.move_on_after(interval):
                    await freed.wait()  # a sender is free: look again at once
