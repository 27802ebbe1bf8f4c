"""Whole numbers written in ASCII digits, the only form a setting or parameter takes."""

from __future__ import annotations


def ascii_int(text: str, max_digits: int = 18) -> int | None:
    """The number `text` is, written in ASCII decimal digits alone (at most `max_digits`),
    else None. int() also takes " 5 ", "+5", "5_0" and other scripts' digits, and
    str.isdigit() takes "²", which int() then refuses with a ValueError."""
    if text.isascii() and text.isdigit() and len(text) <= max_digits:
        return int(text)
    return None
