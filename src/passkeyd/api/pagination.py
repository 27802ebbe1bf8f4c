"""Verify v2 list pages: the records under `key`, and `meta` with absolute page URLs.

A page token (`PT…` for the next page, `PB…` for the previous) is the position of the
page's last or first record, encrypted with the database's key (migration 9) together with
a tag of the account and the list's path. The position is a sequence number that every
account shares, so in the clear it let one account count another's records (sign-ins
among them) between two of its own pages; and a token taken to another list is refused,
not read as a position there."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from passkeyd.domain.errors import InvalidPageToken
from passkeyd.domain.models import Page, PageRequest

from .edge import Call
from .params import Form, page_request

_TOKEN = re.compile(r"P([TB])([A-Za-z0-9_-]{22})")


class PageTokens:
    """Tokens for one list of one account. One AES block each: 8 bytes of position and 8
    of tag (the account, the list's path, the direction). ECB over a single block is the
    block cipher itself, a keyed permutation, which is all this needs: a position nobody
    else can read, and a token nobody can make or move to another list."""

    def __init__(self, key: bytes, account_sid: str, path: str) -> None:
        self._cipher = Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305 (one block)
        self._binding = f"{account_sid} {path}".encode("utf-8", "surrogatepass")

    def _tag(self, direction: str) -> bytes:
        return hashlib.sha256(self._binding + b" " + direction.encode()).digest()[:8]

    def make(self, direction: str, seq: int) -> str:
        encryptor = self._cipher.encryptor()
        block = encryptor.update(seq.to_bytes(8, "big") + self._tag(direction))
        return f"P{direction}" + base64.urlsafe_b64encode(block).rstrip(b"=").decode()

    def read(self, token: str) -> tuple[str, int]:
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise InvalidPageToken("Invalid page token")
        direction = match.group(1)
        try:
            block = base64.urlsafe_b64decode(match.group(2) + "==")
        except (binascii.Error, ValueError) as exc:
            raise InvalidPageToken("Invalid page token") from exc
        decryptor = self._cipher.decryptor()
        plain = decryptor.update(block)
        if not hmac.compare_digest(plain[8:], self._tag(direction)):
            raise InvalidPageToken("Invalid page token: not one this list gave")
        return direction, int.from_bytes(plain[:8], "big")


def _tokens(call: Call) -> PageTokens:
    key = call.domain.store.page_token_key()  # read by `list_page` first
    return PageTokens(key, call.account_sid, call.request.url.path)


async def list_page(
    call: Call, query: Form, *, descending: bool = False
) -> tuple[PageRequest, int]:
    """(PageRequest, page number) of a list request: PageSize, Page and PageToken."""
    await call.run(call.domain.store.page_token_key)  # once per process, then kept
    return page_request(query, descending=descending, read_token=_tokens(call).read)


def page_payload(
    call: Call,
    key: str,
    page: Page,
    page_number: int,
    page_size: int,
    render: Callable[[Any], dict[str, Any]],
    *,
    filters: Sequence[tuple[str, str]] = (),
) -> tuple[int, dict[str, Any]]:
    path = f"{call.base}{call.request.url.path}"
    tokens = _tokens(call)

    def url(number: int, token: str | None) -> str:
        params = [*filters, ("PageSize", str(page_size)), ("Page", str(number))]
        if token:
            params.append(("PageToken", token))
        return f"{path}?{urlencode(params)}"

    current_token = call.request.query_params.get("PageToken")
    # A page reached with a token has records before it (it was paged to); one read backward
    # has records after it, and before it when the read found more.
    before_it = page.has_more if page.backward else bool(current_token)
    after_it = True if page.backward else page.has_more
    next_url = previous_url = None
    if after_it and page.last_seq is not None:
        next_url = url(page_number + 1, tokens.make("T", page.last_seq))
    if before_it and page.first_seq is not None:
        previous_url = url(max(page_number - 1, 0), tokens.make("B", page.first_seq))
    return 200, {
        key: [render(item) for item in page.items],
        "meta": {
            "page": page_number,
            "page_size": page_size,
            "first_page_url": url(0, None),
            "previous_page_url": previous_url,
            "url": url(page_number, current_token),
            "next_page_url": next_url,
            "key": key,
        },
    }
