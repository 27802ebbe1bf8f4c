"""Compare two versions of passkeyd under the same load, alternating them (A B A B ...), so
that the drift of a shared machine falls on both alike.

    .venv/bin/python bench/ab.py ec0924f            # that commit (A) against the working tree (B)
    .venv/bin/python bench/ab.py main~3 HEAD --rounds 4 --workers 1,2 --concurrency 16,64

A and B are git revisions (anything `git archive` takes) or `live` (the working tree's
src/). Each round runs `bench/run.py --quick --only passkeyd` once for A and once for B,
with the options given; the table shows, per cell, the median of each side's server CPU
per flow and flows per second, B's ratio to A, and every round's figures, so a reader can
see how far the rounds agree. On these machines identical code moves by about ±10% between
runs: trust a difference only when it is larger than that and every round agrees.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from pkbench.source import REPO, archived  # noqa: E402

Cell = tuple[str, int, int]  # flow, workers, concurrency


def materialize(rev: str, into: Path) -> str:
    """A src/ directory holding passkeyd at `rev` (or the working tree's, for `live`)."""
    return str(REPO / "src") if rev == "live" else str(archived(rev, into))


def run_once(src: str, out: Path, args: argparse.Namespace) -> dict[Cell, dict[str, float]]:
    """One quick passkeyd-only run of bench/run.py: its cells by (flow, workers, c)."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(BENCH / "run.py"), "--quick", "--only", "passkeyd"]
    command += ["--workers", args.workers, "--concurrency", args.concurrency, "--src", src]
    command += ["--out", str(out)]
    if args.seconds:
        command += ["--seconds", str(args.seconds)]
    if args.database_url:
        command += ["--database-url", args.database_url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)  # noqa: S603
    found = sorted(out.glob("*.json"))
    if not found:
        sys.exit(f"bench/run.py wrote no results:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    results = json.loads(found[-1].read_text())
    cells = {}
    for cell in results["cells"]:
        if cell["system"] != "passkeyd":
            continue
        if cell["errors"]:
            sys.exit(f"{src}: {cell['errors']} failed flows in {cell['flow']} w{cell['workers']}")
        key = (cell["flow"], cell["workers"], cell["concurrency"])
        cells[key] = {
            "us": cell["server_us_per_flow"],
            "fps": cell["flows_per_s"],
            "p99": cell["p99_ms"],
        }
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("a", help="the version to compare against (git revision or live)")
    parser.add_argument("b", nargs="?", default="live", help="the new version (default live)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1")
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--seconds", type=float, default=0.0, help="per cell (default: quick)")
    parser.add_argument(
        "--database-url", default="", help="as bench/run.py's (default: SQLite files)"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="passkeyd-ab-"))
    sources = {"A": materialize(args.a, tmp / "a"), "B": materialize(args.b, tmp / "b")}
    runs: dict[str, list[dict[Cell, dict[str, float]]]] = defaultdict(list)
    for round_ in range(args.rounds):
        for side in ("A", "B"):
            print(f"round {round_ + 1}/{args.rounds}: {side}", file=sys.stderr)
            runs[side].append(run_once(sources[side], tmp / f"out-{side}-{round_}", args))

    print(f"A = {args.a}, B = {args.b}; {args.rounds} alternating rounds; medians")
    header = f"{'cell':<18}{'A us/flow':>10}{'B us/flow':>10}{'B/A':>7}"
    header += f"{'A flows/s':>11}{'B flows/s':>11}{'B/A':>7}{'A p99 ms':>10}{'B p99 ms':>10}"
    header += "   rounds (us/flow A|B)"
    print(header)
    print("-" * len(header))
    for cell in sorted(runs["A"][0]):
        flow, workers, concurrency = cell
        a_us = [r[cell]["us"] for r in runs["A"]]
        b_us = [r[cell]["us"] for r in runs["B"]]
        a_fps = statistics.median(r[cell]["fps"] for r in runs["A"])
        b_fps = statistics.median(r[cell]["fps"] for r in runs["B"])
        a_p99 = statistics.median(r[cell]["p99"] for r in runs["A"])
        b_p99 = statistics.median(r[cell]["p99"] for r in runs["B"])
        a_med, b_med = statistics.median(a_us), statistics.median(b_us)
        each = " ".join(f"{a:.0f}|{b:.0f}" for a, b in zip(a_us, b_us, strict=True))
        print(
            f"{f'{flow} w{workers} c{concurrency}':<18}{a_med:>10.0f}{b_med:>10.0f}"
            f"{b_med / a_med:>7.2f}{a_fps:>11,.0f}{b_fps:>11,.0f}{b_fps / a_fps:>7.2f}"
            f"{a_p99:>10.1f}{b_p99:>10.1f}   {each}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
