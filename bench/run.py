"""passkeyd benchmark: whole registration and authentication flows over HTTP, against
passkeyd and two peers, with the floors they run on, all measured in one run.

    .venv/bin/python bench/run.py            # full run, about 8 minutes
    .venv/bin/python bench/run.py --quick    # smoke test, about 2 minutes

Prints the tables and the targets, and writes bench/results/<timestamp>.json.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from pkbench import floors, report, suite, systems  # noqa: E402
from pkbench.db import database_for  # noqa: E402
from pkbench.load import Budget  # noqa: E402
from pkbench.source import CHOICES, git, source_dir  # noqa: E402

SECTIONS = ("floors", "http", "passkeyd", "postgresql", "fastapi", "simplewebauthn", "scale")
# passkeyd on PostgreSQL too (section `postgresql`), beside its SQLite default, when a server
# answers here: these machines run one (trust auth, database test).
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
# The system name of passkeyd's cells on PostgreSQL in that section.
ON_POSTGRES = report.ON_POSTGRES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few seconds per cell (smoke test)")
    p.add_argument(
        "--database-url",
        default="sqlite",
        help="sqlite (default: files in a temp dir) or postgresql://host:port/db",
    )
    p.add_argument(
        "--postgres-url",
        default=os.environ.get("PASSKEYD_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="PostgreSQL server for the `postgresql` section: passkeyd's cells again on"
        " PostgreSQL, a database made and dropped beside the one named (default"
        f" $PASSKEYD_BENCH_POSTGRES_URL or {DEFAULT_POSTGRES_URL}; `none` skips it)",
    )
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    p.add_argument("--seconds", type=float, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, help="warm-up seconds per cell")
    p.add_argument("--max-flows", type=int, help="flow cap per cell")
    p.add_argument("--workers", default="1,2", help="worker processes to try")
    p.add_argument("--concurrency", default="1,16,64", help="connections to try")
    p.add_argument("--scale", help="stored-factor counts for the scale run (default 1000,1000000)")
    p.add_argument(
        "--users",
        type=int,
        help="users enrolled per server and dealt out to the connections (default 1024; quick"
        " 256): each signs in rarely, as real users do",
    )
    p.add_argument("--scale-workers", type=int, default=1)
    p.add_argument("--scale-concurrency", type=int, default=64)
    p.add_argument(
        "--scale-rounds",
        type=int,
        default=3,
        help="turns each scale cell takes, alternating with the others (median reported)",
    )
    p.add_argument("--src", default="head", help="passkeyd code to run: " + CHOICES)
    p.add_argument(
        "--passkeyd-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for passkeyd (repeatable), e.g. PASSKEYD_LOG_LEVEL=warning",
    )
    p.add_argument("--out", default=str(BENCH / "results"), help="directory for the JSON")
    return p.parse_args(argv)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {"python": platform.python_version()}
    for name in (
        "cryptography",
        "webauthn",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "orjson",
        "fastapi",
        "pydantic",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["simplewebauthn"] = systems.simplewebauthn_version()
    node = shutil.which("node")
    out["node"] = (
        subprocess.run(  # noqa: S603
            [node, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if node
        else None
    )
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    return out


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release()}


def ensure_node_modules(log: Any) -> None:
    folder = systems.NODE_PEER
    if (folder / "node_modules").exists() or shutil.which("npm") is None:
        return
    log("installing the SimpleWebAuthn peer (npm ci) ...")
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=folder,
        check=False,  # noqa: S607
        timeout=300,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        sys.exit(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.scale_rounds < 1:
        sys.exit("--scale-rounds must be 1 or more")
    quick = args.quick
    budget = Budget(
        warmup=args.warmup if args.warmup is not None else (0.3 if quick else 1.0),
        seconds=args.seconds if args.seconds is not None else (1.5 if quick else 8.0),
        max_flows=args.max_flows or (20_000 if quick else 200_000),
    )
    scale_counts = (
        ints(args.scale) if args.scale else ([1_000, 100_000] if quick else [1_000, 1_000_000])
    )
    concurrency = ints(args.concurrency)

    def log(text: str) -> None:
        print(text, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="passkeyd-bench-run-"))
    src, src_text = source_dir(args.src, tmp)
    database = database_for(args.database_url)
    opts = suite.Options(
        budget=budget,
        workers=ints(args.workers),
        concurrency=concurrency,
        scale_counts=scale_counts,
        scale_workers=args.scale_workers,
        scale_concurrency=args.scale_concurrency,
        scale_rounds=args.scale_rounds,
        database=database,
        log_dir=tmp,
        src=src,
        log=log,
        passkeyd_env=dict(item.split("=", 1) for item in args.passkeyd_env),
        users=args.users or (256 if quick else 1024),
    )
    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log(f"passkeyd benchmark {stamp}: {'quick' if quick else 'full'} mode, {budget}")
    log(f"passkeyd source: {src_text}; logs in {tmp}")
    results = suite.Results()
    floor_results: list[floors.Floor] = []
    try:
        if "floors" in sections:
            log("floors: crypto and py_webauthn, in-process, one core")
            floor_results = floors.run_floors(0.3 if quick else 1.0)
            for f in floor_results:
                log(f"  {f.name}: {f.per_cpu_second:,.0f}/CPU-s ({f.us_per_op:.1f} us)")
        if "http" in sections:
            log("HTTP floor: bare Starlette on uvicorn")
            suite.run_async(suite.http_floor_section(opts, results))
        if "passkeyd" in sections:
            log(f"passkeyd ({database.kind})")
            suite.run_async(suite.passkeyd_section(opts, results))
        if "postgresql" in sections:
            postgres_section(args.postgres_url, database, opts, results, log)
        if "fastapi" in sections:
            log(f"peer: FastAPI {systems.fastapi_version()} + py_webauthn + SQLite")
            suite.run_async(suite.fastapi_section(opts, results))
        if "simplewebauthn" in sections:
            ensure_node_modules(log)
            log(f"peer: @simplewebauthn/server {systems.simplewebauthn_version()} on Node")
            suite.run_async(suite.simplewebauthn_section(opts, results, suite.node_binary()))
        if "scale" in sections:
            log(f"scale: authentication with {', '.join(f'{n:,}' for n in scale_counts)} factors")
            suite.run_async(suite.scale_section(opts, results))
    finally:
        database.cleanup()
    elapsed = time.perf_counter() - started

    checks = report.targets(results, concurrency, scale_counts, floor_results)
    print_report(results, floor_results, checks, concurrency, elapsed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stamp}.json"
    payload = {
        "timestamp": stamp,
        "mode": "quick" if quick else "full",
        "elapsed_s": elapsed,
        "budget": asdict(budget),
        "database": database.kind,
        "passkeyd_source": src_text,
        "passkeyd_env": opts.passkeyd_env,
        "git": {"head": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))},
        "machine": machine(),
        "versions": versions(),
        "floors": [
            {
                **asdict(f),
                "us_per_op": f.us_per_op,
                "per_cpu_second": f.per_cpu_second,
                "per_second": f.per_second,
            }
            for f in floor_results
        ],
        **results.as_json(),
        "targets": [t.as_json() for t in checks],
    }
    path.write_text(json.dumps(payload, indent=2, default=str))
    log(f"\nwrote {path} ({elapsed:.0f} s)")
    shutil.rmtree(tmp, ignore_errors=True) if not any(c.errors for c in results.cells) else None
    return 0 if not any(c.errors for c in results.cells) else 1


def postgres_section(
    url: str, database: Any, opts: suite.Options, results: suite.Results, log: Any
) -> None:
    """passkeyd's cells once more, on PostgreSQL, when the run's own database is SQLite."""
    if database.kind == "postgresql":
        return  # the passkeyd section ran on PostgreSQL already
    if url.strip().lower() in ("", "none"):
        results.skipped.append("passkeyd on PostgreSQL: --postgres-url none")
        return
    postgres = database_for(url)
    why = postgres.reachable()
    if why is not None:
        parts = urlsplit(url)
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # no password
        results.skipped.append(f"passkeyd on PostgreSQL: {shown} cannot be used ({why})")
        return
    log("passkeyd (postgresql)")
    try:
        suite.run_async(suite.passkeyd_section(opts, results, postgres, ON_POSTGRES))
    finally:
        postgres.cleanup()


def print_report(
    results: suite.Results,
    floor_results: list[floors.Floor],
    checks: list[report.Target],
    concurrency: list[int],
    elapsed: float,
) -> None:
    def section(title: str, body: str) -> None:
        if body.strip():
            print(f"\n== {title} ==\n{body}")

    section(
        "flows (a flow = 2 requests; latency is per whole flow)", report.cell_table(results.cells)
    )
    section("floors", report.floors_table(floor_results, results.cells))
    section("passkeyd vs peers", "\n".join(report.ratio_lines(results.cells, concurrency)))
    section(
        "passkeyd on PostgreSQL vs SQLite",
        "\n".join(report.database_lines(results.cells, concurrency)),
    )
    section("scale", report.scale_table(results))
    section("start-up and memory", report.servers_table(results))
    errors = [
        f"{c.system} {c.flow} w{c.workers} c{c.concurrency}: {s}"
        for c in results.cells
        for s in c.error_samples
    ]
    section("errors", "\n".join(errors) or "none")
    section("skipped", "\n".join(results.skipped))
    section("targets", report.targets_table(checks))


if __name__ == "__main__":
    raise SystemExit(main())
