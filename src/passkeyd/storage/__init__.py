"""Persistence behind a small interface; the only package that speaks SQL."""

from __future__ import annotations

from passkeyd.domain.store import (
    ApproveOutcome,
    CredentialConflict,
    FailureOutcome,
    InsertOutcome,
    NotCached,
    StorageUnavailable,
    Store,
)

from .sqlite import SQLiteStore


def open_store(
    url: str,
    *,
    pool_size: int = 10,
    sqlite_synchronous: str = "NORMAL",
    sqlite_cache_mb: int = 64,
    connect_timeout: float = 10.0,
) -> Store:
    """A store for `sqlite:///path`, `sqlite:///:memory:` or `postgresql://...`."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore  # psycopg is only needed on PostgreSQL

        return PostgresStore(url, pool_size=pool_size, connect_timeout=connect_timeout)
    if url.startswith("sqlite:///"):
        return SQLiteStore(
            url[len("sqlite:///") :], synchronous=sqlite_synchronous, cache_mb=sqlite_cache_mb
        )
    raise ValueError("the database URL must start with sqlite:/// or postgresql://")


def is_embedded(url: str) -> bool:
    return url.startswith("sqlite:")


__all__ = [
    "ApproveOutcome",
    "CredentialConflict",
    "FailureOutcome",
    "InsertOutcome",
    "NotCached",
    "SQLiteStore",
    "StorageUnavailable",
    "Store",
    "is_embedded",
    "open_store",
]
