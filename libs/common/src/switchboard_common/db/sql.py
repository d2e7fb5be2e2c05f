"""Constant-shape SQL: arrays in, ``unnest`` / ``= ANY`` inside.

A statement whose text does not depend on the batch size is parsed and planned once per connection
(asyncpg's prepared-statement cache), and a batch of any size costs one round trip.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

TEXTS = postgresql.ARRAY(sa.Text)
UUIDS = postgresql.ARRAY(sa.Uuid)
TIMES = postgresql.ARRAY(sa.DateTime(timezone=True))
INTS = postgresql.ARRAY(sa.Integer)
BOOLS = postgresql.ARRAY(sa.Boolean)
BIGINTS = postgresql.ARRAY(sa.BigInteger)
BYTEAS = postgresql.ARRAY(sa.LargeBinary)


def statement(sql: str, **types: sa.types.TypeEngine[Any]) -> sa.TextClause:
    """A textual statement whose bind parameters carry their types, so arrays bind as typed arrays."""
    return sa.text(sql).bindparams(*(sa.bindparam(name, type_=type_) for name, type_ in types.items()))
