"""The Webhooks resource of a service: validation of what may be called back."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from passkeyd.storage import Store

from .clock import Clock
from .errors import InvalidParameter, NotFound
from .events import EVENT_TYPES
from .ids import new_sid
from .models import Page, PageRequest, Webhook
from .policy import MAX_NAME_LENGTH

MAX_URL_LENGTH = 2048
STATUSES = ("enabled", "disabled")
VERSIONS = ("v1", "v2")


def _private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def refuse_target(url: str, *, allow_private: bool) -> str | None:
    """Why `url` may not be called back, or None when it may.

    http/https only, a host, no credentials; and unless the operator allows it, no
    loopback or private-network address (every address the name resolves to is checked,
    here and again before each delivery).
    """
    if len(url) > MAX_URL_LENGTH:
        return "is too long"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https"):
        return "must be http or https"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if allow_private:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return "has a host that does not resolve"
    for info in infos:
        if _private(ipaddress.ip_address(info[4][0])):
            return "points at a loopback or private network address"
    return None


def _event_types(values: Sequence[str]) -> tuple[str, ...]:
    if not values:
        raise InvalidParameter("Invalid parameter: EventTypes is required")
    for value in values:
        if value != "*" and value not in EVENT_TYPES:
            raise InvalidParameter(
                f"Invalid parameter: EventTypes must be * or one of {', '.join(EVENT_TYPES)}"
            )
    return tuple(dict.fromkeys(values))


@dataclass
class Webhooks:
    store: Store
    clock: Clock
    allow_private: bool = False

    def _check_url(self, url: str) -> None:
        reason = refuse_target(url, allow_private=self.allow_private)
        if reason:
            raise InvalidParameter(f"Invalid parameter: WebhookUrl {reason}")

    def _service(self, account_sid: str, service_sid: str) -> None:
        if self.store.get_service(account_sid, service_sid) is None:
            raise NotFound(f"The requested resource /Services/{service_sid} was not found")

    def create(
        self,
        account_sid: str,
        service_sid: str,
        *,
        friendly_name: str | None,
        event_types: Sequence[str],
        webhook_url: str | None,
        status: str | None,
        version: str | None,
    ) -> Webhook:
        self._service(account_sid, service_sid)
        if not friendly_name or len(friendly_name) > MAX_NAME_LENGTH:
            raise InvalidParameter("Invalid parameter: FriendlyName must be 1 to 255 characters")
        if not webhook_url:
            raise InvalidParameter("Invalid parameter: WebhookUrl is required")
        self._check_url(webhook_url)
        now = self.clock()
        webhook = Webhook(
            sid=new_sid("YW"),
            account_sid=account_sid,
            service_sid=service_sid,
            friendly_name=friendly_name,
            event_types=_event_types(event_types),
            webhook_url=webhook_url,
            webhook_method="POST",
            status=self._choice("Status", status or "enabled", STATUSES),
            version=self._choice("Version", version or "v2", VERSIONS),
            date_created=now,
            date_updated=now,
        )
        self.store.insert_webhook(webhook)
        return webhook

    @staticmethod
    def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise InvalidParameter(f"Invalid parameter: {name} must be one of {', '.join(allowed)}")
        return value

    def get(self, account_sid: str, service_sid: str, sid: str) -> Webhook:
        self._service(account_sid, service_sid)
        webhook = self.store.get_webhook(account_sid, service_sid, sid)
        if webhook is None:
            raise NotFound(
                f"The requested resource /Services/{service_sid}/Webhooks/{sid} was not found"
            )
        return webhook

    def list(self, account_sid: str, service_sid: str, page: PageRequest) -> Page:
        self._service(account_sid, service_sid)
        return self.store.list_webhooks(account_sid, service_sid, page)

    def update(
        self,
        account_sid: str,
        service_sid: str,
        sid: str,
        *,
        friendly_name: str | None,
        event_types: Sequence[str],
        webhook_url: str | None,
        status: str | None,
        version: str | None,
    ) -> Webhook:
        webhook = self.get(account_sid, service_sid, sid)
        changes: dict[str, object] = {}
        if friendly_name is not None:
            if not friendly_name or len(friendly_name) > MAX_NAME_LENGTH:
                raise InvalidParameter(
                    "Invalid parameter: FriendlyName must be 1 to 255 characters"
                )
            changes["friendly_name"] = friendly_name
        if event_types:
            changes["event_types"] = _event_types(event_types)
        if webhook_url is not None:
            self._check_url(webhook_url)
            changes["webhook_url"] = webhook_url
        if status is not None:
            changes["status"] = self._choice("Status", status, STATUSES)
        if version is not None:
            changes["version"] = self._choice("Version", version, VERSIONS)
        updated = replace(webhook, **changes, date_updated=self.clock())  # type: ignore[arg-type]
        self.store.update_webhook(updated)
        return updated

    def delete(self, account_sid: str, service_sid: str, sid: str) -> None:
        self._service(account_sid, service_sid)
        if not self.store.delete_webhook(account_sid, service_sid, sid):
            raise NotFound(
                f"The requested resource /Services/{service_sid}/Webhooks/{sid} was not found"
            )
