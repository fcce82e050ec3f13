"""Prometheus metrics: what the service did (counters) and what the queue holds (read at scrape time).

Counters and histograms live in this process (or, under a pre-forking
server with ``PROMETHEUS_MULTIPROC_DIR`` set, in files that every worker
writes and the scraping worker sums). Queue depth, jobs by state and
webhook deliveries are read from the database when /metrics is scraped, so
they are right whichever process answers.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from .models import Connection, Job, JobState, WebhookDelivery, as_utc

_SIZE_BUCKETS = (1e3, 1e4, 1e5, 1e6, 1e7, 5e7, 1e8, 4e8)

SOAP_CALLS = Counter("qwc_soap_calls_total", "SOAP calls answered", ["operation", "outcome"])
SOAP_SECONDS = Histogram("qwc_soap_call_seconds", "Time to answer a SOAP call", ["operation"],
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
SOAP_BYTES = Histogram("qwc_soap_request_bytes", "Size of SOAP request bodies", ["operation"],
                       buckets=_SIZE_BUCKETS)
SESSIONS = Counter("qwc_sessions_total", "Web Connector sessions by how they ended", ["event"])
AUTH_RESULTS = Counter("qwc_auth_results_total", "authenticate answers", ["result"])
LOCKOUTS = Counter("qwc_lockouts_total", "Brute-force lockouts imposed", ["scope"])
QUICKBOOKS_ERRORS = Counter("qwc_quickbooks_errors_total", "Failures reported by QuickBooks or the Web Connector",
                            ["code", "category"])
JOB_TRANSITIONS = Counter("qwc_job_transitions_total", "Job state changes", ["to_state"])


class QueueCollector(Collector):
    """Jobs by state, queue depth and oldest queued age per connection, webhook deliveries by state."""

    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = datetime.now(timezone.utc)
        by_state = GaugeMetricFamily("qwc_jobs", "Jobs by state", labels=["connection", "state"])
        depth = GaugeMetricFamily("qwc_queue_depth", "Queued jobs", labels=["connection"])
        oldest = GaugeMetricFamily("qwc_queue_oldest_seconds", "Age of the oldest queued job", labels=["connection"])
        hooks = GaugeMetricFamily("qwc_webhook_deliveries", "Webhook deliveries by state", labels=["state"])
        with self.db.begin() as db:
            names = dict(db.execute(select(Connection.id, Connection.name)).all())
            counts = db.execute(select(Job.connection_id, Job.state, func.count()).group_by(Job.connection_id,
                                                                                             Job.state)).all()
            ages = db.execute(select(Job.connection_id, func.min(Job.created_at))
                              .where(Job.state == JobState.QUEUED.value).group_by(Job.connection_id)).all()
            deliveries = db.execute(select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)).all()
        queued: dict[str, int] = {name: 0 for name in names.values()}
        for connection_id, state, count in counts:
            name = names.get(connection_id, str(connection_id))
            by_state.add_metric([name, state], count)
            if state == JobState.QUEUED.value:
                queued[name] = count
        for name, count in queued.items():
            depth.add_metric([name], count)
        for connection_id, created in ages:
            if created is not None:
                created = as_utc(created)
                oldest.add_metric([names.get(connection_id, str(connection_id))], (now - created).total_seconds())
        for state, count in deliveries:
            hooks.add_metric([state], count)
        yield from (by_state, depth, oldest, hooks)


def exposition(db: sessionmaker[Session]) -> bytes:
    """The text a Prometheus scrape gets: this process's (or all workers') counters, then the queue."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counters = CollectorRegistry()
        MultiProcessCollector(counters)
    else:
        counters = REGISTRY
    queue_registry = CollectorRegistry()
    queue_registry.register(QueueCollector(db))
    return generate_latest(counters) + generate_latest(queue_registry)
