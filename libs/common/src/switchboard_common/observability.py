"""Prometheus metrics shared by the services' building blocks (docs/observability.md lists them all)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "switchboard_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "switchboard_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_CONSUMED = Counter(
    "switchboard_events_consumed_total", "Records handled by consumers", ["group", "topic", "outcome"]
)
CONSUMER_LAG = Gauge(
    "switchboard_consumer_lag", "Records behind the partition's end", ["group", "topic", "partition"]
)
BATCH_SECONDS = Histogram(
    "switchboard_consumer_batch_seconds",
    "Time to handle one poll (one database transaction and one offset commit, unless a record fails)",
    ["group"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_PUBLISHED = Counter("switchboard_outbox_published_total", "Events relayed from the outbox", ["schema"])
BATCH_RECORDS = Histogram(
    "switchboard_consumer_batch_records",
    "Records handled in one poll",
    ["group"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
DLQ_RECORDS = Counter(
    "switchboard_dlq_records_total",
    "Records written to a dead-letter topic (counted once the DLQ acknowledged them), by consumer group "
    "and the topic the record came from",
    ["group", "topic"],
)
# Refreshed at every scrape of /metrics from the outbox table itself (see OutboxRelay.observe_backlog), so
# every replica reports the same table: aggregate with max, not sum.
OUTBOX_BACKLOG = Gauge(
    "switchboard_outbox_backlog", "Events waiting in the outbox table to be published", ["table"]
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "switchboard_outbox_oldest_seconds",
    "Age of the oldest event waiting in the outbox table (0 when it is empty)",
    ["table"],
)
