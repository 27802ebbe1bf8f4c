"""Accounts, API keys, and authenticating a request's Basic credentials.

Tokens and secrets are random and long, so one SHA-256 is enough to make the stored
hash infeasible to reverse while keeping the per-request check cheap. Comparisons are
constant-time, and an unknown user name costs the same as a wrong password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from passkeyd.sealing import SecretBox

from .clock import Clock
from .errors import NotFound, Unauthenticated
from .ids import is_sid, new_sid
from .models import Account, ApiKey
from .store import Store

_DUMMY_HASH = hashlib.sha256(b"passkeyd: no such user").digest()


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


_ALPHANUMERIC = string.ascii_letters + string.digits


def new_secret() -> str:
    return secrets.token_hex(16)


@dataclass
class Accounts:
    store: Store
    clock: Clock
    box: SecretBox | None = None

    def _seal(self, sid: str, token: str) -> bytes | None:
        return self.box.seal(token, context=sid) if self.box else None

    def create_account(self, friendly_name: str = "") -> tuple[Account, str]:
        token = new_secret()
        sid = new_sid("AC")
        account = Account(
            sid, friendly_name, hash_secret(token), self.clock(), self._seal(sid, token)
        )
        self.store.put_account(account)
        return account, token

    def ensure_account(self, sid: str, token: str) -> tuple[Account, bool]:
        """Make sure `sid` exists (used for PASSKEYD_ACCOUNT_SID): made with `token` if it
        does not. An existing account keeps its token: one rotated since (`accounts
        rotate-token`) must not come back at the next restart with the old one in the
        environment. Returns the account and whether it answers to `token`."""
        if not is_sid(sid, "AC"):
            raise ValueError("an account SID is AC followed by 32 hex digits")
        if not token:
            raise ValueError("the auth token must not be empty")
        existing = self.store.get_account(sid)
        if existing is not None and not hmac.compare_digest(
            existing.token_hash, hash_secret(token)
        ):
            return existing, False
        # Written again (same token): sealed with the key in use now, for webhook signing;
        # only while it is still that token (a rotation since the read above is kept).
        account = Account(
            sid,
            existing.friendly_name if existing else "",
            hash_secret(token),
            existing.date_created if existing else self.clock(),
            self._seal(sid, token),
        )
        if not self.store.put_account(account, same_token_only=True):
            current = self.store.read_account(sid)
            return (current or account), False
        return account, True

    def rotate_token(self, sid: str) -> str:
        """A new auth token for the account; the old one stops working at once on every
        process (each request checks the stored hash)."""
        account = self.store.get_account(sid)
        if account is None:
            raise NotFound(f"no account {sid}")
        token = new_secret()
        self.store.put_account(
            Account(sid, account.friendly_name, hash_secret(token), account.date_created,
                    self._seal(sid, token))
        )  # fmt: skip
        return token

    def create_api_key(self, account_sid: str, friendly_name: str = "") -> tuple[ApiKey, str]:
        if self.store.get_account(account_sid) is None:
            raise NotFound(f"no account {account_sid}")
        # Letters and digits, as Twilio's: twilio-go refuses a secret with any other
        # character before sending it (ApiError 21224), and token_urlsafe has - and _.
        secret = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(32))
        key = ApiKey(
            new_sid("SK"), account_sid, friendly_name, hash_secret(secret), False, self.clock()
        )
        self.store.put_api_key(key)
        return key, secret

    def authenticate(self, username: str, password: str) -> str:
        """The account SID that `username:password` acts for, or Unauthenticated."""
        expected = _DUMMY_HASH
        account_sid = None
        if is_sid(username, "AC"):
            account = self.store.get_account(username)
            if account is not None:
                expected, account_sid = account.token_hash, account.sid
        elif is_sid(username, "SK"):
            key = self.store.get_api_key(username)
            if key is not None and not key.revoked:
                expected, account_sid = key.secret_hash, key.account_sid
        if not hmac.compare_digest(hash_secret(password), expected) or account_sid is None:
            raise Unauthenticated("Authenticate")
        return account_sid
