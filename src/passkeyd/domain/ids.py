"""Twilio-style SIDs: two uppercase letters and 32 hex digits. passkeyd makes them in lower
case, as Twilio does; the pattern takes either case, as Twilio's OpenAPI spec does, and a
SID is looked up exactly as written."""

from __future__ import annotations

import re
import secrets

_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def is_sid(value: object, prefix: str) -> bool:
    return isinstance(value, str) and value.startswith(prefix) and bool(_SID.fullmatch(value))
