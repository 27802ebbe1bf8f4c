"""PostgreSQL backend: for many stateless passkeyd processes on one shared database.

psycopg 3 with a connection pool. Queries run in worker threads (`runs_in_threads`), so
a round trip to the server does not stall the event loop. Exactly-once holds because the
ceremony-finishing UPDATEs are conditional: under READ COMMITTED a second transaction
waits on the row lock, re-reads the row, and finds it no longer pending.

Configuration changes (accounts, keys, services, webhooks) are announced with NOTIFY in
their own transaction. A serving process LISTENs on a connection of its own and drops its
cached configuration when one arrives, so its requests need not read the configuration
version first (one query fewer per request). While that connection is down, requests read
the version again, as without it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from passkeyd.dburl import without_secrets
from passkeyd.domain.models import Challenge, Credential, Delivery, Factor, RateHit
from passkeyd.domain.store import (
    ApproveOutcome,
    CredentialConflict,
    InsertOutcome,
    NotCached,
    StorageUnavailable,
)
from passkeyd.logs import exception_text

from .rows import CHALLENGE_COLUMNS, challenge_to_row
from .sql import (
    DELIVERY_INSERT,
    DISCOVERED_SET,
    VERIFY_FACTOR,
    SqlStore,
    Tx,
    delivery_values,
    verify_factor_args,
)

_MIGRATION_LOCK = 0x7061_7373  # "pass": one advisory lock id for `passkeyd migrate`
_CLAIM_LOCK = 0x686F_6F6B  # "hook": webhook claims, one at a time
CHANNEL = "passkeyd_config"
LISTEN_RETRY_SECONDS = 1.0
# The listener also reads the configuration version this often: a change whose NOTIFY was
# lost is caught, and a connection that died silently is found (with TCP keepalives and
# tcp_user_timeout bounding how long a query on it can hang).
LISTEN_CHECK_SECONDS = 2.0
_KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
              "keepalives_count": 2, "tcp_user_timeout": 5000}  # fmt: skip


def _keepalive_for(url: str) -> dict[str, Any]:
    """`_KEEPALIVE`, but what the URL sets itself: every connection has them, so that one to
    a server gone without a word (a dead host, a partition dropping packets) fails within
    seconds. Without them a request on such a connection waited for the kernel's
    retransmissions (about 15 minutes), and so did a shutdown."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return dict(_KEEPALIVE)
    return {k: v for k, v in _KEEPALIVE.items() if k not in given}


# How long a statement waits for a lock another transaction holds (a table locked by hand,
# a long migration, a stuck session) before it fails and its request is answered 503, rolled
# back. Without it a request waited for as long as the lock was held: past the 10 s a
# shutdown gives requests, when it was answered 500 and then committed. SQLite's writers wait
# at most BUSY_TIMEOUT_SECONDS. (Migrations wait as long as they must: `_lock_migrations`.)
LOCK_TIMEOUT_SECONDS = 5.0
# How long a migration's statement waits for a table's lock before `migrate` rolls back and
# tries again, and the longest pause between its tries (`_lock_migrations`).
MIGRATION_LOCK_TIMEOUT_SECONDS = 1.0
MIGRATION_RETRY_MAX_SECONDS = 2.0

log = logging.getLogger("passkeyd.storage")


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """Our SQL uses `?` placeholders; psycopg wants `%s` (and a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Each new connection's session settings."""
    conn.execute(f"SET lock_timeout = {int(LOCK_TIMEOUT_SECONDS * 1000)}")


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(_pg(sql), args or None)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_pg(sql), rows)  # pipelined: one round trip


def _deliveries_if(
    deliveries: Sequence[Delivery],
    now: int,
    cte: str,
    *,
    also: Sequence[tuple[Sequence[Delivery], str]] = (),
) -> tuple[str, list[Any]]:
    """A CTE writing webhook deliveries into the outbox when the CTE `cte` returned a row
    (the change they announce was made), and its arguments (as sql._enqueue); and after
    them each group of `also`, written only when its SQL condition holds too (a condition
    takes no argument). One statement, so that they take their sequence numbers in this
    order."""
    groups = [deliveries, *(group for group, _ in also)]
    rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * sum(map(len, groups)))
    condition = f"EXISTS (SELECT 1 FROM {cte})"
    if also:
        held = " OR ".join(f"(d.x = {n} AND {c})" for n, (_, c) in enumerate(also, start=1))
        condition += f" AND (d.x = 0 OR {held})"
    sql = (
        f"sent AS ({DELIVERY_INSERT} SELECT e, t, w, a, u, p, 'pending', 0, %s, 0, %s, %s"
        f" FROM (VALUES {rows}) AS d (o, x, e, t, w, a, u, p) WHERE {condition}"
        " ORDER BY o)"  # in the events' order (a webhook's deliveries go out by seq)
    )
    args: list[Any] = [now, now, now]
    n = 0
    for x, group in enumerate(groups):
        for d in group:
            args += [n, x, *delivery_values(d)]
            n += 1
    return sql, args


# Errors of the connection rather than of the statement (IntegrityError and DataError are
# not among them). PoolTimeout: no connection could be had in time. ReadOnlySqlTransaction
# (25006): a server that takes no writes (a standby after a failover, or
# default_transaction_read_only set on the database). UndefinedTable (42P01): the schema
# gone from under the process (SQLite answers 503 for both: its OperationalError).
_UNAVAILABLE = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    psycopg.errors.ReadOnlySqlTransaction,
    psycopg.errors.UndefinedTable,
)


def _connection_lost(exc: Exception) -> bool:
    """No connection, or the one in use is gone: no SQLSTATE (a client-side failure), or
    class 08 (connection exception) or 57P (the server shutting down, a terminated
    backend)."""
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(("08", "57P"))


def _lasting(exc: psycopg.Error) -> bool:
    """A connection error that waiting will not cure: a URL libpq cannot read, a bad
    option value, or a server that answered and refused (no such database or role,
    credentials or pg_hba.conf). Not: no answer, or a server starting up or full."""
    if isinstance(exc, psycopg.ProgrammingError):
        return True
    message = str(exc)
    return any(
        sign in message
        for sign in (
            "connection is bad: invalid",
            "does not exist",
            "authentication failed",
            "no pg_hba.conf entry",
        )
    )


class _Redacted(logging.Filter):
    """Takes the database URL's secrets out of what psycopg's pool logs: each connection
    it fails to make is a warning quoting libpq's error, which names a password's tail
    after an unencoded "@" as the host (`failed to resolve host 'tail@db'`)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = without_secrets(message, self._url)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class PostgresStore(SqlStore):
    dialect = "postgres"
    runs_in_threads = True
    integrity_errors = (psycopg.errors.IntegrityError,)

    @staticmethod
    def _duplicate(exc: Exception) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)

    _FOR_UPDATE = " FOR UPDATE"
    _FOR_KEY_SHARE = " FOR KEY SHARE"
    _FOR_NO_KEY_UPDATE = " FOR NO KEY UPDATE"
    _SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    _PROVISIONAL = "TRUE"

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout: float = 10.0) -> None:
        self.concurrency = pool_size
        self._url = url
        self._connect_timeout = connect_timeout
        self._listening = False  # every configuration change reaches this process
        self._listener: threading.Thread | None = None
        self._stop_listening = threading.Event()
        # Set while PostgreSQL does not answer: requests then connect on their own (failing
        # at once, or as soon as it answers again) instead of waiting for the pool.
        self._unreachable = False
        self._redacted = _Redacted(url)
        logging.getLogger("psycopg.pool").addFilter(self._redacted)
        try:
            self._open(url, pool_size, connect_timeout)
        except BaseException:  # (close() is never reached: the filter goes now)
            logging.getLogger("psycopg.pool").removeFilter(self._redacted)
            raise

    def _open(self, url: str, pool_size: int, connect_timeout: float) -> None:
        # One connection first, for what the pool would only log while it retries: a URL
        # or a setting libpq refuses, a database or role that does not exist, credentials
        # refused. Those do not go away, and are said at once; a server not (yet) answering
        # is waited for, as long as the pool waits.
        first_error = ""
        deadline = time.monotonic() + connect_timeout
        try:
            self._connect().close()
        except psycopg.Error as exc:
            first_error = without_secrets(str(exc).strip(), url)
            if _lasting(exc):
                raise StorageUnavailable(f"cannot connect to PostgreSQL: {first_error}") from exc
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, **_keepalive_for(url)},
            configure=_configure,
            timeout=connect_timeout,
            # The pool retries a failed connection with a doubling delay, up to this long;
            # after a long outage the delay would leave it without a connection for as long
            # again once the server is back. Given up sooner, the next request retries.
            reconnect_timeout=max(1.0, connect_timeout),
            open=False,
            name="passkeyd",
        )
        try:
            # (what the first try did not use of the timeout: a server that does not answer
            # is waited for connect_timeout in all)
            self._pool.open(wait=True, timeout=max(0.5, deadline - time.monotonic()))
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL within {connect_timeout:g} s"
                + (f": {first_error}" if first_error else "")
            ) from exc

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool. The server gone, restarting, or out of connections
        (or this one dropped meanwhile) is StorageUnavailable, answered 503: not a 500.

        While the server does not answer, a request does not wait for the pool (its
        timeout, for each query of the request): it connects on its own, which fails at
        once, or works as soon as the server is back, and then sets the pool growing."""
        try:
            if self._unreachable and self._pool.get_stats().get("pool_available", 0) == 0:
                with self._connect() as conn:  # raises at once while the server is down
                    self._unreachable = False
                    self._pool.check()  # grows the pool again, if it gave up meanwhile
                    yield conn
                return
            self._unreachable = False  # (the pool has a connection to try)
            with self._pool.connection() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            # No connection within the timeout (the server down, or every connection busy),
            # or this one dropped (a restart, a failover): only a server that does not
            # answer a new connection sends the next requests around the pool, and only
            # while the pool has no connection to offer. A server's refusal of one statement
            # (a deadlock, a timeout: it has an SQLSTATE of another class) is no outage.
            if _connection_lost(exc) and not self._answers():
                self._unreachable = True
            raise StorageUnavailable(f"PostgreSQL is unavailable ({type(exc).__name__})") from exc

    def _connect(self) -> psycopg.Connection[Any]:
        timeout = max(1, round(self._connect_timeout))  # (libpq counts whole seconds)
        conn = psycopg.connect(
            self._url, autocommit=True, connect_timeout=timeout, **_keepalive_for(self._url)
        )
        try:
            _configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _answers(self) -> bool:
        try:
            self._connect().close()
        except psycopg.Error:
            return False
        return True

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        with self._connection() as conn, conn.transaction():
            yield _PgTx(conn)

    # --- a ceremony's write in one statement ---------------------------------------------

    def insert_challenge(
        self,
        challenge: Challenge,
        *,
        rate: RateHit | None = None,
        max_pending: int | None = None,
    ) -> InsertOutcome:
        """As SqlStore's, in one statement instead of a transaction of five round trips
        (each costs the process about 100 us of CPU): the pending count, the rate-limit
        window's count, the hit and the INSERT are common table expressions, the hit and the
        INSERT made only when both limits leave room. A refused challenge counts no hit.

        The rate limit holds exactly under concurrency (the window's row is locked and its
        count checked again). The pending bound is counted in the statement's snapshot, so
        simultaneous requests for one entity may together pass it by as many as they are
        (the generic transaction counted after waiting for the window's row): it bounds what
        a flood stores, which the rate limit bounds too."""
        # The service's row, locked against its deletion until this commits (a challenge
        # under a service deleted meanwhile would outlive it): nothing is written without.
        parts: list[str] = ["svc AS (SELECT 1 FROM services WHERE sid = %s FOR KEY SHARE)"]
        args: list[Any] = [challenge.service_sid]
        alive, entity_alive = "EXISTS (SELECT 1 FROM svc)", "TRUE"
        if challenge.entity_sid:  # and its entity's, against the entity's deletion
            parts.append("ent AS (SELECT 1 FROM entities WHERE sid = %s FOR KEY SHARE)")
            args.append(challenge.entity_sid)
            entity_alive = "EXISTS (SELECT 1 FROM ent)"
            if challenge.factor_sid:  # and the one passkey it is for
                parts.append("fac AS (SELECT 1 FROM factors WHERE sid = %s FOR KEY SHARE)")
                args.append(challenge.factor_sid)
                entity_alive += " AND EXISTS (SELECT 1 FROM fac)"
            alive += f" AND {entity_alive}"
        room: str = "TRUE"
        room_args: list[Any] = []
        if max_pending is not None and challenge.entity_sid:
            parts.append(
                "pending AS (SELECT count(*) AS n FROM challenges WHERE entity_sid = %s"
                " AND status = 'pending' AND expiration_date >= %s)"
            )
            args += [challenge.entity_sid, challenge.date_created]
            room, room_args = "(SELECT n FROM pending) < %s", [max_pending]
        over, over_args = "FALSE", []
        go, go_args = room, list(room_args)
        if rate is not None:
            parts.append(
                "used AS (SELECT count FROM rate_limits WHERE key = %s AND window_start = %s)"
            )
            args += [rate.key, rate.window_start]
            over, over_args = "coalesce((SELECT count FROM used), 0) >= %s", [rate.limit]
            # The window's row is locked by ON CONFLICT: its count is checked again there,
            # so concurrent challenges cannot together pass the limit.
            parts.append(
                "hit AS (INSERT INTO rate_limits (key, window_start, count)"
                f" SELECT %s, %s, 1 WHERE {alive} AND NOT ({over}) AND {room}"
                " ON CONFLICT (key) DO UPDATE SET"
                " count = CASE WHEN rate_limits.window_start = excluded.window_start"
                " THEN rate_limits.count + 1 ELSE 1 END,"
                " window_start = excluded.window_start"
                " WHERE rate_limits.window_start < excluded.window_start"
                " OR rate_limits.window_start > %s"  # dated by a clock since stepped back
                " OR (rate_limits.window_start = excluded.window_start"
                " AND rate_limits.count < %s) RETURNING count)"
            )
            args += [
                rate.key, rate.window_start, *over_args, *room_args, rate.stale_after, rate.limit
            ]  # fmt: skip
            # A hit of a window older than the stored one changes nothing and counts alone
            # (see `_count_hit_in_table`): the challenge is made without it.
            go = (
                "(EXISTS (SELECT 1 FROM hit) OR (EXISTS (SELECT 1 FROM rate_limits"
                f" WHERE key = %s AND window_start > %s) AND {room}))"
            )
            go_args = [rate.key, rate.window_start, *room_args]
        columns = CHALLENGE_COLUMNS.split(", ", 1)[1]
        parts.append(
            f"ins AS (INSERT INTO challenges ({columns})"
            f" SELECT {', '.join(['%s'] * 17)} WHERE {alive} AND {go}"
            " RETURNING 1)"
        )
        args += [*challenge_to_row(challenge), *go_args]
        sql = (
            f"WITH {', '.join(parts)} SELECT EXISTS (SELECT 1 FROM ins), {over}, {room},"
            f" EXISTS (SELECT 1 FROM svc), {entity_alive}"
        )
        args += [*over_args, *room_args]
        with self._connection() as conn:
            row = conn.execute(sql, args).fetchone()
        assert row is not None  # a SELECT without FROM: always one row
        inserted, over_limit, has_room, service_exists, entity_exists = row
        if inserted:
            return InsertOutcome.INSERTED
        if not service_exists:
            return InsertOutcome.SERVICE_GONE
        if not entity_exists:
            return InsertOutcome.ENTITY_GONE
        if over_limit or has_room:  # (has room yet no hit: others filled the window)
            return InsertOutcome.RATE_LIMITED
        return InsertOutcome.TOO_MANY_PENDING

    def complete_registration(
        self,
        factor_sid: str,
        credential: Credential,
        now: int,
        deliveries: Sequence[Delivery] = (),
    ) -> bool:
        """As SqlStore's, in one statement (the factor verified, and its webhook deliveries
        written only if it was) instead of a transaction of three round trips."""
        parts = [
            f"verified AS ({_pg(VERIFY_FACTOR)} RETURNING entity_sid)",
            # (see KEEP_ENTITY; a data-modifying WITH runs whether or not it is read)
            "kept AS (UPDATE entities SET provisional = FALSE"
            " WHERE sid IN (SELECT entity_sid FROM verified) AND provisional)",
        ]
        args: list[Any] = list(verify_factor_args(factor_sid, credential, now))
        if deliveries:
            sent, sent_args = _deliveries_if(deliveries, now, "verified")
            parts.append(sent)
            args += sent_args
        sql = f"WITH {', '.join(parts)} SELECT EXISTS (SELECT 1 FROM verified)"
        try:
            with self._connection() as conn:
                row = conn.execute(sql, args).fetchone()
        except self.integrity_errors as exc:
            if not self._duplicate(exc):
                raise
            raise CredentialConflict from exc
        return bool(row and row[0])

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
        """As SqlStore's, in one statement instead of a transaction of four round trips or
        more. `pending` locks the challenge while it is pending and unexpired (a concurrent
        approval waits on it, then finds it approved); the factor's counter moves only if it
        grows (`counted`), or, with the flag policy, the factor is flagged (`flagged`, the
        exact opposite condition); the challenge is approved and the webhook deliveries
        written only if one of them did. So a refusal changes nothing. With
        `on_backup_change`, `prior` then locks the factor and reads its backup state as the
        last approval committed it (the statement's snapshot may be older)."""
        grows = "(sign_count < %s OR (sign_count = 0 AND %s = 0))"
        parts = [
            # Approvable by this factor: a challenge for its owner, or a usernameless one.
            "pending AS (SELECT sid FROM challenges WHERE sid = %s AND status = 'pending'"
            " AND expiration_date >= %s AND entity_sid IN ('', %s) FOR UPDATE)",
        ]
        args: list[Any] = [challenge.sid, now, factor.entity_sid]
        ready = "pending"
        if on_backup_change:
            # Referenced by the updates below, so run before them: the challenge's lock is
            # taken first, as in every approval, then the factor's. FOR UPDATE, not the
            # weaker FOR NO KEY UPDATE the update itself takes: with that, two approvals of
            # one passkey deadlocked (40P01) beside challenge creations naming it, which
            # hold FOR KEY SHARE on it (a review's stress run: 2 to 5 per 20 s; none so).
            parts.append(
                "prior AS (SELECT backed_up FROM factors WHERE sid = %s"
                " AND EXISTS (SELECT 1 FROM pending) FOR UPDATE)"
            )
            args.append(factor.sid)
            ready = "prior"
        parts.append(
            "counted AS (UPDATE factors SET sign_count = %s, backed_up = %s,"
            " date_last_approved = %s, date_updated = %s,"
            " backup_eligible_changed = backup_eligible_changed OR %s"
            f"{DISCOVERED_SET[discovered]} WHERE sid = %s AND status = 'verified' AND {grows}"
            f" AND EXISTS (SELECT 1 FROM {ready}) RETURNING 1)"
        )
        args += [new_sign_count, backed_up, now, now, backup_eligible_changed, factor.sid]
        args += [new_sign_count, new_sign_count]
        done = "EXISTS (SELECT 1 FROM counted)"
        if flag_counter_regression:
            # Only where `counted` updated nothing (it runs first, as this reads it): also
            # when a concurrent approval moved the counter past ours after our snapshot.
            parts.append(
                "flagged AS (UPDATE factors SET clone_warning = TRUE, backed_up = %s,"
                " date_last_approved = %s, date_updated = %s,"
                " backup_eligible_changed = backup_eligible_changed OR %s"
                f"{DISCOVERED_SET[discovered]}"
                " WHERE sid = %s AND status = 'verified' AND NOT EXISTS (SELECT 1 FROM counted)"
                f" AND EXISTS (SELECT 1 FROM {ready}) RETURNING 1)"
            )
            args += [backed_up, now, now, backup_eligible_changed, factor.sid]
            done = "(EXISTS (SELECT 1 FROM counted) OR EXISTS (SELECT 1 FROM flagged))"
        if challenge.entity_sid == factor.entity_sid:
            learned, learned_args = "", []
        else:  # a usernameless challenge learns whose it was
            learned, learned_args = (
                " entity_sid = %s, identity = %s,",
                [
                    factor.entity_sid,
                    factor.identity,
                ],
            )
        parts.append(
            f"approved AS (UPDATE challenges SET status = 'approved',{learned}"
            " factor_sid = %s, date_updated = %s, date_responded = %s"
            f" WHERE sid IN (SELECT sid FROM pending) AND {done} RETURNING 1)"
        )
        args += [*learned_args, factor.sid, now, now]
        on_flag = on_flag if flag_counter_regression else ()
        if deliveries or on_flag or on_backup_change:
            also = [
                (
                    on_backup_change,
                    f"(SELECT backed_up FROM prior) IS DISTINCT FROM {bool(backed_up)}",
                ),
                (on_flag, "EXISTS (SELECT 1 FROM flagged)"),
            ]
            sent, sent_args = _deliveries_if(
                deliveries, now, "approved", also=[(g, c) for g, c in also if g]
            )
            parts.append(sent)
            args += sent_args
        sql = (
            f"WITH {', '.join(parts)} SELECT EXISTS (SELECT 1 FROM pending),"
            " EXISTS (SELECT 1 FROM approved)"
        )
        with self._connection() as conn:
            row = conn.execute(sql, args).fetchone()
            assert row is not None
            was_pending, approved = row
            if approved:
                return ApproveOutcome.APPROVED
            if not was_pending:
                return ApproveOutcome.NOT_PENDING
            # Read again, in a snapshot of its own: the statement's own still shows a factor
            # whose deletion committed while `counted` waited for its row.
            present = conn.execute(
                "SELECT 1 FROM factors WHERE sid = %s AND status = 'verified'", (factor.sid,)
            ).fetchone()
        return ApproveOutcome.COUNTER_RACE if present else ApproveOutcome.FACTOR_GONE

    # --- configuration changes, announced -------------------------------------------------

    def _bump_config(self, db: Tx) -> None:  # type: ignore[override]
        super()._bump_config(db)
        db.execute(f"NOTIFY {CHANNEL}")  # sent to every listener when this commits

    def refresh_config(self) -> None:
        if self._listening:
            if self._config_version is None:  # forgotten: cache again from now on
                self._config = {}
                self._config_version = -1
            return
        if self._caching_only():
            raise NotCached
        super().refresh_config()

    def start_group_commit(self, loop: asyncio.AbstractEventLoop) -> None:
        """(Serving starts.) Listen for configuration changes."""
        if self._listener is None:
            stop = self._stop_listening = threading.Event()  # a stopped listener's own
            self._listener = threading.Thread(
                target=self._listen_forever,
                args=(stop,),
                name="passkeyd-config-listener",
                daemon=True,
            )
            self._listener.start()

    def stop_group_commit(self) -> None:
        self._stop_listening.set()
        if self._listener is not None:
            self._listener.join(timeout=self._connect_timeout + 2)
            self._listener = None
        self._listening = False
        self.forget_config()

    def _listen_forever(self, stop: threading.Event) -> None:
        failing = False  # said once per run of failures
        while not stop.is_set():
            try:
                with psycopg.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=max(1, int(self._connect_timeout)),
                    application_name="passkeyd-config-listener",
                    **_keepalive_for(self._url),
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    seen = self._version()
                    # Announced from here on; what was cached before may have missed one.
                    self.forget_config()
                    if stop.is_set():
                        return
                    self._listening = True
                    if failing:
                        log.info("configuration changes heard again")
                        failing = False
                    check_at = time.monotonic() + LISTEN_CHECK_SECONDS
                    while not stop.is_set():
                        # (a short wait, so that stopping is not held up by it)
                        for _ in conn.notifies(timeout=0.25):
                            self.forget_config()
                        if time.monotonic() >= check_at:
                            check_at = time.monotonic() + LISTEN_CHECK_SECONDS
                            version = self._version()
                            if version != seen:  # a change whose announcement was lost
                                self.forget_config()
                                seen = version
            except Exception as exc:
                if not failing:
                    said = without_secrets(exception_text(exc), self._url)
                    log.warning("configuration changes unheard (%s): reading versions", said)
                    failing = True
            finally:
                self._listening = False
                self.forget_config()
            stop.wait(LISTEN_RETRY_SECONDS)

    def _version(self) -> Any:
        """Read through the pool, the connections requests use (were the listener's own
        connection on another server after a failover, its reads would prove nothing)."""
        row = self._one("SELECT version FROM config_version WHERE id = 1", ())
        return row[0] if row else None

    def applied_migrations(self) -> set[int]:
        # A schema not yet migrated has no schema_migrations: nothing applied. (Reading it
        # would be UndefinedTable, which `_connection` answers as an outage, a table lost
        # under a serving process: `migrate` and `check-config` refused an empty schema.)
        row = self._one("SELECT to_regclass('schema_migrations')", ())
        if row is None or row[0] is None:
            return set()
        return super().applied_migrations()

    def _lock_migrations(self, tx: Tx) -> None:
        # A migration waits for another `migrate` as long as it takes. Its statements wait
        # for a table's lock at most MIGRATION_LOCK_TIMEOUT_SECONDS: a lock request that
        # waits queues every later query on the table behind it, so an ALTER TABLE waiting
        # for a long transaction (a pg_dump, an open psql session) held up every replica's
        # requests (503 after their 5 s) for as long as that transaction lasted. `migrate`
        # then rolls back and tries again (`migrate` below), as long as it must.
        tx.execute("SET LOCAL lock_timeout = 0")
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        tx.execute(f"SET LOCAL lock_timeout = {int(MIGRATION_LOCK_TIMEOUT_SECONDS * 1000)}")

    def migrate(self) -> list[int]:
        """As SqlStore's, tried again (rolled back meanwhile, so the replicas' queries go
        ahead) while a table it alters is locked by another transaction."""
        pause = 0.2
        while True:
            try:
                return super().migrate()
            except StorageUnavailable as exc:
                if not isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
                    raise
                log.warning(
                    "migrate: a table it changes is locked by another transaction (see"
                    " pg_locks); trying again in %.1f s",
                    pause,
                )
                time.sleep(pause)
                pause = min(pause * 2, MIGRATION_RETRY_MAX_SECONDS)

    def _lock_claims(self, tx: Tx) -> None:
        # Under READ COMMITTED the claim's UPDATE then reads after every earlier claim has
        # committed, so "one out per webhook" and the per-account cap hold across replicas
        # even when their clocks or their `now` differ.
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_CLAIM_LOCK,))

    def _one(self, sql: str, args: Sequence[Any]) -> Any:
        with self._connection() as conn:
            return conn.execute(_pg(sql), args or None).fetchone()

    def _all(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(_pg(sql), args or None).fetchall()

    def close(self) -> None:
        self._stop_threads()
        self._pool.close()
        logging.getLogger("psycopg.pool").removeFilter(self._redacted)
