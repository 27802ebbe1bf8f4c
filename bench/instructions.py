"""Instructions per flow, counted by valgrind: a figure the machine's noise does not move.

    .venv/bin/python bench/instructions.py [REV|live ...] [--flow auth,reg] [--flows 160,800]
                                           [--database-url postgresql://...]

On these shared machines the same code measures 1.8k to 3.3k flows/s from one hour to the
next, and even `bench/inproc.py`'s CPU per flow moves by 10% with the host's load. A
change worth 3% cannot be seen that way. `valgrind --tool=callgrind` counts the
instructions a process executes instead, which is the same from run to run within about
0.1%, whatever else the machine is doing.

Each revision (a git revision, `live` for a copy of the working tree; default `live`) runs
`bench/inproc.py` under callgrind twice, with two flow counts; the difference between the
two totals, divided by the difference in flows, is the instructions per flow, without
start-up, imports, enrolment and warm-up. The figure includes the client's signing and
request rendering (the same for every revision), and is a count, not a time: instructions
differ in cost (a cache miss, a syscall's wait count for little). Use it to judge a change
to passkeyd's own Python code; use `bench/run.py` for what the service does under load.
Under valgrind a run is about 50x slower, so the app's group commit (a 2 ms window) sees
fewer requests per batch than at full speed. Each pair of runs takes one to two minutes;
revisions run one after another, a revision's two runs at once (one per core).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from pkbench.source import REPO, archived, git  # noqa: E402

TOTAL = re.compile(r"I\s+refs:\s+([\d,]+)")


def count(src: Path, flow: str, flows: int, concurrency: int, database_url: str) -> int:
    """Instructions executed by one `inproc.py` run of `flows` flows (one round)."""
    env = dict(os.environ)  # pymalloc kept, as in production: callgrind needs no malloc hooks
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(BENCH / "inproc.py"),
        f"--flow={flow}",
        f"--flows={flows}",
        "--rounds=1",
        f"--concurrency={concurrency}",
        f"--users={concurrency}",
        "--no-statements",
        f"--database-url={database_url}",
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)  # noqa: S603
    found = TOTAL.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_flow(
    src: Path, flow: str, low: int, high: int, concurrency: int, database_url: str
) -> float:
    with ThreadPoolExecutor(2) as pool:
        small, large = pool.map(
            lambda n: count(src, flow, n, concurrency, database_url), (low, high)
        )
    return (large - small) / (high - low)


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("revs", nargs="*", default=["live"], help="git revisions or 'live'")
    parser.add_argument("--flow", default="auth,reg", help="auth, reg or both")
    parser.add_argument("--flows", default="160,800", help="the two flow counts")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--database-url",
        default="sqlite",
        help="sqlite, or postgresql://host:port/db: passkeyd's instructions only, not the server's",
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    low, high = (int(n) for n in args.flows.split(","))
    flows = args.flow.split(",")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="passkeyd-instr-") as tmp:
        for i, rev in enumerate(args.revs):
            if rev == "live":
                # A copy, as a revision is run: the installed tree itself (an editable
                # install) counts about 1% more instructions per flow for the same code.
                src = Path(tmp) / str(i) / "src"
                shutil.copytree(
                    REPO / "src" / "passkeyd",
                    src / "passkeyd",
                    ignore=shutil.ignore_patterns("__pycache__"),
                )
                name = f"live ({git('rev-parse', '--short', 'HEAD')}+working tree)"
            else:
                src = archived(rev, Path(tmp) / str(i))
                name = f"{rev} ({git('rev-parse', '--short', rev)})"
            results[name] = {}
            for flow in flows:
                results[name][flow] = per_flow(
                    src, flow, low, high, args.concurrency, args.database_url
                )
                thousands = results[name][flow] / 1e3
                print(f"{name:40} {flow:5} {thousands:10,.1f} k instr/flow", flush=True)
    if len(results) > 1:
        base_name, base = next(iter(results.items()))
        print(f"\nrelative to {base_name}:")
        for name, figures in list(results.items())[1:]:
            ratios = ", ".join(f"{flow} {figures[flow] / base[flow]:.3f}x" for flow in flows)
            print(f"  {name:40} {ratios}")


if __name__ == "__main__":
    os.chdir(REPO)
    main()
