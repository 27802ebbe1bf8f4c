"""The browser's session: a cookie holding who is signed in and which ceremonies this browser
started, signed with HMAC-SHA256 under a key made at process start (so a restart signs
everyone out, which a demo can afford).

Each sign-in gets a random session id. Signing out revokes that id in this process until
every cookie that carries it has expired, so a copy of the cookie taken before signing out
no longer signs anyone in."""

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
    # Random, new at each sign-in (so a session id fixed before signing in is worthless).
    sid: str | None = None

    def started(self, sid: str) -> Session:
        return replace(self, pending=(*self.pending, sid)[-MAX_PENDING:])

    def finished(self, sid: str) -> Session:
        return replace(self, pending=tuple(p for p in self.pending if p != sid))

    def signed_in(self, identity: str) -> Session:
        """Signed in as `identity`: the same session when it already was (adding a passkey),
        else a new one with a new id (so an id fixed before signing in is worthless; the
        caller revokes the one it replaces)."""
        if self.identity == identity and self.sid is not None:
            return self
        return replace(self, identity=identity, sid=secrets.token_urlsafe(16))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """`payload.signature`, both base64url; the payload carries its own expiry."""

    def __init__(self, key: bytes | None = None, *, max_age: int = MAX_AGE) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        self.max_age = max_age
        # Signed-out session ids, each until the last cookie that can carry it has expired.
        self._revoked: dict[str, float] = {}

    def revoke(self, session: Session, now: float) -> None:
        """Sign `session` out everywhere: its cookies, copies included, count as none."""
        for sid in [sid for sid, until in self._revoked.items() if until <= now]:
            del self._revoked[sid]
        if session.sid is not None:
            # Every cookie with this id was written at or before `now`, so expires by then.
            self._revoked[session.sid] = now + self.max_age

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def dumps(self, session: Session, now: float) -> str:
        payload = json.dumps(
            {
                "i": session.identity,
                "p": list(session.pending),
                "s": session.sid,
                "e": int(now) + self.max_age,
            },
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
            identity, pending, sid, expires = data["i"], data["p"], data["s"], data["e"]
        except (ValueError, KeyError, TypeError):
            return Session()
        if not isinstance(expires, int) or expires <= now:
            return Session()
        if identity is not None and not isinstance(identity, str):
            return Session()
        if not isinstance(pending, list) or not all(isinstance(p, str) for p in pending):
            return Session()
        if sid is not None and (not isinstance(sid, str) or sid in self._revoked):
            return Session()
        return Session(identity, tuple(pending), sid)
