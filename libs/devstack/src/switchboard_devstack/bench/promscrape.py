"""Counters scraped from the services' /metrics before and after the measured window, and consumer lag
sampled during it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

import httpx
from prometheus_client.parser import text_string_to_metric_families

# (sample name, sorted label pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

SQL_STATEMENTS = "switchboard_sql_statements_total"
SQL_TRANSACTIONS = "switchboard_sql_transactions_total"
KAFKA_REQUESTS = "switchboard_kafka_requests_total"
COUNTERS = (SQL_STATEMENTS, SQL_TRANSACTIONS, KAFKA_REQUESTS)
CONSUMER_LAG = "switchboard_consumer_lag"
EVENTS_CONSUMED = "switchboard_events_consumed_total"


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


async def scrape(
    client: httpx.AsyncClient, urls: dict[str, str], names: Iterable[str] = COUNTERS
) -> dict[str, Samples]:
    """Every service's counters; a service that does not answer gets no samples."""
    out: dict[str, Samples] = {}
    for name, url in urls.items():
        try:
            response = await client.get(f"{url}/metrics")
            response.raise_for_status()
            out[name] = parse(response.text, names)
        except httpx.HTTPError:
            out[name] = {}
    return out


class LagSampler:
    """Each consumer group's lag (records behind the log end, summed over its partitions and replicas),
    sampled every ``interval_s`` while running: which group falls behind under the load, and how far.
    Once a second: each scrape costs the services a little CPU, which the measured window counts.

    Groups read different numbers of records per message (metrics reads every topic), so records behind
    do not compare across groups. Each group's lag is also given in seconds of its own input: records
    behind divided by the rate it handled records at over the sampling (how long it would take to catch
    up, the time lag)."""

    def __init__(self, client: httpx.AsyncClient, urls: dict[str, str], interval_s: float = 1.0) -> None:
        self._client = client
        self._urls = urls
        self._interval_s = interval_s
        self._samples: dict[str, list[float]] = {}
        # Per group, (monotonic time, records handled so far) at the first and the latest scrape.
        self._consumed: dict[str, list[tuple[float, float]]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, dict[str, float]]:
        """Stop sampling; per group, the largest and the mean lag seen (records, and seconds of input), the
        records handled per second, and the number of samples."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        out: dict[str, dict[str, float]] = {}
        for group, values in sorted(self._samples.items()):
            row = {"max": max(values), "mean": sum(values) / len(values), "samples": float(len(values))}
            seen = self._consumed.get(group, [])
            if len(seen) == 2 and seen[1][0] > seen[0][0] and seen[1][1] > seen[0][1]:
                rate = (seen[1][1] - seen[0][1]) / (seen[1][0] - seen[0][0])
                row |= {"rate": rate, "max_s": row["max"] / rate, "mean_s": row["mean"] / rate}
            out[group] = row
        return out

    async def _run(self) -> None:
        while True:
            scraped = await scrape(self._client, self._urls, [CONSUMER_LAG, EVENTS_CONSUMED])
            now = time.monotonic()
            both = combine(scraped.values())
            lag = by_label(both, CONSUMER_LAG, "group")
            consumed = by_label(both, EVENTS_CONSUMED, "group")
            groups = {
                dict(k[1]).get("group", "") for s in scraped.values() for k in s if k[0] == CONSUMER_LAG
            }
            for group in groups:
                self._samples.setdefault(group, []).append(lag.get(group, 0.0))
                seen = self._consumed.setdefault(group, [])
                point = (now, consumed.get(group, 0.0))
                seen[1:] = [point] if seen else []
                if not seen:
                    seen.append(point)
            await asyncio.sleep(self._interval_s)
