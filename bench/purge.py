"""How long the background purge holds SQLite's write lock with many stored passkeys.

    .venv/bin/python bench/purge.py [--factors 1000000] [--rounds 3]

The purge (every PASSKEYD_PURGE_INTERVAL_SECONDS, 5 minutes by default) deletes expired
challenges, unfinished registrations, sent webhook deliveries, old rate-limit windows and
old audit records, in transactions of at most 1,000 rows. Each of those transactions holds
the database's write lock, and this process's connection, while it looks for its rows: a
look that reads every row stalls every request for as long. This seeds a fresh SQLite
database with `--factors` verified passkeys (as `run.py`'s scale section does: about 45 s
for a million), then times `purge_expired` when nothing is due (the common case) and
prints each statement's query plan, so a full scan shows as `SCAN`.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from pkbench.db import SQLiteDatabase  # noqa: E402

DAY = 86400


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--factors", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from starlette.testclient import TestClient
    from tests.conftest import Api, FakeClock

    from passkeyd.api import create_app
    from passkeyd.domain import Domain
    from passkeyd.storage import SQLiteStore

    with tempfile.TemporaryDirectory(prefix="passkeyd-purge-") as tmp:
        path = Path(tmp) / "passkeyd.db"
        store = SQLiteStore(str(path))
        store.migrate()
        clock = FakeClock()
        domain = Domain(store, clock)
        account, token = domain.accounts.create_account()
        with TestClient(create_app(domain)) as client:  # one real passkey to copy
            api = Api(client, path, account.sid, (account.sid, token))
            api.create_service()
            api.register("user-0001")
        store.close()
        seeded = SQLiteDatabase().seed(f"sqlite:///{path}", args.factors)
        print(f"seeded {seeded.rows:,} passkeys in {seeded.seconds:.1f} s")

        store = SQLiteStore(str(path))
        now = clock()
        # An older passkeyd (PYTHONPATH=<its src>) kept rate windows as long as challenges.
        extra = {"rate_before": now - 60}
        if "rate_before" not in inspect.signature(store.purge_expired).parameters:
            extra = {}
        times = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            removed = store.purge_expired(now - 7 * DAY, audit_before=now - 90 * DAY, **extra)
            times.append(time.perf_counter() - started)
        print(
            f"purge with nothing due: median {statistics.median(times) * 1000:.1f} ms"
            f" (rounds: {', '.join(f'{t * 1000:.1f}' for t in times)}; removed {removed})"
        )
        for table, condition in (
            ("challenges", "expiration_date < ?"),
            ("factors", "status = 'unverified' AND registration_expires < ?"),
            ("webhook_deliveries", "status <> 'pending' AND date_updated < ?"),
            ("audit_events", "date_created < ?"),
        ):
            plan = store._all(
                f"EXPLAIN QUERY PLAN SELECT seq FROM {table} WHERE {condition} LIMIT 1000",
                (now,),
            )
            print(f"  {table:<20} {'; '.join(row[-1] for row in plan)}")
        store.close()


if __name__ == "__main__":
    main()
