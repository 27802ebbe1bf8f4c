"""Rate-limit windows in process memory: the same counts as the rate_limits table, kept only
with the write that counted them, and chosen only where one process serves the database."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from passkeyd.domain.models import RateHit
from passkeyd.settings import Settings, SettingsError
from passkeyd.storage import InsertOutcome, SQLiteStore
from passkeyd.storage.windows import SWEEP_AT, RateWindows
from tests.storage.test_contract import NOW, challenge, entity, service, stored


def test_hits_count_per_key_and_window() -> None:
    windows = RateWindows(60)
    a, b = RateHit("challenge:VA1:user-a", NOW, 5), RateHit("challenge:VA1:user-b", NOW, 5)
    assert windows.hit(a) == 1
    assert windows.hit(a) == 2  # a second hit of the same write sees the first
    assert windows.count(a.key, NOW) == 0  # not kept until the write is
    windows.commit()
    assert windows.count(a.key, NOW) == 2
    assert windows.hit(b) == 1
    windows.commit()
    assert (windows.count(a.key, NOW), windows.count(b.key, NOW)) == (2, 1)
    assert windows.count(a.key, NOW + 60) == 0  # the next window starts afresh
    assert windows.hit(RateHit(a.key, NOW + 60, 5)) == 1
    windows.commit()
    assert (windows.count(a.key, NOW), windows.count(a.key, NOW + 60)) == (0, 1)


def test_a_write_that_rolls_back_takes_its_hits_with_it(tmp_path: Path) -> None:
    windows = RateWindows(60)
    store = SQLiteStore(str(tmp_path / "w.db"), windows=windows)
    store.migrate()
    svc = service()
    store.insert_service(svc)
    ent = stored(store, entity(svc))
    hit = RateHit(f"challenge:{svc.sid}:{ent.identity}", NOW, 2)
    # Refused for too many pending challenges: the insert and its hit roll back together.
    refused = store.insert_challenge(challenge(ent, svc), rate=hit, max_pending=0)
    assert refused is InsertOutcome.TOO_MANY_PENDING
    assert store.rate_limit_count(hit.key, NOW) == 0
    for _ in range(2):
        assert store.insert_challenge(challenge(ent, svc), rate=hit) is InsertOutcome.INSERTED
    assert store.rate_limit_count(hit.key, NOW) == 2
    assert store.insert_challenge(challenge(ent, svc), rate=hit) is InsertOutcome.RATE_LIMITED
    assert store.rate_limit_count(hit.key, NOW) == 2  # a refused hit is not counted
    with pytest.raises(RuntimeError), store._write() as tx:
        store._count_hit(tx, RateHit("approve:x", NOW, 9))
        raise RuntimeError("the write fails after counting")
    assert store.rate_limit_count("approve:x", NOW) == 0
    store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "w.db")) as db:
        rows = db.execute("SELECT count(*) FROM rate_limits").fetchone()
    assert rows[0] == 0  # nothing went to the table


def test_ended_windows_are_swept_so_memory_stays_bounded() -> None:
    windows = RateWindows(60)
    for i in range(SWEEP_AT - 1):
        windows.hit(RateHit(f"challenge:VA1:old-{i}", NOW, 5))
    windows.commit()
    assert len(windows) == SWEEP_AT - 1
    windows.hit(RateHit("challenge:VA1:new", NOW + 120, 5))  # two windows later
    windows.commit()
    assert len(windows) == 1
    assert windows.count("challenge:VA1:new", NOW + 120) == 1
    for i in range(SWEEP_AT):  # live windows are kept, however many
        windows.hit(RateHit(f"challenge:VA1:live-{i}", NOW + 120, 5))
    windows.commit()
    assert len(windows) == SWEEP_AT + 1


@pytest.mark.parametrize(
    ("env", "in_memory"),
    [
        ({}, True),  # the embedded default, one worker
        ({"PASSKEYD_WORKERS": "2"}, False),  # several processes share the table
        ({"PASSKEYD_RATE_LIMIT_STORE": "database"}, False),
        ({"PASSKEYD_RATE_LIMIT_STORE": "memory"}, True),
        ({"PASSKEYD_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test"}, False),
    ],
)
def test_the_windows_live_in_memory_only_where_one_process_serves(env, in_memory) -> None:
    assert Settings.from_env(env).rate_limits_in_memory() is in_memory


@pytest.mark.parametrize(
    "env",
    [
        {"PASSKEYD_RATE_LIMIT_STORE": "redis"},
        {"PASSKEYD_RATE_LIMIT_STORE": "memory", "PASSKEYD_WORKERS": "2"},  # would count apart
        {
            "PASSKEYD_RATE_LIMIT_STORE": "memory",
            "PASSKEYD_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
        },
    ],
)
def test_a_rate_limit_store_that_cannot_work_is_refused(env) -> None:
    with pytest.raises(SettingsError, match="PASSKEYD_RATE_LIMIT_STORE"):
        Settings.from_env(env)


def test_a_serving_process_on_sqlite_counts_in_memory(tmp_path: Path) -> None:
    from passkeyd import cli

    url = f"sqlite:///{tmp_path}/serve.db"
    alone = cli._domain(Settings.from_env({"PASSKEYD_DATABASE_URL": url}), migrate=True)
    shared = cli._domain(
        Settings.from_env({"PASSKEYD_DATABASE_URL": url, "PASSKEYD_WORKERS": "2"}), migrate=True
    )
    try:
        assert isinstance(alone.store, SQLiteStore) and alone.store.windows is not None
        assert isinstance(shared.store, SQLiteStore) and shared.store.windows is None
    finally:
        alone.store.close()
        shared.store.close()


def test_hits_of_a_group_commit_that_fails_are_dropped_with_it(tmp_path: Path) -> None:
    """Inside a batch a released hit counts for the batch's other requests, and it is kept
    only if the batch commits, as a row of the rate_limits table would be."""
    import asyncio

    from passkeyd.storage import StorageUnavailable
    from tests.aio import run
    from tests.storage.test_group_commit import fail_commits_after_orphans

    windows = RateWindows(60)
    store = SQLiteStore(str(tmp_path / "w.db"), windows=windows)
    store.migrate()
    hit = RateHit("challenge:VA1:user-0001", NOW, 5)

    async def batch(fail: bool) -> None:
        await store.reserve()
        with store._write() as tx:
            assert store._count_hit(tx, hit) == windows.count(hit.key, NOW) + 1
        assert windows.count(hit.key, NOW) >= 1  # staged: seen by the batch's others
        if fail:
            with store._write() as tx:
                tx.execute("INSERT INTO child VALUES (7)")  # the batch's commit will fail
        await store.settle()

    async def main() -> None:
        store.start_group_commit(asyncio.get_running_loop())
        await batch(fail=False)
        assert windows.count(hit.key, NOW) == 1
        fail_commits_after_orphans(store)
        with pytest.raises(StorageUnavailable):
            await batch(fail=True)
        assert windows.count(hit.key, NOW) == 1  # the failed batch's hit is gone
        store.stop_group_commit()

    run(main())
    store.close()


def test_a_window_dated_by_a_clock_since_stepped_back_is_replaced():
    """The wall clock stepped forward (an hour, a year) and back: the window it dated
    stayed the key's, and every hit of the real present counted alone (a hit of a window
    that ended), so the key had no limit until the clock caught up. It is replaced now."""
    key = "challenge:VA1:user-0001"
    for ahead in (3600, 365 * 86400):
        assert _hits_after_a_step_back(RateWindows(longest_window=60), key, ahead) == [1, 2, 3]
    windows = RateWindows(longest_window=60)
    # A window one ahead is a clock a little behind (a replica's, a boundary): not replaced.
    windows.hit(RateHit(key, NOW + 60, 2, 60))
    windows.commit()
    assert windows.hit(RateHit(key, NOW, 2, 60)) == 1
    windows.commit()
    assert windows.count(key, NOW + 60) == 1


def test_a_shorter_rules_window_is_replaced_by_its_own_window_as_in_the_table():
    """A window is stale when it starts more than the hit's own rule window ahead of it
    (`RateHit.stale_after`, as the rate_limits table has it), not more than the longest
    rule's: with `failed_auth=50/3600` beside the 60 s rules, a clock stepped back by ten
    minutes left a 60 s rule's key unlimited on SQLite (each hit counting alone) for up to
    an hour, while PostgreSQL's table replaced the window and went on limiting."""
    windows = RateWindows(longest_window=3600)
    key = "usernameless:VA1"
    assert _hits_after_a_step_back(windows, key, 600) == [1, 2, 3]
    assert windows.count(key, NOW + 600) == 0


def _hits_after_a_step_back(windows: RateWindows, key: str, ahead: int) -> list[int]:
    """The counts of three hits (a 60 s rule, a limit of 2) of the present, after one
    dated `ahead` seconds later by a clock since stepped back: [1, 2, 3] when that window
    is replaced (the third is over the limit)."""
    assert windows.hit(RateHit(key, NOW + ahead, 2, 60)) == 1
    windows.commit()
    counts = []
    for _ in range(3):
        counts.append(windows.hit(RateHit(key, NOW, 2, 60)))
        windows.commit()
    return counts
