"""SQLite backend: the embedded default. WAL mode, one connection per process.

Group commit. Under the server, writes made on the event loop join one open transaction,
each in its own savepoint (so a refused request undoes only its own changes), and a loop
callback commits them all at once: as soon as every request in progress is waiting for
that commit (after lingering half a millisecond for more when requests are concurrent),
and at the latest when the batch is 2 ms old. A request answers only after `settle()`,
that is after the commit that holds its writes (and anything it read from its neighbours)
returned: the same durability as one commit per request, with one WAL append for many
requests under load, and no added wait for a lone request.

The write lock is taken on the loop (`reserve`), so that waiting for another worker
process never blocks the loop in SQLite's busy handler. Worker processes hand it on through
`WriterGate`: a process holds an flock on `<database>-writer` while its batch is open, and
one that finds it taken waits for it in a thread blocked in flock(), which the kernel wakes
the moment the holder's commit lets go, instead of polling; writers outside the gate (the
CLI, other tools) are polled for. A process that has just committed lets a waiting one go
first (`Waiters`).

Checkpoints (copying the WAL back into the database file) run in a thread of their own
(`Checkpointer`), not in the COMMIT of whichever request batch crossed SQLite's threshold:
that one stalled every request of the process, and held the write lock's gate, for the
7-9 ms a thousand-page checkpoint takes. Writes from threads (audit trail,
purge, webhooks) wait for the loop's batch to be committed, and the loop opens no new one
until they have had their turn.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from passkeyd import logs
from passkeyd.domain.store import StorageUnavailable

from .sql import SqlStore
from .windows import RateWindows

log = logging.getLogger("passkeyd.storage")
T = TypeVar("T")


def _as_is(value: T) -> T:
    return value


# The sqlite3 module binds an exact int, float, str or bytearray directly; any other value
# (bytes, None, a bool) is first offered to the adapters registered for its type, and when
# there is none, to its protocol's `__adapt__`, which the protocol type does not have:
# Python 3.11 raises, formats and clears an AttributeError for each such value, about 2,000
# instructions (a factor's insert binds 14 of them, a registration 22). Registered as they
# are, these are found at once and bound exactly as before (a bool as the integer it is).
for _type in (bytes, type(None), bool):
    sqlite3.register_adapter(_type, _as_is)

BUSY_TIMEOUT_SECONDS = 10
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024  # what a reset WAL file is cut back to
MAX_BATCH_SECONDS = 0.002  # how long a batch may wait for requests still working
# How long a batch waits for more writes once every request in progress is waiting for it,
# when the previous batch had several (under concurrency: fewer, larger commits).
LINGER_SECONDS = 0.0005
YIELD_SECONDS = 0.002  # after a commit, while another process waits for the lock
CHECKPOINT_INTERVAL_SECONDS = 0.1  # at most one background checkpoint this often
# A WAL this many frames long is restarted (written again from its start) by the next
# writer once a RESTART checkpoint has run; it waits up to RESTART_WAIT_MS for the lock.
RESTART_FRAMES = 4096
RESTART_WAIT_MS = 50
RESTART_BACKOFF_SECONDS = 2.0  # after a RESTART that found a reader in its way
# How long emptying a replaced file's WAL waits for the checkpointer's checkpoint in progress.
ORPHAN_WAIT_SECONDS = 0.1


def _create_private(path: str) -> None:
    """Make a new database file readable by its owner only, as the key file is: it holds
    every account's identities, token hashes and sealed tokens. SQLite gives its -wal and
    -shm files the database's mode. A file that exists keeps the mode it has."""
    # (It exists, or cannot be made: opening it says which, as before.)
    with suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class SQLiteStore(SqlStore):
    dialect = "sqlite"
    runs_in_threads = False  # each query is tens of microseconds: run it on the event loop
    concurrency = 1
    integrity_errors = (sqlite3.IntegrityError,)

    @staticmethod
    def _duplicate(exc: Exception) -> bool:
        name = getattr(exc, "sqlite_errorname", "")
        return name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        cache_mb: int = 64,
        windows: RateWindows | None = None,
    ) -> None:
        """`windows`: keep rate-limit windows in this process (only when no other process
        serves this database file)."""
        self.windows = windows
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be OFF, NORMAL, FULL or EXTRA")
        self._lock = threading.RLock()
        self._turn = threading.Condition(self._lock)  # a batch was committed
        self._threads_waiting = 0
        if path != ":memory:":
            _create_private(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:  # no such directory, not writable
            raise StorageUnavailable(f"cannot open the SQLite database {path}: {exc}") from exc
        try:
            self._db.execute(f"PRAGMA busy_timeout = {_busy_timeout_ms()}")
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(f"PRAGMA synchronous = {synchronous}")
            # A WAL grown while a reader held an old snapshot (a backup, a sqlite3 shell) is
            # cut back to this once a checkpoint resets it; it stayed at its largest for good.
            self._db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
            # A page cache of `cache_mb` (SQLite's default is 2 MiB): with a million
            # passkeys the index pages a ceremony walks stay in memory.
            self._db.execute(f"PRAGMA cache_size = -{int(cache_mb) * 1024}")
        except sqlite3.Error as exc:  # not a database, locked
            # Closed now, not when collected (a descriptor held by nothing; on Python 3.13
            # a ResourceWarning, "unclosed database").
            self._db.close()
            raise StorageUnavailable(f"cannot open the SQLite database {path}: {exc}") from exc
        # The file opened, and its -wal and -shm once seen, to see any deleted or replaced.
        self._file = _file_identity(path)
        self._companions: tuple[tuple[int, int] | None, ...] | None = None  # -wal, -shm
        self._file_lost = False
        self._commit_failed_line = logs.Throttle(1.0)
        self._orphan_emptied = False
        self._orphan_warned = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._batch: asyncio.Future[None] | None = None  # the open group commit, if any
        self._path = path
        self._waiters: Waiters | None = None
        self._gate: WriterGate | None = None
        self._checkpointer: Checkpointer | None = None
        self._yield_until = 0.0  # monotonic time before which no new batch begins
        self._batch_started = 0.0
        self._batch_writes = 0
        self._last_batch_writes = 0
        self._active = 0  # requests in progress (see `request`)
        self._waiting = 0  # requests waiting in `settle` for the open batch
        self._config_batch: asyncio.Future[None] | None = None  # read config_version in it
        self.reads_waited = 0  # reads made again with the busy timeout (`_read_waiting`)

    # --- group commit ---------------------------------------------------------------------

    def start_group_commit(self, loop: asyncio.AbstractEventLoop) -> None:
        """Batch the writes made on `loop`'s thread (see the module docstring)."""
        self._loop, self._loop_thread = loop, threading.get_ident()
        if self._path != ":memory:" and self._waiters is None:
            self._waiters = Waiters(self._path + "-waiters")
            self._gate = WriterGate(self._path + "-writer", loop, self._gate_taken)
            self._checkpointer = Checkpointer(self._path, self._path + "-writer")
            self._db.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer's job now
            # No statement waits in SQLite's busy handler while the loop serves: it would
            # stall every request of the process. Writes take the lock without waiting
            # (`_try_begin`) and wait on the loop (`reserve`) or in their thread. A read
            # locked out is made again with the timeout (`_read_waiting`). Set once here, not
            # around each BEGIN: two statements less a batch.
            self._db.execute("PRAGMA busy_timeout = 0")

    def stop_group_commit(self) -> None:
        with self._lock:
            self._commit_batch()
            self._loop, self._loop_thread = None, 0
            if self._waiters is not None:
                self._waiters.close()
                self._waiters = None
            if self._gate is not None:
                self._gate.close()
                self._gate = None
            if self._checkpointer is not None:
                self._db.execute("PRAGMA wal_autocheckpoint = 1000")  # SQLite's default
                self._db.execute(f"PRAGMA busy_timeout = {_busy_timeout_ms()}")
                self._checkpointer.close()
                self._checkpointer = None

    def request_started(self) -> None:
        self._active += 1

    def request_finished(self) -> None:
        self._active -= 1

    @property
    def requests_in_progress(self) -> int:
        return self._active

    async def settle(self) -> None:
        """Wait until the writes made so far on the loop are committed; raise
        StorageUnavailable if their commit failed."""
        batch = self._batch
        if batch is None:
            return
        self._waiting += 1
        try:
            await asyncio.shield(batch)
        finally:
            self._waiting -= 1

    def _commit_when_ready(self, batch: asyncio.Future[None]) -> None:
        """Called at every loop iteration while the batch is open. Commit once no request
        in progress is still working (they would likely write next), after lingering a
        moment for more writes when the last batch showed concurrent requests; and at the
        latest when the batch is MAX_BATCH_SECONDS old, which bounds how long it holds the
        write lock and keeps its requests waiting."""
        if batch is not self._batch:
            return  # already committed (shutdown)
        loop = self._loop
        assert loop is not None
        age = loop.time() - self._batch_started
        if age < MAX_BATCH_SECONDS and self._waiting < self._active:
            loop.call_soon(self._commit_when_ready, batch)
            return
        if age < LINGER_SECONDS and self._last_batch_writes > 1:
            loop.call_later(LINGER_SECONDS - age, self._commit_when_ready, batch)
            return
        self._last_batch_writes = self._batch_writes
        self._commit_batch()

    def _commit_batch(self) -> None:
        """Commit the open batch and tell its requests. Called with the lock held, or as
        the loop callback scheduled when the batch began."""
        with self._lock:
            batch, self._batch = self._batch, None
            if batch is None:
                return
            error: BaseException | None = None
            try:
                self._check_file()  # the file may have gone since the batch began
                self._db.execute("COMMIT")
            except Exception as exc:  # the batch's requests must hear of it, whatever it is
                if self.windows is not None:
                    self.windows.abort()
                if (more := self._commit_failed_line()) is not None:
                    log.error("group commit failed: %s%s", exc, more)
                error = StorageUnavailable(f"the database refused the commit: {exc}")
                if self._checkpointer is not None:
                    # A full disk: the WAL holds space a commit could use once some is free
                    # (up to RESTART_FRAMES' worth), and only a checkpoint gives it back.
                    self._checkpointer.truncate()
                try:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rolling back the failed group commit failed")
                self.forget_config()  # it may hold what the rolled back batch wrote
            else:
                if self.windows is not None:
                    self.windows.commit()
                if self._checkpointer is not None:
                    self._checkpointer.nudge()
                try:
                    if self._waiters is not None and self._waiters.anyone_else():
                        self._yield_until = time.monotonic() + YIELD_SECONDS
                except OSError:  # only a hint for taking turns: never fail a commit on it
                    log.warning("cannot tell whether another process waits", exc_info=True)
            if self._gate is not None:
                self._gate.release()
            self._turn.notify_all()  # background writes waiting for their turn
        loop = self._loop
        if loop is None or batch.done():
            return
        if threading.get_ident() == self._loop_thread:
            _resolve(batch, error)
        else:
            loop.call_soon_threadsafe(_resolve, batch, error)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front, so no transaction is upgraded
        (and made to fail with SQLITE_BUSY) halfway through."""
        windows = self.windows
        if self._loop is not None and threading.get_ident() == self._loop_thread:
            with self._lock:
                try:
                    with self._batched() as db:
                        yield db
                except BaseException:
                    if windows is not None:
                        windows.discard()
                    raise
                if windows is not None:
                    windows.release()  # kept when the batch commits (`_commit_batch`)
            return
        if self._loop is not None:
            self._begin_beside_loop()  # returns holding self._lock
        else:
            self._lock.acquire()
            try:
                self._check_file()
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # locked past the busy timeout
                self._lock.release()
                raise StorageUnavailable(f"the database refused a write: {exc}") from exc
            except BaseException:
                self._lock.release()
                raise
        try:
            yield self._db
        except BaseException as exc:
            if windows is not None:
                windows.discard()
            self._rollback()
            _raise_if_unavailable(exc, "a write")
            raise
        else:
            try:
                self._check_file()
                self._db.execute("COMMIT")
            except BaseException as exc:
                if windows is not None:
                    windows.discard()
                self._rollback()  # never leave the connection inside a transaction
                if self._checkpointer is not None:
                    self._checkpointer.truncate()  # a full disk: see `_commit_batch`
                _raise_if_unavailable(exc, "a commit")
                raise
            if windows is not None:
                windows.commit()
            if self._checkpointer is not None:
                self._checkpointer.nudge()
        finally:
            self._lock.release()

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _busy_ms(self) -> int:
        """The connection's busy timeout: none while it serves a loop (`start_group_commit`)."""
        return 0 if self._checkpointer is not None else _busy_timeout_ms()

    def _try_begin(self) -> bool:
        """BEGIN IMMEDIATE without waiting (the connection has no busy timeout while it
        serves): False when another process holds the lock. Every write of a serving
        process begins here (a batch, or a background write), and its COMMIT checks that
        the database file is still the one opened (`_check_file`)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as exc:
            if not _locked_out(exc):
                _raise_if_unavailable(exc, "a write")
                raise
            return False

    def _begin_beside_loop(self) -> None:
        """A write from a thread while the server runs (audit trail, purge, webhooks). It
        waits for the loop's open batch to be committed (the loop opens no new one while a
        thread waits), and for another process's lock, without holding this process's
        connection lock meanwhile, which the event loop needs for every query. Returns
        holding the connection lock, in a transaction."""
        delay, deadline = 0.0005, time.monotonic() + BUSY_TIMEOUT_SECONDS
        self._lock.acquire()
        self._threads_waiting += 1  # changed only while holding the lock
        try:
            while True:
                if self._batch is None:
                    if self._try_begin():
                        if self._waiters is not None:
                            self._waiters.done()
                        self._threads_waiting -= 1
                        return
                    if self._waiters is not None:
                        self._waiters.waiting()  # another process holds it: ask for a turn
                    if time.monotonic() > deadline:
                        if self._waiters is not None:
                            self._waiters.done()
                        raise StorageUnavailable("the database stayed locked by another process")
                    self._turn.wait(delay)  # another process holds it: try again soon
                    # As often as the loop tries: the other process yields its turn only
                    # for YIELD_SECONDS after a commit, and every request of this process
                    # waits behind this write meanwhile.
                    delay = min(delay * 2, 0.001)
                else:
                    self._turn.wait(0.05)  # the loop commits it within a few iterations
        except BaseException:
            self._threads_waiting -= 1
            self._lock.release()
            raise

    async def reserve(self) -> None:
        """Take the write lock for a batch before a call that is about to write, waiting
        on the loop (not in SQLite's busy handler, which would stall every request of this
        process) while another process holds it."""
        loop = self._loop
        if loop is None or threading.get_ident() != self._loop_thread:
            return
        deadline = loop.time() + BUSY_TIMEOUT_SECONDS
        try:
            await self._take_lock(loop, deadline)
        finally:
            # A request that leaves without the lock (deadline, cancelled) no longer asks the
            # other processes for a turn; another one still waiting asks again at its next try.
            parked = self._gate is not None and self._gate.wanted
            if self._batch is None and self._waiters is not None and not parked:
                self._waiters.done()

    async def _take_lock(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        # The gate free, the lock is taken at once. The gate held by another worker process,
        # the requests wait for the gate's thread, which takes it (and this process opens its
        # batch) as soon as that process commits. The gate free but SQLite's lock held by a
        # writer outside the gate: every waiting request polls, backing off to 1 ms. (One
        # poller per process, every 0.25 ms, left the lock idle between turns: 24% fewer
        # auth flows/s at w2 c64.)
        delay = 0.0002
        while self._batch is None:
            if self._loop is None:
                raise StorageUnavailable("the database is closing")
            if loop.time() > deadline:
                raise StorageUnavailable("the database stayed locked by another process")
            pause = self._yield_until - time.monotonic()
            if pause > 0:  # another process waits for the lock: let it have a turn
                await asyncio.sleep(pause)
                continue
            if self._threads_waiting:  # a background write of this process goes first
                await asyncio.sleep(0.0002)
                continue
            gate = self._gate
            with self._lock:
                if self._batch is not None:
                    return
                gated = gate is None or gate.try_take()
                if gated and self._begin_holding(gate):
                    self._open_batch()
                    return
                if self._waiters is not None:
                    self._waiters.waiting()
            if gated or gate is None:  # a writer outside the gate holds SQLite's lock
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.001)
                continue
            with suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(gate.wait()), deadline - loop.time())

    def _gate_taken(self) -> None:
        """The gate's thread took the gate: open the batch the waiting requests want (on
        the loop), or let the gate go when this process is not to write now."""
        with self._lock:
            gate = self._gate
            if gate is None:
                return
            if self._batch is not None or self._threads_waiting or self._loop is None:
                gate.release()
                return
            try:
                began = self._begin_holding(gate)
            except StorageUnavailable as exc:  # (the requests log it, and answer 503)
                log.warning("beginning a batch after taking the write gate failed: %s", exc)
                return
            except Exception:  # the waiting requests try again, and meet it themselves
                log.exception("beginning a batch after taking the write gate failed")
                return
            if began:
                self._open_batch()  # the gate goes with the batch's commit

    def _begin_holding(self, gate: WriterGate | None) -> bool:
        """BEGIN IMMEDIATE with the gate held: on False or any error, the gate is let go
        (held without a batch, it would keep every other worker from writing)."""
        try:
            began = self._try_begin()
        except BaseException:
            if gate is not None:
                gate.release()
            raise
        if not began and gate is not None:
            gate.release()
        return began

    def refresh_config(self) -> None:
        """As SqlStore's, but read at most once per batch: while this process holds the
        write lock no other process can commit, so the version read inside the open batch
        stays current until it commits (this process's own changes forget the cache)."""
        batch = self._batch
        if (
            batch is not None
            and batch is self._config_batch
            and self._config_version is not None
            and threading.get_ident() == self._loop_thread
        ):
            return
        super().refresh_config()
        self._config_batch = batch

    def _open_batch(self) -> None:
        assert self._loop is not None
        if self._waiters is not None:
            self._waiters.done()
        self._batch = self._loop.create_future()
        self._batch_started = self._loop.time()
        self._batch_writes = 0
        self._loop.call_soon(self._commit_when_ready, self._batch)

    def _check_file(self) -> None:
        """Refuse to write once the database file passkeyd opened, or its -wal or -shm, is
        no longer at its path (deleted, or replaced by `mv`): what it wrote would go to a
        file nobody opens again, lost at the next start, while every answer said it was
        stored."""
        if self._file is None:
            return
        if not self._file_lost:
            companions = (
                _file_identity(self._path + "-wal"),
                _file_identity(self._path + "-shm"),
            )
            if self._companions is None or None in self._companions:
                # (made at the first write; kept while a connection is open)
                self._companions = companions
            if _file_identity(self._path) == self._file and companions == self._companions:
                return
            self._file_lost = True
            log.error(
                "the database file %s (or its -wal or -shm) was deleted or replaced while"
                " passkeyd had it open: nothing more is written to it; stop passkeyd, and"
                " start it again on what is there now",
                self._path,
            )
        if not self._orphan_emptied:
            self._empty_the_orphaned_wal()
        raise StorageUnavailable("the database file was deleted or replaced: restart passkeyd")

    def _empty_the_orphaned_wal(self) -> None:
        """Checkpoint the old file's WAL into the old file, and empty it. Left as it was, the
        -wal file at the path (still the old file's, when only the database was replaced)
        would be replayed onto the new database at the next start: a restored backup read
        as malformed. Without waiting: a reader holding a snapshot (another worker, a
        shell) makes it busy, and it is tried again at the next request. Except for this
        process's own checkpointer, whose checkpoint in progress (a few milliseconds,
        usually) it waits for, ORPHAN_WAIT_SECONDS at most: it made the first try busy now
        and then. (Not for as long as it runs: that is the copy of the whole WAL behind it,
        a quarter of a second for one of 100 MB grown behind a backup's reader, on the loop.)"""
        busy = 1
        checkpointer = self._checkpointer
        # The store's lock first, then `running`: most callers come holding the store's lock
        # already (a commit, on the loop or in a background write's thread), and the other
        # order (the probes' ping, which comes holding neither) deadlocked against one of
        # them. The checkpointer takes `running` alone.
        with self._lock:
            waited = checkpointer is not None and checkpointer.running.acquire(
                timeout=ORPHAN_WAIT_SECONDS
            )
            try:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._db.execute("PRAGMA busy_timeout = 0")
                try:
                    busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                finally:
                    self._db.execute(f"PRAGMA busy_timeout = {self._busy_ms()}")
            except sqlite3.Error as exc:
                log.debug("emptying the replaced database's -wal: %s", exc)
            finally:
                if waited:
                    assert checkpointer is not None
                    checkpointer.running.release()
        if not busy:
            self._orphan_emptied = True
            log.warning("the replaced database's -wal was emptied into the old file")
        elif not self._orphan_warned:
            self._orphan_warned = True
            log.error(
                "the replaced database's -wal cannot be emptied yet (a reader holds it); it is"
                " tried again at each request. If passkeyd stops first: before starting it"
                " again, delete %s-wal and %s-shm, or the new file will read as malformed",
                self._path,
                self._path,
            )

    def ping(self) -> None:
        self._check_file()
        super().ping()

    @contextmanager
    def _batched(self) -> Iterator[sqlite3.Connection]:
        if self._batch is None:
            # A write on the loop without reserve(): never wait in SQLite's busy handler.
            gate = self._gate
            if gate is not None and not gate.try_take():
                raise StorageUnavailable("the database is locked by another process")
            if not self._begin_holding(gate):
                raise StorageUnavailable("the database is locked by another process")
            self._open_batch()
        elif not self._db.in_transaction:
            # SQLite aborted the batch's whole transaction (disk full, I/O error): its
            # commit will fail, and nothing more may be written outside a transaction.
            raise StorageUnavailable("the database aborted this batch")
        self._batch_writes += 1
        self._db.execute("SAVEPOINT request")
        try:
            yield self._db
        except BaseException as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK TO request")
                self._db.execute("RELEASE request")
            _raise_if_unavailable(exc, "a write")  # a read-only file, disk full, I/O
            raise
        self._db.execute("RELEASE request")

    def _lock_migrations(self, tx: Any) -> None:
        """BEGIN IMMEDIATE already holds the database's one write lock."""

    def _one(self, sql: str, args: Sequence[Any]) -> Any:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchone()
            except sqlite3.DatabaseError as exc:  # OperationalError, or a damaged file's
                self._refused(exc)
                return self._read_waiting(lambda: self._db.execute(sql, args).fetchone())

    def _all(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:  # OperationalError, or a damaged file's
                self._refused(exc)
                return self._read_waiting(lambda: self._db.execute(sql, args).fetchall())

    def _refused(self, exc: sqlite3.DatabaseError) -> None:
        """Raise what a refused read is (StorageUnavailable when the file is at fault),
        unless it was locked out while the connection has no busy timeout (serving): then
        return, and the read is made again, waiting (`_read_waiting`)."""
        if _locked_out(exc) and self._busy_ms() == 0 and not self._db.in_transaction:
            return
        if (unavailable := _unavailable(exc)) is not None:
            raise unavailable from exc
        raise exc

    def _read_waiting(self, read: Callable[[], T]) -> T:
        """A read made again with the busy timeout. While this connection has the WAL open,
        only another connection rebuilding the WAL index (after a process died halfway
        through updating it) locks reads out, for milliseconds: waiting for it stalls the
        loop that long, where answering 503 failed every request meanwhile."""
        self.reads_waited += 1
        self._db.execute(f"PRAGMA busy_timeout = {_busy_timeout_ms()}")
        try:
            return read()
        except sqlite3.DatabaseError as exc:
            if (unavailable := _unavailable(exc)) is not None:
                raise unavailable from exc
            raise
        finally:
            self._db.execute("PRAGMA busy_timeout = 0")

    def close(self) -> None:
        with self._lock:
            self._commit_batch()
            self._db.close()


# What SQLite says when the file, not the statement, is at fault.
_UNAVAILABLE = (
    "locked",
    "busy",
    "disk i/o",
    "unable to open",
    "readonly",
    "full",
    "malformed",
    "not a database",
)


def _busy_timeout_ms() -> int:
    """BUSY_TIMEOUT_SECONDS as SQLite's busy_timeout (read when called: tests shorten it)."""
    return int(BUSY_TIMEOUT_SECONDS * 1000)


def _locked_out(exc: sqlite3.Error) -> bool:
    """Another connection holds a lock the statement needed (SQLITE_BUSY or LOCKED)."""
    return "locked" in str(exc) or "busy" in str(exc)


def _file_identity(path: str) -> tuple[int, int] | None:
    """The device and inode at `path` (None: in memory, or no file there)."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _unavailable(exc: sqlite3.DatabaseError, what: str = "a read") -> StorageUnavailable | None:
    """StorageUnavailable for a read the database could not serve (locked, I/O, disk full),
    None for a statement at fault (no such table, before a migration, is asked about)."""
    if any(word in str(exc).lower() for word in _UNAVAILABLE):
        return StorageUnavailable(f"the database refused {what}: {exc}")
    return None


def _raise_if_unavailable(exc: BaseException, what: str) -> None:
    """StorageUnavailable (503) for a write the file refused (read-only, disk full, I/O):
    it was a 500, and a read-only file at start-up a traceback instead of exit code 6."""
    # (OperationalError, or a damaged file's DatabaseError; never a constraint's error.)
    refused = isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError
    if refused and (unavailable := _unavailable(exc, what)) is not None:  # type: ignore[arg-type]
        raise unavailable from exc


class Checkpointer:
    """Copies the WAL back into the database file from a thread with its own connection,
    so no request waits for it (the server's connection has SQLite's automatic checkpoints
    off). A commit nudges it; it checkpoints at most every CHECKPOINT_INTERVAL_SECONDS, in
    PASSIVE mode: it waits for no reader or writer, and SQLite releases the GIL meanwhile.
    Another process's checkpointer running at the same moment only makes one of them
    return early. An idle server makes no checkpoint and no wake-up.

    A PASSIVE checkpoint alone never lets the WAL start over under steady load: a writer
    restarts it only when its transaction began with every frame copied back, and with
    commits every millisecond no transaction does. (The server's own automatic checkpoint
    managed it by running in the committing connection.) So once the WAL is RESTART_FRAMES
    long, a RESTART checkpoint follows: it takes the write gate like a worker process (so
    requests wait on the loop meanwhile, as for any other process, and cannot starve it),
    copies the few frames written since, and makes the next writer start the WAL over.
    Without it the WAL grew without end (218 MB in a minute of load), and reads slowed as
    it did."""

    def __init__(self, path: str, gate_path: str) -> None:
        self._gate_fd = os.open(gate_path, os.O_RDWR | os.O_CREAT, 0o600)
        self._waiters = Waiters(path + "-waiters")
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 0")
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self.runs = 0  # checkpoints made (for tests and curiosity)
        self.last: tuple[int, int, int] | None = None  # the last one's result
        self.restarts = 0
        self.truncations = 0
        self._truncate = False  # a commit failed: TRUNCATE at the next run
        self._truncate_after = 0.0
        self._restart_after = 0.0  # monotonic time before which no RESTART is tried
        self._failed_line = logs.Throttle(1.0)
        # Held while a checkpoint runs (never while waiting for the write gate), so that
        # the store's own checkpoint of a replaced file's WAL waits for this one rather than
        # finding it busy (see SQLiteStore._empty_the_orphaned_wal).
        self.running = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="passkeyd-checkpointer", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        if not self._wanted.is_set():  # (set() takes a lock and notifies, every commit)
            self._wanted.set()

    def truncate(self) -> None:
        """After a failed commit: copy the WAL back and cut it to nothing, so that the space
        it held (a full disk's last megabytes) serves the next commits. At most once every
        RESTART_BACKOFF_SECONDS."""
        self._truncate = True
        self.nudge()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._stopping.is_set():
                return
            self._wanted.clear()
            try:
                if self._truncate and time.monotonic() >= self._truncate_after:
                    self._truncate = False
                    self._truncate_after = time.monotonic() + RESTART_BACKOFF_SECONDS
                    if self._restart("TRUNCATE"):
                        self.truncations += 1
                    continue
                with self.running:
                    row = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.runs += 1
                self.last = row  # (busy, frames in the WAL, frames copied back)
                if row is not None and row[1] >= RESTART_FRAMES:
                    self._restart()
            except Exception as exc:  # the next commit's nudge tries again
                if (more := self._failed_line()) is not None:
                    log.warning("background checkpoint failed: %s%s", exc, more)
            if self._stopping.wait(CHECKPOINT_INTERVAL_SECONDS):
                return

    def _restart(self, mode: str = "RESTART") -> bool:
        """A RESTART (or TRUNCATE) checkpoint under the write gate; whether it finished."""
        if mode == "RESTART" and time.monotonic() < self._restart_after:
            return False
        self._waiters.waiting()  # the worker that holds the gate yields it after its commit
        try:
            fcntl.flock(self._gate_fd, fcntl.LOCK_EX)  # blocks this thread only
        finally:
            self._waiters.done()
        try:
            self._db.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
            try:
                with self.running:
                    busy = self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()[0]
            finally:
                self._db.execute("PRAGMA busy_timeout = 0")
        finally:
            fcntl.flock(self._gate_fd, fcntl.LOCK_UN)
        if busy:  # a reader holds an old snapshot (a backup, a shell): not again at once
            self._restart_after = time.monotonic() + RESTART_BACKOFF_SECONDS
            return False
        if mode == "RESTART":
            self.restarts += 1
        return True

    def close(self) -> None:
        self._stopping.set()
        self._wanted.set()
        self._thread.join(timeout=BUSY_TIMEOUT_SECONDS)
        if not self._thread.is_alive():
            self._db.close()
            self._waiters.close()
            os.close(self._gate_fd)


class WriterGate:
    """The write lock's hand-over between worker processes, without polling.

    A process holds an exclusive flock on `<database>-writer` while its batch is open
    (`try_take` before BEGIN IMMEDIATE, `release` after COMMIT). One that finds the gate
    taken calls `wait`: a thread of its own blocks in flock() on a second descriptor of the
    file (so the two are exclusive like two processes), and the kernel wakes it the moment
    the holder lets go. The thread then calls `on_taken` on the loop, which opens the batch
    (or releases the gate), and the returned future is resolved for the waiting requests.

    The gate is advisory: SQLite's own lock still decides, so a writer that does not take
    the gate (the CLI, another program, this process's background threads) only means a
    request falls back to polling. `_held` and the descriptors are used on the loop (under
    the store's lock); the thread only blocks, and owns its descriptor once closed."""

    def __init__(
        self, path: str, loop: asyncio.AbstractEventLoop, on_taken: Callable[[], None]
    ) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._thread_fd = os.open(path, os.O_RDWR)
        self._loop = loop
        self._on_taken = on_taken
        self._held: int | None = None  # the descriptor holding the gate
        self._waiting: asyncio.Future[None] | None = None  # the thread is after the gate
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._broken = False  # flock failed in the thread: act as if there were no gate

    @property
    def wanted(self) -> bool:
        """Requests of this process wait for the gate's thread."""
        return self._waiting is not None

    def try_take(self) -> bool:
        if self._broken:
            return True  # the caller then polls SQLite's own lock, as without a gate
        if self._held is not None:
            return False  # taken by the thread: its on_taken has yet to run
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._held = self._fd
        return True

    def release(self) -> None:
        fd, self._held = self._held, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def wait(self) -> asyncio.Future[None]:
        """A future resolved once the thread has taken the gate and `on_taken` has run."""
        if self._waiting is None:
            self._waiting = self._loop.create_future()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="passkeyd-writer-gate", daemon=True
                )
                self._thread.start()
            self._wanted.set()
        return self._waiting

    def _run(self) -> None:
        fd = self._thread_fd
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._closed:
                    return
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # the GIL is released while it blocks
                except OSError as exc:  # e.g. no locks on this file system
                    log.warning("the write gate failed (%s): polling instead", exc)
                    with suppress(RuntimeError):
                        self._loop.call_soon_threadsafe(self._broke)
                    return
                if self._closed:
                    return
                try:
                    self._loop.call_soon_threadsafe(self._taken)
                except RuntimeError:  # the loop is closed
                    return
        finally:
            os.close(fd)  # lets the gate go, if held

    def _broke(self) -> None:
        self._broken = True
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def _taken(self) -> None:
        waiting, self._waiting = self._waiting, None
        if self._closed:
            return  # the thread lets go when it closes its descriptor
        self._held = self._thread_fd
        try:
            self._on_taken()
        finally:
            if waiting is not None and not waiting.done():
                waiting.set_result(None)

    def close(self) -> None:
        if self._held == self._fd:
            self.release()
        self._held = None
        self._closed = True
        os.close(self._fd)
        if self._thread is None:
            os.close(self._thread_fd)
        else:
            self._wanted.set()  # an idle thread exits; a blocked one once it has the gate
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)
        self._waiting = None


class Waiters:
    """Whether another process waits for the database's write lock. A process that found
    the lock taken holds a shared flock on `<database>-waiters` until it gets the lock; one
    that has just committed tries an exclusive flock without blocking, and if that fails,
    waits a moment before its next batch, so that group commits alternate between worker
    processes instead of one process taking the lock again at once, every time."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._waiting = False

    def waiting(self) -> None:
        if not self._waiting:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                self._waiting = True
            except BlockingIOError:  # someone is probing this instant: next time
                pass

    def done(self) -> None:
        if self._waiting:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._waiting = False

    def anyone_else(self) -> bool:
        if self._waiting:
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        os.close(self._fd)


def _resolve(batch: asyncio.Future[None], error: BaseException | None) -> None:
    if batch.done():
        return
    if error is None:
        batch.set_result(None)
    else:
        batch.set_exception(error)
        batch.exception()  # retrieved here: a batch nobody awaited is not an error to log
