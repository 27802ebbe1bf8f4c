"""Time as whole UTC seconds, the resolution of every date on the wire."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

Clock = Callable[[], int]


def system_clock() -> int:
    return int(time.time())


@functools.lru_cache(maxsize=1024)  # most dates in a response are "now"
def iso(ts: int | None) -> str | None:
    """`YYYY-MM-DDTHH:MM:SSZ`, the only date form the twilio SDK parses."""
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
