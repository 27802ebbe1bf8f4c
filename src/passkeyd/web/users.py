"""The demo's users: a name a person types, mapped to the Verify identity that stands for them.

Identities are random UUIDs, not derived from the name, so the name (personal data) never
reaches passkeyd except as the passkey's display name. The map lives in SQLite: in memory by
default, which matches the service the demo creates afresh at each start; a file keeps it
across restarts when the demo reuses a service (--service-sid --users-db FILE).
"""

from __future__ import annotations

import sqlite3
import threading
import unicodedata
import uuid

MAX_NAME_LENGTH = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name_key TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    identity TEXT NOT NULL UNIQUE
);
-- Identities whose sign-up finished: the name stays theirs, even with no passkey left.
CREATE TABLE IF NOT EXISTS claimed (
    identity TEXT PRIMARY KEY
);
"""


class InvalidName(ValueError):
    """`reason` is a key of messages.APP_ERRORS."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def clean_name(raw: object, *, kind: str = "name") -> str:
    """The name as it will be shown: trimmed, NFC, one space between words. `kind` prefixes
    the refusal's reason ("name", or "passkey_name" for a passkey's own name)."""
    if not isinstance(raw, str):
        raise InvalidName(f"{kind}_missing")
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not name:
        raise InvalidName(f"{kind}_missing")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"{kind}_too_long")
    if any(unicodedata.category(ch).startswith("C") and ch not in _JOINERS for ch in name):
        raise InvalidName(f"{kind}_invalid")
    return name


# Format characters that belong in names: the zero-width joiner and non-joiner (emoji
# sequences like 👩‍💻, Persian and Indic spelling) and the tags of flag emoji. Other
# invisible or direction-changing characters (U+200B, U+202E, ...) stay refused.
_JOINERS = frozenset({"\u200c", "\u200d", *map(chr, range(0xE0020, 0xE0080))})


def name_key(name: str) -> str:
    """What makes two names the same person: compatibility form, case folded."""
    return unicodedata.normalize("NFKC", name).casefold()


class Users:
    def __init__(self, path: str = ":memory:") -> None:
        # One connection shared by the event loop's thread; the lock keeps statements whole.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def identity_of(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT identity FROM users WHERE name_key = ?", (name_key(name),)
            ).fetchone()
        return None if row is None else str(row[0])

    def name_of(self, identity: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT name FROM users WHERE identity = ?", (identity,)
            ).fetchone()
        return None if row is None else str(row[0])

    def claim(self, identity: str) -> None:
        """Its sign-up finished: nobody else may sign up with its name from now on."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO claimed (identity) VALUES (?)", (identity,))

    def is_claimed(self, identity: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM claimed WHERE identity = ?", (identity,)
            ).fetchone()
        return row is not None

    def identity_for_new(self, name: str) -> str:
        """The identity for this name, made now if the name is new."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO users (name_key, name, identity) VALUES (?, ?, ?)",
                (name_key(name), name, str(uuid.uuid4())),
            )
            row = self._db.execute(
                "SELECT identity FROM users WHERE name_key = ?", (name_key(name),)
            ).fetchone()
        return str(row[0])
