"""Entity identities: 8 to 64 characters, dash-separated alphanumeric runs."""

from __future__ import annotations

import re
import uuid

from .errors import InvalidIdentity

_IDENTITY = re.compile(r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$")


def check_identity(value: object) -> str:
    if not isinstance(value, str) or not 8 <= len(value) <= 64 or not _IDENTITY.fullmatch(value):
        raise InvalidIdentity(
            "Invalid entity identity: use 8 to 64 characters, dash-separated letters and digits"
        )
    return value


def new_identity() -> str:
    return str(uuid.uuid4())
