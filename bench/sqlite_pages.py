"""Where SQLite's write cost goes: the price of a commit by the pages it dirties, and the
pages each passkey flow dirties, by table and index.

    .venv/bin/python bench/sqlite_pages.py [--flows 300]

Part 1 commits transactions that insert into 0, 1, 2, 4 and 8 tables of random keys and
prints the CPU per commit: a commit costs in proportion to the pages it writes to the WAL.
Part 2 runs whole registrations and authentications through passkeyd's domain layer (no
HTTP) on a fresh database in WAL mode with checkpoints off, one commit per step as
without group commit. It then reads the WAL's frame headers, maps each page number to its
B-tree (SQLite's `dbstat`), and prints the pages per flow for each table and index.
"""

from __future__ import annotations

import argparse
import collections
import os
import sqlite3
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.authenticator import Authenticator  # noqa: E402

from passkeyd.api.serializers import challenge_json  # noqa: E402
from passkeyd.domain import Domain  # noqa: E402
from passkeyd.domain.limits import DEFAULT_RULES, Rule  # noqa: E402
from passkeyd.domain.models import PasskeySettings  # noqa: E402
from passkeyd.storage import SQLiteStore  # noqa: E402

ORIGIN = "https://example.com"


def commit_cost(folder: str, commits: int = 3000) -> None:
    db = sqlite3.connect(os.path.join(folder, "commits.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    for k in range(8):
        db.execute(f"CREATE TABLE t{k} (id BLOB PRIMARY KEY, v TEXT) WITHOUT ROWID")
        rows = [(os.urandom(16),) for _ in range(100_000)]
        db.executemany(f"INSERT INTO t{k} VALUES (?, 'x')", rows)
    print("commit cost by tables written (one random-key insert each), CPU per commit:")
    for tables in (0, 1, 2, 4, 8):
        started = time.process_time()
        for _ in range(commits):
            db.execute("BEGIN IMMEDIATE")
            for k in range(tables):
                db.execute(f"INSERT INTO t{k} VALUES (?, 'y')", (os.urandom(16),))
            db.execute("COMMIT")
        print(f"  {tables} tables: {(time.process_time() - started) / commits * 1e6:7.1f} us")
    db.close()


def wal_pages(store: SQLiteStore, path: str, flows: int) -> dict[str, float]:
    """Pages in the WAL by B-tree, per flow (checkpoints off since the last reset)."""
    data = Path(path + "-wal").read_bytes()
    page_size = store._one("PRAGMA page_size", ())[0]
    counts: collections.Counter[int] = collections.Counter()
    for offset in range(32, len(data) - 24 + 1, 24 + page_size):
        counts[struct.unpack(">I", data[offset : offset + 4])[0]] += 1
    names = {row[1]: row[0] for row in store._all("SELECT name, pageno FROM dbstat", ())}
    out: collections.Counter[str] = collections.Counter()
    for page, count in counts.items():
        out[names.get(page, "?")] += count
    return {name: count / flows for name, count in out.most_common()}


def reset_wal(store: SQLiteStore) -> None:
    store._one("PRAGMA wal_checkpoint(TRUNCATE)", ())
    store._one("PRAGMA wal_autocheckpoint = 0", ())


def pages_per_flow(folder: str, flows: int) -> None:
    path = os.path.join(folder, "passkeyd.db")
    store = SQLiteStore(path)
    store.migrate()
    rules = {name: Rule(10**9, rule.window) for name, rule in DEFAULT_RULES.items()}
    domain = Domain(store, rate_limits=rules)
    account, _ = domain.accounts.create_account("bench")
    settings = PasskeySettings(
        rp_id="example.com",
        rp_name="Example",
        rp_origins=(ORIGIN,),
        authenticator_attachment="platform",
        discoverable_credentials="preferred",
        user_verification="preferred",
    )
    service = domain.services.create(
        account.sid, friendly_name="bench", passkeys=settings, settings={}
    )

    def register(identity: str) -> Authenticator:
        authenticator = Authenticator()
        _, options = domain.registrations.create_factor(
            account.sid,
            service.sid,
            friendly_name="key",
            identity=identity,
            config=PasskeySettings(),
        )
        domain.registrations.verify_factor(
            account.sid, service.sid, authenticator.create(options, ORIGIN)
        )
        return authenticator

    users = 256
    people = [(register(f"user-{i:06d}"), f"user-{i:06d}") for i in range(users)]
    for authenticator, identity in people:  # every rate-limit window exists: steady state
        challenge = domain.authentications.create_challenge(
            account.sid, service.sid, identity=identity, factor_sid=None
        )
        options = challenge_json(challenge, "http://x", 0, endpoint="Challenges")["options"]
        domain.authentications.approve_challenge(
            account.sid, service.sid, authenticator.get(options, ORIGIN)
        )

    reset_wal(store)
    for i in range(flows):
        register(f"new-{i:08d}")
    report("registration (a new identity each)", wal_pages(store, path, flows))

    reset_wal(store)
    for i in range(flows):
        authenticator, identity = people[i % users]
        challenge = domain.authentications.create_challenge(
            account.sid, service.sid, identity=identity, factor_sid=None
        )
        options = challenge_json(challenge, "http://x", 0, endpoint="Challenges")["options"]
        domain.authentications.approve_challenge(
            account.sid, service.sid, authenticator.get(options, ORIGIN)
        )
    report("authentication", wal_pages(store, path, flows))
    store.close()


def report(title: str, pages: dict[str, float]) -> None:
    print(f"{title}: {sum(pages.values()):.1f} pages per flow")
    for name, count in pages.items():
        print(f"  {count:5.2f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="passkeyd-pages-") as folder:
        commit_cost(folder)
        pages_per_flow(folder, args.flows)


if __name__ == "__main__":
    main()
