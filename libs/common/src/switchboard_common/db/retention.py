"""Deleting rows past their retention in small batches: short transactions that never hold up the
services' consumers for long, each its own unit of work so a failure loses nothing done before it.

A delete statement takes ``:batch`` and deletes at most that many rows, typically
``DELETE FROM t WHERE ctid = ANY(ARRAY(SELECT ctid FROM t WHERE <past retention> LIMIT :batch))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa

from switchboard_common.db.database import Database

BATCH = 5000


async def delete_in_batches(
    db: Database, deletes: Sequence[tuple[str, sa.TextClause, Mapping[str, Any]]], batch: int | None = None
) -> dict[str, int]:
    """Run each ``(table, statement, params)`` until it deletes less than a batch (``BATCH`` rows unless
    given, read at call time); returns the rows deleted per table."""
    batch = BATCH if batch is None else batch
    deleted: dict[str, int] = {}
    for table, delete, params in deletes:
        total = 0
        while True:
            async with db.unit_of_work() as session:
                result = cast(
                    "sa.CursorResult[Any]", await session.execute(delete, {**params, "batch": batch})
                )
                n = result.rowcount
            total += n
            if n < batch:
                break
        deleted[table] = total
    return deleted
