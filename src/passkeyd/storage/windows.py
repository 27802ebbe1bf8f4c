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


class RateWindows:
    """Fixed-window counters: key -> (window start, hits), plus the hits of the write in
    progress, which `commit` keeps and `discard` drops."""

    def __init__(self, longest_window: int) -> None:
        self._longest = max(1, longest_window)
        self._counts: dict[str, tuple[int, int]] = {}
        self._pending: list[RateHit] = []
        self._sweep_at = SWEEP_AT
        self._newest_start = 0

    def count(self, key: str, window_start: int) -> int:
        """Hits kept in this window (a write's own pending hits excluded)."""
        entry = self._counts.get(key)
        return entry[1] if entry is not None and entry[0] == window_start else 0

    def hit(self, hit: RateHit) -> int:
        """Count a hit inside the write in progress; the window's count including it."""
        self._pending.append(hit)
        mine = sum(
            1 for h in self._pending if h.key == hit.key and h.window_start == hit.window_start
        )
        return self.count(hit.key, hit.window_start) + mine

    def commit(self) -> None:
        """The write that counted the pending hits was kept: so are they."""
        if not self._pending:
            return
        for hit in self._pending:
            self._counts[hit.key] = (hit.window_start, self.count(hit.key, hit.window_start) + 1)
            self._newest_start = max(self._newest_start, hit.window_start)
        self._pending.clear()
        if len(self._counts) >= self._sweep_at:
            self._sweep()

    def discard(self) -> None:
        """The write rolled back: its hits never happened."""
        self._pending.clear()

    def _sweep(self) -> None:
        """Forget windows that ended (no window outlasts the longest rule)."""
        ended = self._newest_start - self._longest
        self._counts = {k: v for k, v in self._counts.items() if v[0] > ended}
        self._sweep_at = max(SWEEP_AT, 2 * len(self._counts))

    def __len__(self) -> int:
        return len(self._counts)
