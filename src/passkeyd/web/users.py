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


# Characters that show nothing of their own, and belong in a name only where they do
# something: the zero-width joiner and non-joiner (and the Mongolian vowel separator)
# between two visible characters, or the joiner after a virama that ends a word (Malayalam
# chillu, Bengali khanda-ta); variation selectors (emoji's, ideographs', Mongolian's) after
# a visible character; the tags of England's, Scotland's and Wales's flags. Every other
# invisible character is refused: format and control characters (U+200B, U+202E, ...), the
# rest of Unicode's Default_Ignorable_Code_Point (U+034F, the Hangul fillers, ...) and the
# blank braille cell.
# `name_key` leaves out the joiners and variation selectors, so "A\u200cda" or "Ada\ufe0f"
# is Ada's name, not a second account's; the tags stay in it (they choose the flag).
_JOINERS = frozenset({"\u200c", "\u200d", "\u180e"})
_VARIATION_SELECTORS = frozenset(
    [
        *map(chr, range(0xFE00, 0xFE10)),
        *map(chr, range(0xE0100, 0xE01F0)),
        "\u180b", "\u180c", "\u180d", "\u180f",  # Mongolian's free variation selectors
    ]
)  # fmt: skip
_TAGS = frozenset(map(chr, range(0xE0020, 0xE0080)))
_BLACK_FLAG, _CANCEL_TAG = "\U0001f3f4", "\U000e007f"
# The subdivision flags Unicode recommends (England, Scotland, Wales): any other tag run
# after the black flag shows the plain flag, and would be a second "Ada 🏴".
_FLAG_TAGS = frozenset(
    "".join(chr(0xE0000 + ord(c)) for c in code) for code in ("gbeng", "gbsct", "gbwls")
)
_BLANK = frozenset(
    [
        "\u00ad", "\u034f", "\u061c", "\u115f", "\u1160", "\u17b4", "\u17b5",
        "\u2800", "\u3164", "\uffa0",
        *map(chr, range(0x1BCA0, 0x1BCA4)), *map(chr, range(0x1D173, 0x1D17B)),
    ]
)  # fmt: skip
_VIRAMA = 9  # the canonical combining class of a virama


def _invisible(ch: str) -> bool:
    return (
        unicodedata.category(ch).startswith("C")
        or ch in _BLANK
        or ch in _VARIATION_SELECTORS
        or "\U000e0000" <= ch <= "\U000e0fff"
    )


def _visible(ch: str) -> bool:
    return bool(ch) and not ch.isspace() and not _invisible(ch)


def _joins(name: str, i: int) -> bool:
    ch = name[i]
    before = name[i - 1] if i else ""
    after = name[i + 1] if i + 1 < len(name) else ""
    if ch in _JOINERS:
        if ch == "\u200d" and before and unicodedata.combining(before) == _VIRAMA:
            return True  # a chillu or khanda-ta: the joiner may end the word
        # (after an emoji's variation selector too: 🏳️‍🌈, ❤️‍🔥)
        return (_visible(before) or before in _VARIATION_SELECTORS) and _visible(after)
    if ch in _VARIATION_SELECTORS:
        return _visible(before)
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
            and name[run_start:run_end] in _FLAG_TAGS
        )
    return False


def name_key(name: str) -> str:
    """What makes two names the same person: compatibility form, case folded, without the
    joiners and variation selectors (which change how a name looks, if at all, not whose
    it is)."""
    shown = "".join(ch for ch in name if ch not in _JOINERS and ch not in _VARIATION_SELECTORS)
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
