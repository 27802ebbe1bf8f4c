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
    if any(_invisible(ch) and not _joins(name, i) for i, ch in enumerate(name)):
        raise InvalidName(f"{kind}_invalid")
    return name


# Format characters that belong in names, where they join something: the zero-width joiner
# and non-joiner between two visible characters (emoji sequences like 👩‍💻, Persian and
# Indic spelling), and the tags of a flag emoji (🏴 then tags ending with the cancel tag).
# Other invisible or direction-changing characters (U+200B, U+202E, ...) are refused, and
# `name_key` leaves the joiners out, so "A\u200cda" is Ada's name, not a second account's.
_ZERO_WIDTH_JOINERS = frozenset({"\u200c", "\u200d"})
_TAGS = frozenset(map(chr, range(0xE0020, 0xE0080)))
_BLACK_FLAG, _CANCEL_TAG = "\U0001f3f4", "\U000e007f"


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch).startswith("C")


def _joins(name: str, i: int) -> bool:
    ch = name[i]
    before = name[i - 1] if i else ""
    after = name[i + 1] if i + 1 < len(name) else ""
    if ch in _ZERO_WIDTH_JOINERS:
        return all(c and not c.isspace() and not _invisible(c) for c in (before, after))
    if ch in _TAGS:  # in a run after the black flag, which the cancel tag ends
        run_start = i
        while run_start and name[run_start - 1] in _TAGS:
            run_start -= 1
        run_end = i
        while run_end + 1 < len(name) and name[run_end + 1] in _TAGS:
            run_end += 1
        return (
            run_start > 0
            and name[run_start - 1] == _BLACK_FLAG
            and name[run_end] == _CANCEL_TAG
            and run_end > run_start
        )
    return False


def name_key(name: str) -> str:
    """What makes two names the same person: compatibility form, case folded, without the
    joiners (which change how a name looks, if at all, not whose it is)."""
    shown = "".join(ch for ch in name if ch not in _ZERO_WIDTH_JOINERS and ch not in _TAGS)
    return unicodedata.normalize("NFKC", shown).casefold()


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
