"""The SQLite file deleted or replaced under a running passkeyd: it used to go on writing to
the file it had open, which nobody opens again, answering 200 for every change while the
next start lost them all (and /healthz said 200)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3

import pytest


def _backed_up(db_path, tmp_path):
    """A copy made with SQLite's online backup, as `sqlite3 passkeyd.db .backup` makes it."""
    backup = tmp_path / "backup.db"
    source, target = sqlite3.connect(db_path), sqlite3.connect(backup)
    source.backup(target)
    source.close()
    target.close()
    return backup


def _files(db_path):
    return [p for p in (f"{db_path}", f"{db_path}-wal", f"{db_path}-shm") if os.path.exists(p)]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_writes_are_refused_once_the_database_file_is_gone(api, db_path, tmp_path, how, caplog):
    api.create_service()
    api.register("user-0001")
    if how == "deleted":
        for path in _files(db_path):
            os.remove(path)
    else:  # a backup put back with mv while passkeyd runs
        os.replace(_backed_up(db_path, tmp_path), db_path)
        copy = tmp_path / "as-replaced.db"
        shutil.copy(db_path, copy)

    r = api.post_form("/v2/Services", {"FriendlyName": "after"})
    assert (r.status_code, r.json()["code"]) == (503, 20503), r.text
    assert "deleted or replaced" in caplog.text
    assert api.client.get("/healthz").status_code == 503
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"identity": "user-0001"})
    assert r.status_code == 503, r.text
    if how == "replaced":  # and nothing went into the file now at the path
        assert db_path.read_bytes() == copy.read_bytes()


def test_the_database_file_in_place_is_written(api, db_path):
    """The check does not refuse a file that is where it was (its inode unchanged)."""
    api.create_service()
    os.utime(db_path)
    assert api.post_form("/v2/Services", {"FriendlyName": "again"}).status_code == 201
    assert api.client.get("/healthz").status_code == 200


def test_a_database_that_refuses_writes_is_a_503_not_a_500(api, domain):
    """A read-only file (its mode, a read-only mount), as `PRAGMA query_only` makes it: the
    write's error ("attempt to write a readonly database") was a 500 20500."""
    api.create_service()
    api.register("user-0001")
    domain.store._db.execute("PRAGMA query_only = ON")
    try:
        before = api.snapshot()
        r = api.post_form("/v2/Services", {"FriendlyName": "refused"})
        assert (r.status_code, r.json()["code"]) == (503, 20503), r.text
        r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"identity": "user-0001"})
        assert (r.status_code, r.json()["code"]) == (503, 20503), r.text
        assert api.get(api.svc).status_code == 200  # reads go on
        assert api.snapshot() == before
    finally:
        domain.store._db.execute("PRAGMA query_only = OFF")
    assert api.post_form("/v2/Services", {"FriendlyName": "again"}).status_code == 201


def test_a_503_says_when_to_try_again(api, domain):
    """An unavailable database is answered 503 with a Retry-After, as a 429 is: it had
    none, so a client could not tell a pause to wait out from a failure."""
    api.create_service()
    domain.store._db.execute("PRAGMA query_only = ON")
    try:
        r = api.post_form("/v2/Services", {"FriendlyName": "refused"})
    finally:
        domain.store._db.execute("PRAGMA query_only = OFF")
    assert (r.status_code, r.json()["code"]) == (503, 20503), r.text
    assert r.headers["Retry-After"] == "1"


def test_a_database_restored_under_a_running_passkeyd_is_intact_at_the_next_start(
    api, db_path, tmp_path
):
    """The old file's -wal, left at the path beside the restored one, was replayed onto it
    at the next start: "database disk image is malformed", or rows that were never in the
    backup. passkeyd empties it into the old file when it sees the swap."""
    api.create_service()
    api.register("user-0001")
    backup = _backed_up(db_path, tmp_path)
    with contextlib.closing(sqlite3.connect(backup)) as copy:
        expected = copy.execute("SELECT count(*) FROM factors").fetchone()[0]
    for i in range(2, 6):  # written after the backup: in the -wal
        api.register(f"user-000{i}")
    os.replace(backup, db_path)
    assert api.post_form("/v2/Services", {"FriendlyName": "after"}).status_code == 503
    assert os.path.getsize(f"{db_path}-wal") == 0
    restored = sqlite3.connect(db_path)  # as the next start opens it
    try:
        assert restored.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert restored.execute("SELECT count(*) FROM factors").fetchone()[0] == expected
    finally:
        restored.close()


@pytest.mark.parametrize("suffixes", [("-wal", "-shm"), ("-shm",)])
def test_a_deleted_wal_or_shm_is_seen_too(api, db_path, suffixes):
    """`rm passkeyd.db-wal passkeyd.db-shm`: writes went on into the deleted WAL, answered
    201, and were lost when passkeyd stopped; `rm passkeyd.db-shm` alone left this process
    and the others (a CLI, another worker) each a wal-index of its own."""
    api.create_service()
    api.register("user-0001")
    for suffix in suffixes:
        os.remove(f"{db_path}{suffix}")
    r = api.post_form("/v2/Services", {"FriendlyName": "after"})
    assert (r.status_code, r.json()["code"]) == (503, 20503), r.text
    assert api.client.get("/healthz").status_code == 503


def test_a_failure_every_request_meets_logs_its_traceback_once_a_while(
    api, db_path, caplog, monkeypatch
):
    """Each refused request logged a whole traceback: 2,346 error lines (4.7 MB) in 4 s, on
    the disk that may be the full one; then a line each (10,982 in 35 s of a full disk).
    Now the traceback every 10 s, and a line at most every second, saying how many it held
    back (the access log has each request's 503)."""
    import time

    from passkeyd import logs
    from passkeyd.api import edge

    # (as at start-up: not spent by an earlier test's failures)
    monkeypatch.setattr(edge, "_TRACEBACK_NOW", logs.Every(10.0))
    monkeypatch.setattr(edge, "_UNAVAILABLE_LINE", logs.Throttle(1.0))
    api.create_service()
    os.remove(db_path)
    for _ in range(20):
        assert api.post_form("/v2/Services", {"FriendlyName": "x"}).status_code == 503
    refused = [r for r in caplog.records if r.getMessage().startswith("storage unavailable")]
    assert 1 <= len(refused) <= 2
    assert len([r for r in refused if r.exc_info]) <= 1
    time.sleep(1.1)
    assert api.post_form("/v2/Services", {"FriendlyName": "x"}).status_code == 503
    last = [r for r in caplog.records if r.getMessage().startswith("storage unavailable")][-1]
    assert re.search(r"\((1[89]|20) more since\)$", last.getMessage()), last.getMessage()


def test_an_old_wal_a_reader_holds_is_emptied_once_it_lets_go(api, db_path, tmp_path, caplog):
    """A reader holding a snapshot made the emptying busy, and it failed without a word."""
    api.create_service()
    api.register("user-0001")
    backup = _backed_up(db_path, tmp_path)
    api.register("user-0002")
    reader = sqlite3.connect(db_path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM factors").fetchone()
    os.replace(backup, db_path)
    assert api.post_form("/v2/Services", {"FriendlyName": "after"}).status_code == 503
    assert "cannot be emptied yet" in caplog.text
    assert os.path.getsize(f"{db_path}-wal") > 0
    reader.execute("COMMIT")
    reader.close()
    assert api.client.get("/healthz").status_code == 503  # tried again: now emptied
    assert os.path.getsize(f"{db_path}-wal") == 0


def test_a_new_database_file_and_its_wal_are_readable_by_their_owner_only(api, db_path):
    """Every account's identities, token hashes and sealed tokens: they were made 0644
    under the usual umask, beside a key file made 0600."""
    api.create_service()
    api.register("user-0001")
    modes = {path: os.stat(path).st_mode & 0o777 for path in _files(db_path)}
    assert len(modes) == 3 and set(modes.values()) == {0o600}, modes


def test_a_database_file_that_exists_keeps_its_mode(tmp_path):
    from passkeyd.storage import SQLiteStore

    path = tmp_path / "shared.db"
    sqlite3.connect(path).close()
    os.chmod(path, 0o640)  # an operator's choice, e.g. for a backup job's group
    SQLiteStore(str(path)).close()
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_readyz_is_not_ready_while_healthz_says_the_database_file_is_gone(api, db_path):
    # /readyz "also checks" the schema (README): it checks what /healthz checks first. It
    # read the schema from the file it had open, and said 200 "ready" while /healthz and
    # every write answered 503.
    api.create_service()
    for path in _files(db_path):
        os.remove(path)
    assert api.client.get("/healthz").status_code == 503
    r = api.client.get("/readyz")
    assert (r.status_code, r.json()) == (503, {"status": "unavailable", "reason": "database"})


def test_a_file_that_is_no_database_is_refused_and_its_connection_closed(tmp_path, monkeypatch):
    """The connection opened on a file that is no database (its first PRAGMA refused) was
    left to the garbage collector: a descriptor held meanwhile, and on Python 3.13 a
    ResourceWarning ("unclosed database")."""
    from passkeyd.domain.store import StorageUnavailable
    from passkeyd.storage import SQLiteStore

    path = tmp_path / "text.db"
    path.write_bytes(b"not a database, " * 64)
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def recorded(*args, **kwargs):
        opened.append(connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(sqlite3, "connect", recorded)
    with pytest.raises(StorageUnavailable, match="file is not a database"):
        SQLiteStore(str(path))
    assert len(opened) == 1
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        opened[0].execute("SELECT 1")
