"""Profile passkeyd under load with py-spy: where a registration and an authentication spend
their CPU.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile_load.py [--seconds 8] [--native] [--workers 1] [--concurrency 16]

For each flow it starts passkeyd (SQLite, or `--database-url postgresql://...`), drives it
with the benchmark's load generator, samples the worker with `py-spy record --format raw`,
and prints time by bucket (HTTP stack, SQLite, crypto, ...) and the top frames, inclusive
and self. The raw stacks are kept in bench/results/profile-<timestamp>/ (feed them to
flamegraph.pl or speedscope).
Samples are taken without pausing the process (`--nonblocking`): the load is undisturbed,
and the few stacks read while they changed are counted by their leaf frame only.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from pkbench import stacks, suite  # noqa: E402
from pkbench.db import database_for  # noqa: E402
from pkbench.load import Budget, prepare_users, run_cell  # noqa: E402
from pkbench.procs import Server  # noqa: E402
from pkbench.source import CHOICES, source_dir  # noqa: E402


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


async def profile_flow(
    flow: str, args: argparse.Namespace, opts: suite.Options, out: Path
) -> tuple[Path, str]:
    server, creds, _ = await suite._passkeyd_server(args.workers, f"profile-{flow}", opts)
    server.start()
    try:
        driver = await suite._passkeyd_driver(server, creds)
        users = await prepare_users(
            server.port, suite.user_names(max(args.users, args.concurrency)), driver.enroll
        )
        raw = out / f"{flow}.txt"
        target = max(server.worker_pids(), key=lambda p: p)  # one worker is enough
        command = [py_spy(), "record", "--pid", str(target), "--rate", str(args.rate)]
        command += ["--duration", str(int(args.seconds)), "--format", "raw", "-o", str(raw)]
        if not args.blocking:
            command.append("--nonblocking")
        if args.native:
            command.append("--native")
        sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
        result = await run_cell(
            system="passkeyd",
            flow_name=flow,
            flow=driver.authenticate if flow == "auth" else driver.register,
            users=suite.pools(users, args.concurrency),
            port=server.port,
            workers=args.workers,
            budget=Budget(warmup=0.5, seconds=args.seconds, max_flows=10**6),
            server=server,
        )
        _, err = sampler.communicate(timeout=args.seconds + 30)
        if sampler.returncode != 0:
            sys.exit(f"py-spy failed: {err.decode(errors='replace')}")
        return raw, suite.one_line(result)
    finally:
        stop(server)


def stop(server: Server) -> None:
    server.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rate", type=int, default=250, help="samples per second")
    p.add_argument("--native", action="store_true", help="include C frames (sqlite, OpenSSL)")
    p.add_argument(
        "--blocking",
        action="store_true",
        help="pause the process for each sample: exact stacks, but it slows passkeyd 3-5x and"
        " skews time toward syscalls",
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--flows", default="auth,reg")
    p.add_argument("--users", type=int, default=1024, help="users enrolled, dealt to connections")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--src", default="head", help="passkeyd code to run: " + CHOICES)
    p.add_argument("--database-url", default="sqlite", help="sqlite or postgresql://...")
    args = p.parse_args()

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = BENCH / "results" / f"profile-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="passkeyd-profile-"))
    database = database_for(args.database_url)
    src, src_text = source_dir(args.src, tmp)
    print(f"passkeyd source: {src_text}")
    opts = suite.Options(
        budget=Budget(0.5, args.seconds, 10**6),
        workers=[args.workers],
        concurrency=[args.concurrency],
        scale_counts=[],
        scale_workers=1,
        scale_concurrency=args.concurrency,
        database=database,
        log_dir=tmp,
        src=src,
    )
    try:
        for flow in args.flows.split(","):
            raw, line = suite.run_async(profile_flow(flow, args, opts, out))
            summary = stacks.summarise(stacks.read(raw), top=args.top)
            text = stacks.render(f"{flow} ({line})", summary, top=args.top)
            (out / f"{flow}-summary.txt").write_text(text)
            print(text)
    finally:
        database.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"raw stacks and summaries in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
