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


def test_the_series_alerts_are_written_on_exist_at_zero_before_their_first_event(tmp_path):
    """`passkeyd_webhook_deliveries_total` and the ceremonies' success series were absent
    until a first delivery or ceremony: an alert on their rate read nothing, not 0."""
    for exported in (
        _in_a_worker(tmp_path, RENDER),  # a worker of several
        subprocess.run(  # noqa: S603 - fixed argv; one process
            [sys.executable, "-c", RENDER],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        ).stdout,  # fmt: skip
    ):
        for outcome in ("delivered", "retry", "failed"):
            line = f'passkeyd_webhook_deliveries_total{{outcome="{outcome}"}} 0.0'
            assert line in exported.splitlines(), exported
        for kind in ("registration", "authentication"):
            line = f'passkeyd_ceremonies_total{{ceremony="{kind}",outcome="success",step=""}} 0.0'
            assert line in exported.splitlines(), exported


def test_a_request_that_waited_for_a_lock_is_in_a_bucket_of_its_own(tmp_path):
    """Up to 10 s (SQLite's write lock): a 6 s answer was only in +Inf with 2.5 s as the
    largest bucket."""
    observe = "from passkeyd import metrics; metrics.request('approve_challenge', 'POST', 503, 6.0)"
    _in_a_worker(tmp_path, observe)
    exported = _in_a_worker(tmp_path, RENDER)
    counts = dict(
        re.findall(
            r'^passkeyd_http_request_duration_seconds_bucket\{le="([^"]+)",method="POST",'
            r'route="approve_challenge"\} (\S+)$',
            exported,
            re.M,
        )
    )
    assert (counts["5.0"], counts["10.0"]) == ("0.0", "1.0"), exported
