"""A throwaway PostgreSQL schema per test run (these machines run PostgreSQL on loopback)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg

ADMIN_URL = os.environ.get(
    "PASSKEYD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextmanager
def temporary_schema() -> Iterator[str]:
    """Yield a database URL whose search_path is a new schema; drop the schema after."""
    schema = "pk_test_" + secrets.token_hex(6)
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in ADMIN_URL else "?"
        yield f"{ADMIN_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
