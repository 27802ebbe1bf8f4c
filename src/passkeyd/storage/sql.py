"""The SQL both backends share. Subclasses supply connections, transactions and dialect.

Queries are written once with `?` placeholders and portable SQL (`ON CONFLICT`, no
vendor functions); every method that writes is one transaction.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import heapq
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from importlib import resources
from typing import Any, Protocol, TypeVar, cast

import orjson

from passkeyd.domain.models import (
    Account,
    ApiKey,
    AuditEvent,
    Challenge,
    ChallengeStatus,
    ClaimedDelivery,
    Credential,
    Delivery,
    Entity,
    Factor,
    Page,
    PageRequest,
    RateHit,
    Service,
    Webhook,
)
from passkeyd.domain.store import (
    ApproveOutcome,
    CredentialConflict,
    FailureOutcome,
    InsertOutcome,
    NotCached,
    StorageUnavailable,
)

from .rows import (
    CHALLENGE_COLUMNS,
    FACTOR_COLUMNS,
    attested_fields,
    attested_to_json,
    challenge_from_row,
    challenge_to_row,
    dump_json,
    factor_from_row,
    factor_to_row,
    settings_from_json,
    settings_to_json,
)
from .windows import RateWindows

# What an approval sets of a factor's `discoverable`: nothing, or (the passkey answered a
# usernameless challenge, which only a discoverable one can) true.
DISCOVERED_SET = {False: "", True: ", discoverable = TRUE"}

# The factor columns a new factor's row gives (seq is the database's).
_FACTOR_WIDTH = len(FACTOR_COLUMNS.split(",")) - 1

# Trusted passkeys read at a time when the re-checked ones are looked for.
RECHECK_PAGE = 5000


def load_migrations(dialect: str) -> list[tuple[int, str]]:
    """(version, sql) pairs shipped inside the package, in order."""
    folder = resources.files("passkeyd.storage.migrations").joinpath(dialect)
    found: list[tuple[int, str]] = []
    for item in folder.iterdir():
        if item.name.endswith(".sql"):
            found.append((int(item.name.split("_", 1)[0]), item.read_text()))
    return sorted(found)


def _page(rows: list[Any], request: PageRequest, convert: Any) -> Page:
    items = [convert(r) for r in rows[: request.page_size]]
    backward = request.before is not None
    if backward:  # read nearest first (see _order): put back in the list's order
        items.reverse()
    return Page(items=items, has_more=len(rows) > request.page_size, backward=backward)


def _seq_clause(request: PageRequest) -> tuple[str, list[Any]]:
    if request.before is not None:
        return (" AND seq > ?" if request.descending else " AND seq < ?"), [request.before]
    if request.after is None:
        return "", []
    return (" AND seq < ?" if request.descending else " AND seq > ?"), [request.after]


def _order(request: PageRequest) -> str:
    """The list's order; reversed when paging back, so LIMIT keeps the records nearest."""
    descending = request.descending != (request.before is not None)
    return " ORDER BY seq DESC" if descending else " ORDER BY seq"


def _account(r: Sequence[Any]) -> Account:
    return Account(r[0], r[1], bytes(r[2]), r[3], bytes(r[4]) if r[4] is not None else None)


# A webhook delivery into the outbox: these columns, then 'pending', 0, now, 0, now, now.
DELIVERY_INSERT = (
    "INSERT INTO webhook_deliveries (event_sid, event_type, webhook_sid, account_sid, url,"
    " payload, status, attempts, next_attempt_at, locked_until, date_created, date_updated)"
)


def delivery_values(d: Delivery) -> tuple[Any, ...]:
    """The values of a delivery's first six DELIVERY_INSERT columns."""
    return d.event_sid, d.event_type, d.webhook_sid, d.account_sid, d.url, dump_json(d.payload)


def _enqueue(tx: Tx, deliveries: Sequence[Delivery], now: int) -> None:
    """Write webhook deliveries into the outbox, inside the caller's transaction."""
    for d in deliveries:
        tx.execute(
            DELIVERY_INSERT + " VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, 0, ?, ?)",
            (*delivery_values(d), now, now, now),
        )


def _insert_audit(tx: Tx, events: Sequence[AuditEvent]) -> None:
    """Write audit records inside the caller's transaction."""
    tx.executemany(  # one call for the batch (on PostgreSQL, one round trip)
        "INSERT INTO audit_events (account_sid, service_sid, actor, action, resource,"
        " outcome, code, step, request_id, date_created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                e.account_sid,
                e.service_sid,
                e.actor,
                e.action,
                e.resource,
                e.outcome,
                e.code,
                e.step,
                e.request_id,
                e.date_created,
            )
            for e in events
        ],
    )


# A registration completed: its factor verified with the credential, while unexpired.
VERIFY_FACTOR = (
    "UPDATE factors SET status = 'verified',"
    " credential_id = ?, public_key = ?, algorithm = ?, sign_count = ?,"
    " transports = ?, aaguid = ?, fmt = ?, backup_eligible = ?, backed_up = ?,"
    " attachment = ?, authenticator_name = ?, attested = ?, discoverable = ?, date_updated = ?"
    " WHERE sid = ? AND status = 'unverified' AND registration_expires > ?"
)


# ... and its entity, made provisional by the sign-up, kept for good (not purged once its
# factors are gone: its user deleted their passkeys). Only a first passkey's finds it still
# provisional, so the purge's index holds only the sign-ups that never finished.
KEEP_ENTITY = (
    "UPDATE entities SET provisional = ?"
    " WHERE sid = (SELECT entity_sid FROM factors WHERE sid = ?) AND provisional = ?"
)


def verify_factor_args(factor_sid: str, c: Credential, now: int) -> tuple[Any, ...]:
    return (
        c.credential_id, c.public_key, c.algorithm, c.sign_count,
        dump_json(list(c.transports)), c.aaguid, c.fmt, c.backup_eligible, c.backed_up,
        c.authenticator_attachment, c.authenticator_name, attested_to_json(c), c.discoverable,
        now, factor_sid, now,
    )  # fmt: skip


def _webhook(r: Sequence[Any]) -> Webhook:
    return Webhook(
        seq=r[0],
        sid=r[1],
        account_sid=r[2],
        service_sid=r[3],
        friendly_name=r[4],
        event_types=tuple(orjson.loads(r[5])),
        webhook_url=r[6],
        webhook_method=r[7],
        status=r[8],
        version=r[9],
        date_created=r[10],
        date_updated=r[11],
    )


# What deleting a service deletes after its row, in this order (each by an index).
# Challenges go again after the factors (PostgreSQL): a usernameless challenge being
# approved meanwhile still read `entity_sid = ''` then, and took its user's entity_sid when
# the approval committed, which the deletion of the factor waited for.
_OF_ITS_ENTITIES = "entity_sid IN (SELECT sid FROM entities WHERE service_sid = ?)"
SERVICE_ROWS = (
    f"DELETE FROM challenges WHERE {_OF_ITS_ENTITIES}",
    "DELETE FROM challenges WHERE entity_sid = '' AND service_sid = ?",  # usernameless
    f"DELETE FROM factors WHERE {_OF_ITS_ENTITIES}",
    f"DELETE FROM challenges WHERE {_OF_ITS_ENTITIES}",
    "DELETE FROM entities WHERE service_sid = ?",
    "DELETE FROM webhooks WHERE service_sid = ?",
)

# A webhook's events not yet delivered (one being sent right now is past recall).
_DROP_PENDING = "DELETE FROM webhook_deliveries WHERE webhook_sid = ? AND status = 'pending'"


def _count_hit_in_table(tx: Tx, hit: RateHit) -> int:
    """The window's count with this hit. A hit of a window older than the stored one (a
    replica's clock a little behind, a request that read the time just before the
    boundary) changes nothing and counts alone, as in `RateWindows`: it must not restart
    the current window's count. A stored window more than a window ahead of the hit was
    dated by a clock that has since stepped back: the hit's window replaces it (kept, it
    left the key unlimited until the clock caught up, a year after a year's excursion)."""
    row = tx.execute(
        "INSERT INTO rate_limits (key, window_start, count) VALUES (?, ?, 1)"
        " ON CONFLICT (key) DO UPDATE SET"
        " count = CASE WHEN rate_limits.window_start = excluded.window_start"
        " THEN rate_limits.count + 1 ELSE 1 END,"
        " window_start = excluded.window_start"
        " WHERE rate_limits.window_start <= excluded.window_start"
        " OR rate_limits.window_start > ? RETURNING count",
        (hit.key, hit.window_start, hit.stale_after),
    ).fetchone()
    return 1 if row is None else int(row[0])


# An entity's pending challenges, unexpired at a time (the challenges_pending index).
_PENDING_OF_ENTITY = (
    "SELECT count(*) FROM challenges WHERE entity_sid = ? AND status = 'pending'"
    " AND expiration_date >= ?"
)


class _Refused(Exception):
    def __init__(self, outcome: InsertOutcome) -> None:
        self.outcome = outcome


class _OverLimit(Exception):
    """Leaves a failure's transaction without committing: a capped hit passed its limit."""


class _NotPending(Exception):
    """Leaves a failure's transaction without committing: its challenge is not pending."""


class _Rollback(Exception):
    """Leaves a transaction without committing, carrying why."""

    def __init__(self, outcome: ApproveOutcome) -> None:
        self.outcome = outcome


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """An open transaction."""

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...


T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _changes_config(method: F) -> F:
    """A store method that changes accounts, keys, services or webhooks: what this process
    cached is dropped once the change is committed (or refused)."""

    @functools.wraps(method)
    def wrapper(self: SqlStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        finally:
            self.forget_config()

    return cast(F, wrapper)


_ANY = object()  # put_account's `sealed_as` when any sealed token may be replaced
_MISSES = ("",)  # the configuration cache's own dict of misses: no such account, key, service
PAGE_TOKEN_KEY_MIGRATION = 9  # makes the table that `migrate` then writes the key into
# Misses cached, once they are this many, are dropped.
MAX_CACHED_MISSES = 10_000
SID_LENGTH = 34


class SqlStore(abc.ABC):
    dialect: str = ""
    # Appended to a read in a write transaction that must lock the rows it reads, so that
    # writes to an entity and its factors are serialized ("" where the transaction holds
    # the database's one write lock already, as on SQLite).
    _FOR_UPDATE = ""
    # What an insert under a service takes on the service's row, so that a concurrent
    # delete of the service waits for it, or it sees the service gone ("" on SQLite).
    _FOR_KEY_SHARE = ""
    # What an update of a service or webhook takes on the row it reads: against another
    # update, but not against inserts under the service (their KEY SHARE).
    _FOR_NO_KEY_UPDATE = ""
    # What the background jobs (the purge, the dispatcher's claims) take on rows they pick:
    # rows another transaction holds (a service's deletion, in its own order) are left for
    # the next pass instead of waited for, so these jobs are never part of a deadlock.
    _SKIP_LOCKED = ""
    # An entity made by a factor's creation, as the partial index on it is written (1, TRUE).
    _PROVISIONAL = "1"
    runs_in_threads: bool = False
    integrity_errors: tuple[type[Exception], ...] = ()

    @staticmethod
    def _duplicate(exc: Exception) -> bool:
        """`exc` (one of `integrity_errors`) is a unique constraint's refusal: the credential
        is registered already. Another constraint's (a trigger's, a CHECK's) is not the
        request's doing, and is not answered as if it were."""
        return False

    # Rate-limit windows in this process instead of the rate_limits table (storage/windows.py);
    # only a backend whose writes it sees commit and roll back sets it.
    windows: RateWindows | None = None
    concurrency: int = 1
    _executor: ThreadPoolExecutor | None = None

    def submit(self, call: Callable[[], T]) -> Future[T]:
        """Run `call` in one of this store's threads (`runs_in_threads`): as many as it has
        connections, as more would only queue for them. Called from the event loop."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="passkeyd-db")
        try:
            return self._executor.submit(call)
        except RuntimeError as exc:  # drained: the server is shutting down
            raise StorageUnavailable("passkeyd is shutting down") from exc

    def _stop_threads(self) -> None:
        """Let the calls in progress finish (their transactions end), then the threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # --- what a backend supplies ----------------------------------------------------------

    @abc.abstractmethod
    def _write(self) -> AbstractContextManager[Tx]:
        """A write transaction that holds the write lock from its start."""

    @abc.abstractmethod
    def _one(self, sql: str, args: Sequence[Any]) -> Any:
        """One row (or None) of a read outside any write transaction."""

    @abc.abstractmethod
    def _all(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """Every row of a read outside any write transaction."""

    @abc.abstractmethod
    def _lock_migrations(self, tx: Tx) -> None:
        """Keep two processes from migrating at once."""

    def _lock_claims(self, tx: Tx) -> None:
        """Make webhook claims take turns, where writers do not already (PostgreSQL)."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connections."""

    def ping(self) -> None:
        self._one("SELECT 1", ())

    def _count_hit(self, tx: Tx, hit: RateHit) -> int:
        """Count a rate-limit hit in the caller's transaction; the window's count with it."""
        if self.windows is not None:
            return self.windows.hit(hit)
        return _count_hit_in_table(tx, hit)

    # --- configuration cache ----------------------------------------------------------------
    # Accounts, API keys, services and webhooks are read on every request and change rarely.
    # Every change to them increments `config_version` in its own transaction; a request
    # starts with `refresh_config()`, one small read, and the rows cached since the last
    # change are used as they are. Without a refresh (the CLI, tests) nothing is cached.

    _config: dict[tuple[str, ...], Any]
    _config_version: int | None = None
    _cache_only = threading.local()  # per thread: inside cached_only()

    @contextmanager
    def cached_only(self) -> Iterator[None]:
        """Within it, on this thread, a configuration read that would need the database
        raises NotCached instead: a call on the event loop that must not wait for a
        networked database tries the cache first, then goes to a thread."""
        self._cache_only.on = True
        try:
            yield
        finally:
            self._cache_only.on = False

    def _caching_only(self) -> bool:
        return getattr(self._cache_only, "on", False)

    def refresh_config(self) -> None:
        """Drop what is cached if any process changed the configuration since."""
        try:
            row = self._one("SELECT version FROM config_version WHERE id = 1", ())
        except Exception:  # a schema from before migration 6: cache nothing
            row = None
        version = row[0] if row else None
        if version != self._config_version or version is None:
            self._config = {}
            self._config_version = version

    def forget_config(self) -> None:
        """After this process changed the configuration, or rolled back such a change: the
        next refresh reloads, whatever version it reads (a failed batch may have shown a
        version that was never committed)."""
        self._config = {}
        self._config_version = None

    def _cached(self, key: tuple[str, ...], load: Callable[[], T]) -> T:
        cache = self._config if self._config_version is not None else {}
        if key in cache:
            return cast(T, cache[key])
        misses = cache.get(_MISSES)
        if misses is not None and key in misses:
            return cast(T, None)
        if self._caching_only():
            raise NotCached
        if self._config_version is None:
            return load()
        value = load()
        if self._config is not cache:  # refreshed meanwhile
            return value
        if value is not None:
            cache[key] = value
        elif all(len(k) <= SID_LENGTH for k in key):
            # A miss too: a SID nobody has cost a query (and on PostgreSQL a thread's round
            # trip) each time, where one that exists was answered from here, so a 401's
            # time told whether an account or key exists. Misses are kept apart, bounded in
            # number and size: their keys come from requests (a Basic credential, a path),
            # and anyone can make them up. When they reach the bound they are all dropped,
            # so that a flood of made-up SIDs cannot stop misses being cached.
            misses = cache.setdefault(_MISSES, {})
            if len(misses) >= MAX_CACHED_MISSES:
                misses.clear()
            misses[key] = True
        return value

    @staticmethod
    def _bump_config(db: Tx) -> None:
        db.execute("UPDATE config_version SET version = version + 1 WHERE id = 1")

    # Group commit (SQLite's; a no-op where each query already runs in its own thread).
    def start_group_commit(self, loop: asyncio.AbstractEventLoop) -> None:
        """Batch writes made on `loop`'s thread into one commit per loop iteration."""
        return None

    def stop_group_commit(self) -> None:
        """Commit what is batched and write each transaction on its own again."""
        return None

    _requests = 0  # requests in progress

    def request_started(self) -> None:
        """A request began: group commit waits for requests still working."""
        self._requests += 1

    def request_finished(self) -> None:
        """A request ended."""
        self._requests -= 1

    @property
    def requests_in_progress(self) -> int:
        return self._requests

    def drain(self) -> None:
        """Let the calls in this store's threads end, and start no more (at shutdown)."""
        self._stop_threads()

    async def reserve(self) -> None:
        """Before a call on the loop that is about to write: take the write lock."""
        return None

    async def settle(self) -> None:
        """Return once every write made so far on the loop is committed."""
        return None

    _page_token_key: bytes | None = None

    def page_token_key(self) -> bytes:
        """The database's key for page tokens (migration 9), read once."""
        if self._page_token_key is None:
            row = self._one("SELECT key FROM page_token_key WHERE id = 1", ())
            self._page_token_key = bytes(row[0])
        return self._page_token_key

    # --- schema ---------------------------------------------------------------------------

    def applied_migrations(self) -> set[int]:
        try:
            return {r[0] for r in self._all("SELECT version FROM schema_migrations", ())}
        except StorageUnavailable:  # the database does not answer: not an empty schema
            raise
        except Exception:  # no table yet: nothing applied
            return set()

    def pending_migrations(self) -> list[int]:
        applied = self.applied_migrations()
        return [v for v, _ in load_migrations(self.dialect) if v not in applied]

    def unknown_migrations(self) -> list[int]:
        """Versions applied by a newer passkeyd, which this one does not know."""
        known = {v for v, _ in load_migrations(self.dialect)}
        return sorted(self.applied_migrations() - known)

    def migrate(self) -> list[int]:
        done = []
        with self._write() as tx:
            self._lock_migrations(tx)
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
            )
            applied = {r[0] for r in tx.execute("SELECT version FROM schema_migrations").fetchall()}
            for version, sql in load_migrations(self.dialect):
                if version in applied:
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        tx.execute(statement)
                if version == PAGE_TOKEN_KEY_MIGRATION:
                    tx.execute(
                        "INSERT INTO page_token_key (id, key) VALUES (1, ?)",
                        (secrets.token_bytes(32),),
                    )
                tx.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?)", (version, int(time.time()))
                )
                done.append(version)
        return done

    # --- accounts and keys ----------------------------------------------------------------

    @_changes_config
    def put_account(
        self, account: Account, *, same_token_only: bool = False, sealed_as: Any = _ANY
    ) -> bool:
        """Insert or replace. `same_token_only`: an existing row is replaced only while it
        holds the same token hash (re-sealing it), never a token rotated meanwhile; with
        `sealed_as`, only while its sealed token is still that one (None: none), never one
        sealed again meanwhile. False when nothing was written."""
        conditions = ["accounts.token_hash = excluded.token_hash"] if same_token_only else []
        args: tuple[Any, ...] = ()
        if sealed_as is None:
            conditions.append("accounts.token_sealed IS NULL")
        elif sealed_as is not _ANY:
            conditions.append("accounts.token_sealed = ?")
            args = (sealed_as,)
        condition = " WHERE " + " AND ".join(conditions) if conditions else ""
        with self._write() as db:
            self._bump_config(db)
            cur = db.execute(
                "INSERT INTO accounts (sid, friendly_name, token_hash, date_created,"
                " token_sealed) VALUES (?, ?, ?, ?, ?) ON CONFLICT (sid) DO UPDATE SET"
                " token_hash = excluded.token_hash, friendly_name = excluded.friendly_name,"
                " token_sealed = excluded.token_sealed" + condition,
                (
                    account.sid,
                    account.friendly_name,
                    account.token_hash,
                    account.date_created,
                    account.token_sealed,
                    *args,
                ),
            )
            return bool(cur.rowcount == 1)

    def get_account(self, sid: str) -> Account | None:
        return self._cached(("account", sid), lambda: self.read_account(sid))

    def read_account(self, sid: str) -> Account | None:
        """As stored now, never from the cache: for what runs outside any request, which
        would otherwise use what the last request cached, however old."""
        row = self._one(
            "SELECT sid, friendly_name, token_hash, date_created, token_sealed FROM accounts"
            " WHERE sid = ?",
            (sid,),
        )
        return _account(row) if row else None

    def list_accounts(self) -> list[Account]:
        rows = self._all(
            "SELECT sid, friendly_name, token_hash, date_created, token_sealed FROM accounts"
            " ORDER BY date_created, sid",
            (),
        )
        return [_account(r) for r in rows]

    @_changes_config
    def put_api_key(self, key: ApiKey) -> None:
        with self._write() as db:
            self._bump_config(db)
            db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key.sid,
                    key.account_sid,
                    key.friendly_name,
                    key.secret_hash,
                    key.revoked,
                    key.date_created,
                ),
            )

    _KEY = (
        "SELECT sid, account_sid, friendly_name, secret_hash, revoked, date_created FROM api_keys"
    )

    def get_api_key(self, sid: str) -> ApiKey | None:
        return self._cached(("api_key", sid), lambda: self._load_api_key(sid))

    def _load_api_key(self, sid: str) -> ApiKey | None:
        row = self._one(self._KEY + " WHERE sid = ?", (sid,))
        return ApiKey(row[0], row[1], row[2], bytes(row[3]), bool(row[4]), row[5]) if row else None

    def list_api_keys(self, account_sid: str) -> list[ApiKey]:
        rows = self._all(
            self._KEY + " WHERE account_sid = ? ORDER BY date_created, sid", (account_sid,)
        )
        return [ApiKey(r[0], r[1], r[2], bytes(r[3]), bool(r[4]), r[5]) for r in rows]

    @_changes_config
    def revoke_api_key(self, account_sid: str, sid: str) -> bool:
        with self._write() as db:
            cur = db.execute(
                "UPDATE api_keys SET revoked = ? WHERE account_sid = ? AND sid = ?",
                (True, account_sid, sid),
            )
            if cur.rowcount != 1:
                return False
            self._bump_config(db)
            return True

    # --- services -------------------------------------------------------------------------

    _SERVICE = (
        "SELECT seq, sid, account_sid, friendly_name, passkeys, settings, date_created,"
        " date_updated FROM services"
    )

    @staticmethod
    def _service(r: Sequence[Any]) -> Service:
        return Service(
            seq=r[0],
            sid=r[1],
            account_sid=r[2],
            friendly_name=r[3],
            passkeys=settings_from_json(r[4]),
            settings=orjson.loads(r[5]),
            date_created=r[6],
            date_updated=r[7],
        )

    @_changes_config
    def insert_service(self, service: Service) -> None:
        with self._write() as db:
            self._bump_config(db)
            db.execute(
                "INSERT INTO services (sid, account_sid, friendly_name, passkeys, settings,"
                " date_created, date_updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    service.sid,
                    service.account_sid,
                    service.friendly_name,
                    settings_to_json(service.passkeys),
                    dump_json(service.settings),
                    service.date_created,
                    service.date_updated,
                ),
            )

    @_changes_config
    def update_service(
        self, account_sid: str, sid: str, change: Callable[[Service], Service]
    ) -> Service | None:
        """`change` made to the row read in the write, locked: a change is made to what the
        last one wrote, not to what this process had cached (which a concurrent or just
        committed change elsewhere would have lost)."""
        with self._write() as db:
            row = db.execute(
                self._SERVICE + " WHERE sid = ? AND account_sid = ?" + self._FOR_NO_KEY_UPDATE,
                (sid, account_sid),
            ).fetchone()
            if row is None:
                return None
            service = change(self._service(row))
            db.execute(
                "UPDATE services SET friendly_name = ?, passkeys = ?, settings = ?,"
                " date_updated = ? WHERE sid = ?",
                (
                    service.friendly_name,
                    settings_to_json(service.passkeys, replacing=row[4]),
                    dump_json(service.settings),
                    service.date_updated,
                    sid,
                ),
            )
            self._bump_config(db)
            return service

    def get_service(self, account_sid: str, sid: str) -> Service | None:
        return self._cached(
            ("service", account_sid, sid), lambda: self._load_service(account_sid, sid)
        )

    def _load_service(self, account_sid: str, sid: str) -> Service | None:
        row = self._one(self._SERVICE + " WHERE sid = ? AND account_sid = ?", (sid, account_sid))
        return self._service(row) if row else None

    def list_services(self, account_sid: str, page: PageRequest) -> Page:
        clause, args = _seq_clause(page)
        rows = self._all(
            self._SERVICE + " WHERE account_sid = ?" + clause + _order(page) + " LIMIT ?",
            [account_sid, *args, page.page_size + 1],
        )
        return _page(rows, page, self._service)

    @_changes_config
    def delete_service(self, account_sid: str, sid: str) -> bool:
        with self._write() as db:
            cur = db.execute(
                "DELETE FROM services WHERE account_sid = ? AND sid = ?", (account_sid, sid)
            )
            if cur.rowcount == 0:
                return False
            self._bump_config(db)
            # Each found by an index: through the service's entities, not by a scan of
            # every service's factors and challenges (no index leads with service_sid).
            *ceremony_rows, webhook_rows = SERVICE_ROWS
            for statement in ceremony_rows:
                db.execute(statement, (sid,))
            # After the rows whose changes enqueue deliveries (an approval, a deletion that
            # committed while these waited for their rows): its events go too.
            db.execute(
                "DELETE FROM webhook_deliveries WHERE status = 'pending' AND webhook_sid IN"
                " (SELECT sid FROM webhooks WHERE service_sid = ?)",
                (sid,),
            )
            db.execute(webhook_rows, (sid,))
            return True

    # --- entities -------------------------------------------------------------------------

    _ENTITY = (
        "SELECT seq, sid, account_sid, service_sid, identity, date_created, date_updated"
        " FROM entities"
    )

    @staticmethod
    def _entity(r: Sequence[Any]) -> Entity:
        return Entity(
            seq=r[0],
            sid=r[1],
            account_sid=r[2],
            service_sid=r[3],
            identity=r[4],
            date_created=r[5],
            date_updated=r[6],
        )

    def _service_alive(self, db: Tx, service_sid: str) -> bool:
        """The service still exists, and (PostgreSQL) cannot be deleted until this commits:
        a write under a service deleted meanwhile would outlive it."""
        row = db.execute(
            "SELECT 1 FROM services WHERE sid = ?" + self._FOR_KEY_SHARE, (service_sid,)
        ).fetchone()
        return row is not None

    def _entity_alive(self, db: Tx, entity_sid: str) -> bool:
        """The entity still exists, and (PostgreSQL) cannot be deleted until this commits:
        a challenge for an entity deleted meanwhile would outlive it, pending."""
        row = db.execute(
            "SELECT 1 FROM entities WHERE sid = ?" + self._FOR_KEY_SHARE, (entity_sid,)
        ).fetchone()
        return row is not None

    def _factor_alive(self, db: Tx, factor_sid: str) -> bool:
        """As `_entity_alive`, for the one passkey a challenge is for."""
        row = db.execute(
            "SELECT 1 FROM factors WHERE sid = ?" + self._FOR_KEY_SHARE, (factor_sid,)
        ).fetchone()
        return row is not None

    def _insert_entity(self, db: Tx, entity: Entity, *, provisional: bool = False) -> bool:
        """Insert, only while its service exists (whose row it locks, see `_service_alive`):
        False when the identity is taken or the service is gone (`_service_alive` tells).
        `provisional`: made by a factor's creation, so purged once no factor is left (see
        `purge_expired`)."""
        e = entity
        row = (e.sid, e.account_sid, e.service_sid, e.identity, e.date_created, e.date_updated)
        inserted = db.execute(
            "INSERT INTO entities (sid, account_sid, service_sid, identity, date_created,"
            " date_updated, provisional) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1"
            " FROM services WHERE sid = ?" + self._FOR_KEY_SHARE + ") ON CONFLICT DO NOTHING",
            (*row, provisional, e.service_sid),
        )
        return inserted.rowcount == 1

    def insert_entity(self, entity: Entity) -> bool:
        """False when the identity is taken, or the service was deleted meanwhile. Either
        way the identity's entity, asked for through the API, is kept (not provisional)."""
        with self._write() as db:
            if self._insert_entity(db, entity):
                return True
            db.execute(
                "UPDATE entities SET provisional = ? WHERE service_sid = ? AND identity = ?"
                " AND provisional = ?",
                (False, entity.service_sid, entity.identity, True),
            )
            return False

    def get_entity(self, account_sid: str, service_sid: str, identity: str) -> Entity | None:
        row = self._one(
            self._ENTITY + " WHERE service_sid = ? AND identity = ? AND account_sid = ?",
            (service_sid, identity, account_sid),
        )
        return self._entity(row) if row else None

    def has_entity(self, account_sid: str, service_sid: str, entity_sid: str) -> bool:
        row = self._one(
            "SELECT 1 FROM entities WHERE sid = ? AND service_sid = ? AND account_sid = ?",
            (entity_sid, service_sid, account_sid),
        )
        return row is not None

    def list_entities(self, account_sid: str, service_sid: str, page: PageRequest) -> Page:
        clause, args = _seq_clause(page)
        rows = self._all(
            self._ENTITY
            + " WHERE service_sid = ? AND account_sid = ?"
            + clause
            + _order(page)
            + " LIMIT ?",
            [service_sid, account_sid, *args, page.page_size + 1],
        )
        return _page(rows, page, self._entity)

    def delete_entity(
        self,
        account_sid: str,
        service_sid: str,
        identity: str,
        deliveries: Sequence[Delivery] = (),
        now: int = 0,
        factor_sids: Collection[str] | None = None,
        entity_sid: str | None = None,
    ) -> bool | None:
        """False when there is no such entity. With `factor_sids`, the factors whose
        deletion `deliveries` announce: None, and nothing deleted, when the entity holds
        another (made since they were read, which on PostgreSQL can commit in between):
        its deletion would go unannounced. With `entity_sid`, the entity they were read
        from: None too when the identity names another now (deleted and made again since:
        the deliveries announce factors already gone)."""
        with self._write() as db:
            # The service's row first (as every write under a service takes it), then the
            # entity's: a deletion of the service, which takes them in that order, cannot
            # deadlock with this one. A factor's insert waits for the entity's row.
            row = db.execute(
                "SELECT sid FROM entities WHERE service_sid = ? AND identity = ?"
                " AND account_sid = ? AND EXISTS (SELECT 1 FROM services WHERE sid = ?"
                + self._FOR_KEY_SHARE
                + ")"
                + self._FOR_UPDATE,
                (service_sid, identity, account_sid, service_sid),
            ).fetchone()
            if row is None:
                return False
            if entity_sid is not None and row[0] != entity_sid:
                return None
            if factor_sids is not None:
                held = db.execute("SELECT sid FROM factors WHERE entity_sid = ?", (row[0],))
                if any(sid not in factor_sids for (sid,) in held.fetchall()):
                    return None
            db.execute("DELETE FROM challenges WHERE entity_sid = ?", (row[0],))
            db.execute("DELETE FROM factors WHERE entity_sid = ?", (row[0],))
            # Again (PostgreSQL): a usernameless challenge whose approval by one of these
            # factors committed while the line above waited for the factor's row has
            # taken this entity_sid since the first.
            db.execute("DELETE FROM challenges WHERE entity_sid = ?", (row[0],))
            db.execute("DELETE FROM entities WHERE sid = ?", (row[0],))
            _enqueue(db, deliveries, now)
            return True

    # --- factors --------------------------------------------------------------------------

    _FACTOR = f"SELECT {FACTOR_COLUMNS} FROM factors"

    def insert_factor(
        self,
        factor: Factor,
        deliveries: Sequence[Delivery] = (),
        rate: RateHit | None = None,
        *,
        entity: Entity | None = None,
        max_factors: int | None = None,
    ) -> InsertOutcome:
        """Insert, counting the rate-limit hit in the same transaction, and creating the
        factor's new `entity` first when given (one write for a new user's first factor).
        Nothing is written when the hit is over the limit (RATE_LIMITED), the entity's
        identity was taken meanwhile (ENTITY_EXISTS), the existing entity it is for was
        deleted meanwhile (ENTITY_GONE: the factor would outlive its user), or that entity
        already has `max_factors` verified or awaiting registration (ENTITY_FULL: counted
        here, in the write, so that concurrent requests cannot pass it together)."""
        columns = FACTOR_COLUMNS.split(", ", 1)[1]
        try:
            with self._write() as db:
                # The entity (new, or locked) only while its service exists: one statement
                # each, which tells only when refused whether the service was the reason.
                if entity is not None and not self._insert_entity(db, entity, provisional=True):
                    if not self._service_alive(db, factor.service_sid):
                        raise _Refused(InsertOutcome.SERVICE_GONE)
                    raise _Refused(InsertOutcome.ENTITY_EXISTS)
                if entity is None:
                    exists = db.execute(
                        "SELECT 1 FROM entities WHERE sid = ? AND EXISTS (SELECT 1 FROM"
                        " services WHERE sid = ?" + self._FOR_KEY_SHARE + ")" + self._FOR_UPDATE,
                        (factor.entity_sid, factor.service_sid),
                    ).fetchone()
                    if exists is None:
                        if not self._service_alive(db, factor.service_sid):
                            raise _Refused(InsertOutcome.SERVICE_GONE)
                        raise _Refused(InsertOutcome.ENTITY_GONE)
                    if max_factors is not None:
                        active = db.execute(
                            "SELECT count(*) FROM factors WHERE entity_sid = ?"
                            " AND (status = 'verified' OR registration_expires > ?)",
                            (factor.entity_sid, factor.date_created),
                        ).fetchone()[0]
                        if active >= max_factors:
                            raise _Refused(InsertOutcome.ENTITY_FULL)
                if rate is not None and self._count_hit(db, rate) > rate.limit:
                    raise _Refused(InsertOutcome.RATE_LIMITED)
                db.execute(
                    f"INSERT INTO factors ({columns}) VALUES ({', '.join('?' * _FACTOR_WIDTH)})",
                    factor_to_row(factor),
                )
                _enqueue(db, deliveries, factor.date_created)
        except _Refused as refused:
            return refused.outcome
        return InsertOutcome.INSERTED

    def get_factor(self, account_sid: str, service_sid: str, sid: str) -> Factor | None:
        row = self._one(
            self._FACTOR + " WHERE sid = ? AND service_sid = ? AND account_sid = ?",
            (sid, service_sid, account_sid),
        )
        return factor_from_row(row) if row else None

    def find_factor_by_registration(
        self, account_sid: str, service_sid: str, challenge: bytes
    ) -> Factor | None:
        row = self._one(
            self._FACTOR + " WHERE registration_challenge = ? AND service_sid = ?"
            " AND account_sid = ?",
            (challenge, service_sid, account_sid),
        )
        return factor_from_row(row) if row else None

    def list_factors(
        self, account_sid: str, service_sid: str, entity_sid: str, page: PageRequest
    ) -> Page:
        clause, args = _seq_clause(page)
        rows = self._all(
            self._FACTOR + " WHERE entity_sid = ? AND service_sid = ?"
            " AND account_sid = ?" + clause + _order(page) + " LIMIT ?",
            [entity_sid, service_sid, account_sid, *args, page.page_size + 1],
        )
        return _page(rows, page, factor_from_row)

    def verified_factors(self, account_sid: str, service_sid: str, entity_sid: str) -> list[Factor]:
        rows = self._all(
            self._FACTOR + " WHERE entity_sid = ? AND service_sid = ?"
            " AND account_sid = ? AND status = 'verified' ORDER BY seq",
            (entity_sid, service_sid, account_sid),
        )
        return [factor_from_row(r) for r in rows]

    def verified_factors_to_recheck(
        self, aaguids: Sequence[str], models: Collection[str], account_sid: str | None = None
    ) -> Iterator[Factor]:
        """The verified passkeys that registered under trusted attestation whose model (what
        vouched for them: `attested`) is one of `models`, and the others that claim one of
        `aaguids`, of every account or of one, by seq. For an operator's command, not for a
        request: no index serves it. The factors are read a page at a time, as the caller
        takes them, so that a million neither fill the memory nor hold a read open (the
        caller may write between pages); an `attested` this release cannot read counts as
        none (re-checked by the AAGUID it claims)."""
        scope, scoped = ("", []) if account_sid is None else (" AND account_sid = ?", [account_sid])
        claimed = sorted({a.lower() for a in aaguids})
        vouched = {m.lower() for m in models}
        return heapq.merge(
            self._vouched_for(vouched, set(claimed), scope, scoped),
            self._claiming(claimed, scope, scoped),
            key=lambda f: f.seq,
        )

    def _vouched_for(
        self, models: set[str], claimed: set[str], scope: str, scoped: list[str]
    ) -> Iterator[Factor]:
        if not models and not claimed:  # (nothing reported: no need to read them all)
            return
        after = -1
        while True:
            rows = self._all(
                "SELECT seq, sid, aaguid, attested FROM factors WHERE status = 'verified'"
                " AND attested IS NOT NULL AND seq > ?" + scope + " ORDER BY seq LIMIT ?",
                [after, *scoped, RECHECK_PAGE],
            )
            picked = []
            for _, sid, aaguid, attested in rows:
                model = attested_fields(attested)[0]
                key, keys = (model, models) if model is not None else (aaguid or "", claimed)
                if key.lower() in keys:
                    picked.append(sid)
            for start in range(0, len(picked), 500):  # (SQLite's bound on a statement's ?s)
                chunk = picked[start : start + 500]
                sql = (
                    self._FACTOR + " WHERE status = 'verified' AND sid IN ("
                    + ", ".join("?" * len(chunk)) + ") ORDER BY seq"
                )  # fmt: skip
                yield from (factor_from_row(r) for r in self._all(sql, chunk))
            if len(rows) < RECHECK_PAGE:
                return
            after = rows[-1][0]

    def _claiming(self, claimed: list[str], scope: str, scoped: list[str]) -> Iterator[Factor]:
        if not claimed:
            return
        sql = (
            self._FACTOR + " WHERE status = 'verified' AND attested IS NULL AND aaguid IN ("
            + ", ".join("?" * len(claimed)) + ") AND seq > ?" + scope + " ORDER BY seq LIMIT ?"
        )  # fmt: skip
        after = -1
        while True:
            rows = self._all(sql, [*claimed, after, *scoped, RECHECK_PAGE])
            yield from (factor_from_row(r) for r in rows)
            if len(rows) < RECHECK_PAGE:
                return
            after = rows[-1][0]

    def announce_report(
        self,
        account_sid: str,
        factor_sid: str,
        status: str,
        deliveries: Sequence[Delivery] = (),
        now: int = 0,
        audit: Sequence[AuditEvent] = (),
    ) -> bool:
        """Record that the verified passkey's model is now reported `status`, and write the
        deliveries announcing it and its `audit` records, unless that status was recorded
        for it already: True when this call recorded it. One statement decides, so two runs
        at once (two hosts, say) announce a passkey's status once between them; the audit
        records commit with it, so no announcement is left without its record (a run
        killed, or its database gone, before a buffered trail was written)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE factors SET reported = ? WHERE sid = ? AND account_sid = ?"
                " AND status = 'verified' AND (reported IS NULL OR reported <> ?)",
                (status, factor_sid, account_sid, status),
            )
            if cur.rowcount != 1:
                return False
            _enqueue(db, deliveries, now)
            if audit:
                _insert_audit(db, audit)
            return True

    _FACTOR_OF_IDENTITY = (
        "SELECT "
        + ", ".join("f." + c.strip() for c in FACTOR_COLUMNS.split(","))
        + " FROM entities e JOIN factors f ON f.entity_sid = e.sid"
        " WHERE e.service_sid = ? AND e.identity = ? AND e.account_sid = ?"
        " AND f.status = 'verified' ORDER BY f.seq"
    )

    def verified_factors_of_identity(
        self, account_sid: str, service_sid: str, identity: str
    ) -> list[Factor]:
        """An identity's verified factors in one read (none: no entity, or none verified)."""
        rows = self._all(self._FACTOR_OF_IDENTITY, (service_sid, identity, account_sid))
        return [factor_from_row(r) for r in rows]

    def rename_factor(self, factor_sid: str, friendly_name: str, now: int) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE factors SET friendly_name = ?, date_updated = ? WHERE sid = ?",
                (friendly_name, now, factor_sid),
            )

    def delete_factor(
        self,
        account_sid: str,
        service_sid: str,
        sid: str,
        deliveries: Sequence[Delivery] = (),
        now: int = 0,
    ) -> bool:
        with self._write() as db:
            # A verified passkey's entity is kept already (KEEP_ENTITY), unless a process of
            # a release before schema 10 verified it during a rolling upgrade: its user
            # deleting it keeps the entity, as any whose user deleted passkeys they had.
            db.execute(
                "UPDATE entities SET provisional = ? WHERE provisional = ? AND sid = (SELECT"
                " entity_sid FROM factors WHERE sid = ? AND service_sid = ? AND account_sid = ?"
                " AND status = 'verified')",
                (False, True, sid, service_sid, account_sid),
            )
            cur = db.execute(
                "DELETE FROM factors WHERE sid = ? AND service_sid = ? AND account_sid = ?",
                (sid, service_sid, account_sid),
            )
            if cur.rowcount != 1:
                return False
            _enqueue(db, deliveries, now)
            return True

    def complete_registration(
        self,
        factor_sid: str,
        credential: Credential,
        now: int,
        deliveries: Sequence[Delivery] = (),
    ) -> bool:
        try:
            with self._write() as db:
                cur = db.execute(VERIFY_FACTOR, verify_factor_args(factor_sid, credential, now))
                if cur.rowcount != 1:
                    return False
                db.execute(KEEP_ENTITY, (False, factor_sid, True))
                _enqueue(db, deliveries, now)
                return True
        except self.integrity_errors as exc:
            if not self._duplicate(exc):
                raise
            raise CredentialConflict from exc

    # --- challenges -----------------------------------------------------------------------

    _CHALLENGE = f"SELECT {CHALLENGE_COLUMNS} FROM challenges"

    def insert_challenge(
        self,
        challenge: Challenge,
        *,
        rate: RateHit | None = None,
        max_pending: int | None = None,
    ) -> InsertOutcome:
        """Insert a challenge, counting its rate-limit hit and checking the entity's pending
        challenges in the same transaction (one write instead of three). Nothing is written
        when its service (SERVICE_GONE), or its entity or the factor it names (ENTITY_GONE),
        was deleted meanwhile.

        The common case is one statement: the INSERT made only where what it belongs to
        exists and the entity has room, then the hit counted (over the limit, the INSERT is
        rolled back with it). Where the INSERT made nothing, the checks run one by one, in
        the order that names the refusal."""
        columns = CHALLENGE_COLUMNS.split(", ", 1)[1]
        lock = self._FOR_KEY_SHARE
        where = [f"EXISTS (SELECT 1 FROM services WHERE sid = ?{lock})"]
        args: list[Any] = [challenge.service_sid]
        if challenge.entity_sid:
            where.append(f"EXISTS (SELECT 1 FROM entities WHERE sid = ?{lock})")
            args.append(challenge.entity_sid)
            if max_pending is not None:
                where.append(f"({_PENDING_OF_ENTITY}) < ?")
                args += [challenge.entity_sid, challenge.date_created, max_pending]
        if challenge.factor_sid:
            where.append(f"EXISTS (SELECT 1 FROM factors WHERE sid = ?{lock})")
            args.append(challenge.factor_sid)
        try:
            with self._write() as db:
                if db.execute(
                    f"INSERT INTO challenges ({columns}) SELECT {', '.join('?' * 17)}"
                    f" WHERE {' AND '.join(where)}",
                    (*challenge_to_row(challenge), *args),
                ).rowcount:
                    if rate is not None and self._count_hit(db, rate) > rate.limit:
                        raise _Refused(InsertOutcome.RATE_LIMITED)
                    return InsertOutcome.INSERTED
                if not self._service_alive(db, challenge.service_sid):
                    raise _Refused(InsertOutcome.SERVICE_GONE)
                if challenge.entity_sid and not self._entity_alive(db, challenge.entity_sid):
                    raise _Refused(InsertOutcome.ENTITY_GONE)
                if challenge.factor_sid and not self._factor_alive(db, challenge.factor_sid):
                    raise _Refused(InsertOutcome.ENTITY_GONE)
                if rate is not None and self._count_hit(db, rate) > rate.limit:
                    raise _Refused(InsertOutcome.RATE_LIMITED)
                if max_pending is not None and challenge.entity_sid:
                    pending = db.execute(
                        _PENDING_OF_ENTITY, (challenge.entity_sid, challenge.date_created)
                    ).fetchone()[0]
                    if pending >= max_pending:
                        raise _Refused(InsertOutcome.TOO_MANY_PENDING)
                db.execute(
                    f"INSERT INTO challenges ({columns}) VALUES ({', '.join('?' * 17)})",
                    challenge_to_row(challenge),
                )
        except _Refused as refused:
            return refused.outcome
        return InsertOutcome.INSERTED

    def get_challenge(self, account_sid: str, service_sid: str, sid: str) -> Challenge | None:
        row = self._one(
            self._CHALLENGE + " WHERE sid = ? AND service_sid = ? AND account_sid = ?",
            (sid, service_sid, account_sid),
        )
        return challenge_from_row(row) if row else None

    _CHALLENGE_AND_FACTOR = (
        "SELECT "
        + ", ".join("c." + col.strip() for col in CHALLENGE_COLUMNS.split(","))
        + ", "
        + ", ".join("f." + col.strip() for col in FACTOR_COLUMNS.split(","))
        + " FROM challenges c LEFT JOIN factors f ON f.service_sid = c.service_sid"
        " AND f.credential_id = ? AND f.account_sid = c.account_sid"
        " WHERE c.challenge = ? AND c.service_sid = ? AND c.account_sid = ?"
    )
    _CHALLENGE_WIDTH = len(CHALLENGE_COLUMNS.split(","))

    def find_challenge_and_factor(
        self, account_sid: str, service_sid: str, value: bytes, credential_id: bytes
    ) -> tuple[Challenge | None, Factor | None]:
        """An assertion's challenge (by its value) and the service's factor holding its
        credential, in one read. No factor is looked for without the challenge."""
        row = self._one(
            self._CHALLENGE_AND_FACTOR, (credential_id, value, service_sid, account_sid)
        )
        if row is None:
            return None, None
        width = self._CHALLENGE_WIDTH
        factor = factor_from_row(row[width:]) if row[width] is not None else None
        return challenge_from_row(row[:width]), factor

    def list_challenges(
        self,
        account_sid: str,
        service_sid: str,
        entity_sid: str,
        page: PageRequest,
        *,
        factor_sid: str | None,
        status: ChallengeStatus | None,
        now: int,
    ) -> Page:
        sql = self._CHALLENGE + " WHERE entity_sid = ? AND service_sid = ? AND account_sid = ?"
        args: list[Any] = [entity_sid, service_sid, account_sid]
        if factor_sid is not None:
            sql += " AND factor_sid = ?"
            args.append(factor_sid)
        if status is ChallengeStatus.PENDING:
            sql += " AND status = 'pending' AND expiration_date >= ?"
            args.append(now)
        elif status is ChallengeStatus.EXPIRED:
            sql += " AND (status = 'expired' OR (status = 'pending' AND expiration_date < ?))"
            args.append(now)
        elif status is not None:
            sql += " AND status = ?"
            args.append(status.value)
        clause, more = _seq_clause(page)
        rows = self._all(
            sql + clause + _order(page) + " LIMIT ?", [*args, *more, page.page_size + 1]
        )
        return _page(rows, page, challenge_from_row)

    def approve_challenge(
        self,
        challenge: Challenge,
        factor: Factor,
        *,
        new_sign_count: int,
        backed_up: bool,
        now: int,
        deliveries: Sequence[Delivery] = (),
        on_flag: Sequence[Delivery] = (),
        on_backup_change: Sequence[Delivery] = (),
        backup_eligible_changed: bool = False,
        flag_counter_regression: bool = False,
        discovered: bool = False,
    ) -> ApproveOutcome:
        """Consume the challenge and record the assertion on the factor, in one transaction.

        The counter moves only forward, and only if no other approval moved it past ours
        meanwhile; otherwise the approval is refused (COUNTER_RACE), or, with
        `flag_counter_regression`, approved with the factor's clone warning set and its
        counter left where it was, and `on_flag` written after `deliveries` (the flag's
        announcement: decided here, where a concurrent approval's counter is seen).
        `on_backup_change` is written after `deliveries` when the factor's stored backup
        state, read here, is not `backed_up` (an approval racing this one may have changed
        it since the caller read the factor). `backup_eligible_changed` latches on the
        factor, and so does `discovered` (the passkey answered a usernameless challenge: it
        is discoverable) on its `discoverable`."""
        try:
            with self._write() as tx:
                if challenge.entity_sid == factor.entity_sid:
                    # entity_sid is indexed: leave it out when it does not change
                    consumed = tx.execute(
                        "UPDATE challenges SET status = 'approved', factor_sid = ?,"
                        " date_updated = ?, date_responded = ?"
                        " WHERE sid = ? AND status = 'pending' AND expiration_date >= ?",
                        (factor.sid, now, now, challenge.sid, now),
                    ).rowcount
                else:  # a usernameless challenge learns whose it was (never another one)
                    consumed = tx.execute(
                        "UPDATE challenges SET status = 'approved', entity_sid = ?, identity = ?,"
                        " factor_sid = ?, date_updated = ?, date_responded = ?"
                        " WHERE sid = ? AND status = 'pending' AND expiration_date >= ?"
                        " AND entity_sid = ''",
                        (
                            factor.entity_sid,
                            factor.identity,
                            factor.sid,
                            now,
                            now,
                            challenge.sid,
                            now,
                        ),
                    ).rowcount
                if consumed != 1:
                    raise _Rollback(ApproveOutcome.NOT_PENDING)
                backup_changed = False
                if on_backup_change:
                    prior = tx.execute(
                        "SELECT backed_up FROM factors WHERE sid = ?", (factor.sid,)
                    ).fetchone()
                    backup_changed = prior is not None and prior[0] != backed_up
                counted = tx.execute(
                    "UPDATE factors SET sign_count = ?, backed_up = ?, date_last_approved = ?,"
                    " date_updated = ?, backup_eligible_changed = backup_eligible_changed OR ?"
                    + DISCOVERED_SET[discovered]
                    + " WHERE sid = ? AND status = 'verified'"
                    " AND (sign_count < ? OR (sign_count = 0 AND ? = 0))",
                    (
                        new_sign_count,
                        backed_up,
                        now,
                        now,
                        backup_eligible_changed,
                        factor.sid,
                        new_sign_count,
                        new_sign_count,
                    ),
                ).rowcount
                flagged = counted != 1 and flag_counter_regression
                if flagged:
                    counted = tx.execute(
                        "UPDATE factors SET clone_warning = ?, backed_up = ?,"
                        " date_last_approved = ?, date_updated = ?,"
                        " backup_eligible_changed = backup_eligible_changed OR ?"
                        + DISCOVERED_SET[discovered]
                        + " WHERE sid = ? AND status = 'verified'",
                        (True, backed_up, now, now, backup_eligible_changed, factor.sid),
                    ).rowcount
                if counted != 1:
                    present = tx.execute(
                        "SELECT 1 FROM factors WHERE sid = ? AND status = 'verified'",
                        (factor.sid,),
                    ).fetchone()
                    raise _Rollback(
                        ApproveOutcome.COUNTER_RACE if present else ApproveOutcome.FACTOR_GONE
                    )
                _enqueue(tx, deliveries, now)
                if backup_changed:
                    _enqueue(tx, on_backup_change, now)
                if flagged:
                    _enqueue(tx, on_flag, now)
        except _Rollback as rollback:
            return rollback.outcome
        return ApproveOutcome.APPROVED

    def purge_expired(
        self,
        before: int,
        *,
        audit_before: int | None = None,
        rate_before: int | None = None,
        batch: int = 1000,
    ) -> int:
        """Delete challenges that expired before `before`, factors whose registration
        expired unfinished before it, the entities such registrations made (provisional)
        once they have no factor left, and sent webhook deliveries last changed before it;
        audit records older than `audit_before`, and rate-limit windows that began before
        `rate_before` (default `before`), over which no rule looks back. In transactions
        of at most `batch` rows, each finding its rows by an index, so no lock is held for
        long; except the rate-limit windows, one statement that reads the whole table, which
        holds only the windows of the last few minutes."""
        removed = 0
        for table, condition in (
            ("challenges", "expiration_date < ?"),
            ("factors", "status = 'unverified' AND registration_expires < ?"),
            ("webhook_deliveries", "status <> 'pending' AND date_updated < ?"),
        ):
            while True:
                with self._write() as tx:
                    count = tx.execute(
                        f"DELETE FROM {table} WHERE seq IN"
                        f" (SELECT seq FROM {table} WHERE {condition} LIMIT ?{self._SKIP_LOCKED})",
                        (before, batch),
                    ).rowcount
                removed += count
                if count < batch:
                    break
        # Entities that abandoned sign-ups made, once their last factor is gone: picked and
        # locked (skipped while a factor's insert holds one), then deleted only if they still
        # have none, read again now that they are locked. (One statement judged them by
        # what it saw as it began: a factor inserted and committed before it took the lock
        # was left without its entity.) A factor's insert that waits for the lock finds its
        # entity gone, and makes a new one, as after any deletion.
        unused = (
            " AND NOT EXISTS (SELECT 1 FROM factors f WHERE f.entity_sid = e.sid)"
            " AND NOT EXISTS (SELECT 1 FROM challenges c WHERE c.entity_sid = e.sid)"
        )
        while True:
            with self._write() as tx:
                picked = [
                    row[0]
                    for row in tx.execute(
                        "SELECT seq FROM entities e WHERE provisional = "
                        + self._PROVISIONAL
                        + " AND date_created < ?"
                        + unused
                        + " LIMIT ?"
                        + self._SKIP_LOCKED,
                        (before, batch),
                    ).fetchall()
                ]
                if picked:
                    marks = ", ".join("?" * len(picked))
                    removed += tx.execute(
                        f"DELETE FROM entities AS e WHERE seq IN ({marks})" + unused, picked
                    ).rowcount
            if len(picked) < batch:
                break
        with self._write() as tx:
            removed += tx.execute(
                "DELETE FROM rate_limits WHERE window_start < ?",
                (before if rate_before is None else rate_before,),
            ).rowcount
        while audit_before is not None:
            with self._write() as tx:
                count = tx.execute(
                    "DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_events"
                    " WHERE date_created < ? LIMIT ?)",
                    (audit_before, batch),
                ).rowcount
            removed += count
            if count < batch:
                break
        return removed

    # --- limits ---------------------------------------------------------------------------

    def rate_limit_count(self, key: str, window_start: int) -> int:
        if self.windows is not None:
            return self.windows.count(key, window_start)
        row = self._one(
            "SELECT count FROM rate_limits WHERE key = ? AND window_start = ?", (key, window_start)
        )
        return int(row[0]) if row else 0

    def first_pending_expiry(self, entity_sid: str, now: int) -> int | None:
        """When the entity's first pending challenge expires (None: none is pending)."""
        row = self._one(
            "SELECT min(expiration_date) FROM challenges WHERE entity_sid = ?"
            " AND status = 'pending' AND expiration_date >= ?",
            (entity_sid, now),
        )
        return int(row[0]) if row and row[0] is not None else None

    def active_factors(
        self, account_sid: str, service_sid: str, entity_sid: str, now: int
    ) -> list[Factor]:
        """An entity's verified factors and those still awaiting registration."""
        rows = self._all(
            self._FACTOR + " WHERE entity_sid = ? AND service_sid = ? AND account_sid = ?"
            " AND (status = 'verified' OR registration_expires > ?) ORDER BY seq",
            (entity_sid, service_sid, account_sid, now),
        )
        return [factor_from_row(r) for r in rows]

    # --- audit ----------------------------------------------------------------------------

    def append_audit(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        with self._write() as tx:
            _insert_audit(tx, events)

    def list_audit(
        self, account_sid: str, page: PageRequest, *, service_sid: str | None = None
    ) -> Page:
        sql = (
            "SELECT seq, account_sid, service_sid, actor, action, resource, outcome, code, step,"
            " request_id, date_created FROM audit_events WHERE account_sid = ?"
        )
        args: list[Any] = [account_sid]
        if service_sid is not None:
            sql += " AND service_sid = ?"
            args.append(service_sid)
        clause, more = _seq_clause(page)
        rows = self._all(
            sql + clause + _order(page) + " LIMIT ?", [*args, *more, page.page_size + 1]
        )
        return _page(
            rows,
            page,
            lambda r: AuditEvent(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[0]),
        )

    def record_failed_attempt(
        self,
        challenge_sid: str,
        *,
        max_attempts: int | None,
        now: int,
        deliveries: Sequence[Delivery] = (),
        on_spent: Sequence[Delivery] = (),
        rate_hits: Sequence[RateHit] = (),
        capped: bool = False,
    ) -> FailureOutcome:
        """Count a failed attempt, and whether it spent the challenge (its `max_attempts`th;
        None: none does, and it stays pending). `deliveries` are
        written with every failure, `on_spent` only with the one that spends it. With
        `capped`, a rate hit that would pass its limit writes nothing (OVER_LIMIT): each
        hit's count is taken in this transaction, which SQLite's write lock and PostgreSQL's
        row lock on the window serialize, so concurrent failures never pass the limit. A
        challenge no longer pending (answered, spent or deleted since it was read, which on
        PostgreSQL can commit in between) counts nothing either (NOT_PENDING)."""
        spends = max_attempts or 2**62  # (no count reaches it)
        try:
            with self._write() as db:
                for hit in rate_hits:
                    if self._count_hit(db, hit) > hit.limit and capped:
                        raise _OverLimit  # rolls the transaction back
                row = db.execute(
                    "UPDATE challenges SET failed_attempts = failed_attempts + 1,"
                    " date_updated = CASE WHEN failed_attempts + 1 >= ? THEN ?"
                    " ELSE date_updated END,"
                    " date_responded = CASE WHEN failed_attempts + 1 >= ? THEN ?"
                    " ELSE date_responded END,"
                    " status = CASE WHEN failed_attempts + 1 >= ? THEN 'denied' ELSE status END"
                    " WHERE sid = ? AND status = 'pending' RETURNING status",
                    (spends, now, spends, now, spends, challenge_sid),
                ).fetchone()
                if row is None:
                    raise _NotPending  # rolls the hits back
                spent = row[0] == "denied"
                _enqueue(db, [*deliveries, *(on_spent if spent else ())], now)
        except _OverLimit:
            return FailureOutcome.OVER_LIMIT
        except _NotPending:
            return FailureOutcome.NOT_PENDING
        return FailureOutcome.SPENT if spent else FailureOutcome.COUNTED

    # --- webhooks -------------------------------------------------------------------------

    _WEBHOOK = (
        "SELECT seq, sid, account_sid, service_sid, friendly_name, event_types, webhook_url,"
        " webhook_method, status, version, date_created, date_updated FROM webhooks"
    )

    @_changes_config
    def insert_webhook(self, webhook: Webhook) -> bool:
        w = webhook
        with self._write() as db:
            if not self._service_alive(db, w.service_sid):
                return False
            self._bump_config(db)
            db.execute(
                "INSERT INTO webhooks (sid, account_sid, service_sid, friendly_name, event_types,"
                " webhook_url, webhook_method, status, version, date_created, date_updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    w.sid,
                    w.account_sid,
                    w.service_sid,
                    w.friendly_name,
                    dump_json(list(w.event_types)),
                    w.webhook_url,
                    w.webhook_method,
                    w.status,
                    w.version,
                    w.date_created,
                    w.date_updated,
                ),
            )
            return True

    @_changes_config
    def update_webhook(
        self, account_sid: str, service_sid: str, sid: str, change: Callable[[Webhook], Webhook]
    ) -> Webhook | None:
        """As `update_service`: `change` made to the row read, locked, in the write. The
        service's row is taken first, as every write under a service takes it: a deletion
        of the service, which takes it before the webhooks, cannot deadlock with this."""
        with self._write() as db:
            row = db.execute(
                self._WEBHOOK
                + " WHERE sid = ? AND service_sid = ? AND account_sid = ?"
                + " AND EXISTS (SELECT 1 FROM services WHERE sid = ?"
                + self._FOR_KEY_SHARE
                + ")"
                + self._FOR_NO_KEY_UPDATE,
                (sid, service_sid, account_sid, service_sid),
            ).fetchone()
            if row is None:
                return None
            w = change(_webhook(row))
            db.execute(
                "UPDATE webhooks SET friendly_name = ?, event_types = ?, webhook_url = ?,"
                " status = ?, version = ?, date_updated = ? WHERE sid = ?",
                (
                    w.friendly_name,
                    dump_json(list(w.event_types)),
                    w.webhook_url,
                    w.status,
                    w.version,
                    w.date_updated,
                    sid,
                ),
            )
            self._bump_config(db)
            # Events not yet delivered follow the change: none to a webhook turned off,
            # and to its new URL when it moved (the old one may be lost, or hostile).
            if w.status != "enabled":
                db.execute(_DROP_PENDING, (sid,))
            else:
                db.execute(
                    "UPDATE webhook_deliveries SET url = ?"
                    " WHERE webhook_sid = ? AND status = 'pending'",
                    (w.webhook_url, sid),
                )
            return w

    def get_webhook(self, account_sid: str, service_sid: str, sid: str) -> Webhook | None:
        row = self._one(
            self._WEBHOOK + " WHERE sid = ? AND service_sid = ? AND account_sid = ?",
            (sid, service_sid, account_sid),
        )
        return _webhook(row) if row else None

    def list_webhooks(self, account_sid: str, service_sid: str, page: PageRequest) -> Page:
        clause, args = _seq_clause(page)
        rows = self._all(
            self._WEBHOOK
            + " WHERE service_sid = ? AND account_sid = ?"
            + clause
            + _order(page)
            + " LIMIT ?",
            [service_sid, account_sid, *args, page.page_size + 1],
        )
        return _page(rows, page, _webhook)

    def enabled_webhooks(self, account_sid: str, service_sid: str) -> list[Webhook]:
        return list(
            self._cached(
                ("webhooks", account_sid, service_sid),
                lambda: tuple(self._load_enabled_webhooks(account_sid, service_sid)),
            )
        )

    def _load_enabled_webhooks(self, account_sid: str, service_sid: str) -> list[Webhook]:
        rows = self._all(
            self._WEBHOOK + " WHERE service_sid = ? AND account_sid = ? AND status = 'enabled'"
            " ORDER BY seq",
            (service_sid, account_sid),
        )
        return [_webhook(r) for r in rows]

    @_changes_config
    def delete_webhook(self, account_sid: str, service_sid: str, sid: str) -> bool:
        with self._write() as db:
            if not self._service_alive(db, service_sid):  # its row first (`update_webhook`)
                return False
            cur = db.execute(
                "DELETE FROM webhooks WHERE sid = ? AND service_sid = ? AND account_sid = ?",
                (sid, service_sid, account_sid),
            )
            if cur.rowcount != 1:
                return False
            self._bump_config(db)
            db.execute(_DROP_PENDING, (sid,))  # nothing more to a webhook that is gone
            return True

    # --- the delivery outbox --------------------------------------------------------------

    # ... and its webhook has no delivery out (webhook_sid is NOT NULL)
    _NONE_OUT = (
        " AND webhook_sid NOT IN (SELECT webhook_sid FROM webhook_deliveries"
        " WHERE status = 'pending' AND locked_until > ?)"
    )

    def claim_deliveries(
        self, *, now: int, lease_seconds: int, limit: int, per_account: int | None = None
    ) -> list[ClaimedDelivery]:
        """Lease up to `limit` due deliveries, at most one per webhook: its oldest due one,
        and none while another of its deliveries is out. So each webhook gets its events
        one at a time and in order (unless one awaits a retry), and a target that is slow or
        never answers holds up only its own. With `per_account`, no account gets more out
        than that, so one account's webhooks cannot take every sender. A lease that runs
        out (the sender died) makes the delivery due again, so an unacknowledged event is
        retried, never lost. The outer WHERE repeats the conditions so that a concurrent
        claimer re-checks them on the locked row (PostgreSQL) and no row is leased twice.

        A round that drops the deliveries of webhooks gone or turned off claims again at
        once for the places they took, rather than leave them to the sender's next look an
        interval later. Each round that goes on drops the deliveries it leased, so the
        rounds end; what a round leased counts as out in the next."""
        claimed: list[ClaimedDelivery] = []
        while len(claimed) < limit:
            more, dropped = self._claim_round(
                now=now, lease_seconds=lease_seconds, limit=limit - len(claimed),
                per_account=per_account,
            )  # fmt: skip
            claimed += more
            if not dropped:
                break
        return sorted(claimed, key=lambda c: c.seq)

    def _claim_round(
        self, *, now: int, lease_seconds: int, limit: int, per_account: int | None
    ) -> tuple[list[ClaimedDelivery], bool]:
        """(the deliveries leased, whether any were dropped as their webhook's gone)."""
        due = self._one(
            "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?"
            " AND locked_until <= ?" + self._NONE_OUT + " LIMIT 1",
            (now, now, now),
        )
        if due is None:  # the common case: a read, no write lock
            return [], False
        # Each due webhook's oldest delivery, unless the webhook has one out.
        oldest = (
            "SELECT min(seq) FROM webhook_deliveries WHERE status = 'pending'"
            " AND next_attempt_at <= ? AND locked_until <= ?"
            + self._NONE_OUT
            + " GROUP BY webhook_sid"
        )
        if per_account is None:
            chosen = oldest + " ORDER BY 1 LIMIT ?"
            args: tuple[Any, ...] = (now, now, now, limit)
        else:  # ranked within its account, after what the account has out
            chosen = (
                "SELECT seq FROM (SELECT d.seq, row_number() OVER"
                " (PARTITION BY d.account_sid ORDER BY d.seq) + coalesce(o.n, 0) AS nth"
                " FROM webhook_deliveries d LEFT JOIN (SELECT account_sid, count(*) AS n"
                " FROM webhook_deliveries WHERE status = 'pending' AND locked_until > ?"
                " GROUP BY account_sid) o ON o.account_sid = d.account_sid"
                " WHERE d.seq IN (" + oldest + ")) ranked WHERE nth <= ? ORDER BY seq LIMIT ?"
            )
            args = (now, now, now, now, per_account, limit)
        with self._write() as db:
            self._lock_claims(db)
            if self._SKIP_LOCKED:  # (a window function's SELECT cannot lock: one around it)
                chosen = (
                    "SELECT seq FROM webhook_deliveries WHERE seq IN ("
                    + chosen
                    + ")"
                    + self._SKIP_LOCKED
                )
            rows = db.execute(
                "UPDATE webhook_deliveries SET locked_until = ?, attempts = attempts + 1,"
                " date_updated = ? WHERE seq IN (" + chosen + ") AND status = 'pending'"
                " AND locked_until <= ?"
                " RETURNING seq, event_sid, event_type, webhook_sid, account_sid, url, payload,"
                " attempts, date_created",
                (now + lease_seconds, now, *args, now),
            ).fetchall()
            if not rows:
                return [], False
            # Each delivery goes to its webhook as it is now. An event's deliveries were
            # built from the webhooks read before its transaction (the configuration
            # cache), and on PostgreSQL a change to a webhook does not see deliveries
            # still uncommitted: one deleted or turned off meanwhile gets none, and one
            # that moved gets its new URL, as the change does to those it saw.
            hooks = sorted({r[3] for r in rows})
            urls = dict(
                db.execute(
                    "SELECT sid, webhook_url FROM webhooks WHERE status = 'enabled'"
                    " AND sid IN (" + ", ".join("?" * len(hooks)) + ")",
                    hooks,
                ).fetchall()
            )
            # The pending deliveries of a webhook gone or off are dropped, as its deletion
            # or disabling drops those it sees: those claimed, and the others while it is
            # still off as the DELETE reads it (on PostgreSQL it may have been turned on
            # again since the read above, and an event for it committed, not to be lost).
            dropped = [r[0] for r in rows if r[3] not in urls]
            gone = sorted({r[3] for r in rows if r[3] not in urls})
            if gone:
                db.execute(
                    "DELETE FROM webhook_deliveries WHERE seq IN ("
                    + ", ".join("?" * len(dropped))
                    + ") OR (status = 'pending' AND webhook_sid IN ("
                    + ", ".join("?" * len(gone))
                    + ") AND webhook_sid NOT IN"
                    " (SELECT sid FROM webhooks WHERE status = 'enabled'))",
                    [*dropped, *gone],
                )
        claimed = [
            ClaimedDelivery(
                seq=r[0],
                delivery=Delivery(r[1], r[2], r[3], r[4], urls[r[3]], orjson.loads(r[6])),
                attempts=r[7],
                lease_until=now + lease_seconds,
                date_created=r[8],
            )
            for r in rows
            if r[3] in urls
        ]
        return sorted(claimed, key=lambda c: c.seq), bool(gone)

    def finish_delivery(
        self,
        seq: int,
        *,
        now: int,
        delivered: bool,
        retry_at: int | None,
        error: str | None,
        lease_until: int | None = None,
        attempt_spent: bool = True,
    ) -> bool:
        """Record a delivery's outcome: delivered, retry at `retry_at`, or given up. With
        `lease_until`, only while that lease is still held: a sender whose lease ran out (and
        whose delivery another sender took over) cannot overwrite the newer outcome. Without
        `attempt_spent`, the claim's attempt is given back (the failure was not the
        delivery's)."""
        status = "delivered" if delivered else ("pending" if retry_at is not None else "failed")
        sql = (
            "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?, locked_until = 0,"
            " last_error = ?, date_updated = ?"
            + ("" if attempt_spent else ", attempts = attempts - 1")
            + " WHERE seq = ? AND status = 'pending'"
        )
        args: list[Any] = [status, retry_at if retry_at is not None else now, error, now, seq]
        if lease_until is not None:
            sql += " AND locked_until = ?"
            args.append(lease_until)
        with self._write() as db:
            return db.execute(sql, args).rowcount == 1

    def delivery_backlog(self) -> int:
        row = self._one("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'", ())
        return int(row[0])
