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
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.database_url.startswith("sqlite:"):
            raise SettingsError(
                "PASSKEYD_DATABASE_URL must be a sqlite:/// URL, got "
                + self.database_url.split(":")[0]
            )
        if (self.account_sid is None) != (self.auth_token is None):
            raise SettingsError("PASSKEYD_ACCOUNT_SID and PASSKEYD_AUTH_TOKEN go together")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise SettingsError("PASSKEYD_LOG_LEVEL must be debug, info, warning or error")
