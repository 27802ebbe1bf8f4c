"""PostgreSQL backend: for many stateless passkeyd processes on one shared database.

psycopg 3 with a connection pool. Queries run in worker threads (`runs_in_threads`), so
a round trip to the server does not stall the event loop. Exactly-once holds because the
ceremony-finishing UPDATEs are conditional: under READ COMMITTED a second transaction
waits on the row lock, re-reads the row, and finds it no longer pending.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg_pool import ConnectionPool

from .base import StorageUnavailable
from .sql import SqlStore, Tx

_MIGRATION_LOCK = 0x7061_7373  # "pass": one advisory lock id for `passkeyd migrate`
_CLAIM_LOCK = 0x686F_6F6B  # "hook": webhook claims, one at a time


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """Our SQL uses `?` placeholders; psycopg wants `%s` (and a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(_pg(sql), args or None)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_pg(sql), rows)  # pipelined: one round trip


class PostgresStore(SqlStore):
    dialect = "postgres"
    runs_in_threads = True
    integrity_errors = (psycopg.errors.IntegrityError,)

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout: float = 10.0) -> None:
        self.concurrency = pool_size
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            timeout=connect_timeout,
            open=False,
            name="passkeyd",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL within {connect_timeout:g} s"
            ) from exc

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        with self._pool.connection() as conn, conn.transaction():
            yield _PgTx(conn)

    def _lock_migrations(self, tx: Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    def _lock_claims(self, tx: Tx) -> None:
        # Under READ COMMITTED the claim's UPDATE then reads after every earlier claim has
        # committed, so "one out per webhook" and the per-account cap hold across replicas
        # even when their clocks or their `now` differ.
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_CLAIM_LOCK,))

    def _one(self, sql: str, args: Sequence[Any]) -> Any:
        with self._pool.connection() as conn:
            return conn.execute(_pg(sql), args or None).fetchone()

    def _all(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with self._pool.connection() as conn:
            return conn.execute(_pg(sql), args or None).fetchall()

    def close(self) -> None:
        self._pool.close()
