"""Counters scraped from the services' /metrics before and after the measured window."""

from __future__ import annotations

from collections.abc import Iterable

import httpx
from prometheus_client.parser import text_string_to_metric_families

# (sample name, sorted label pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

SQL_STATEMENTS = "switchboard_sql_statements_total"
SQL_TRANSACTIONS = "switchboard_sql_transactions_total"
KAFKA_REQUESTS = "switchboard_kafka_requests_total"
COUNTERS = (SQL_STATEMENTS, SQL_TRANSACTIONS, KAFKA_REQUESTS)


def parse(text: str, names: Iterable[str] = COUNTERS) -> Samples:
    wanted = set(names)
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(before: Samples, after: Samples) -> Samples:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def combine(parts: Iterable[Samples]) -> Samples:
    """The sum of several processes' samples (the replicas of one service)."""
    out: Samples = {}
    for samples in parts:
        for key, value in samples.items():
            out[key] = out.get(key, 0.0) + value
    return out


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, labels), value in samples.items():
        if n == name and value:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
    return out


async def scrape(client: httpx.AsyncClient, urls: dict[str, str]) -> dict[str, Samples]:
    """Every service's counters; a service that does not answer gets no samples."""
    out: dict[str, Samples] = {}
    for name, url in urls.items():
        try:
            response = await client.get(f"{url}/metrics")
            response.raise_for_status()
            out[name] = parse(response.text)
        except httpx.HTTPError:
            out[name] = {}
    return out
