"""Cost counters: SQL statements and transactions per engine, Kafka requests per API; and the gauges that
tell whether a consumer is still making progress.

The counters let `make bench` report round trips per message for each service (it scrapes `/metrics`
before and after its measured window). Counting costs one dictionary lookup and one counter increment per
statement, transaction or Kafka request.

The progress gauges are what `/health/ready` judges, for alerting: a consumer can be connected, joined and
"running" and still consume nothing (its position beyond the end of a recreated log, its handler failing
on an unavailable dependency, its offset commits failing). They are computed from the consumer's
observations at every scrape and readiness probe, not in the poll loop.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

SQL_STATEMENTS = Counter(
    "switchboard_sql_statements_total",
    "SQL statements sent to the database (an executemany counts once)",
    ["verb"],
)
SQL_TRANSACTIONS = Counter("switchboard_sql_transactions_total", "Database transactions ended", ["outcome"])
KAFKA_REQUESTS = Counter(
    "switchboard_kafka_requests_total", "Requests sent to Kafka brokers, by request type", ["api"]
)

# Reasons of CONSUMER_STALLED; each is 0 or 1 for every group, so an alert can name the reason.
STALL_REASONS = ("beyond_log_end", "no_progress", "commit_failing")
CONSUMER_STALLED = Gauge(
    "switchboard_consumer_stalled",
    "1 while the consumer group makes no progress, by reason: beyond_log_end (a partition's position is "
    "past the end of its log), no_progress (records wait and a position has not moved for "
    "SWITCHBOARD_CONSUMER_STALL_SECONDS), commit_failing (offset commits failing that long)",
    ["group", "reason"],
)
CONSUMER_UNMOVED_SECONDS = Gauge(
    "switchboard_consumer_unmoved_seconds",
    "Longest time a partition of the group has had records waiting while its position did not move",
    ["group"],
)
CONSUMER_COMMIT_FAILURES = Gauge(
    "switchboard_consumer_commit_failures",
    "Offset commits failed in a row (0 once one succeeds)",
    ["group"],
)
CONSUMER_LAST_COMMIT = Gauge(
    "switchboard_consumer_last_commit_timestamp_seconds",
    "Unix time of the group's last successful offset commit",
    ["group"],
)

_VERBS = ("select", "insert", "update", "delete", "with", "begin", "commit", "rollback")
_STATEMENT_COUNTERS = {verb: SQL_STATEMENTS.labels(verb) for verb in (*_VERBS, "other")}
_COMMITS = SQL_TRANSACTIONS.labels("commit")
_ROLLBACKS = SQL_TRANSACTIONS.labels("rollback")
_INSTRUMENTED = "_switchboard_instrumented"


def _verb(statement: str) -> str:
    head = statement.lstrip()[:8].split(None, 1)
    verb = head[0].lower() if head else ""
    return verb if verb in _STATEMENT_COUNTERS else "other"


def _before_cursor_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    _STATEMENT_COUNTERS[_verb(statement)].inc()


def _on_commit(conn: Any) -> None:
    _COMMITS.inc()


def _on_rollback(conn: Any) -> None:
    _ROLLBACKS.inc()


def instrument_engine(engine: AsyncEngine) -> None:
    """Count ``engine``'s statements and transactions (idempotent per engine)."""
    sync_engine = engine.sync_engine
    if event.contains(sync_engine, "before_cursor_execute", _before_cursor_execute):
        return
    event.listen(sync_engine, "before_cursor_execute", _before_cursor_execute)
    event.listen(sync_engine, "commit", _on_commit)
    event.listen(sync_engine, "rollback", _on_rollback)


def instrument_kafka() -> None:
    """Count every request aiokafka sends, by request class (installed once per process)."""
    from aiokafka.conn import AIOKafkaConnection

    original = AIOKafkaConnection.send
    if getattr(original, _INSTRUMENTED, False):
        return
    children: dict[str, Any] = {}

    @functools.wraps(original)
    def send(self: Any, request: Any, expect_response: bool = True) -> Any:
        name = type(request).__name__
        child = children.get(name)
        if child is None:
            child = children[name] = KAFKA_REQUESTS.labels(name)
        child.inc()
        return original(self, request, expect_response)

    setattr(send, _INSTRUMENTED, True)
    AIOKafkaConnection.send = send
