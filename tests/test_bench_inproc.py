"""bench/inproc.py, the in-process harness that judges changes to passkeyd's own code, runs
whole flows through the app and reports CPU and SQL statements per flow."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.pg import ADMIN_URL as PG_URL  # the suite's own PostgreSQL

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("flow", ["auth", "reg"])
def test_the_harness_runs_flows_and_counts_their_statements(flow: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "inproc.py"), "--flow", flow, "--flows", "32"]
        + ["--rounds", "1", "--concurrency", "4", "--users", "8"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    statements = re.search(r"SQL statements per flow: ([0-9.]+)", done.stdout)
    app = re.search(rf"{flow} c4: app (\d+) us/flow", done.stdout)
    assert statements and app, done.stdout + done.stderr
    # Every flow reached the database (an auth flow reads and writes at least its
    # challenge, factor and identity), and the client's time was not counted as the app's.
    assert 5 <= float(statements.group(1)) <= 40
    assert int(app.group(1)) > 0


def test_the_harness_runs_on_postgresql_and_drops_its_database() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "inproc.py"), "--flow", "auth", "--flows", "32"]
        + ["--rounds", "1", "--concurrency", "4", "--users", "8", "--database-url", PG_URL],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    assert re.search(r"auth c4: app \d+ us/flow", done.stdout), done.stdout + done.stderr
    with psycopg.connect(PG_URL) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'passkeyd_bench_inproc%'"
        ).fetchall()
    assert left == []


def _run_bench(out: Path, *args: str) -> dict:  # type: ignore[type-arg]
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "postgresql"]
        + ["--src", "live", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
        cwd=ROOT,
    )
    (result,) = out.glob("*.json")
    return json.loads(result.read_text())  # type: ignore[no-any-return]


def test_the_benchmark_runs_passkeyd_on_postgresql_and_counts_the_servers_cpu(
    tmp_path: Path,
) -> None:
    """bench/run.py's `postgresql` section: passkeyd's cells on PostgreSQL, with the CPU of
    PostgreSQL's own processes per flow beside passkeyd's, and its databases dropped."""
    report = _run_bench(
        tmp_path,
        *("--postgres-url", PG_URL, "--workers", "1", "--concurrency", "2"),
        *("--users", "4", "--warmup", "0.2", "--seconds", "0.5"),
    )
    cells = {c["flow"]: c for c in report["cells"] if c["system"] == "passkeyd-postgresql"}
    assert set(cells) == {"auth", "reg"}, report["cells"]
    for cell in cells.values():
        assert cell["flows"] > 0 and cell["errors"] == 0, cell
        assert cell["db_us_per_flow"] > 0, cell  # PostgreSQL's backends worked for each flow
    with psycopg.connect(PG_URL) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'passkeyd_bench_passkeyd%'"
        ).fetchall()
    assert left == []


def test_the_benchmark_skips_postgresql_it_cannot_reach(tmp_path: Path) -> None:
    url = "postgresql://bench:s3cret@127.0.0.1:9/none"  # nothing listens on port 9
    report = _run_bench(tmp_path, "--postgres-url", url)
    assert report["cells"] == []
    (skipped,) = report["skipped"]
    assert skipped.startswith("passkeyd on PostgreSQL: postgresql://127.0.0.1:9/none cannot")
    assert "s3cret" not in json.dumps(report)  # no password in what the run writes
