"""The browser's session: a cookie holding who is signed in and which ceremonies this browser
started, signed with HMAC-SHA256 under a key made at process start (so a restart signs
everyone out, which a demo can afford)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace

COOKIE = "passkeyd_demo"
MAX_AGE = 8 * 3600
# Ceremonies started and not yet finished that this browser may finish (a second tab or the
# autofill request each start one).
MAX_PENDING = 4


@dataclass(frozen=True, slots=True)
class Session:
    identity: str | None = None
    # SIDs of the factors (YF) and challenges (YC) whose options this browser was given.
    pending: tuple[str, ...] = ()

    def started(self, sid: str) -> Session:
        return replace(self, pending=(*self.pending, sid)[-MAX_PENDING:])

    def finished(self, sid: str) -> Session:
        return replace(self, pending=tuple(p for p in self.pending if p != sid))

    def signed_in(self, identity: str) -> Session:
        return replace(self, identity=identity)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """`payload.signature`, both base64url; the payload carries its own expiry."""

    def __init__(self, key: bytes | None = None, *, max_age: int = MAX_AGE) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        self.max_age = max_age

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def dumps(self, session: Session, now: float) -> str:
        payload = json.dumps(
            {"i": session.identity, "p": list(session.pending), "e": int(now) + self.max_age},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def loads(self, value: str | None, now: float) -> Session:
        """The session in a cookie value; an empty one for anything unsigned, altered or old."""
        if not value or value.count(".") != 1:
            return Session()
        encoded, signature = value.split(".")
        try:
            payload, mac = _unb64(encoded), _unb64(signature)
        except (binascii.Error, ValueError):
            return Session()
        if not hmac.compare_digest(mac, self._sign(payload)):
            return Session()
        try:
            data = json.loads(payload)
            identity, pending, expires = data["i"], data["p"], data["e"]
        except (ValueError, KeyError, TypeError):
            return Session()
        if not isinstance(expires, int) or expires <= now:
            return Session()
        if identity is not None and not isinstance(identity, str):
            return Session()
        if not isinstance(pending, list) or not all(isinstance(p, str) for p in pending):
            return Session()
        return Session(identity, tuple(pending))
