"""Sealing secrets the server must be able to read back (AES-256-GCM).

Auth tokens are stored as SHA-256 hashes for authentication. Twilio signs webhooks with
the account's auth token itself, so to sign as Twilio does passkeyd also keeps the token
sealed with a server key that never enters the database: PASSKEYD_SECRET_KEY, or on the
embedded default a key file created beside the SQLite database.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"


class SealingError(Exception):
    pass


class SecretBox:
    """Seals with `key`; opens what it or any of `older` sealed. The older keys are for
    changing the key without losing what is sealed: PASSKEYD_SECRET_KEY=new,old opens both
    while `passkeyd accounts reseal` (or a start-up, for the bootstrap account) seals again
    with the new one."""

    def __init__(self, key: bytes, *older: bytes) -> None:
        if any(len(k) != 32 for k in (key, *older)):
            raise SealingError("the secret key must be 32 bytes")
        self._aeads = [AESGCM(k) for k in (key, *older)]

    @classmethod
    def from_text(cls, text: str) -> SecretBox:
        """A key given as 64 hex digits or as base64 of 32 bytes; several, comma-separated,
        the first sealing (the others only open)."""
        keys = []
        for part in text.split(","):
            value = part.strip()
            try:
                key = (
                    bytes.fromhex(value)
                    if len(value) == 64
                    else base64.b64decode(value, validate=True)
                )
            except (ValueError, binascii.Error):
                key = b""
            if len(key) != 32:
                raise SealingError(
                    "the secret key must be 64 hex digits or base64 of 32 bytes (several:"
                    " comma-separated, the new one first)"
                )
            keys.append(key)
        return cls(*keys)

    @classmethod
    def from_key_file(cls, path: Path) -> SecretBox:
        """Read the key file, creating it (mode 0600) with a random key when absent."""
        if not path.exists():
            # Written whole under another name, then linked in: a process that starts at the
            # same moment sees either no file or the complete key, never half of it.
            temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
            try:
                os.link(temporary, path)  # fails if another process won the race: use theirs
            except FileExistsError:
                pass
            finally:
                os.unlink(temporary)
        return cls.from_text(path.read_text())

    def seal(self, plaintext: str, *, context: str) -> bytes:
        """Encrypt with the first key, bound to `context` (e.g. the account SID) so a sealed
        value cannot be moved to another row."""
        nonce = secrets.token_bytes(12)
        return (
            _VERSION + nonce + self._aeads[0].encrypt(nonce, plaintext.encode(), context.encode())
        )

    def open(self, sealed: bytes, *, context: str) -> str:
        return self.open_with_key(sealed, context=context)[0]

    def open_with_key(self, sealed: bytes, *, context: str) -> tuple[str, int]:
        """The plaintext, and which key opened it: 0 the one that seals, 1 the next..."""
        if sealed[:1] != _VERSION or len(sealed) < 29:
            raise SealingError("not a sealed value")
        for index, aead in enumerate(self._aeads):
            try:
                plain = aead.decrypt(sealed[1:13], sealed[13:], context.encode())
            except InvalidTag:
                continue
            return plain.decode(), index
        raise SealingError("sealed with another key, or altered")
