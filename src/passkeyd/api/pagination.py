"""Verify v2 list pages: the records under `key`, and `meta` with absolute page URLs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from passkeyd.domain.models import Page

from .edge import Call


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
        next_url = url(page_number + 1, f"PT{page.last_seq}")
    if before_it and page.first_seq is not None:
        previous_url = url(max(page_number - 1, 0), f"PB{page.first_seq}")
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
