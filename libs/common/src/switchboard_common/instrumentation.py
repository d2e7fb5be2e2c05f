"""Cost counters: SQL statements and transactions per engine, Kafka requests per API.

They let `make bench` report round trips per message for each service (it scrapes `/metrics` before and
after its measured window). Counting costs one dictionary lookup and one counter increment per statement,
transaction or Kafka request.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter
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
