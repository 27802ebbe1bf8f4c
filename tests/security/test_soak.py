"""Soak: a real `passkeyd serve` process under a bounded mix of valid and hostile traffic.

Valid traffic is whole user journeys (register, sign in by identity and usernameless, list,
delete); hostile traffic is malformed bodies, wrong credentials, replays, mutated
assertions, oversized and deeply nested bodies, wrong content types and methods, and random
paths. After a warm-up, the server's memory (RSS), file descriptors and open connections are
measured with the clients gone, then again after the run: roughly flat memory, no fd or
connection leak, no valid request refused, every hostile request answered 4xx.

PASSKEYD_SOAK_SECONDS sets the length (default 60 s, of which a sixth, at most 10 s, is
warm-up). Rate limits are off (PASSKEYD_RATE_LIMITS=off): this measures the server, not
the limiter.
"""

from __future__ import annotations

import base64
import collections
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.authenticator import Authenticator, b64url, unb64url
from tests.e2e.processes import Passkeyd, passkeyd_cli

from .support import report

ORIGIN = "https://example.com"
SECONDS = float(os.environ.get("PASSKEYD_SOAK_SECONDS", "60"))
WARM_UP = min(10.0, SECONDS / 6)
TIMEOUT = 10.0
VALID_THREADS, HOSTILE_THREADS = 3, 2
MAX_REQUESTS_PER_THREAD = 2_000_000  # a bound on every loop besides its deadline
IDLE_TIMEOUT = 20.0  # uvicorn closes an idle keep-alive connection after 5 s
MEMORY_GROWTH = 1.5


# --- the server process, seen from /proc ----------------------------------------------------


@dataclass(frozen=True)
class Usage:
    rss_kb: int
    fds: int
    sockets: int
    connections: int  # established TCP connections on the server's port

    def __str__(self) -> str:
        return (
            f"RSS {self.rss_kb / 1024:.1f} MiB, {self.fds} fds, {self.sockets} sockets,"
            f" {self.connections} connections"
        )


def usage(pid: int, port: int) -> Usage:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:  # closed meanwhile
            continue
    return Usage(rss, len(links), sum(lk.startswith("socket:") for lk in links), _established(port))


def _established(port: int) -> int:
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # ESTABLISHED
                count += 1
    return count


def wait_idle(pid: int, port: int) -> Usage:
    """Usage once no client connection is left open on the server (bounded wait)."""
    deadline = time.monotonic() + IDLE_TIMEOUT
    while True:
        now = usage(pid, port)
        if now.connections == 0 or time.monotonic() > deadline:
            time.sleep(0.5)  # let the server finish closing what it just saw close
            return usage(pid, port)
        time.sleep(0.1)


# --- traffic --------------------------------------------------------------------------------


@dataclass
class Tally:
    valid: int = 0
    hostile: int = 0
    journeys: int = 0
    failures: list[str] = field(default_factory=list)
    by_status: collections.Counter[int] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, what: str) -> None:
        with self.lock:
            if len(self.failures) < 50:
                self.failures.append(what)


@dataclass
class Target:
    base_url: str
    auth: tuple[str, str]
    service: str
    key_sid: str
    replays: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=200)
    )


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only, never a proxy
    return session


def _expect(tally: Tally, response: requests.Response, status: int, what: str) -> Any:
    with tally.lock:
        tally.valid += 1
        tally.by_status[response.status_code] += 1
    if response.status_code != status:
        tally.fail(f"valid {what}: {response.status_code} {response.text[:200]}")
        return None
    return response.json() if response.content else None


def journey(session: requests.Session, target: Target, tally: Tally, n: int) -> None:
    """One user: register a passkey, sign in twice, list, leave (rows stay bounded)."""
    svc = f"{target.base_url}/v2/Services/{target.service}"
    identity = f"soak-{threading.get_ident():x}-{n:08d}"
    authenticator = Authenticator()

    def post(path: str, body: dict[str, Any], status: int, what: str) -> Any:
        r = session.post(f"{svc}{path}", json=body, auth=target.auth, timeout=TIMEOUT)
        return _expect(tally, r, status, what)

    factor = post("/Passkeys/Factors", {"friendly_name": "soak", "identity": identity}, 201, "P1")
    if factor is None:
        return
    credential = authenticator.create(factor["options"], ORIGIN)
    if post("/Passkeys/VerifyFactor", credential, 200, "P2") is None:
        return
    for body in ({"identity": identity}, {}):
        challenge = post("/Passkeys/Challenges", body, 201, "P3")
        if challenge is None:
            return
        credential_id = next(iter(authenticator.credentials))
        assertion = authenticator.get(challenge["options"], ORIGIN, credential_id)
        if post("/Passkeys/ApproveChallenge", assertion, 200, "P4") is None:
            return
        target.replays.append(assertion)
    r = session.get(f"{svc}/Entities/{identity}/Factors", auth=target.auth, timeout=TIMEOUT)
    _expect(tally, r, 200, "list factors")
    r = session.delete(f"{svc}/Entities/{identity}", auth=target.auth, timeout=TIMEOUT)
    _expect(tally, r, 204, "delete entity")
    with tally.lock:
        tally.journeys += 1


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


Request = tuple[str, str, dict[str, Any]]


def hostile_requests(target: Target, rng: random.Random) -> list[Callable[[], Request]]:
    """Makers of one hostile request each: (method, path, requests kwargs)."""
    svc = f"/v2/Services/{target.service}"
    json_headers = {"Content-Type": "application/json"}

    def replayed() -> Request:
        if not target.replays:
            return ("POST", f"{svc}/Passkeys/ApproveChallenge", {"json": {}})
        return ("POST", f"{svc}/Passkeys/ApproveChallenge", {"json": rng.choice(target.replays)})

    def mutated() -> Request:
        if not target.replays:
            return ("POST", f"{svc}/Passkeys/ApproveChallenge", {"json": {"id": "AA"}})
        original = rng.choice(target.replays)
        field_name = rng.choice(["signature", "authenticatorData", "clientDataJSON"])
        raw = bytearray(unb64url(original["response"][field_name]))
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        body = {**original, "response": {**original["response"], field_name: b64url(raw)}}
        return ("POST", f"{svc}/Passkeys/ApproveChallenge", {"json": body})

    def malformed() -> Request:
        endpoint = rng.choice(["Factors", "VerifyFactor", "Challenges", "ApproveChallenge"])
        body = rng.choice([b"{", b"[1,2]", b'{"response": 7}', secrets.token_bytes(40), b"null"])
        if endpoint == "Challenges":  # any form, even an empty one, is a usernameless request
            body = rng.choice([b"{", b"[1,2]", b'{"identity": 7}'])
        return ("POST", f"{svc}/Passkeys/{endpoint}", {"data": body, "headers": json_headers})

    def wrong_auth() -> Request:
        header = rng.choice(
            [
                _basic(target.auth[0], "wrong"),
                _basic(target.key_sid, "wrong"),
                _basic("AC" + secrets.token_hex(16), secrets.token_hex(16)),
                "Basic !!!",
                "Bearer " + secrets.token_hex(8),
            ]
        )
        return ("GET", rng.choice(["/v2/Services", svc]), {"headers": {"Authorization": header}})

    def oversized() -> Request:
        body = b'{"friendly_name": "' + b"x" * 70_000 + b'"}'
        return ("POST", f"{svc}/Passkeys/Factors", {"data": body, "headers": json_headers})

    def deep() -> Request:
        body = b"[" * 30_000 + b"]" * 30_000
        return ("POST", f"{svc}/Passkeys/VerifyFactor", {"data": body, "headers": json_headers})

    def wrong_type() -> Request:
        headers = {"Content-Type": "text/plain"}
        return ("POST", f"{svc}/Passkeys/VerifyFactor", {"data": b"{}", "headers": headers})

    def wrong_method() -> Request:
        return (rng.choice(["PUT", "PATCH"]), rng.choice(["/v2/Services", svc]), {})

    def random_path() -> Request:
        tail = rng.choice(["Nope", "Entities/x/Factors/YF" + "0" * 32, secrets.token_hex(6)])
        return (
            rng.choice(["GET", "POST", "DELETE"]),
            rng.choice([f"/v2/{tail}", f"{svc}/{tail}", f"/v2/Services/VA{secrets.token_hex(16)}"]),
            {},
        )

    def foreign_sid() -> Request:
        other = f"/v2/Services/VA{secrets.token_hex(16)}"
        return ("POST", f"{other}/Passkeys/Challenges", {"json": {"identity": "soak-00000000"}})

    return [replayed, mutated, malformed, wrong_auth, oversized, deep, wrong_type,
            wrong_method, random_path, foreign_sid]  # fmt: skip


def hostile(session: requests.Session, target: Target, tally: Tally, make: Any) -> None:
    method, path, kwargs = make()
    if "Authorization" not in kwargs.get("headers", {}):
        kwargs["auth"] = target.auth
    try:
        r = session.request(method, target.base_url + path, timeout=TIMEOUT, **kwargs)
    except requests.RequestException as exc:
        tally.fail(f"hostile {make.__name__} {method} {path[:80]}: {exc!r}")
        return
    with tally.lock:
        tally.hostile += 1
        tally.by_status[r.status_code] += 1
    if not 400 <= r.status_code < 500:
        tally.fail(f"hostile {make.__name__} {method} {path[:80]}: {r.status_code} {r.text[:200]}")
        return
    body = r.json()
    if set(body) != {"code", "message", "more_info", "status"} or body["status"] != r.status_code:
        tally.fail(f"hostile {make.__name__}: not a Twilio error body: {r.text[:200]}")


def run_traffic(target: Target, tally: Tally, seconds: float, seed: int) -> None:
    """VALID_THREADS journeys and HOSTILE_THREADS hostile streams for `seconds`; every
    session (and so every connection) closed at the end."""
    deadline = time.monotonic() + seconds

    def valid_loop() -> None:
        with _session() as session:
            for n in range(MAX_REQUESTS_PER_THREAD):
                if time.monotonic() > deadline:
                    return
                try:
                    journey(session, target, tally, n)
                except requests.RequestException as exc:
                    tally.fail(f"valid journey: {exc!r}")

    def hostile_loop(index: int) -> None:
        rng = random.Random(seed + index)
        makers = hostile_requests(target, rng)
        with _session() as session:
            for n in range(MAX_REQUESTS_PER_THREAD):
                if time.monotonic() > deadline:
                    return
                if n % 50 == 0:  # now and then a fresh connection, as many clients would
                    session.close()
                hostile(session, target, tally, rng.choice(makers))

    threads = [threading.Thread(target=valid_loop) for _ in range(VALID_THREADS)]
    threads += [threading.Thread(target=hostile_loop, args=(i,)) for i in range(HOSTILE_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 4 * TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a traffic thread did not finish"


# --- the test -----------------------------------------------------------------------------------


@pytest.fixture
def passkeyd(tmp_path: Path) -> Iterator[Passkeyd]:
    process = Passkeyd(
        database_url=f"sqlite:///{tmp_path}/soak.db",
        account_sid="AC" + secrets.token_hex(16),
        auth_token=secrets.token_hex(16),
        log_path=tmp_path / "passkeyd.log",
        # A small page cache: memory growth here should show leaks, not the cache filling.
        extra_env={
            "PASSKEYD_RATE_LIMITS": "off",
            "PASSKEYD_LOG_FORMAT": "json",
            "PASSKEYD_SQLITE_CACHE_MB": "2",
        },
    )
    try:
        yield process.start()
    finally:
        process.stop()


def test_soak_memory_fds_and_connections_stay_flat(passkeyd: Passkeyd):
    assert passkeyd.process is not None
    pid, port = passkeyd.process.pid, passkeyd.port
    auth = (passkeyd.account_sid, passkeyd.auth_token)
    with _session() as session:
        r = session.post(
            passkeyd.base_url + "/v2/Services",
            data={
                "FriendlyName": "soak",
                "Passkeys.RelyingParty.Id": "example.com",
                "Passkeys.RelyingParty.Name": "Example",
                "Passkeys.RelyingParty.Origins": ORIGIN,
                "Passkeys.AuthenticatorAttachment": "platform",
                "Passkeys.DiscoverableCredentials": "preferred",
                "Passkeys.UserVerification": "preferred",
            },
            auth=auth,
            timeout=TIMEOUT,
        )
    assert r.status_code == 201, r.text
    key = passkeyd_cli(passkeyd.database_url, "keys", "create", "--account", auth[0])
    target = Target(passkeyd.base_url, auth, r.json()["sid"], key["sid"])
    fresh = usage(pid, port)

    warm = Tally()
    run_traffic(target, warm, WARM_UP, seed=1)
    start = wait_idle(pid, port)

    tally = Tally()
    samples: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(1.0):
            samples.append(usage(pid, port).rss_kb)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.monotonic()
    run_traffic(target, tally, SECONDS - WARM_UP, seed=2)
    elapsed = time.monotonic() - began
    sampling.set()
    sampler.join(timeout=5)
    end = wait_idle(pid, port)

    total = tally.valid + tally.hostile
    report(
        f"soak: {WARM_UP:.0f} s warm-up ({warm.valid + warm.hostile} requests) +"
        f" {elapsed:.1f} s measured: {total} requests ({total / elapsed:.0f}/s),"
        f" {tally.valid} valid in {tally.journeys} journeys, {tally.hostile} hostile;"
        f" statuses {dict(sorted(tally.by_status.items()))}"
    )
    report(f"soak: fresh {fresh}")
    report(f"soak: start {start}")
    report(f"soak: end   {end}; RSS peak {max(samples, default=0) / 1024:.1f} MiB")
    assert passkeyd.process.poll() is None, passkeyd.output()[-3000:]
    assert "unhandled error" not in passkeyd.output(), passkeyd.output()[-3000:]
    assert not warm.failures and not tally.failures, (warm.failures + tally.failures)[:20]
    assert tally.journeys > 0 and tally.hostile > 0
    assert end.connections == 0, end
    assert end.fds <= start.fds, (start, end)
    assert end.sockets <= start.sockets, (start, end)
    assert end.rss_kb <= start.rss_kb * MEMORY_GROWTH, (start, end)
