"""base64url as browsers, SDKs and older tools actually send it."""

from __future__ import annotations

import base64
import binascii

_TO_URLSAFE = str.maketrans("+/", "-_")


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url, the WebAuthn JSON encoding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str) -> bytes:
    """Decode base64url, tolerating padding and the standard alphabet's `+` and `/`.

    Any other character is refused (plain `urlsafe_b64decode` silently drops them).
    Raises ValueError.
    """
    if not isinstance(value, str):
        raise ValueError("not a string")
    text = value.strip().rstrip("=").translate(_TO_URLSAFE)
    if len(text) % 4 == 1:
        raise ValueError("impossible base64url length")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not base64url") from exc
