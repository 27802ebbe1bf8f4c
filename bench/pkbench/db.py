"""Databases under passkeyd: a fresh one per server, and bulk seeding for the scale runs.

Seeding clones a real factor (and its entity) that passkeyd itself wrote through the API,
column by column, changing only what must be unique: sids, identity, credential id and
registration challenge. So seeded rows match the schema of whatever passkeyd version runs,
without this module knowing its columns. One service; random credential ids; one
transaction with executemany (SQLite) or COPY (PostgreSQL).

`--database-url sqlite:///DIR/...` (or just `sqlite`) uses files in a temporary directory;
`--database-url postgresql://HOST:PORT/DB` creates, and drops afterwards, one database per
server next to DB (it never touches DB itself).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

BATCH = 50_000
# Columns that must differ from the template row, per table.
ENTITY_VARY = ("sid", "identity")
FACTOR_VARY = ("sid", "entity_sid", "identity", "credential_id", "registration_challenge")


@dataclass(frozen=True)
class SeedResult:
    rows: int
    seconds: float
    size_bytes: int


class Database(Protocol):
    kind: str

    def fresh(self, tag: str) -> str:
        """The URL of a new, empty database for one server run."""
        ...

    def before_serve(self, url: str, env: dict[str, str]) -> None:
        """Whatever `passkeyd serve` needs done first (migrations on a shared database)."""
        ...

    def seed(self, url: str, count: int) -> SeedResult: ...
    def cleanup(self) -> None: ...

    def server_pids(self) -> list[int]:
        """The processes of a database server apart from passkeyd, whose CPU a flow costs
        too (none for SQLite, which runs inside passkeyd)."""
        ...

    def reachable(self) -> str | None:
        """Why the database cannot be used, or None."""
        ...


def _rows(
    count: int, columns: Sequence[str], template: Sequence[Any], vary: dict[str, Any]
) -> Iterator[tuple[Any, ...]]:
    """`count` copies of `template` with the `vary` columns from per-row generators."""
    positions = [(columns.index(c), gen) for c, gen in vary.items()]
    base = list(template)
    for i in range(count):
        row = base.copy()
        for pos, gen in positions:
            row[pos] = gen(i)
        yield tuple(row)


class SeedRows:
    """Per-row values for seeded entity i and its factor (shared by SQLite and PostgreSQL).

    Every unique column gets random values, sorted, so that row i holds the i-th smallest:
    the values are as random as any, but each index is built by appending, not by random
    inserts (1M rows in seconds rather than minutes). Pages end up fuller than after
    organic growth, which makes lookups, if anything, slightly cheaper.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._entity_sids = sorted(f"YE{os.urandom(16).hex()}" for _ in range(count))
        self._factor_sids = sorted(f"YF{os.urandom(16).hex()}" for _ in range(count))
        self._credential_ids = sorted(os.urandom(32) for _ in range(count))
        self._challenges = sorted(os.urandom(32) for _ in range(count))

    def entity_vary(self) -> dict[str, Any]:
        return {"sid": self._entity_sids.__getitem__, "identity": "seeded-user-{:08d}".format}

    def factor_vary(self) -> dict[str, Any]:
        return {
            "sid": self._factor_sids.__getitem__,
            "entity_sid": self._entity_sids.__getitem__,
            "identity": "seeded-user-{:08d}".format,
            "credential_id": self._credential_ids.__getitem__,
            "registration_challenge": self._challenges.__getitem__,
        }


class SQLiteDatabase:
    kind = "sqlite"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="passkeyd-bench-"))

    def fresh(self, tag: str) -> str:
        path = self.dir / f"{tag}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"

    def before_serve(self, url: str, env: dict[str, str]) -> None:
        return None  # `passkeyd serve` migrates its embedded database itself

    def server_pids(self) -> list[int]:
        return []

    def reachable(self) -> str | None:
        return None  # a file in a temporary directory

    def seed(self, url: str, count: int) -> SeedResult:
        path = url[len("sqlite:///") :]
        started = time.perf_counter()
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout = 10000")
            db.execute("PRAGMA synchronous = OFF")
            db.execute("PRAGMA journal_mode = OFF")  # passkeyd is stopped; it sets WAL again
            db.execute("PRAGMA cache_size = -1000000")  # 1 GB: random index inserts stay cheap
            columns_e = [r[1] for r in db.execute("PRAGMA table_info(entities)")]
            columns_f = [r[1] for r in db.execute("PRAGMA table_info(factors)")]
            factor = db.execute(
                "SELECT * FROM factors WHERE status = 'verified' ORDER BY seq LIMIT 1"
            ).fetchone()
            if factor is None:
                raise RuntimeError("seeding needs one verified factor to copy")
            entity = db.execute(
                "SELECT * FROM entities WHERE sid = ?", (factor[columns_f.index("entity_sid")],)
            ).fetchone()
            plan = SeedRows(count)
            db.execute("BEGIN")
            _insert(db, "entities", columns_e, entity, plan.entity_vary(), count)
            _insert(db, "factors", columns_f, factor, plan.factor_vary(), count)
            db.execute("COMMIT")
            db.execute("PRAGMA journal_mode = WAL")
        finally:
            db.close()
        size = sum(
            Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists()
        )
        return SeedResult(count, time.perf_counter() - started, size)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _insert(
    db: sqlite3.Connection,
    table: str,
    columns: list[str],
    template: Sequence[Any],
    vary: dict[str, Any],
    count: int,
) -> None:
    keep = [c for c in columns if c != "seq"]  # INTEGER PRIMARY KEY: let SQLite number rows
    picked = [columns.index(c) for c in keep]
    sql = f"INSERT INTO {table} ({', '.join(keep)}) VALUES ({', '.join('?' * len(keep))})"
    rows = _rows(count, columns, template, vary)
    db.executemany(sql, (tuple(r[p] for p in picked) for r in rows))


class PostgresDatabase:
    """One database per server run, created next to the one named in the URL (needs psycopg
    and a role allowed to CREATE DATABASE)."""

    kind = "postgresql"

    def __init__(self, url: str) -> None:
        self.admin_url = url
        self.created: list[str] = []

    def _connect(self, url: str) -> Any:
        import psycopg  # only the PostgreSQL variant needs it

        return psycopg.connect(url, autocommit=True)

    def fresh(self, tag: str) -> str:
        name = f"passkeyd_bench_{tag}".replace("-", "_")
        with self._connect(self.admin_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def before_serve(self, url: str, env: dict[str, str]) -> None:
        subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, "-m", "passkeyd.cli", "migrate", "--database-url", url],
            env={**os.environ, **env},
            check=True,
            capture_output=True,
            timeout=120,
        )

    def seed(self, url: str, count: int) -> SeedResult:
        started = time.perf_counter()
        plan = SeedRows(count)
        with self._connect(url) as conn:
            cur = conn.execute(
                "SELECT * FROM factors WHERE status = 'verified' ORDER BY seq LIMIT 1"
            )
            factor = cur.fetchone()
            columns_f = [d.name for d in cur.description]
            cur = conn.execute(
                "SELECT * FROM entities WHERE sid = %s",
                (factor[columns_f.index("entity_sid")],),
            )
            entity = cur.fetchone()
            columns_e = [d.name for d in cur.description]
            with conn.transaction():
                for table, columns, template, vary in (
                    ("entities", columns_e, entity, plan.entity_vary()),
                    ("factors", columns_f, factor, plan.factor_vary()),
                ):
                    keep = [c for c in columns if c != "seq"]
                    picked = [columns.index(c) for c in keep]
                    with conn.cursor().copy(f"COPY {table} ({', '.join(keep)}) FROM STDIN") as copy:
                        for row in _rows(count, columns, template, vary):
                            copy.write_row([row[p] for p in picked])
            conn.execute("ANALYZE")
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        return SeedResult(count, time.perf_counter() - started, int(size))

    def server_pids(self) -> list[int]:
        """The PostgreSQL server's processes that work for passkeyd: the backends connected
        to the benchmark's databases, and the server's own (WAL writer, checkpointer and the
        rest), which do a commit's work too; not other clients' backends. (Readable in /proc
        when the benchmark runs as root or as the server's user; otherwise their CPU shows
        in `other`.)"""
        with self._connect(self.admin_url) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                " AND (backend_type <> 'client backend' OR datname LIKE 'passkeyd\\_bench\\_%')"
            ).fetchall()
        return [pid for (pid,) in rows]

    def reachable(self) -> str | None:
        """Why the server cannot be used (no psycopg, not running, refused), or None."""
        try:
            with self._connect(self.admin_url) as conn:
                conn.execute("SELECT 1")
        except Exception as exc:  # ImportError, OperationalError: all mean "skip it"
            return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
        return None

    def cleanup(self) -> None:
        with self._connect(self.admin_url) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


def database_for(url: str) -> Database:
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    if url in ("sqlite", "") or url.startswith("sqlite:"):
        return SQLiteDatabase()
    raise ValueError("--database-url must be sqlite or postgresql://...")
