"""SQLite group commit: the writes of requests on the event loop share one commit, each
request answers only after that commit, a refused request undoes only its own writes, and
another process holding the write lock makes requests wait on the loop, not in SQLite."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from passkeyd.domain.ids import new_sid
from passkeyd.domain.models import Account
from passkeyd.storage import SQLiteStore, StorageUnavailable
from passkeyd.storage import sqlite as sqlite_module
from tests.aio import run


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "gc.db"))
    s.migrate()
    yield s
    s.close()


def account() -> Account:
    return Account(new_sid("AC"), "", b"h" * 32, 1)


def stored_sids(path: Path) -> set[str]:
    """What another process sees: only committed rows."""
    other = sqlite3.connect(path)
    try:
        return {r[0] for r in other.execute("SELECT sid FROM accounts")}
    finally:
        other.close()


def two_processes_with_an_account(tmp_path: Path) -> tuple[SQLiteStore, SQLiteStore, Account]:
    """Two stores on one file, as two worker processes have, and an account stored."""
    path = str(tmp_path / "gc.db")
    a, b = SQLiteStore(path), SQLiteStore(path)
    a.migrate()
    acc = account()
    a.put_account(acc)
    return a, b, acc


async def write_request(store: SQLiteStore) -> None:
    """One request that writes an account, as the server runs it."""
    store.request_started()
    try:
        await store.reserve()
        store.put_account(account())
        await store.settle()
    finally:
        store.request_finished()


def locked_by_another_process(tmp_path: Path) -> sqlite3.Connection:
    """A second connection holding the database's write lock (usable from any thread)."""
    other = sqlite3.connect(tmp_path / "gc.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


def fail_commits_after_orphans(store: SQLiteStore) -> None:
    """A real COMMIT that SQLite refuses: a deferred foreign key is checked at commit, so
    a transaction that inserted `INSERT INTO child VALUES (7)` (no parent 7) fails there."""
    store._db.execute("PRAGMA foreign_keys = ON")
    store._db.execute("CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)")
    store._db.execute(
        "CREATE TEMP TABLE child (parent INTEGER REFERENCES parent(id)"
        " DEFERRABLE INITIALLY DEFERRED)"
    )


def test_writes_on_the_loop_share_one_commit_and_are_durable_after_settle(
    store: SQLiteStore, tmp_path: Path
) -> None:
    a, b = account(), account()
    seen_before: set[str] = set()

    async def request(acc: Account) -> None:
        store.request_started()
        try:
            await store.reserve()
            store.put_account(acc)
            seen_before.update(stored_sids(tmp_path / "gc.db"))
            await store.settle()
        finally:
            store.request_finished()

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        await asyncio.gather(request(a), request(b))
        assert stored_sids(tmp_path / "gc.db") == {a.sid, b.sid}
        store.stop_group_commit()

    run(main())
    assert seen_before == set()  # neither was committed before both had written


def test_a_lone_request_is_committed_in_the_next_loop_iteration(store: SQLiteStore) -> None:
    async def main() -> int:
        store.start_group_commit(asyncio.get_running_loop())
        store.request_started()
        store.put_account(account())
        iterations = 0

        async def ticker() -> None:
            nonlocal iterations
            while True:
                iterations += 1
                await asyncio.sleep(0)

        tick = asyncio.create_task(ticker())
        await store.settle()
        store.request_finished()
        tick.cancel()
        return iterations

    assert run(main()) <= 2  # no waiting for requests that are not there


def test_a_refused_request_undoes_only_its_own_writes(store: SQLiteStore, tmp_path: Path) -> None:
    kept, undone = account(), account()

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        store.put_account(kept)
        with pytest.raises(RuntimeError), store._write() as db:
            db.execute(
                "INSERT INTO accounts (sid, friendly_name, token_hash, date_created)"
                " VALUES (?, '', x'00', 1)",
                (undone.sid,),
            )
            raise RuntimeError("refused after writing")
        await store.settle()

    run(main())
    assert stored_sids(tmp_path / "gc.db") == {kept.sid}


def test_a_failed_commit_fails_every_request_of_the_batch_and_stores_nothing(
    store: SQLiteStore, tmp_path: Path
) -> None:
    fail_commits_after_orphans(store)
    innocent = account()
    outcomes: list[BaseException | None] = []

    async def request(write: object) -> None:
        try:
            await store.reserve()
            if write is None:
                with store._write() as db:
                    db.execute("INSERT INTO child VALUES (7)")  # no parent 7
            else:
                store.put_account(innocent)
            await store.settle()
            outcomes.append(None)
        except StorageUnavailable as exc:
            outcomes.append(exc)

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        await asyncio.gather(request(innocent), request(None))

    run(main())
    assert len(outcomes) == 2 and all(isinstance(o, StorageUnavailable) for o in outcomes)
    assert stored_sids(tmp_path / "gc.db") == set()
    assert not store._db.in_transaction


def test_a_write_from_a_thread_waits_for_the_open_batch_then_runs_on_its_own(
    store: SQLiteStore, tmp_path: Path
) -> None:
    on_loop, in_thread = account(), account()

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        store.put_account(on_loop)
        await asyncio.to_thread(store.put_account, in_thread)
        assert stored_sids(tmp_path / "gc.db") == {on_loop.sid, in_thread.sid}
        await store.settle()  # committed by the loop before the thread wrote

    run(main())


def test_reserve_waits_on_the_loop_while_another_process_holds_the_lock(
    store: SQLiteStore, tmp_path: Path
) -> None:
    other = locked_by_another_process(tmp_path)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        store.start_group_commit(loop)
        tick = asyncio.create_task(ticker())
        loop.call_later(0.15, other.execute, "COMMIT")
        started = loop.time()
        await store.reserve()
        waited = loop.time() - started
        store.put_account(account())
        await store.settle()
        tick.cancel()
        return waited

    waited = run(main())
    other.close()
    assert waited >= 0.14
    assert ticks >= 20  # the loop kept running other work while the request waited


@pytest.fixture
def held_past_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[sqlite3.Connection]:
    """Another process holds the write lock; waits for it give up after 0.2 s."""
    monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT_SECONDS", 0.2)
    other = locked_by_another_process(tmp_path)
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


def test_reserve_gives_up_with_storage_unavailable(
    store: SQLiteStore, held_past_the_timeout: sqlite3.Connection
) -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        store.start_group_commit(loop)
        started = loop.time()
        # The poller and the requests queued behind it: each gives up at its own deadline.
        outcomes = await asyncio.gather(
            *(store.reserve() for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(o, StorageUnavailable) for o in outcomes), outcomes
        return loop.time() - started

    assert run(main()) < 1.0  # not 0.2 s after the one before, each


@pytest.mark.parametrize("other_waits", [True, False])
def test_after_its_commit_a_process_gives_a_waiting_process_its_turn(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, other_waits: bool
) -> None:
    """Worker processes take turns with the write lock: one that has just committed while
    another waits (as that one says through `<db>-waiters`) does not take the lock straight
    back; with nobody waiting it does not pause at all."""
    monkeypatch.setattr(sqlite_module, "YIELD_SECONDS", 0.3)
    other = sqlite_module.Waiters(str(tmp_path / "gc.db") + "-waiters")
    if other_waits:
        other.waiting()  # what a process does when it finds the lock taken

    async def main() -> float:
        loop = asyncio.get_running_loop()
        store.start_group_commit(loop)
        await store.reserve()
        store.put_account(account())
        await store.settle()
        started = loop.time()
        await store.reserve()  # the next batch
        took = loop.time() - started
        store.put_account(account())
        await store.settle()
        return took

    took = run(main())
    other.done()
    other.close()
    if other_waits:
        assert took >= 0.29
    else:
        assert took < 0.2
    assert len(stored_sids(tmp_path / "gc.db")) == 2


def test_two_processes_writing_at_once_both_get_their_writes_in(tmp_path: Path) -> None:
    path = str(tmp_path / "gc.db")
    a, b = SQLiteStore(path), SQLiteStore(path)
    a.migrate()

    async def writes(s: SQLiteStore, n: int) -> None:
        for _ in range(n):
            await write_request(s)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        a.start_group_commit(loop)
        b.start_group_commit(loop)
        await asyncio.wait_for(asyncio.gather(writes(a, 50), writes(b, 50)), timeout=10)
        a.stop_group_commit()
        b.stop_group_commit()

    run(main())
    a.close()
    b.close()
    assert len(stored_sids(tmp_path / "gc.db")) == 100


def test_a_thread_waiting_for_another_process_leaves_the_loop_free(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """Background writes (audit trail, purge, webhooks) wait for a lock held elsewhere
    without holding the connection that the loop's requests read through."""
    other = locked_by_another_process(tmp_path)
    acc = account()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        store.start_group_commit(loop)
        background = asyncio.create_task(asyncio.to_thread(store.put_account, acc))
        await asyncio.sleep(0.05)  # the thread is waiting for the lock
        started = loop.time()
        assert store.get_account(acc.sid) is None  # a read on the loop: not blocked
        read_took = loop.time() - started
        other.execute("COMMIT")
        await background
        return read_took

    read_took = run(main())
    other.close()
    assert read_took < 0.02
    assert acc.sid in stored_sids(tmp_path / "gc.db")


def test_a_background_write_gets_its_turn_while_requests_keep_writing(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """The loop opens no new batch while a thread waits, so background writes (audit
    trail, webhooks, purge) are not starved by a steady stream of requests."""
    background = account()

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        store.start_group_commit(loop)
        stop = loop.time() + 0.5
        done_at = 0.0
        written = 0

        def in_thread() -> None:
            nonlocal done_at
            store.put_account(background)
            done_at = loop.time()

        async def requests() -> None:
            nonlocal written
            while loop.time() < stop:
                store.request_started()
                await store.reserve()
                store.put_account(account())
                written += 1
                await store.settle()
                store.request_finished()

        started = loop.time()
        await asyncio.sleep(0)
        await asyncio.gather(requests(), requests(), asyncio.to_thread(in_thread))
        return done_at - started, written

    took, written = run(main())
    assert took < 0.25, f"the background write waited {took:.3f} s"
    assert written > 10 and len(stored_sids(tmp_path / "gc.db")) == written + 1


def test_a_batch_is_committed_when_old_enough_even_while_requests_keep_working(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """A request still working (it may never write) holds a batch back only so long."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        store.start_group_commit(loop)
        store.request_started()  # a slow request that never waits for the batch
        store.request_started()  # this one
        started = loop.time()
        await store.reserve()
        store.put_account(account())
        await store.settle()
        return loop.time() - started

    took = run(main())
    assert sqlite_module.MAX_BATCH_SECONDS <= took < 0.1
    assert len(stored_sids(tmp_path / "gc.db")) == 1


def test_after_sqlite_aborts_a_batch_nothing_more_is_written_outside_it(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """A full disk makes SQLite roll back the batch's whole transaction: the requests of
    that batch fail, and a later write in it is refused rather than committed on its own."""
    first, later = account(), account()
    outcomes: list[str] = []

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        await store.reserve()
        store.put_account(first)
        pages = store._one("PRAGMA page_count", ())[0]
        store._one(f"PRAGMA max_page_count = {pages}", ())
        # The disk is full: StorageUnavailable (503), not the bare sqlite3 error (a 500).
        with pytest.raises(StorageUnavailable, match="disk is full"), store._write() as db:
            db.execute(
                "INSERT INTO audit_events (account_sid, service_sid, actor, action, resource,"
                " outcome, code, step, request_id, date_created)"
                " VALUES ('AC', 'VA', ?, 'x', 'x', 'ok', 0, '', 'RQ', 1)",
                ("x" * 100_000,),
            )
        # SQLite rolls the whole transaction back on SQLITE_FULL: the case under test.
        assert not store._db.in_transaction
        with pytest.raises(StorageUnavailable):
            store.put_account(later)
        try:
            await store.settle()
            outcomes.append("committed")
        except StorageUnavailable:
            outcomes.append("refused")

    run(main())
    assert outcomes == ["refused"]
    assert stored_sids(tmp_path / "gc.db") == set()
    assert not store._db.in_transaction


def test_a_failed_batch_does_not_leave_a_stale_configuration_cached(tmp_path: Path) -> None:
    """A request that read the failed batch's configuration version must not make the
    cache look current once another process commits that same version number."""
    a, b, acc = two_processes_with_an_account(tmp_path)
    fail_commits_after_orphans(a)

    async def main() -> None:
        a.start_group_commit(asyncio.get_running_loop())
        await a.reserve()
        a.put_account(account())  # a configuration change: version + 1, uncommitted
        a.refresh_config()  # another request reads that version ...
        assert a.get_account(acc.sid).token_hash == acc.token_hash  # ... and caches
        with a._write() as db:
            db.execute("INSERT INTO child VALUES (7)")  # the batch's commit will fail
        with pytest.raises(StorageUnavailable):
            await a.settle()
        a.get_account(acc.sid)  # a request still in flight reads the account again
        a.stop_group_commit()

    run(main())
    b.put_account(dataclasses.replace(acc, token_hash=b"n" * 32))  # commits the same version
    a.refresh_config()
    assert a.get_account(acc.sid).token_hash == b"n" * 32
    a.close()
    b.close()


def test_a_background_write_that_times_out_leaves_no_waiting_count_behind(
    store: SQLiteStore, tmp_path: Path, held_past_the_timeout: sqlite3.Connection
) -> None:
    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        with pytest.raises(StorageUnavailable):
            await asyncio.to_thread(store.put_account, account())
        held_past_the_timeout.execute("ROLLBACK")
        assert store._threads_waiting == 0
        await asyncio.wait_for(store.reserve(), timeout=1)  # not stuck behind a ghost
        store.put_account(account())
        await store.settle()

    run(main())
    assert len(stored_sids(tmp_path / "gc.db")) == 1


def test_a_commit_refused_on_the_thread_path_leaves_no_transaction_open(
    store: SQLiteStore, tmp_path: Path
) -> None:
    fail_commits_after_orphans(store)
    with pytest.raises(sqlite3.IntegrityError), store._write() as db:
        db.execute("INSERT INTO child VALUES (7)")
    assert not store._db.in_transaction
    store.put_account(account())  # the connection still works
    assert len(stored_sids(tmp_path / "gc.db")) == 1


def test_the_configuration_version_is_read_once_per_batch_and_again_after_it(
    tmp_path: Path,
) -> None:
    """While this process holds the write lock no other process can change the
    configuration, so requests of one batch share one read of its version; the next batch
    reads it again and sees what another process committed in between."""
    a, b, acc = two_processes_with_an_account(tmp_path)
    reads: list[str] = []
    a._db.set_trace_callback(lambda sql: sql.startswith("SELECT version") and reads.append(sql))

    async def main() -> None:
        a.start_group_commit(asyncio.get_running_loop())
        await a.reserve()
        for _ in range(3):  # three requests in one batch
            a.refresh_config()
            assert a.get_account(acc.sid).token_hash == acc.token_hash
        assert len(reads) == 1
        await a.settle()
        b.put_account(dataclasses.replace(acc, token_hash=b"n" * 32))  # another process
        a.refresh_config()  # no batch open: read
        assert a.get_account(acc.sid).token_hash == b"n" * 32
        await a.reserve()
        a.refresh_config()  # a new batch: read again
        assert len(reads) == 3
        a.put_account(dataclasses.replace(acc, token_hash=b"m" * 32))  # this process's change
        a.refresh_config()  # forgotten by the change: read again, in the same batch
        assert a.get_account(acc.sid).token_hash == b"m" * 32
        assert len(reads) == 4
        await a.settle()
        a.stop_group_commit()

    run(main())
    a.close()
    b.close()


def test_requests_waiting_for_another_process_go_on_together_once_the_lock_is_free(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """Twenty requests wait for another process's lock; once it commits they all go on,
    within a few milliseconds and in a few batches."""
    other = locked_by_another_process(tmp_path)
    commits: list[str] = []
    store._db.set_trace_callback(lambda sql: sql == "COMMIT" and commits.append(sql))

    async def main() -> float:
        loop = asyncio.get_running_loop()
        store.start_group_commit(loop)
        loop.call_later(0.1, other.execute, "COMMIT")
        await asyncio.gather(*(write_request(store) for _ in range(20)))
        done = time.monotonic()
        store.stop_group_commit()
        return done

    started = time.monotonic()
    finished = run(main())
    other.close()
    assert len(stored_sids(tmp_path / "gc.db")) == 20
    # The lock was taken soon after it was freed (20 writes take a few ms alone; 0.29 s was
    # seen once with other tests running beside the suite; a missed wake-up costs seconds).
    assert finished - started < 0.1 + 0.4
    assert len(commits) <= 3


def test_a_poller_cancelled_while_waiting_stops_asking_for_a_turn(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """Otherwise every other process would keep pausing after each of its commits for a
    waiter that is gone."""
    other = locked_by_another_process(tmp_path)

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        poller = asyncio.create_task(store.reserve())
        await asyncio.sleep(0.02)
        assert store._waiters is not None and store._waiters._waiting  # it asked for a turn
        poller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await poller
        assert not store._waiters._waiting
        store.stop_group_commit()

    try:
        run(main())
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_process_waiting_for_another_s_batch_is_handed_the_lock_without_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker processes hand the write lock on through the gate (`<db>-writer`): one that
    finds it taken waits in flock(), and opens its batch as soon as the holder commits,
    instead of trying BEGIN IMMEDIATE again and again meanwhile."""
    monkeypatch.setattr(sqlite_module, "MAX_BATCH_SECONDS", 0.2)
    path = str(tmp_path / "gc.db")
    a, b = SQLiteStore(path), SQLiteStore(path)
    a.migrate()
    begins: list[str] = []
    b._db.set_trace_callback(lambda sql: sql.startswith("BEGIN") and begins.append(sql))

    async def main() -> float:
        loop = asyncio.get_running_loop()
        a.start_group_commit(loop)
        b.start_group_commit(loop)
        a.request_started()  # a request of `a` still working: its batch stays open 0.2 s
        await a.reserve()
        a.put_account(account())
        opened = loop.time()
        await write_request(b)
        waited = loop.time() - opened
        a.request_finished()
        a.stop_group_commit()
        b.stop_group_commit()
        return waited

    waited = run(main())
    a.close()
    b.close()
    assert 0.19 <= waited < 0.3  # b wrote right after a's batch was committed
    assert len(begins) == 1  # and tried to begin only once, when the gate was its own
    assert len(stored_sids(tmp_path / "gc.db")) == 2


def test_a_failed_commit_lets_the_gate_go(tmp_path: Path) -> None:
    path = str(tmp_path / "gc.db")
    a, b = SQLiteStore(path), SQLiteStore(path)
    a.migrate()
    fail_commits_after_orphans(a)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        a.start_group_commit(loop)
        b.start_group_commit(loop)
        await a.reserve()
        with a._write() as db:
            db.execute("INSERT INTO child VALUES (7)")  # its commit will be refused
        with pytest.raises(StorageUnavailable):
            await a.settle()
        started = loop.time()
        await write_request(b)
        took = loop.time() - started
        a.stop_group_commit()
        b.stop_group_commit()
        return took

    took = run(main())
    a.close()
    b.close()
    assert took < 0.05
    assert len(stored_sids(tmp_path / "gc.db")) == 1


def test_checkpoints_run_in_a_thread_of_their_own_not_in_a_request_s_commit(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """SQLite's automatic checkpoint ran inside the COMMIT of whichever batch crossed its
    threshold, stalling every request of the process for milliseconds. Under the server the
    connection has it off, and the checkpointer copies the WAL back into the database file
    after commits."""
    sids: list[str] = []

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        for _ in range(20):
            acc = account()
            sids.append(acc.sid)
            await store.reserve()
            store.put_account(acc)
            await store.settle()
        checkpointer = store._checkpointer
        assert checkpointer is not None
        # Until one has copied the whole WAL back: one that ran while a request held a
        # snapshot copied part of it, and the file alone is a database only once it has
        # all (a copy of it read as "malformed" in 3 of 80 runs). Nudged as a commit does.
        for _ in range(200):
            last = checkpointer.last
            if last is not None and last[1] == last[2]:
                break
            checkpointer.nudge()
            await asyncio.sleep(0.02)
        assert checkpointer.last is not None and checkpointer.last[2] > 0, checkpointer.last
        assert checkpointer.last[1] == checkpointer.last[2], checkpointer.last
        # (Stopped first: it joins the checkpointer's thread. A copy taken while a later
        # checkpoint wrote the file was torn, "database disk image is malformed", once in CI.)
        store.stop_group_commit()
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
        # The committed rows are in the database file itself, not only in its WAL.
        alone = tmp_path / "alone.db"
        alone.write_bytes((tmp_path / "gc.db").read_bytes())
        copy = sqlite3.connect(alone)
        try:
            assert sids[0] in {r[0] for r in copy.execute("SELECT sid FROM accounts")}
        finally:
            copy.close()

    run(main())


def test_an_error_beginning_a_batch_lets_the_gate_go(tmp_path: Path) -> None:
    """Held with no batch open, the gate would keep every other worker from writing."""
    path = str(tmp_path / "gc.db")
    a, b = SQLiteStore(path), SQLiteStore(path)
    a.migrate()
    real = a._try_begin
    failures = [sqlite3.OperationalError("locking protocol")]

    def begin_failing_once() -> bool:
        if failures:
            raise failures.pop()
        return real()

    a._try_begin = begin_failing_once  # type: ignore[method-assign]

    async def main() -> float:
        loop = asyncio.get_running_loop()
        a.start_group_commit(loop)
        b.start_group_commit(loop)
        with pytest.raises(sqlite3.OperationalError):
            await write_request(a)
        started = loop.time()
        await write_request(b)
        took = loop.time() - started
        await write_request(a)  # and a itself writes again
        a.stop_group_commit()
        b.stop_group_commit()
        return took

    took = run(main())
    a.close()
    b.close()
    assert took < 0.5
    assert len(stored_sids(tmp_path / "gc.db")) == 2


def test_the_wal_starts_over_under_steady_writes(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Background PASSIVE checkpoints alone never let a busy WAL start over (each writer's
    transaction begins with frames not yet copied back), so it grew without end; once it is
    RESTART_FRAMES long, a RESTART checkpoint makes the next writer start it over."""
    monkeypatch.setattr(sqlite_module, "RESTART_FRAMES", 32)
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_INTERVAL_SECONDS", 0.005)

    async def main() -> int:
        store.start_group_commit(asyncio.get_running_loop())

        async def writer() -> None:
            for _ in range(100):
                await write_request(store)

        await asyncio.gather(*(writer() for _ in range(4)))  # a batch always follows a batch
        checkpointer = store._checkpointer
        assert checkpointer is not None and checkpointer.restarts >= 1
        frames: int = store._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        store.stop_group_commit()
        return frames

    frames = run(main())
    assert frames < 400  # 400 commits of 1+ frames each, had it never started over
    assert len(stored_sids(tmp_path / "gc.db")) == 400


def test_a_restart_kept_waiting_by_a_reader_lets_the_gate_go_and_backs_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader holding an old snapshot (a backup, a shell) keeps the WAL from starting over:
    the RESTART gives up after its short wait, lets the write gate go, and is not tried again
    at once (each try keeps writers out for that wait)."""
    import fcntl
    import os

    monkeypatch.setattr(sqlite_module, "RESTART_WAIT_MS", 10)
    path = str(tmp_path / "gc.db")
    store = SQLiteStore(path)
    store.migrate()
    store.put_account(account())
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM accounts").fetchone()  # holds this snapshot
    store.put_account(account())  # WAL frames past the reader's snapshot
    checkpointer = sqlite_module.Checkpointer(path, path + "-writer")
    try:
        checkpointer._restart()
        assert checkpointer.restarts == 0
        assert checkpointer._restart_after > time.monotonic()
        gate = os.open(path + "-writer", os.O_RDWR)
        try:
            fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
            fcntl.flock(gate, fcntl.LOCK_UN)
        finally:
            os.close(gate)
        reader.execute("COMMIT")
        checkpointer._restart()  # backing off: not tried
        assert checkpointer.restarts == 0
        checkpointer._restart_after = 0.0
        checkpointer._restart()
        assert checkpointer.restarts == 1
    finally:
        checkpointer.close()
        reader.close()
        store.close()


def test_a_write_or_read_the_database_refuses_is_storage_unavailable(tmp_path, monkeypatch):
    """Without a server loop (the CLI): a write locked out past the busy timeout, or a read
    the database cannot serve, raised sqlite3's own OperationalError (a traceback, not exit
    6; a 500, not a 503). A statement at fault is not the database's unavailability."""
    from passkeyd.domain.models import PageRequest
    from passkeyd.storage import StorageUnavailable
    from passkeyd.storage import sqlite as sqlite_store
    from tests.storage.test_contract import service

    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_SECONDS", 0.05)
    path = tmp_path / "locked.db"
    store = sqlite_store.SQLiteStore(str(path))
    store.migrate()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageUnavailable, match="refused a write"):
            store.put_account(Account("AC" + "a" * 32, "x", b"h", 0))
        other.execute("ROLLBACK")
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            store._one("SELECT * FROM no_such_table", ())  # the statement's fault: as is
    finally:
        other.close()
        store.close()
    damaged = tmp_path / "damaged.db"
    store = sqlite_store.SQLiteStore(str(damaged))
    store.migrate()
    for _ in range(300):  # a services table of several pages
        store.insert_service(service())
    root = store._one("SELECT rootpage FROM sqlite_master WHERE name = 'services'", ())[0]
    page = store._one("PRAGMA page_size", ())[0]
    store.close()
    with damaged.open("r+b") as file:  # the table's root page overwritten
        file.seek((root - 1) * page)
        file.write(b"\xff" * page)
    store = sqlite_store.SQLiteStore(str(damaged))
    try:
        with pytest.raises(StorageUnavailable, match="malformed"):
            store.list_services("AC" + "1" * 32, PageRequest(page_size=50))
    finally:
        store.close()
    for said in ("database is locked", "disk I/O error", "database or disk is full"):
        found = sqlite_store._unavailable(sqlite3.OperationalError(said))
        assert isinstance(found, StorageUnavailable) and "refused a read" in str(found)
    assert sqlite_store._unavailable(sqlite3.OperationalError("no such column: x")) is None


def test_a_wal_grown_behind_a_reader_is_cut_back(tmp_path, monkeypatch):
    """A reader holding an old snapshot (a backup, a sqlite3 shell) keeps checkpoints from
    resetting the WAL, which grows; it stayed at its largest until passkeyd stopped (an
    operations review saw 111 MB beside an 8.6 MB database)."""
    monkeypatch.setattr(sqlite_module, "JOURNAL_SIZE_LIMIT_BYTES", 256 * 1024, raising=False)
    path = str(tmp_path / "wal.db")
    store = SQLiteStore(path)
    try:
        with store._write() as db:
            db.execute("CREATE TABLE junk (x BLOB)")
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM junk").fetchone()  # holds its snapshot
        for _ in range(40):
            with store._write() as db:
                db.execute("INSERT INTO junk VALUES (randomblob(65536))")
        assert os.path.getsize(path + "-wal") > 2 * 1024 * 1024
        reader.execute("COMMIT")
        reader.close()
        store._db.execute("PRAGMA wal_checkpoint(RESTART)")
        with store._write() as db:  # the next write resets the WAL
            db.execute("INSERT INTO junk VALUES (1)")
        assert os.path.getsize(path + "-wal") <= 256 * 1024
    finally:
        store.close()


def test_a_batch_open_when_the_file_is_replaced_is_not_committed(tmp_path: Path) -> None:
    """The file was checked when a batch began: one begun before a `mv` committed into the
    replaced file after it, and its requests were answered as stored."""
    store = SQLiteStore(str(tmp_path / "gc.db"))
    store.migrate()
    outcomes: list[str] = []

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        await store.reserve()
        store.put_account(account())
        os.replace(tmp_path / "gc.db", tmp_path / "moved.db")
        (tmp_path / "gc.db").write_bytes(b"")  # another file at the path
        try:
            await store.settle()
            outcomes.append("committed")
        except StorageUnavailable:
            outcomes.append("refused")
        store.stop_group_commit()

    try:
        run(main())
    finally:
        store.close()
    assert outcomes == ["refused"]
    assert stored_sids(tmp_path / "moved.db") == set()


def test_a_serving_connection_begins_each_batch_with_one_statement(store: SQLiteStore) -> None:
    """The connection has no busy timeout while it serves, so a batch is BEGIN IMMEDIATE,
    the requests' statements and COMMIT: it used to set the timeout to 0 and back around
    each BEGIN, two statements of 8 to 21 in a flow when requests come one at a time."""
    statements: list[str] = []

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        store._db.set_trace_callback(statements.append)
        for _ in range(3):  # three batches of one request
            await write_request(store)
        store._db.set_trace_callback(None)
        store.stop_group_commit()

    run(main())
    assert sum(s == "BEGIN IMMEDIATE" for s in statements) == 3
    assert not [s for s in statements if "busy_timeout" in s], statements
    # Outside the server (the CLI, migrations) a write waits for the lock again.
    assert store._one("PRAGMA busy_timeout", ())[0] == sqlite_module.BUSY_TIMEOUT_SECONDS * 1000


def test_a_read_locked_out_by_a_wal_index_rebuild_waits_for_it(tmp_path: Path) -> None:
    """The serving connection has no busy timeout. A read is locked out only while another
    connection rebuilds the WAL index, which a process that died halfway through updating
    it leaves behind (here: one of the index header's two copies changed). Such a read is
    made again with the timeout and waits the rebuild's milliseconds, as it did before the
    timeout was lifted, instead of answering 503 (about 17 reads in each rebuild of a
    40 MB WAL, at a read a millisecond)."""
    path = tmp_path / "gc.db"
    store = SQLiteStore(str(path))
    store.migrate()
    store.put_account(acc := account())
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA wal_autocheckpoint = 0")
    other.execute("CREATE TABLE junk (x BLOB)")
    for _ in range(40):  # a WAL of 40 MB, which takes a while to index again
        other.execute("INSERT INTO junk VALUES (randomblob(1000000))")
    refused = 0
    reads = 0

    def rebuild_the_index(done: threading.Event) -> None:
        shm = os.open(f"{path}-shm", os.O_RDWR)
        try:
            # Until a read was locked out: a round where the store's read came first after
            # the tear rebuilt the index itself (1 run in 8 had none in 5 rounds).
            for _ in range(100):
                header = bytearray(os.pread(shm, 4, 8))  # the first copy's change counter
                header[0] ^= 0xFF
                os.pwrite(shm, bytes(header), 8)  # the two copies differ: a torn header
                other.execute("SELECT count(*) FROM junk").fetchone()  # rebuilds the index
                time.sleep(0.02)
                if getattr(store, "reads_waited", 0) >= 3:  # (a store before it: all rounds)
                    break
        finally:
            os.close(shm)
            done.set()

    async def main() -> None:
        nonlocal refused, reads
        store.start_group_commit(asyncio.get_running_loop())
        done = threading.Event()
        rebuilding = threading.Thread(target=rebuild_the_index, args=(done,))
        rebuilding.start()
        while not done.is_set():
            try:
                assert store.read_account(acc.sid) == acc
                reads += 1
            except StorageUnavailable:
                refused += 1
            await asyncio.sleep(0)
        rebuilding.join()
        store.stop_group_commit()

    try:
        run(main())
    finally:
        other.close()
        store.close()
    assert refused == 0, (refused, reads)
    assert store.reads_waited >= 3  # the rebuilds did lock reads out


_FULL_DISK = r"""
import asyncio, os, resource, signal, sqlite3, sys, time
from passkeyd.storage import SQLiteStore, StorageUnavailable
from tests.storage.test_group_commit import write_request

path = sys.argv[1]
SQLiteStore(path).migrate()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
limit = os.path.getsize(path) + 256 * 1024
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
# Another process's writes, never copied back, fill the WAL to the limit: the disk is full.
other = sqlite3.connect(path, isolation_level=None)
other.execute("PRAGMA wal_autocheckpoint = 0")
other.execute("CREATE TABLE scratch (x)")
other.execute("INSERT INTO scratch VALUES (zeroblob(3000))")
try:
    while True:
        other.execute("UPDATE scratch SET x = randomblob(3000)")
except sqlite3.OperationalError as exc:
    print("full:", exc, flush=True)

async def main():
    store = SQLiteStore(path)
    store.start_group_commit(asyncio.get_running_loop())
    refused = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            await write_request(store)
        except StorageUnavailable:
            refused += 1
            await asyncio.sleep(0.05)
            continue
        print(f"written after {refused} refused", flush=True)
        for _ in range(20):  # and it goes on writing
            await write_request(store)
        print("20 more written", flush=True)
        break
    store.stop_group_commit()

asyncio.run(main())
"""


def test_writes_come_back_when_the_wal_holds_the_last_of_a_full_disk(tmp_path: Path) -> None:
    """The WAL keeps the space its frames took: after a full disk, commits kept failing
    until some 16 MiB were free, as only a successful commit led to a checkpoint. A failed
    commit now has the WAL copied back and cut to nothing (TRUNCATE), so what it held
    serves the next commits. (The disk is a file size limit here, RLIMIT_FSIZE.)"""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _FULL_DISK, str(tmp_path / "full.db")],
        capture_output=True, text=True, timeout=60, cwd=root,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3, (r.stdout, r.stderr[-1000:])  # "written" never came: stuck
    assert lines[0].startswith("full: "), r.stdout  # (EFBIG reads as "disk I/O error")
    assert lines[1].startswith("written after ") and int(lines[1].split()[2]) >= 1, r.stdout
    assert lines[2] == "20 more written", r.stdout
    assert r.stderr.count("group commit failed") <= 3, r.stderr  # not one per failure


def _restore_a_backup_under_it(path, tmp_path) -> None:
    """A backup of the database at `path` put in its place (`mv`), under a running store."""
    backup = tmp_path / "backup.db"
    source, target = sqlite3.connect(path), sqlite3.connect(backup)
    source.backup(target)
    source.close()
    target.close()
    os.replace(backup, path)


class _Owned:
    """A lock that says which thread holds it (the checkpointer's `running`, watched)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner: int | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._lock.acquire(blocking, timeout):
            return False
        self.owner = threading.get_ident()
        return True

    def release(self) -> None:
        self.owner = None
        self._lock.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_probe_and_a_background_write_seeing_a_replaced_file_at_once_do_not_deadlock(
    tmp_path: Path,
) -> None:
    """Emptying a replaced file's WAL waits for the checkpointer's `running` lock. A
    background write (audit trail, webhooks) meets the replaced file at its COMMIT holding
    the store's lock, then waits for `running`; /healthz's ping on the loop meets it
    holding neither, and took `running` first, then the store's lock: each waited for the
    other for good, and the event loop with them."""
    path = tmp_path / "gc.db"
    store = SQLiteStore(str(path))
    store.migrate()
    store.put_account(account())
    outcomes: dict[str, str] = {}

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        checkpointer = store._checkpointer
        assert checkpointer is not None
        running = checkpointer.running = _Owned()  # type: ignore[assignment]
        _restore_a_backup_under_it(path, tmp_path)
        holding = threading.Event()
        probing: list[int] = []

        def background_write() -> None:
            try:
                with store._write() as db:
                    db.execute("INSERT INTO accounts SELECT * FROM accounts WHERE 0")
                    holding.set()
                    # until the probe holds `running` (or gave up on a deadlock-free store)
                    for _ in range(200):
                        if probing and running.owner == probing[0]:
                            break
                        time.sleep(0.005)
                outcomes["write"] = "committed"
            except StorageUnavailable:
                outcomes["write"] = "refused"

        def probe() -> None:
            holding.wait(5)
            probing.append(threading.get_ident())
            try:
                store.ping()
                outcomes["probe"] = "ok"
            except StorageUnavailable:
                outcomes["probe"] = "refused"

        threads = [
            threading.Thread(target=background_write, daemon=True),
            threading.Thread(target=probe, daemon=True),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        stuck = [t for t in threads if t.is_alive()]
        assert not stuck, f"deadlocked: {outcomes}"
        store.stop_group_commit()

    try:
        run(main())
    finally:
        if "probe" in outcomes:
            store.close()
    assert outcomes == {"write": "refused", "probe": "refused"}


def test_a_long_checkpoint_keeps_the_emptying_of_a_replaced_file_s_wal_waiting_briefly(
    tmp_path: Path,
) -> None:
    """Emptying a replaced file's WAL waits for the checkpointer's checkpoint in progress,
    on the loop: for as long as that checkpoint took, which is not RESTART_WAIT_MS but
    the copy of the whole WAL behind it (0.23 s for a WAL of 100 MB grown behind a backup's
    reader, more on a slow disk). It waits a moment at most, then tries as before (busy:
    tried again at the next request)."""
    path = tmp_path / "gc.db"
    store = SQLiteStore(str(path))
    store.migrate()
    store.put_account(account())
    took: list[float] = []

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        checkpointer = store._checkpointer
        assert checkpointer is not None
        _restore_a_backup_under_it(path, tmp_path)
        held, release = threading.Event(), threading.Event()

        def a_long_checkpoint() -> None:
            with checkpointer.running:
                held.set()
                release.wait(3)

        thread = threading.Thread(target=a_long_checkpoint, daemon=True)
        thread.start()
        held.wait(5)
        try:
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                store.ping()
            took.append(time.monotonic() - started)
        finally:
            release.set()
            thread.join(5)
        with pytest.raises(StorageUnavailable):
            store.ping()  # the checkpoint over: emptied now
        assert os.path.getsize(f"{path}-wal") == 0
        store.stop_group_commit()

    try:
        run(main())
    finally:
        store.close()
    assert took[0] < 0.5, took
