"""base64url as browsers, SDKs and older tools actually send it."""

from __future__ import annotations

import base64
import binascii

_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


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
    try:
        raw = value.strip().rstrip("=").encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError("not base64url") from exc
    if len(raw) % 4 == 1:
        raise ValueError("impossible base64url length")
    try:
        return binascii.a2b_base64(
            raw.translate(_TO_STANDARD) + b"=" * (-len(raw) % 4), strict_mode=True
        )
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc
