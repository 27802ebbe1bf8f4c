"""The audit trail: every ceremony and every change, who, what, when, how it ended.

Requests append to an in-memory buffer that a background task writes in one transaction
every fraction of a second (and at shutdown), so auditing adds no database write to the
request itself. A crash can lose at most the last flush interval of audit records; the
ceremony results themselves are durable in their own transactions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from passkeyd.storage import Store

from .models import AuditEvent, Page, PageRequest

MAX_BUFFER = 10_000  # beyond this, flush inline rather than grow without bound


@dataclass
class AuditLog:
    store: Store
    _buffer: list[AuditEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, event: AuditEvent) -> None:
        with self._lock:
            self._buffer.append(event)
            full = len(self._buffer) >= MAX_BUFFER
        if full:
            self.flush()

    def flush(self) -> int:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            try:
                self.store.append_audit(batch)
            except Exception:
                with self._lock:  # keep them for the next flush
                    self._buffer[:0] = batch
                raise
        return len(batch)

    def list(self, account_sid: str, page: PageRequest, *, service_sid: str | None) -> Page:
        self.flush()  # what a reader asks for includes what just happened
        return self.store.list_audit(account_sid, page, service_sid=service_sid)
