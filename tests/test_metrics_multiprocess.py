"""/metrics of several worker processes: the webhook backlog is the database's, as the last
scrape read it, whichever worker that was and whichever workers have died since."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SET = "from passkeyd import metrics; metrics.WEBHOOK_BACKLOG.set({value})"
RENDER = "from passkeyd import metrics; print(metrics.render()[0].decode())"


def _in_a_worker(directory: Path, code: str) -> str:
    """Run `code` in a process of its own, as a worker of `serve --workers N` runs."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_backlog_is_the_last_one_read_not_the_largest_any_worker_read(tmp_path):
    # A worker scraped while 30 deliveries waited, and has exited since (killed, or
    # restarted by SIGHUP); another scraped once they were gone. The supervisor keeps the
    # metrics directory, with the first one's file, for as long as it runs.
    _in_a_worker(tmp_path, SET.format(value=30))
    _in_a_worker(tmp_path, SET.format(value=0))
    exported = _in_a_worker(tmp_path, RENDER)
    match = re.search(r"^passkeyd_webhook_backlog (\S+)$", exported, re.M)
    assert match is not None, exported
    assert float(match.group(1)) == 0.0
