"""Several passkeyd processes on one database: nothing lost, doubled or half-written.

Each deployment is real: `passkeyd serve` processes on loopback, either two processes on a
shared PostgreSQL (each its own pool) or one SQLite file served by two uvicorn workers.
Every load here is bounded in count and in time.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import secrets
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from tests.authenticator import Authenticator
from tests.e2e.processes import Passkeyd, passkeyd_cli
from tests.pg import temporary_schema

ORIGIN = "https://example.com"
TIMEOUT = 10


@dataclass
class Cluster:
    database_url: str
    nodes: list[Passkeyd]
    auth: tuple[str, str]

    @property
    def urls(self) -> list[str]:
        return [n.base_url for n in self.nodes]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.database_url.startswith("sqlite:///"):
            with contextlib.closing(sqlite3.connect(self.database_url[len("sqlite:///") :])) as db:
                return db.execute(sql).fetchall()
        with psycopg.connect(self.database_url) as db:
            return db.execute(sql).fetchall()


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # loopback only, never a proxy
    return s


class Client:
    """A customer's backend talking to one passkeyd node."""

    def __init__(self, base: str, auth: tuple[str, str], service_sid: str = "") -> None:
        self.base, self.auth, self.service_sid = base, auth, service_sid
        self.http = _session()

    def post(self, path: str, **kw: Any) -> requests.Response:
        headers = {"Connection": "close"}  # new connection each time: spread across workers
        return self.http.post(self.base + path, auth=self.auth, timeout=TIMEOUT,
                              headers=headers, **kw)  # fmt: skip

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.base + path, auth=self.auth, timeout=TIMEOUT)

    def create_service(self) -> str:
        r = self.post("/v2/Services", data={
            "FriendlyName": "scale-out",
            "Passkeys.RelyingParty.Id": "example.com",
            "Passkeys.RelyingParty.Name": "Example",
            "Passkeys.RelyingParty.Origins": ORIGIN,
            "Passkeys.AuthenticatorAttachment": "platform",
            "Passkeys.DiscoverableCredentials": "preferred",
            "Passkeys.UserVerification": "preferred",
        })  # fmt: skip
        assert r.status_code == 201, r.text
        self.service_sid = r.json()["sid"]
        return self.service_sid

    def register(self, identity: str, authenticator: Authenticator) -> dict[str, Any]:
        svc = f"/v2/Services/{self.service_sid}/Passkeys"
        factor = self.post(f"{svc}/Factors", json={"friendly_name": identity, "identity": identity})
        assert factor.status_code == 201, factor.text
        credential = authenticator.create(factor.json()["options"], ORIGIN)
        verified = self.post(f"{svc}/VerifyFactor", json=credential)
        assert verified.status_code == 200, verified.text
        return dict(verified.json())

    def challenge(self, identity: str) -> dict[str, Any]:
        r = self.post(f"/v2/Services/{self.service_sid}/Passkeys/Challenges",
                      json={"identity": identity})  # fmt: skip
        assert r.status_code == 201, r.text
        return dict(r.json())

    def approve(self, assertion: dict[str, Any]) -> requests.Response:
        return self.post(f"/v2/Services/{self.service_sid}/Passkeys/ApproveChallenge",
                         json=assertion)  # fmt: skip


def _account() -> tuple[str, str]:
    return "AC" + secrets.token_hex(16), secrets.token_hex(16)


@pytest.fixture(params=["postgres-2-processes", "sqlite-2-workers"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    sid, token = _account()
    if request.param == "sqlite-2-workers":
        url = f"sqlite:///{tmp_path}/cluster.db"
        node = Passkeyd(url, sid, token, tmp_path / "node.log", workers=2)
        try:
            yield Cluster(url, [node.start()], (sid, token))
        finally:
            node.stop()
        return
    with temporary_schema() as url:
        passkeyd_cli(url, "migrate")
        nodes = [Passkeyd(url, sid, token, tmp_path / f"node{i}.log") for i in range(2)]
        try:
            for node in nodes:
                node.start()
            yield Cluster(url, nodes, (sid, token))
        finally:
            for node in nodes:
                node.stop()


def test_one_assertion_sent_50_times_in_parallel_is_approved_once(cluster):
    first = Client(cluster.urls[0], cluster.auth)
    first.create_service()
    authenticator = Authenticator()
    factor = first.register("user-0001", authenticator)
    challenge = first.challenge("user-0001")  # created on the first node ...
    assertion = authenticator.get(challenge["options"], ORIGIN)
    clients = [Client(url, cluster.auth, first.service_sid) for url in cluster.urls]
    barrier = threading.Barrier(50, timeout=TIMEOUT)

    def approve(i: int) -> tuple[int, int | None, str]:
        client = clients[i % len(clients)]  # ... and approved on every node
        barrier.wait()
        r = client.approve(assertion)
        return r.status_code, r.json().get("code"), r.json().get("status")

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(approve, range(50)))
    outcomes = Counter((status, code) for status, code, _ in results)
    assert outcomes[(200, None)] == 1, outcomes
    assert outcomes[(403, 60322)] == 49, outcomes
    assert [s for code, _, s in results if code == 200] == ["approved"]
    rows = cluster.query(f"SELECT sign_count FROM factors WHERE sid = '{factor['sid']}'")
    assert rows == [(1,)]
    assert cluster.query("SELECT count(*) FROM challenges WHERE status = 'approved'") == [(1,)]


def test_many_users_register_and_sign_in_at_once(cluster):
    setup = Client(cluster.urls[0], cluster.auth)
    setup.create_service()
    users, sign_ins = 16, 3
    urls = itertools.cycle(cluster.urls)
    plans = [(f"user-{i:04d}", next(urls)) for i in range(users)]

    def journey(plan: tuple[str, str]) -> list[int]:
        identity, url = plan
        client = Client(url, cluster.auth, setup.service_sid)
        authenticator = Authenticator()
        client.register(identity, authenticator)
        statuses = []
        for _ in range(sign_ins):
            challenge = client.challenge(identity)
            statuses.append(
                client.approve(authenticator.get(challenge["options"], ORIGIN)).status_code
            )
        return statuses

    with ThreadPoolExecutor(users) as pool:
        results = list(pool.map(journey, plans, timeout=60))
    assert all(statuses == [200] * sign_ins for statuses in results), results
    assert cluster.query("SELECT status, count(*) FROM factors GROUP BY status") == [
        ("verified", users)
    ]
    assert cluster.query("SELECT count(*) FROM challenges WHERE status = 'approved'") == [
        (users * sign_ins,)
    ]
    assert cluster.query("SELECT min(sign_count), max(sign_count) FROM factors") == [
        (sign_ins, sign_ins)
    ]


def test_kill_9_mid_load_loses_no_acknowledged_result(tmp_path):
    sid, token = _account()
    url = f"sqlite:///{tmp_path}/crash.db"
    node = Passkeyd(url, sid, token, tmp_path / "crash.log").start()
    try:
        setup = Client(node.base_url, (sid, token))
        setup.create_service()
        acknowledged: list[tuple[str, str]] = []  # (kind, sid) answered with success
        stop = threading.Event()
        lock = threading.Lock()

        def load(worker: int) -> None:
            client = Client(node.base_url, (sid, token), setup.service_sid)
            for n in range(200):  # bounded in count ...
                if stop.is_set():
                    return
                identity = f"user-{worker:02d}-{n:04d}"
                authenticator = Authenticator()
                try:
                    factor = client.register(identity, authenticator)
                    with lock:
                        acknowledged.append(("factor", factor["sid"]))
                    challenge = client.challenge(identity)
                    r = client.approve(authenticator.get(challenge["options"], ORIGIN))
                    if r.status_code == 200:
                        with lock:
                            acknowledged.append(("challenge", r.json()["sid"]))
                except (requests.RequestException, AssertionError):
                    return  # the server died under us: stop this worker

        threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10  # ... and in time
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        node.kill()
        stop.set()
        for t in threads:
            t.join(timeout=TIMEOUT)
        assert len(acknowledged) >= 40, "the load never got going"

        restarted = time.monotonic()
        node.start()
        assert time.monotonic() - restarted < 5
        db = Cluster(url, [node], (sid, token))
        verified = {r[0] for r in db.query("SELECT sid FROM factors WHERE status = 'verified'")}
        approved = {r[0] for r in db.query("SELECT sid FROM challenges WHERE status = 'approved'")}
        for kind, acked_sid in acknowledged:
            assert acked_sid in (verified if kind == "factor" else approved), (kind, acked_sid)
        half = db.query(
            "SELECT count(*) FROM factors WHERE (status = 'verified') <>"
            " (credential_id IS NOT NULL AND public_key IS NOT NULL)"
        )
        assert half == [(0,)]
        # And it serves again.
        client = Client(node.base_url, (sid, token), setup.service_sid)
        client.register("after-crash-01", Authenticator())
    finally:
        node.stop()


def test_sigterm_lets_a_request_in_flight_finish(tmp_path):
    sid, token = _account()
    node = Passkeyd(f"sqlite:///{tmp_path}/term.db", sid, token, tmp_path / "term.log").start()
    try:
        body = b"FriendlyName=in-flight"
        basic = base64.b64encode(f"{sid}:{token}".encode()).decode()
        head = (
            f"POST /v2/Services HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", node.port), timeout=TIMEOUT) as sock:
            sock.sendall(head + body[:5])  # the request has started ...
            time.sleep(0.3)
            node.process.terminate()  # ... when SIGTERM arrives
            time.sleep(0.3)
            sock.sendall(body[5:])
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 201"), response[:200]
        # uvicorn re-raises SIGTERM once its graceful shutdown is done: -15 is a clean exit.
        assert node.process.wait(timeout=TIMEOUT) in (0, -15)
        assert "Finished server process" in node.output()
    finally:
        node.stop()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_stop_when_their_supervisor_is_killed(tmp_path):
    """`kill -9` of `serve --workers 2`'s supervisor alone (not its process group): its
    workers used to go on serving on the port, and the next `serve` failed with "address
    already in use". They now shut down, and a new server starts on the same port."""
    sid, token = _account()
    db = f"sqlite:///{tmp_path}/sup.db"
    node = Passkeyd(db, sid, token, tmp_path / "sup.log", workers=2).start()
    try:
        assert node.process is not None
        deadline = time.monotonic() + TIMEOUT
        workers: list[int] = []
        while len(workers) < 2 and time.monotonic() < deadline:  # the two serving workers
            workers = [p for p in _children(node.process.pid) if b"spawn_main" in _cmdline(p)]
            time.sleep(0.05)
        assert len(workers) >= 2, workers
        node.process.kill()  # the supervisor only
        node.process.wait(timeout=TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in workers), node.output()[-2000:]
        again = Passkeyd(db, sid, token, tmp_path / "again.log", port=node.port).start()
        again.stop()
    finally:
        node.stop()


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _tcp_inodes(port: int, state: str) -> set[str]:
    """Inodes of the IPv4 TCP sockets on local `port` in `state` (0A listening, 01
    established), from /proc/net/tcp."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
            inodes.add(fields[9])
    return inodes


def test_reuse_port_deals_connections_opened_at_once_to_every_worker(tmp_path):
    """`serve --workers 2` with keep-alive connections opened all at once (a proxy's pool, a
    load generator): on the one socket uvicorn's workers share, the worker that wakes first
    accepts every connection waiting (16 of 16 in most rounds), and serves them on one core
    while the other idles. With PASSKEYD_REUSE_PORT each worker listens on a socket of its
    own (SO_REUSEPORT) and the kernel deals the connections out: every round, both workers
    get some."""
    sid, token = _account()
    node = Passkeyd(
        f"sqlite:///{tmp_path}/split.db", sid, token, tmp_path / "split.log", workers=2,
        extra_env={"PASSKEYD_REUSE_PORT": "true"},
    )  # fmt: skip
    node.start()
    try:
        assert node.process is not None
        deadline = time.monotonic() + TIMEOUT
        workers: list[int] = []
        while time.monotonic() < deadline:  # until both workers listen
            workers = [p for p in _children(node.process.pid) if b"spawn_main" in _cmdline(p)]
            listening = _tcp_inodes(node.port, "0A")
            if len(workers) == 2 and all(_socket_inodes(p) & listening for p in workers):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the two workers did not both listen: {node.output()[-2000:]}")
        request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n\r\n".encode()
        for _ in range(5):
            conns = [socket.create_connection(("127.0.0.1", node.port), TIMEOUT) for _ in range(24)]
            try:
                for conn in conns:
                    conn.sendall(request)
                for conn in conns:  # answered: accepted by a worker, and kept alive
                    assert conn.recv(4096).startswith(b"HTTP/1.1 200"), node.output()[-2000:]
                established = _tcp_inodes(node.port, "01")
                split = [len(_socket_inodes(p) & established) for p in workers]
                assert sum(split) == 24, split
                # Dealt by a hash of each connection's addresses: one worker getting none
                # of 24 has a chance of 2 in 2**24.
                assert min(split) > 0, split
            finally:
                for conn in conns:
                    conn.close()
    finally:
        node.stop()


def test_a_shutdown_past_its_grace_answers_each_approval_as_it_ended(tmp_path):
    """PostgreSQL: approvals waiting behind a locked table when SIGTERM's 10 s are up were
    answered 500 by uvicorn (later: not at all), and committed after. Each is now answered
    as its statement ended: 200 for one stored approved, 503 for one left pending."""
    sid, token = _account()
    with temporary_schema() as url:
        passkeyd_cli(url, "migrate")
        node = Passkeyd(url, sid, token, tmp_path / "node.log").start()
        try:
            client = Client(node.base_url, (sid, token))
            client.create_service()
            # Three waves of ten (the pool's size): the first two meet the 5 s lock
            # timeout, the third is still waiting when the shutdown's 10 s are up.
            users = [(f"user-{i:04d}", Authenticator()) for i in range(30)]
            assertions = []
            for identity, authenticator in users:
                client.register(identity, authenticator)
                challenge = client.challenge(identity)
                assertions.append(
                    (challenge["sid"], authenticator.get(challenge["options"], ORIGIN))
                )
            with psycopg.connect(url) as locking:
                locking.execute("LOCK TABLE challenges IN ACCESS EXCLUSIVE MODE")
                with ThreadPoolExecutor(len(assertions)) as pool:
                    answers = [
                        pool.submit(_answer_of, client, assertion) for _, assertion in assertions
                    ]
                    time.sleep(1.0)  # every approval waits for the lock (or a connection)
                    assert node.process is not None
                    node.process.terminate()
                    time.sleep(13.0)  # past the shutdown's 10 s: the third wave is cancelled
                    locking.rollback()
                    statuses = [a.result(timeout=30) for a in answers]
            node.process.wait(timeout=30)
            with psycopg.connect(url) as db:
                stored = dict(db.execute("SELECT sid, status FROM challenges").fetchall())
        finally:
            node.stop()
    assert 500 not in statuses and None not in statuses, Counter(statuses)
    for (challenge_sid, _), status in zip(assertions, statuses, strict=True):
        assert (status, stored[challenge_sid]) in ((200, "approved"), (503, "pending")), statuses


def _answer_of(client: Client, assertion: dict[str, Any]) -> int | None:
    try:
        return client.http.post(
            f"{client.base}/v2/Services/{client.service_sid}/Passkeys/ApproveChallenge",
            json=assertion,
            auth=client.auth,
            timeout=40,  # past the shutdown's 10 s
        ).status_code
    except requests.RequestException:
        return None  # no answer at all
