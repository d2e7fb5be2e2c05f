"""Prometheus metrics shared by the services' building blocks."""

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
