"""Rate-limit windows kept in process memory, for a database that one process serves.

Counting a hit in the database costs a statement and a B-tree page per request (about a
tenth of an authentication's server CPU on SQLite). When a single process serves the
database (SQLite with one worker, the embedded default) nothing else can see or move those
counters, so they can live here instead, with the same semantics: a hit counted inside a
write is kept only if that write is, and dropped with it when it rolls back. A restart
starts every window afresh (windows are a minute long by default).

Several processes on one database (workers, or PostgreSQL replicas) share their windows
through the database instead: see `PASSKEYD_RATE_LIMIT_STORE`.
"""

from __future__ import annotations

from passkeyd.domain.models import RateHit

SWEEP_AT = 4096  # windows kept before the first sweep of ended ones; it then doubles as needed
# A key's window: its start, its hits, and its rule's window in seconds (`RateHit.window`).
Window = tuple[int, int, int]


class RateWindows:
    """Fixed-window counters: key -> (window start, hits), with the database's transaction
    semantics. A write counts its hits as pending; when its savepoint is released inside a
    group commit they are staged (counted, but only until the batch's commit), and the
    batch's commit keeps them (`commit`) or its failure drops them (`abort`). A write that
    rolls back drops its pending hits (`discard`). A transaction of its own commits its
    hits at once (`release` then `commit`)."""

    def __init__(self, longest_window: int) -> None:
        self._longest = max(1, longest_window)
        self._counts: dict[str, Window] = {}  # committed
        self._staged: dict[str, Window] = {}  # released in the open batch
        self._pending: list[RateHit] = []  # counted by the write in progress
        self._sweep_at = SWEEP_AT
        self._newest_start = 0

    def count(self, key: str, window_start: int) -> int:
        """Hits in this window, staged ones included (a write's own pending ones not)."""
        return _in(self._counts, key, window_start) + _in(self._staged, key, window_start)

    def hit(self, hit: RateHit) -> int:
        """Count a hit inside the write in progress; the window's count including it."""
        self._pending.append(hit)
        mine = sum(
            1 for h in self._pending if h.key == hit.key and h.window_start == hit.window_start
        )
        return self.count(hit.key, hit.window_start) + mine

    def release(self) -> None:
        """The write's savepoint was released: its hits count until the batch ends."""
        for hit in self._pending:
            _add(self._staged, hit.key, hit.window_start, 1, hit.window)
        self._pending.clear()

    def commit(self) -> None:
        """The transaction committed: what it staged is kept."""
        self.release()
        if not self._staged:
            return
        for key, (start, hits, window) in self._staged.items():
            _add(self._counts, key, start, hits, window)
            # The latest hit's window, not the latest window ever: one dated by a clock
            # that stepped back since would have every sweep forget the current windows.
            self._newest_start = start
        self._staged.clear()
        if len(self._counts) >= self._sweep_at:
            self._sweep()

    def discard(self) -> None:
        """The write rolled back: its hits never happened."""
        self._pending.clear()

    def abort(self) -> None:
        """The batch's commit failed: nothing it staged happened."""
        self._pending.clear()
        self._staged.clear()

    def _sweep(self) -> None:
        """Forget windows that ended (no window outlasts the longest rule)."""
        ended = self._newest_start - self._longest
        self._counts = {k: v for k, v in self._counts.items() if v[0] > ended}
        self._sweep_at = max(SWEEP_AT, 2 * len(self._counts))

    def __len__(self) -> int:
        return len(self._counts)


def _in(windows: dict[str, Window], key: str, window_start: int) -> int:
    entry = windows.get(key)
    return entry[1] if entry is not None and entry[0] == window_start else 0


def _add(windows: dict[str, Window], key: str, window_start: int, hits: int, window: int) -> None:
    """A later window replaces an earlier one, as the table's upsert does; so does one
    dated by a clock since stepped back: more than the hit's own rule `window` ahead
    (`RateHit.stale_after`; 0: never), as in the table. (The longest rule's window let a
    shorter rule's key go unlimited, after a step back, until the clock caught up.)"""
    entry = windows.get(key)
    if entry is not None and window_start < entry[0] <= window_start + (window or 2**62):
        return  # a hit of a window that already ended (clock skew between writes)
    windows[key] = (window_start, _in(windows, key, window_start) + hits, window)
