"""PostgreSQL dropping the service's connections (a restart, a failover, an admin's
pg_terminate_backend): the requests that meet a dead connection are answered 503 20503 in
Twilio's format, never 500, and the service recovers by itself."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
import pytest
from starlette.testclient import TestClient

from passkeyd.api import create_app
from passkeyd.domain import Domain
from passkeyd.storage import StorageUnavailable
from passkeyd.storage.postgres import PostgresStore
from tests.conftest import FakeClock
from tests.pg import ADMIN_URL, temporary_schema


def _drop_connections(application_name: str) -> int:
    """Terminate them, and wait until they are gone: pg_terminate_backend only signals a
    backend, which under load went on answering the requests meant to meet it dead."""
    import time

    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        pids = [
            pid
            for (pid,) in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            )
        ]
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
        ).fetchone()[0]:  # fmt: skip
            assert time.monotonic() < deadline, "the terminated backends did not end"
            time.sleep(0.02)
    return len(pids)


@contextmanager
def served(store: PostgresStore) -> Iterator[tuple[TestClient, tuple[str, str]]]:
    """The API on `store`, migrated, with an account: (client, its Basic credentials)."""
    store.migrate()
    domain = Domain(store, FakeClock())
    account, token = domain.accounts.create_account("outage")
    with TestClient(create_app(domain), raise_server_exceptions=False) as client:
        yield client, (account.sid, token)


def test_dropped_connections_are_503_then_recovered() -> None:
    name = "pk_outage_" + secrets.token_hex(4)
    with temporary_schema() as url:
        store = PostgresStore(f"{url}&application_name={quote(name)}", pool_size=2)
        with served(store) as (client, auth):
            assert client.get("/v2/Services", auth=auth).status_code == 200
            assert client.get("/healthz").status_code == 200
            assert _drop_connections(name) >= 1
            answers = [client.get("/v2/Services", auth=auth) for _ in range(4)]
            answers += [client.get("/healthz"), client.get("/metrics")]
            assert {r.status_code for r in answers} <= {200, 503}, [r.text for r in answers]
            failed = [r for r in answers if r.status_code == 503]
            assert failed, "no request met a dropped connection"
            for r in failed:
                if r.request.url.path == "/healthz":
                    assert r.json() == {"status": "unavailable", "reason": "database"}
                else:
                    body = r.json()
                    assert (body["code"], body["status"]) == (20503, 503)
                    assert r.headers["Twilio-Request-Id"] in body["message"]
            # The pool drops the dead connections and makes new ones: no restart needed.
            assert client.get("/v2/Services", auth=auth).status_code == 200
            assert client.get("/healthz").status_code == 200
            assert client.get("/metrics").status_code == 200


def test_an_outage_is_answered_at_once_and_recovered_from_at_once() -> None:
    """While PostgreSQL refuses connections, a request used to wait for the pool's timeout
    at each of its queries before its 503; and once PostgreSQL was back, the pool, retrying
    with a doubling delay, could leave the service without a connection for about as long
    as the outage had lasted."""
    import time

    name = "pk_outage_" + secrets.token_hex(4)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        store = PostgresStore(url, pool_size=2, connect_timeout=3)
        try:
            with served(store) as (client, auth):
                assert client.get("/v2/Services", auth=auth).status_code == 200
                admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
                client.get("/healthz")  # the first to find it down may wait for the pool
                outage_ends = time.monotonic() + 8  # long enough for the pool's retries to back off
                while time.monotonic() < outage_ends:
                    started = time.monotonic()
                    r = client.get("/v2/Services", auth=auth)
                    assert r.status_code == 503, r.text
                    assert time.monotonic() - started < 1.0  # at once, not after the timeout
                    time.sleep(0.5)
                admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
                started = time.monotonic()
                while client.get("/v2/Services", auth=auth).status_code != 200:
                    assert time.monotonic() - started < 2.0, "not recovered within 2 s"
                    time.sleep(0.1)
                assert client.get("/healthz").status_code == 200
        finally:
            store.close()
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            admin.execute(f"DROP DATABASE IF EXISTS {name}")


def test_a_server_refusing_new_connections_does_not_stop_the_pools_own() -> None:
    """At its connection limit, PostgreSQL refuses new connections while the pool's own
    still work: requests must keep using those, not each try (and fail) a connection of
    its own. And a statement the server refuses (a timeout) is no outage."""
    with temporary_schema() as url:
        store = PostgresStore(url, pool_size=2, connect_timeout=2)
        try:
            store.migrate()
            store.ping()  # the pool holds a working connection

            def refused() -> psycopg.Connection:
                raise psycopg.OperationalError("FATAL: sorry, too many clients already")

            store._connect = refused  # type: ignore[method-assign]
            store._unreachable = True  # as after a pool timeout while at the limit
            for _ in range(5):
                store.ping()
            assert not store._unreachable
        except StorageUnavailable:
            pytest.fail("a healthy pool was bypassed")
        try:
            with (
                pytest.raises(StorageUnavailable),
                store._connection() as conn,
                conn.transaction(),
            ):
                conn.execute("SET LOCAL statement_timeout = 1")
                conn.execute("SELECT pg_sleep(1)")  # QueryCanceled, SQLSTATE 57014
            assert not store._unreachable  # (the probe would have failed: it was not asked)
            store.ping()
        finally:
            store.close()


@pytest.mark.parametrize("fault", ["read-only", "table-dropped"])
def test_a_server_that_takes_no_writes_or_lost_a_table_is_503_not_500(fault: str) -> None:
    """A failover onto a standby (or default_transaction_read_only set) refuses writes with
    SQLSTATE 25006, and a schema dropped from under the process refuses its statements with
    42P01: both were answered 500, a traceback logged per request, where SQLite answers 503."""
    with temporary_schema() as url:
        writable = PostgresStore(url, pool_size=1)
        writable.migrate()
        account, token = Domain(writable, FakeClock()).accounts.create_account("read-only")
        writable.close()
        served_url = (
            url + quote(" -cdefault_transaction_read_only=on") if fault == "read-only" else url
        )
        domain = Domain(PostgresStore(served_url, pool_size=2), FakeClock())
        with TestClient(create_app(domain), raise_server_exceptions=False) as client:
            if fault == "table-dropped":
                with psycopg.connect(url, autocommit=True) as admin:
                    admin.execute("DROP TABLE services CASCADE")
            r = client.post("/v2/Services", data={"FriendlyName": "x"}, auth=(account.sid, token))
            assert r.status_code == 503, r.text
            assert (r.json()["code"], r.json()["status"]) == (20503, 503)
