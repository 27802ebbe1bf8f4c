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
from typing import NamedTuple

from passkeyd.sealing import SealingError, SecretBox

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


class Ensured(NamedTuple):
    account: Account
    answers: bool  # the account answers to the token given
    foreign_seal: bool = False  # its token is sealed with a key this process does not hold


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

    def ensure_account(self, sid: str, token: str) -> Ensured:
        """Make sure `sid` exists (used for PASSKEYD_ACCOUNT_SID): made with `token` if it
        does not. An existing account keeps its token: one rotated since (`accounts
        rotate-token`) must not come back at the next restart with the old one in the
        environment.

        Its sealed token is written only where it is missing or sealed with an older key
        this process holds (PASSKEYD_SECRET_KEY=new,old): never cleared by a process without
        a key, nor replaced by one whose key does not open it, which would leave every
        other process, holding the right key, unable to sign the account's webhooks
        (`foreign_seal` says so)."""
        if not is_sid(sid, "AC"):
            raise ValueError("an account SID is AC followed by 32 hex digits")
        if not token:
            raise ValueError("the auth token must not be empty")
        existing = self.store.get_account(sid)
        for _ in range(3):  # (another process may write between a read and a write)
            judged = self._judged(sid, token, existing)
            if judged is not None:
                return judged
            # New, or sealed now with the key in use (for webhook signing); only while the
            # row is as read: a token rotated or a seal written since is kept.
            account = Account(
                sid,
                existing.friendly_name if existing else "",
                hash_secret(token),
                existing.date_created if existing else self.clock(),
                self._seal(sid, token),
            )
            sealed_as = existing.token_sealed if existing is not None else None
            if self.store.put_account(account, same_token_only=True, sealed_as=sealed_as):
                return Ensured(account, answers=True)
            existing = self.store.read_account(sid)  # judged again on what is there now
        # Written over three times between a read and a write: left as the others made it.
        current = existing or account
        return Ensured(current, answers=hmac.compare_digest(
            current.token_hash, hash_secret(token)))  # fmt: skip

    def _judged(self, sid: str, token: str, existing: Account | None) -> Ensured | None:
        """What ensure_account answers for the account as read, or None: write it."""
        if existing is None:
            return None
        if not hmac.compare_digest(existing.token_hash, hash_secret(token)):
            return Ensured(existing, answers=False)
        if self.box is None:
            return Ensured(existing, answers=True)  # nothing to seal with; a seal stays
        if existing.token_sealed is None:
            return None
        try:
            _, key = self.box.open_with_key(existing.token_sealed, context=sid)
        except SealingError:
            return Ensured(existing, answers=True, foreign_seal=True)
        return Ensured(existing, answers=True) if key == 0 else None

    def reseal(self) -> tuple[int, int]:
        """Seal again with the current key every token an older key of PASSKEYD_SECRET_KEY
        opens (after the key was changed: new,old). (resealed, sealed with no key held)."""
        if self.box is None:
            raise ValueError("no key to seal with: set PASSKEYD_SECRET_KEY")
        resealed = foreign = 0
        for account in self.store.list_accounts():
            if account.token_sealed is None:
                continue
            try:
                token, key = self.box.open_with_key(account.token_sealed, context=account.sid)
            except SealingError:
                foreign += 1
                continue
            if key and self.store.put_account(
                Account(account.sid, account.friendly_name, account.token_hash,
                        account.date_created, self._seal(account.sid, token)),
                same_token_only=True, sealed_as=account.token_sealed,
            ):  # fmt: skip
                resealed += 1
        return resealed, foreign

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
