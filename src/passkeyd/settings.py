"""Process settings: read once at start-up, validated, with errors that name the setting."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///./passkeyd.db"


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = DEFAULT_DATABASE_URL
    workers: int = 1
    account_sid: str | None = None
    auth_token: str | None = None
    log_level: str = "info"
    db_pool_size: int = 10
    challenge_retention_seconds: int = 7 * 24 * 3600
    purge_interval_seconds: int = 300
    sqlite_synchronous: str = "NORMAL"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        def number(name: str, default: int, low: int, high: int) -> int:
            text = env.get(name)
            if text is None or text == "":
                return default
            try:
                value = int(text)
            except ValueError as exc:
                raise SettingsError(f"{name} must be an integer, got {text!r}") from exc
            if not low <= value <= high:
                raise SettingsError(f"{name} must be from {low} to {high}, got {value}")
            return value

        settings = cls(
            host=env.get("PASSKEYD_HOST") or cls.host,
            port=number("PASSKEYD_PORT", cls.port, 0, 65535),
            database_url=env.get("PASSKEYD_DATABASE_URL") or DEFAULT_DATABASE_URL,
            workers=number("PASSKEYD_WORKERS", 1, 1, 64),
            account_sid=env.get("PASSKEYD_ACCOUNT_SID") or None,
            auth_token=env.get("PASSKEYD_AUTH_TOKEN") or None,
            log_level=(env.get("PASSKEYD_LOG_LEVEL") or "info").lower(),
            db_pool_size=number("PASSKEYD_DB_POOL_SIZE", 10, 1, 1000),
            challenge_retention_seconds=number(
                "PASSKEYD_CHALLENGE_RETENTION_SECONDS", cls.challenge_retention_seconds, 0, 10**9
            ),
            purge_interval_seconds=number(
                "PASSKEYD_PURGE_INTERVAL_SECONDS", cls.purge_interval_seconds, 1, 86400
            ),
            sqlite_synchronous=(env.get("PASSKEYD_SQLITE_SYNCHRONOUS") or "NORMAL").upper(),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise SettingsError(
                "PASSKEYD_DATABASE_URL must start with sqlite:/// or postgresql://, got "
                + self.database_url.split(":")[0]
                + ":"
            )
        if self.sqlite_synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise SettingsError("PASSKEYD_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
        if (self.account_sid is None) != (self.auth_token is None):
            raise SettingsError("PASSKEYD_ACCOUNT_SID and PASSKEYD_AUTH_TOKEN go together")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise SettingsError("PASSKEYD_LOG_LEVEL must be debug, info, warning or error")
