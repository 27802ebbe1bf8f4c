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
import hashlib
import hmac
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import anyio
import anyio.to_thread

from .domain.clock import Clock
from .domain.models import ClaimedDelivery
from .domain.webhooks import refuse_target
from .metrics import WEBHOOK_DELIVERIES
from .sealing import SealingError, SecretBox
from .storage import Store

log = logging.getLogger("passkeyd.webhooks")

USER_AGENT = "passkeyd-webhooks/1"


def twilio_signature(token: str, url: str, params: Mapping[str, str]) -> str:
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a webhook that redirects is answered as a failure, not followed


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


@dataclass
class DeliveryResult:
    delivered: int = 0
    retried: int = 0
    failed: int = 0


@dataclass
class Dispatcher:
    store: Store
    clock: Clock
    box: SecretBox | None
    allow_private: bool = False
    max_attempts: int = 10
    retry_base_seconds: int = 5
    lease_seconds: int = 60
    timeout_seconds: float = 10.0
    batch: int = 20

    def _post(self, claimed: ClaimedDelivery) -> str | None:
        """POST one delivery; None on a 2xx, else why it failed (no secret in it)."""
        d = claimed.delivery
        account = self.store.get_account(d.account_sid)
        if account is None or account.token_sealed is None or self.box is None:
            return "cannot sign: the account's token is not sealed (set PASSKEYD_SECRET_KEY)"
        try:
            token = self.box.open(account.token_sealed, context=account.sid)
        except SealingError:
            return "cannot sign: the account's token was sealed with another key"
        reason = refuse_target(d.url, allow_private=self.allow_private)
        if reason:
            return f"target refused: the URL {reason}"
        body = urlencode(d.payload).encode()
        request = urllib.request.Request(  # noqa: S310 - scheme checked by refuse_target
            d.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": USER_AGENT,
                "X-Twilio-Signature": twilio_signature(token, d.url, d.payload),
                "I-Twilio-Idempotency-Token": d.event_sid,
            },
        )
        try:
            with _OPENER.open(request, timeout=self.timeout_seconds) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError) as exc:
            return f"connection failed: {type(exc).__name__}"
        return None if 200 <= status < 300 else f"answered HTTP {status}"

    def deliver_due(self) -> DeliveryResult:
        """Send every due delivery (up to one batch). Blocking: run it in a thread."""
        result = DeliveryResult()
        for claimed in self.store.claim_deliveries(
            now=self.clock(), lease_seconds=self.lease_seconds, limit=self.batch
        ):
            error = self._post(claimed)
            now = self.clock()
            retry_at = None
            if error is None:
                result.delivered += 1
                WEBHOOK_DELIVERIES.labels("delivered").inc()
            elif claimed.attempts < self.max_attempts and not error.startswith("target refused"):
                retry_at = now + min(3600, self.retry_base_seconds * 2 ** (claimed.attempts - 1))
                result.retried += 1
                WEBHOOK_DELIVERIES.labels("retry").inc()
            else:
                result.failed += 1
                WEBHOOK_DELIVERIES.labels("failed").inc()
            if error:
                log.warning(
                    "webhook %s event %s attempt %d: %s",
                    claimed.delivery.webhook_sid, claimed.delivery.event_type,
                    claimed.attempts, error,
                )  # fmt: skip
            self.store.finish_delivery(
                claimed.seq, now=now, delivered=error is None, retry_at=retry_at, error=error
            )
        return result

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                result = await anyio.to_thread.run_sync(self.deliver_due)
            except Exception:
                log.exception("webhook delivery round failed; will retry")
                result = DeliveryResult()
            if result.delivered + result.retried + result.failed < self.batch:
                await anyio.sleep(interval)
