"""Which passkeyd code a run measures. Others edit src/ while benchmarks run, so by default
a run takes the committed HEAD (`git archive`), and names the commit in its results."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHOICES = "head (default: the committed HEAD), snapshot (a copy of the working tree's src/"
CHOICES += " at start), live (the working tree itself) or a path to a src/ directory"


def git(*args: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
        )
    except OSError:
        return ""
    return done.stdout.strip()


def source_dir(choice: str, tmp: Path) -> tuple[Path | None, str]:
    """(a directory to put first on the servers' PYTHONPATH or None, a description)."""
    if choice == "live":
        return None, f"live working tree {REPO / 'src'}"
    dest = tmp / "src"
    if choice == "head":
        commit = git("rev-parse", "HEAD")
        return archived("HEAD", tmp), f"git HEAD {commit[:12]}"
    if choice == "snapshot":
        shutil.copytree(
            REPO / "src" / "passkeyd",
            dest / "passkeyd",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        dirty = " (with uncommitted changes)" if git("status", "--porcelain", "src") else ""
        return dest, f"snapshot of the working tree at {git('rev-parse', '--short', 'HEAD')}{dirty}"
    return Path(choice).resolve(), choice


def archived(rev: str, tmp: Path) -> Path:
    """passkeyd's src/ as committed at `rev` (anything `git archive` takes), under `tmp`."""
    archive = subprocess.run(  # noqa: S603 - fixed argv
        ["git", "-C", str(REPO), "archive", "--format=tar", rev, "src/passkeyd"],  # noqa: S607
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp, filter="data")
    return tmp / "src"
