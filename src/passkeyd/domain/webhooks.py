"""The Webhooks resource of a service: validation of what may be called back."""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from .clock import Clock
from .errors import InvalidParameter, NotFound
from .events import EVENT_TYPES
from .ids import new_sid
from .models import Page, PageRequest, Webhook
from .policy import check_friendly_name
from .store import Store

MAX_URL_LENGTH = 2048
STATUSES = ("enabled", "disabled")
VERSIONS = ("v1", "v2")


_URL_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces (fullmatch)

# getaddrinfo() cannot be given a deadline, so each look-up runs in a daemon thread of its
# own, waited for at most this long: a resolver that hangs keeps that thread (until it
# gives up), never a webhook sender or a request past the deadline, nor the process at
# exit. At most MAX_LOOKUPS run at once (more than the 16 senders); a look-up beyond that
# waits for a free one within its deadline (they are all held only by a hung resolver).
# One account holds at most MAX_LOOKUPS_PER_ACCOUNT of them, hung ones included: a tenant
# whose webhooks name hosts in a zone that never answers would otherwise take every one,
# and every other tenant's deliveries would fail for as long as it kept them.
LOOKUP_SECONDS = 5.0  # a delivery's (a sender waits)
CREATE_LOOKUP_SECONDS = 2.0  # a webhook's creation or update (a request waits)
MAX_LOOKUPS = 32
MAX_LOOKUPS_PER_ACCOUNT = 4
UNRESOLVED = "has a host that does not resolve"
_lookups = threading.BoundedSemaphore(MAX_LOOKUPS)
_held: dict[str, int] = {}  # look-ups in flight by account
_held_lock = threading.Lock()


def _lookup(host: str, port: int, deadline: float, owner: str) -> list[str] | None:
    """The addresses `host` resolves to; None when it does not resolve within `deadline`,
    or when `owner` (an account) has its share of look-ups in flight already."""
    with _held_lock:
        if _held.get(owner, 0) >= MAX_LOOKUPS_PER_ACCOUNT:
            return None
        _held[owner] = _held.get(owner, 0) + 1
    started = time.monotonic()
    if not _lookups.acquire(timeout=deadline):
        _release(owner)
        return None
    deadline -= time.monotonic() - started
    found: list[list[str] | None] = [None]
    done = threading.Event()

    def look_up() -> None:
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
            found[0] = list(dict.fromkeys(str(info[4][0]) for info in infos))
        except (socket.gaierror, UnicodeError, OSError):
            pass
        finally:
            _lookups.release()
            _release(owner)
            done.set()

    try:
        threading.Thread(target=look_up, name="passkeyd-dns", daemon=True).start()
    except RuntimeError:  # no thread to be had (the process's limit): a failed look-up
        _lookups.release()
        _release(owner)
        return None
    done.wait(deadline)
    return found[0]


def _release(owner: str) -> None:
    with _held_lock:
        left = _held[owner] - 1
        if left:
            _held[owner] = left
        else:
            del _held[owner]


# IPv6 prefixes whose last 32 bits are an IPv4 address: NAT64 (RFC 6052, RFC 8215),
# IPv4-compatible (::/96) and IPv4-translated (::ffff:0:0:0/96, RFC 2765 SIIT), which
# Python's is_global calls global whatever the IPv4 address inside.
_EMBEDS_IPV4 = tuple(
    ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96", "::ffff:0:0:0/96")
)
# Deprecated site-local addresses (RFC 3879), which Python 3.11 calls global too: a network
# that still routes them routes them inside.
_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")
# IETF protocol assignments (RFC 6890): not globally reachable but for 192.0.0.9 and
# 192.0.0.10 (IANA's special-purpose registry). Python before 3.11.10 and 3.12.4 calls only
# 192.0.0.0/29 and 192.0.0.170/31 of it private, so 192.0.0.8 (RFC 7600) passed as global.
_PROTOCOL_ASSIGNMENTS = ipaddress.IPv4Network("192.0.0.0/24")
_REACHABLE_ASSIGNMENTS = frozenset(map(ipaddress.IPv4Address, ("192.0.0.9", "192.0.0.10")))


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Anything but a public unicast address, looking through IPv6 wrappings of IPv4
    (mapped, 6to4, Teredo, NAT64, IPv4-compatible) so that none of them smuggles a loopback
    or private target."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            if any(address in net for net in _EMBEDS_IPV4)
            else None
        )
        for inner in (address.ipv4_mapped, address.sixtofour,
                      address.teredo[1] if address.teredo else None, embedded):  # fmt: skip
            if inner is not None and _internal(inner):
                return True
        if address in _SITE_LOCAL:
            return True
    elif address in _PROTOCOL_ASSIGNMENTS and address not in _REACHABLE_ASSIGNMENTS:
        return True
    return not address.is_global or address.is_multicast


def resolve_target(
    url: str, *, allow_private: bool, owner: str, deadline: float = LOOKUP_SECONDS
) -> tuple[str | None, list[str]]:
    """(why `url` may not be called back, or None; the addresses vetted for it).

    http/https only, printable ASCII, a host, no credentials; and unless the operator
    allows it, only public addresses: every address the name resolves to is checked, and
    the sender connects to one of exactly these (no second look-up to be rebound).
    """
    if len(url) > MAX_URL_LENGTH:
        return "is too long", []
    if not _URL_CHARS.fullmatch(url):
        return "must be printable ASCII without spaces", []
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a URL", []
    if parts.scheme not in ("http", "https"):
        return "must be http or https", []
    if not parts.hostname:
        return "has no host", []
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials", []
    if allow_private:  # the operator trusts every target: connect by name
        return None, []
    default_port = 443 if parts.scheme == "https" else 80
    addresses = _lookup(parts.hostname, port or default_port, deadline, owner)
    if addresses is None:
        return UNRESOLVED, []
    if any(_internal(ipaddress.ip_address(a)) for a in addresses):
        return (
            "points at a loopback or private network address (which passkeyd calls only"
            " where its operator allows them: PASSKEYD_WEBHOOK_ALLOW_PRIVATE=true)",
            [],
        )
    return None, addresses


def refuse_target(url: str, *, allow_private: bool, owner: str) -> str | None:
    """Why `url` may not be registered for callbacks, or None when it may (see
    resolve_target). A host that does not resolve now is accepted: DNS may not know it yet,
    or not from this machine at this moment, and every delivery resolves and vets it again
    (an unresolvable host is then that delivery's failure, retried later)."""
    reason = resolve_target(
        url, allow_private=allow_private, owner=owner, deadline=CREATE_LOOKUP_SECONDS
    )[0]
    return None if reason == UNRESOLVED else reason


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

    def _check_url(self, url: str, account_sid: str) -> None:
        reason = refuse_target(url, allow_private=self.allow_private, owner=account_sid)
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
        event_types: Sequence[str] | None,
        webhook_url: str | None,
        status: str | None,
        version: str | None,
    ) -> Webhook:
        self._service(account_sid, service_sid)
        name = friendly_name or ""
        check_friendly_name(name)
        if not webhook_url:
            raise InvalidParameter("Invalid parameter: WebhookUrl is required")
        self._check_url(webhook_url, account_sid)
        now = self.clock()
        webhook = Webhook(
            sid=new_sid("YW"),
            account_sid=account_sid,
            service_sid=service_sid,
            friendly_name=name,
            event_types=_event_types(event_types or ()),
            webhook_url=webhook_url,
            webhook_method="POST",
            status=self._choice("Status", status or "enabled", STATUSES),
            version=self._choice("Version", version or "v2", VERSIONS),
            date_created=now,
            date_updated=now,
        )
        if not self.store.insert_webhook(webhook):  # its service was deleted meanwhile
            raise NotFound(f"The requested resource /Services/{service_sid} was not found")
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
        event_types: Sequence[str] | None,
        webhook_url: str | None,
        status: str | None,
        version: str | None,
    ) -> Webhook:
        self.get(account_sid, service_sid, sid)  # not found before invalid
        changes: dict[str, object] = {}
        if friendly_name is not None:
            check_friendly_name(friendly_name)
            changes["friendly_name"] = friendly_name
        if event_types is not None:
            changes["event_types"] = _event_types(event_types)
        if webhook_url == "":
            raise InvalidParameter("Invalid parameter: WebhookUrl cannot be empty")
        if webhook_url is not None:
            self._check_url(webhook_url, account_sid)
            changes["webhook_url"] = webhook_url
        if status is not None:
            changes["status"] = self._choice("Status", status, STATUSES)
        if version is not None:
            changes["version"] = self._choice("Version", version, VERSIONS)
        now = self.clock()
        updated = self.store.update_webhook(
            account_sid,
            service_sid,
            sid,
            lambda stored: replace(stored, **changes, date_updated=now),  # type: ignore[arg-type]
        )
        if updated is None:
            raise NotFound(
                f"The requested resource /Services/{service_sid}/Webhooks/{sid} was not found"
            )
        return updated

    def delete(self, account_sid: str, service_sid: str, sid: str) -> None:
        self._service(account_sid, service_sid)
        if not self.store.delete_webhook(account_sid, service_sid, sid):
            raise NotFound(
                f"The requested resource /Services/{service_sid}/Webhooks/{sid} was not found"
            )
