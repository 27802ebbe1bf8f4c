"""Persistence behind a small interface; the only package that speaks SQL."""

from __future__ import annotations

from .base import ApproveOutcome, CredentialConflict, Store
from .sqlite import SQLiteStore


def open_store(url: str) -> Store:
    """A store for `sqlite:///path` (or `sqlite:///:memory:`)."""
    if url.startswith("sqlite:///"):
        return SQLiteStore(url[len("sqlite:///") :])
    if url.startswith("sqlite://"):
        return SQLiteStore(url[len("sqlite://") :] or ":memory:")
    raise ValueError("database URL must start with sqlite:///")


__all__ = ["ApproveOutcome", "CredentialConflict", "SQLiteStore", "Store", "open_store"]
