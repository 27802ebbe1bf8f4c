"""Process settings: read once at start-up, validated, with errors that name the setting."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .dburl import redacted_url
from .digits import ascii_int
from .domain.limits import (
    DEFAULT_RULES,
    MAX_FACTORS_PER_ENTITY,
    MAX_PENDING_CHALLENGES_PER_ENTITY,
    RateLimitSpecError,
    Rule,
    parse_rules,
)

if TYPE_CHECKING:
    from .sealing import SecretBox

DEFAULT_DATABASE_URL = "sqlite:///./passkeyd.db"


class SettingsError(ValueError):
    pass


_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = DEFAULT_DATABASE_URL
    workers: int = 1
    reuse_port: bool = False  # each worker listens on a socket of its own (Linux)
    headers_timeout_seconds: int = 10  # for a request's line and headers to arrive
    account_sid: str | None = None
    auth_token: str | None = None
    log_level: str = "info"
    db_pool_size: int = 10
    db_connect_timeout: int = 10
    challenge_retention_seconds: int = 7 * 24 * 3600
    purge_interval_seconds: int = 300
    secret_key: str | None = None
    webhook_allow_private: bool = False
    webhook_interval_seconds: float = 1.0
    webhook_retry_base_seconds: int = 5
    webhook_max_attempts: int = 10
    webhook_per_account: int = 4  # deliveries out at once for one account (of 16 per process)
    sqlite_synchronous: str = "NORMAL"
    sqlite_cache_mb: int = 64
    rate_limits: str = ""  # "" = the defaults; "off"; or "name=limit/seconds,..."
    max_passkeys_per_entity: int = MAX_FACTORS_PER_ENTITY
    max_pending_challenges_per_entity: int = MAX_PENDING_CHALLENGES_PER_ENTITY
    max_failed_attempts_per_challenge: int = 0  # 0: a failed approval leaves it pending
    rate_limit_store: str = "auto"  # auto, memory or database
    audit_retention_seconds: int = 90 * 24 * 3600
    log_format: str = "auto"
    forwarded_allow_ips: str = "127.0.0.1"
    access_log: bool = True
    metrics_token: str | None = None  # when set, GET /metrics asks for it as a bearer token
    mds_blob: str | None = None  # a FIDO MDS3 BLOB file, in place of the packaged metadata
    mds_root: str | None = None  # the root its chain must lead to (default: FIDO's)
    # A directory of metadata statements (JSON) for authenticators the metadata lacks.
    mds_statements: str | None = None

    def rate_limit_rules(self) -> dict[str, Rule]:
        return parse_rules(self.rate_limits) if self.rate_limits else dict(DEFAULT_RULES)

    def rate_limits_in_memory(self) -> bool:
        """Keep rate-limit windows in the process: `memory`, or `auto` when one process
        serves an SQLite file (one worker). Several processes share them in the database."""
        if self.rate_limit_store == "auto":
            return self.database_url.startswith("sqlite:") and self.workers == 1
        return self.rate_limit_store == "memory"

    @classmethod
    def load(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Settings from the environment over an optional TOML file (PASSKEYD_CONFIG)."""
        merged = (
            dict(read_config_file(env["PASSKEYD_CONFIG"])) if env.get("PASSKEYD_CONFIG") else {}
        )
        # An empty variable is unset (as each setting reads it), so it does not hide the
        # file's value: a template that renders `PASSKEYD_DATABASE_URL=` must not move the
        # service to the default SQLite file.
        merged.update({k: v for k, v in env.items() if k.startswith("PASSKEYD_") and v != ""})
        return cls.from_env(merged)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        def number(name: str, default: int, low: int, high: int) -> int:
            text = env.get(name)
            if text is None or text == "":
                return default
            value = ascii_int(text.strip(), max_digits=12)
            if value is None:  # int() would take "1_0", "+5" and other scripts' digits
                raise SettingsError(
                    f"{name} must be a whole number from {low} to {high}, got {text!r}"
                )
            if not low <= value <= high:
                raise SettingsError(f"{name} must be from {low} to {high}, got {value}")
            return value

        def flag(name: str, default: bool) -> bool:
            text = (env.get(name) or "").strip().lower()
            if not text:
                return default
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise SettingsError(f"{name} must be true or false, got {text!r}")

        settings = cls(
            host=env.get("PASSKEYD_HOST") or cls.host,
            port=number("PASSKEYD_PORT", cls.port, 0, 65535),
            database_url=env.get("PASSKEYD_DATABASE_URL") or DEFAULT_DATABASE_URL,
            workers=number("PASSKEYD_WORKERS", 1, 1, 64),
            reuse_port=flag("PASSKEYD_REUSE_PORT", False),
            headers_timeout_seconds=number(
                "PASSKEYD_HEADERS_TIMEOUT_SECONDS", cls.headers_timeout_seconds, 1, 3600
            ),
            account_sid=env.get("PASSKEYD_ACCOUNT_SID") or None,
            auth_token=env.get("PASSKEYD_AUTH_TOKEN") or None,
            log_level=(env.get("PASSKEYD_LOG_LEVEL") or "info").lower(),
            db_pool_size=number("PASSKEYD_DB_POOL_SIZE", 10, 1, 1000),
            db_connect_timeout=number("PASSKEYD_DB_CONNECT_TIMEOUT", 10, 1, 300),
            challenge_retention_seconds=number(
                "PASSKEYD_CHALLENGE_RETENTION_SECONDS", cls.challenge_retention_seconds, 0, 10**9
            ),
            purge_interval_seconds=number(
                "PASSKEYD_PURGE_INTERVAL_SECONDS", cls.purge_interval_seconds, 1, 86400
            ),
            secret_key=env.get("PASSKEYD_SECRET_KEY") or None,
            webhook_allow_private=flag("PASSKEYD_WEBHOOK_ALLOW_PRIVATE", False),
            webhook_interval_seconds=number("PASSKEYD_WEBHOOK_INTERVAL_MS", 1000, 10, 600_000)
            / 1000,
            webhook_retry_base_seconds=number(
                "PASSKEYD_WEBHOOK_RETRY_BASE_SECONDS", cls.webhook_retry_base_seconds, 1, 3600
            ),
            webhook_max_attempts=number(
                "PASSKEYD_WEBHOOK_MAX_ATTEMPTS", cls.webhook_max_attempts, 1, 100
            ),
            webhook_per_account=number(
                "PASSKEYD_WEBHOOK_PER_ACCOUNT", cls.webhook_per_account, 1, 16
            ),
            sqlite_synchronous=(env.get("PASSKEYD_SQLITE_SYNCHRONOUS") or "NORMAL").upper(),
            sqlite_cache_mb=number("PASSKEYD_SQLITE_CACHE_MB", cls.sqlite_cache_mb, 1, 65536),
            log_format=(env.get("PASSKEYD_LOG_FORMAT") or "auto").lower(),
            forwarded_allow_ips=env.get("PASSKEYD_FORWARDED_ALLOW_IPS") or "127.0.0.1",
            rate_limits=env.get("PASSKEYD_RATE_LIMITS") or "",
            max_passkeys_per_entity=number(
                "PASSKEYD_MAX_PASSKEYS_PER_ENTITY", cls.max_passkeys_per_entity, 1, 1000
            ),
            max_pending_challenges_per_entity=number(
                "PASSKEYD_MAX_PENDING_CHALLENGES_PER_ENTITY",
                cls.max_pending_challenges_per_entity,
                1,
                1000,
            ),
            max_failed_attempts_per_challenge=number(
                "PASSKEYD_MAX_FAILED_ATTEMPTS_PER_CHALLENGE",
                cls.max_failed_attempts_per_challenge,
                0,
                1000,
            ),
            rate_limit_store=(env.get("PASSKEYD_RATE_LIMIT_STORE") or "auto").lower(),
            audit_retention_seconds=number(
                "PASSKEYD_AUDIT_RETENTION_SECONDS", cls.audit_retention_seconds, 0, 10**10
            ),
            access_log=flag("PASSKEYD_ACCESS_LOG", True),
            metrics_token=env.get("PASSKEYD_METRICS_TOKEN") or None,
            mds_blob=env.get("PASSKEYD_MDS_BLOB") or None,
            mds_root=env.get("PASSKEYD_MDS_ROOT") or None,
            mds_statements=env.get("PASSKEYD_MDS_STATEMENTS") or None,
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
        if sqlite_path(self.database_url) == "":  # `sqlite:///$DB` with DB unset
            raise SettingsError(
                "PASSKEYD_DATABASE_URL names no SQLite file: sqlite:///relative/path.db (from"
                " the working directory) or sqlite:////absolute/path.db"
            )
        if self.sqlite_synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise SettingsError("PASSKEYD_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
        if (self.account_sid is None) != (self.auth_token is None):
            raise SettingsError("PASSKEYD_ACCOUNT_SID and PASSKEYD_AUTH_TOKEN go together")
        if self.account_sid is not None and not _ACCOUNT_SID.fullmatch(self.account_sid):
            raise SettingsError("PASSKEYD_ACCOUNT_SID must be AC followed by 32 hex digits")
        if self.secret_key is not None:
            from .sealing import SealingError, SecretBox

            try:
                SecretBox.from_text(self.secret_key)
            except SealingError as exc:
                raise SettingsError(f"PASSKEYD_SECRET_KEY: {exc}") from exc
        try:
            self.rate_limit_rules()
        except RateLimitSpecError as exc:
            raise SettingsError(f"PASSKEYD_RATE_LIMITS: {exc}") from exc
        if self.rate_limit_store not in ("auto", "memory", "database"):
            raise SettingsError("PASSKEYD_RATE_LIMIT_STORE must be auto, memory or database")
        if self.rate_limit_store == "memory" and (
            not self.database_url.startswith("sqlite:") or self.workers > 1
        ):
            raise SettingsError(
                "PASSKEYD_RATE_LIMIT_STORE=memory needs one process on SQLite: with several"
                " workers, or on PostgreSQL, the processes share their windows in the database"
            )
        if not _listen_address(self.host):
            raise SettingsError(
                f"PASSKEYD_HOST must be an IP address or a host name, got {self.host!r}"
            )
        for item in self.forwarded_allow_ips.split(","):
            if item.strip() != "*" and not _network(item.strip()):
                raise SettingsError(
                    "PASSKEYD_FORWARDED_ALLOW_IPS must list IP addresses or networks"
                    f" (or *), got {item.strip()!r}"
                )
        if self.log_format not in ("auto", "json", "text"):
            raise SettingsError("PASSKEYD_LOG_FORMAT must be auto, json or text")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise SettingsError("PASSKEYD_LOG_LEVEL must be debug, info, warning or error")
        if self.mds_root is not None and self.mds_blob is None:
            raise SettingsError(
                "PASSKEYD_MDS_ROOT names the root of PASSKEYD_MDS_BLOB's chain: set the BLOB too"
            )


_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def _listen_address(host: str) -> bool:
    """An IP address (`0.0.0.0`, `::1`) or a host name's form; it is resolved at bind."""
    return _network(host) and "/" not in host or bool(_HOST_NAME.match(host))


def _network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def secret_box(settings: Settings) -> SecretBox | None:
    """The key that seals auth tokens for webhook signing: PASSKEYD_SECRET_KEY, else (on the
    embedded default) a key file beside the SQLite database, else none."""
    from .sealing import SecretBox

    if settings.secret_key:
        return SecretBox.from_text(settings.secret_key)
    path = sqlite_path(settings.database_url)
    if path is not None and path != ":memory:":
        return SecretBox.from_key_file(Path(path + ".key"))
    return None


def sqlite_path(database_url: str) -> str | None:
    """The SQLite file a `sqlite:///` URL names, as SQLAlchemy reads it: what follows the
    three slashes, so relative to the working directory (`sqlite:///data/p.db`) unless it
    starts with a fourth (`sqlite:////var/lib/p.db`). None for another database."""
    prefix = "sqlite:///"
    return database_url[len(prefix) :] if database_url.startswith(prefix) else None


# Every setting, as its environment variable; a config file uses the lower-case name
# without the prefix (e.g. `database_url = "postgresql://..."`).
ENVIRONMENT = (
    "PASSKEYD_HOST", "PASSKEYD_PORT", "PASSKEYD_DATABASE_URL", "PASSKEYD_WORKERS",
    "PASSKEYD_REUSE_PORT", "PASSKEYD_HEADERS_TIMEOUT_SECONDS",
    "PASSKEYD_ACCOUNT_SID", "PASSKEYD_AUTH_TOKEN", "PASSKEYD_LOG_LEVEL", "PASSKEYD_LOG_FORMAT",
    "PASSKEYD_ACCESS_LOG", "PASSKEYD_DB_POOL_SIZE", "PASSKEYD_DB_CONNECT_TIMEOUT",
    "PASSKEYD_SQLITE_SYNCHRONOUS", "PASSKEYD_SQLITE_CACHE_MB",
    "PASSKEYD_CHALLENGE_RETENTION_SECONDS", "PASSKEYD_PURGE_INTERVAL_SECONDS",
    "PASSKEYD_SECRET_KEY", "PASSKEYD_WEBHOOK_ALLOW_PRIVATE", "PASSKEYD_WEBHOOK_INTERVAL_MS",
    "PASSKEYD_WEBHOOK_RETRY_BASE_SECONDS", "PASSKEYD_WEBHOOK_MAX_ATTEMPTS",
    "PASSKEYD_WEBHOOK_PER_ACCOUNT",
    "PASSKEYD_RATE_LIMITS", "PASSKEYD_RATE_LIMIT_STORE", "PASSKEYD_AUDIT_RETENTION_SECONDS",
    "PASSKEYD_MAX_PASSKEYS_PER_ENTITY", "PASSKEYD_MAX_PENDING_CHALLENGES_PER_ENTITY",
    "PASSKEYD_MAX_FAILED_ATTEMPTS_PER_CHALLENGE",
    "PASSKEYD_FORWARDED_ALLOW_IPS", "PASSKEYD_METRICS_TOKEN",
    "PASSKEYD_MDS_BLOB", "PASSKEYD_MDS_ROOT", "PASSKEYD_MDS_STATEMENTS",
)  # fmt: skip
SECRET = ("PASSKEYD_AUTH_TOKEN", "PASSKEYD_SECRET_KEY", "PASSKEYD_METRICS_TOKEN")


def misspelled(env: Mapping[str, str]) -> list[str]:
    """A PASSKEYD_ name in the environment that is no setting but close to one: a typo that
    would otherwise leave the setting at its default without a word (a config file's
    unknown keys are refused)."""
    import difflib

    said = []
    for name in sorted(env):
        if name.startswith("PASSKEYD_") and name not in ENVIRONMENT and name not in _OTHERS:
            close = difflib.get_close_matches(name, ENVIRONMENT, n=1, cutoff=0.85)
            if close:
                said.append(f"{name} is set, and is no setting: did you mean {close[0]}?")
    return said


# PASSKEYD_ names that are not settings of the service but are read (the config file's path;
# serve's own note to its workers).
_OTHERS = ("PASSKEYD_CONFIG", "PASSKEYD_SUPERVISOR_PID")


def _meant(key: str) -> str:
    """What a config file's unknown key may have meant: a variable's name (keys are the
    names in lower case without the prefix), or a setting close to it."""
    import difflib

    upper = key.upper()
    if upper in ENVIRONMENT:
        return f" (keys are the names without PASSKEYD_, in lower case: {upper[9:].lower()!r})"
    keys = [name[9:].lower() for name in ENVIRONMENT]
    close = difflib.get_close_matches(key.lower(), keys, n=1, cutoff=0.8)
    return f": did you mean {close[0]!r}?" if close else ""


def read_config_file(path: str) -> dict[str, str]:
    """A TOML file of settings, as environment variables. Unknown keys are refused."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"PASSKEYD_CONFIG: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"PASSKEYD_CONFIG: {path} is not valid TOML: {exc}") from exc
    out = {}
    for key, value in data.items():
        name = "PASSKEYD_" + key.upper()
        if name not in ENVIRONMENT:
            raise SettingsError(f"PASSKEYD_CONFIG: unknown setting {key!r} in {path}{_meant(key)}")
        if isinstance(value, bool):
            value = str(value).lower()
        if not isinstance(value, str | int | float):
            raise SettingsError(f"PASSKEYD_CONFIG: {key} must be a string, number or boolean")
        out[name] = str(value)
    return out


def describe(settings: Settings) -> dict[str, object]:
    """The effective settings for `check-config`, secrets redacted."""
    out: dict[str, object] = {}
    for name in ENVIRONMENT:
        field = name.removeprefix("PASSKEYD_").lower()
        if field == "webhook_interval_ms":
            out[name] = int(settings.webhook_interval_seconds * 1000)
            continue
        value = getattr(settings, field)
        if name in SECRET and value:
            value = "<set>"
        elif name == "PASSKEYD_DATABASE_URL":
            value = redacted_url(str(value))
        out[name] = value
    return out
