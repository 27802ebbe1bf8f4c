"""The browser's session: a cookie holding who is signed in and a random id for the browser,
signed with HMAC-SHA256 under a key made at process start (so a restart signs everyone out,
which a demo can afford).

Each sign-in gets a random session id. Signing out revokes that id in this process until
every cookie that carries it has expired, so a copy of the cookie taken before signing out
no longer signs anyone in.

The ceremonies a browser started and may finish are kept here, by browser id, not in the
cookie: two tabs (or a tab's autofill request and its button) asking at once each answered
with the cookie their own request carried, and the later one dropped the other's ceremony,
which was then refused as another browser's."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass, replace

COOKIE = "passkeyd_demo"
MAX_AGE = 8 * 3600
# How long a ceremony may take (passkeyd's challenges and registrations last 10 minutes),
# and how many may be pending at once in this process: each is a challenge or an unfinished
# registration in passkeyd, which limits how fast anyone can make them; past the bound the
# oldest are forgotten (about 200 bytes each).
PENDING_SECONDS = 15 * 60
MAX_PENDING = 200_000


@dataclass(frozen=True, slots=True)
class Session:
    identity: str | None = None
    # Random, new at each sign-in (so a session id fixed before signing in is worthless).
    sid: str | None = None
    # Random, given once and kept across sign-ins: whose ceremonies these are.
    browser: str | None = None

    def with_browser(self) -> Session:
        return self if self.browser else replace(self, browser=secrets.token_urlsafe(16))

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
        # Factor (YF) or challenge (YC) SID -> (the browser given its options, until when),
        # oldest first. (An OrderedDict: a dict's front, after many deletions there, is
        # found by walking their holes, and pruning 200,000 took 6 s on the loop.)
        self._pending: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def start(self, session: Session, ceremony: str, now: float) -> Session:
        """`ceremony`'s options go to this browser: it may finish it. The session returned
        (with a browser id, if it had none) is the one to store."""
        session = session.with_browser()
        assert session.browser is not None
        pending = self._pending
        while pending:  # the expired ones first (the oldest are at the front)
            _, (_, until) = next(iter(pending.items()))
            if until > now and len(pending) < MAX_PENDING:
                break
            pending.popitem(last=False)
        pending[ceremony] = (session.browser, now + PENDING_SECONDS)
        return session

    def started(self, session: Session, ceremony: str, now: float) -> bool:
        """Whether this browser was given `ceremony`'s options (and it has not ended)."""
        browser, until = self._pending.get(ceremony, ("", 0.0))
        return bool(session.browser) and browser == session.browser and until > now

    def finish(self, session: Session, ceremony: str) -> None:
        if self.started(session, ceremony, 0.0):
            del self._pending[ceremony]

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
                "b": session.browser,
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
            identity, browser, sid, expires = data["i"], data["b"], data["s"], data["e"]
        except (ValueError, KeyError, TypeError):
            return Session()
        if not isinstance(expires, int) or expires <= now:
            return Session()
        if identity is not None and not isinstance(identity, str):
            return Session()
        if browser is not None and not isinstance(browser, str):
            return Session()
        if sid is not None and (not isinstance(sid, str) or sid in self._revoked):
            return Session(browser=browser)  # signed out; still the same browser
        return Session(identity, sid, browser)
