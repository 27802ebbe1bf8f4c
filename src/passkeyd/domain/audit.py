"""The audit trail: every ceremony and every change, who, what, when, how it ended.

Requests append to an in-memory buffer that a background task writes every fraction of a
second (and at shutdown): on SQLite as one write in the event loop's group commit, on
PostgreSQL in one transaction from a thread. Auditing adds no database write to the
request itself. A crash can lose at most the last flush interval of audit records; the
ceremony results themselves are durable in their own transactions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .models import AuditEvent, Page, PageRequest
from .store import Store

MAX_BUFFER = 10_000  # beyond this, the request that adds one flushes (in a thread)


@dataclass
class AuditLog:
    store: Store
    _buffer: list[AuditEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, event: AuditEvent) -> bool:
        """Buffer one event. True when the buffer is full: the caller should flush now
        (off the event loop) rather than wait for the timer."""
        with self._lock:
            self._buffer.append(event)
            return len(self._buffer) >= MAX_BUFFER

    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> int:
        return len(self.write_pending())

    def write_pending(self) -> list[AuditEvent]:
        """Write what is buffered; the events written. A write that fails keeps them for
        the next flush; so does `restore`, for a group commit that failed after it."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            try:
                self.store.append_audit(batch)
            except Exception:
                self.restore(batch)
                raise
        return batch

    def restore(self, batch: list[AuditEvent]) -> None:
        """Put back events whose write was rolled back, ahead of those recorded since."""
        with self._lock:
            self._buffer[:0] = batch

    def list(self, account_sid: str, page: PageRequest, *, service_sid: str | None) -> Page:
        """Flush first (call it off the event loop: it writes), so that what a reader asks
        for includes what just happened."""
        self.flush()
        return self.store.list_audit(account_sid, page, service_sid=service_sid)
