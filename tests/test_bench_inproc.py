"""bench/inproc.py, the in-process harness that judges changes to passkeyd's own code, runs
whole flows through the app and reports CPU and SQL statements per flow."""

from __future__ import annotations

import json
import re
import statistics
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


def _run_bench(
    out: Path, *args: str, only: str = "postgresql", timeout: float = 180
) -> tuple[dict, str]:  # type: ignore[type-arg]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", only]
        + ["--src", "live", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        cwd=ROOT,
    )
    (result,) = out.glob("*.json")
    return json.loads(result.read_text()), done.stdout


def test_the_benchmark_runs_passkeyd_on_postgresql_and_counts_the_servers_cpu(
    tmp_path: Path,
) -> None:
    """bench/run.py's `postgresql` section: passkeyd's cells on PostgreSQL, with the CPU of
    PostgreSQL's own processes per flow beside passkeyd's, and its databases dropped."""
    report, _ = _run_bench(
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
    report, _ = _run_bench(tmp_path, "--postgres-url", url)
    assert report["cells"] == []
    (skipped,) = report["skipped"]
    assert skipped.startswith("passkeyd on PostgreSQL: postgresql://127.0.0.1:9/none cannot")
    assert "s3cret" not in json.dumps(report)  # no password in what the run writes


def test_the_benchmark_runs_every_section_and_reports_each_figure(tmp_path: Path) -> None:
    """scripts/bench's whole run, each cell cut to a fraction of a second: the floors, the
    bare HTTP stack, passkeyd, both peers and the scale run each measure something, and the
    JSON holds every figure issue 6 asks for, its ratios and targets computed from them."""
    sections = "floors,http,passkeyd,fastapi,simplewebauthn,scale"
    report, printed = _run_bench(
        tmp_path,
        *("--workers", "1,2", "--concurrency", "1,64", "--users", "8"),
        *("--warmup", "0.1", "--seconds", "0.4", "--scale", "100,300", "--scale-rounds", "2"),
        only=sections,
        timeout=240,
    )
    assert report["skipped"] == [], report["skipped"]  # Node.js, npm and FastAPI were there

    floors = {f["name"]: f for f in report["floors"]}
    for name in (
        "ECDSA P-256 verify (cryptography)",
        "py_webauthn verify_authentication_response",
    ):
        assert floors[name]["ops"] > 0 and floors[name]["us_per_op"] > 0, floors
    cells = {(c["system"], c["flow"], c["workers"], c["concurrency"]): c for c in report["cells"]}
    assert cells[("bare-starlette", "request", 1, 64)]["flows"] > 0

    expected = [
        (system, flow, workers, concurrency)
        for system, worker_counts in (("passkeyd", (1, 2)), ("fastapi", (1, 2)))
        for flow in ("auth", "reg")
        for workers in worker_counts
        for concurrency in (1, 64)
    ] + [("simplewebauthn", flow, 1, c) for flow in ("auth", "reg") for c in (1, 64)]
    for key in expected:
        cell = cells[key]
        assert cell["flows"] > 0 and cell["errors"] == 0, (key, cell)
        assert 0 < cell["p50_ms"] <= cell["p99_ms"], (key, cell)
        assert cell["server_us_per_flow"] > 0 and cell["flows_per_s"] > 0, (key, cell)

    targets = {t["name"]: t for t in report["targets"]}
    # Each target is computed from its cells, not left out or made up.
    workers_of = {"passkeyd": (1, 2), "fastapi": (1, 2), "simplewebauthn": (1,)}
    auth = {
        s: max(cells[(s, "auth", w, 64)]["flows_per_s"] for w in counts)
        for s, counts in workers_of.items()
    }
    for peer in ("fastapi", "simplewebauthn"):
        ratio = targets[f"authentications/s vs {peer}"]["value"]
        assert ratio == pytest.approx(auth["passkeyd"] / auth[peer]), (peer, auth)
        assert f"passkeyd / {peer:<14} auth c64 : {ratio:5.2f}x" in printed
    per_auth = targets["server CPU per authentication"]
    assert per_auth["value"] == cells[("passkeyd", "auth", 1, 64)]["server_us_per_flow"]
    p99 = targets["p99 flow latency, auth"]
    assert p99["value"] == cells[("passkeyd", "auth", 2, 64)]["p99_ms"] and p99["where"] == "w2 c64"

    # The scale cells took turns, small and large, then large and small; each count's
    # figure is its rounds' median, and the target the median of the rounds' ratios.
    small, large = report["scale"]
    assert small["seeded"] == 100 and large["seeded"] == 300, report["scale"]
    turns = [
        (c["extra"]["round"], c["extra"]["stored_factors"])
        for c in report["cells"]
        if c["system"].endswith(" factors")
    ]
    assert turns == [(1, 100), (1, 300), (2, 300), (2, 100)], turns
    for scale in (small, large):
        rounds = [
            c["flows_per_s"]
            for c in report["cells"]
            if c["system"] == f"passkeyd {scale['seeded']} factors"
        ]
        assert len(rounds) == scale["rounds"] == 2 and all(r > 0 for r in rounds), scale
        assert scale["flows_per_s_by_round"] == rounds
        assert scale["flows_per_s"] == pytest.approx(statistics.median(rounds))
    ratios = [a / b for a, b in zip(large["flows_per_s_by_round"], small["flows_per_s_by_round"])]
    assert large["ratio_by_round"] == pytest.approx(ratios)
    scale = targets["throughput 300 vs 100 factors"]["value"]
    assert scale == pytest.approx(statistics.median(ratios))
    assert f"throughput ratio largest / smallest: {scale:.3f} (median of 2 rounds" in printed

    servers = {(s["system"], s["workers"]): s for s in report["servers"]}
    for workers in (1, 2):
        passkeyd = servers[("passkeyd", workers)]
        assert 0 < passkeyd["startup_s"] < 30, passkeyd
        assert targets[f"start-up to /healthz 200, w{workers}"]["value"] == passkeyd["startup_s"]
        # memory per worker, idle and after the load
        names = {f"worker{n}" for n in range(1, workers + 1)}
        for memory in (passkeyd["rss_idle_mb"], passkeyd["rss_loaded_mb"]):
            assert names <= set(memory) and all(memory[n] > 0 for n in names), passkeyd
    for heading in ("== flows", "== floors ==", "== passkeyd vs peers ==", "== targets =="):
        assert heading in printed
