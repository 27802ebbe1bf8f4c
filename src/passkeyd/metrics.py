"""Prometheus metrics. With several worker processes, set PROMETHEUS_MULTIPROC_DIR (serve
does) and every worker's samples are aggregated at /metrics."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

# A `*_created` series per labelled child (its creation time) is exported by one process but
# not by the multiprocess collector of several workers: one worker and two exported different
# series. Scrapers need none of them.
disable_created_metrics()  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "passkeyd_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
LATENCY = Histogram(
    "passkeyd_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route", "method"],
    # Up to 10 s: the longest a request waits for SQLite's write lock (PostgreSQL's: 5 s),
    # which a contended database's tail would otherwise put all in +Inf.
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CEREMONIES = Counter(
    "passkeyd_ceremonies_total",
    "WebAuthn ceremonies finished, by outcome and the step that refused",
    ["ceremony", "outcome", "step"],
)
WEBHOOK_DELIVERIES = Counter(
    "passkeyd_webhook_deliveries_total", "Webhook delivery attempts by outcome", ["outcome"]
)
# The database's count, read by whichever worker serves the scrape just before it renders:
# with several workers, the value set last is the current one. ("max" exported the largest
# each worker had read at its own last scrape, dead workers' included: a backlog that had
# drained stayed reported until every worker served a scrape again, and that of a worker
# killed or restarted since, for as long as the supervisor ran.)
WEBHOOK_BACKLOG = Gauge(
    "passkeyd_webhook_backlog",
    "Webhook deliveries waiting to be sent",
    multiprocess_mode="mostrecent",
)

CEREMONY_OF_ROUTE = {"verify_factor": "registration", "approve_challenge": "authentication"}
# The series an alert is written on exist from the start, at 0: an absent series cannot be
# told from none yet (a rate over it is empty, not 0).
for _outcome in ("delivered", "retry", "failed"):
    WEBHOOK_DELIVERIES.labels(_outcome)
for _kind in CEREMONY_OF_ROUTE.values():
    CEREMONIES.labels(_kind, "success", "")

# Labelled children, looked up once per label set (labels() costs more than inc()).
_requests: dict[tuple[str, str, int], Any] = {}
_latency: dict[tuple[str, str], Any] = {}
_ceremonies: dict[tuple[str, str, str], Any] = {}


def request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and observe how long it took."""
    _count(route, method, status)
    histogram = _latency.get((route, method))
    if histogram is None:
        histogram = _latency[(route, method)] = LATENCY.labels(route, method)
    histogram.observe(seconds)


# The route a request no route serves is counted (and logged) under.
UNMATCHED = "unmatched"
# The methods an unmatched request is counted under; any other is `other`, so that no client
# can add label values (series) at will.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def unmatched(method: str, status: int) -> None:
    """Count a request no route served (404) or whose method its route does not (405), under
    the route `unmatched`: probes and misdirected clients show in the request count."""
    _count(UNMATCHED, method if method in _METHODS else "other", status)


def _count(route: str, method: str, status: int) -> None:
    counter = _requests.get((route, method, status))
    if counter is None:
        counter = _requests[(route, method, status)] = REQUESTS.labels(route, method, str(status))
    counter.inc()


def ceremony(kind: str, outcome: str, step: str) -> None:
    """Count one finished ceremony by its outcome and the step that refused it."""
    counter = _ceremonies.get((kind, outcome, step))
    if counter is None:
        counter = _ceremonies[(kind, outcome, step)] = CEREMONIES.labels(kind, outcome, step)
    counter.inc()


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
