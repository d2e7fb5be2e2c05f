"""Which failures of a group commit are the database's availability (503, retry) and which are bugs."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc

from switchboard_common.db.database import database_unavailable


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (sa_exc.TimeoutError("pool exhausted"), True),
        (sa_exc.OperationalError("SELECT 1", {}, Exception()), True),
        (sa_exc.InterfaceError("SELECT 1", {}, Exception()), True),
        (sa_exc.DBAPIError("SELECT 1", {}, _DriverError("57P03")), True),  # cannot connect now
        (sa_exc.DBAPIError("SELECT 1", {}, _DriverError("57P01")), True),  # admin shutdown
        (sa_exc.DBAPIError("SELECT 1", {}, _DriverError("53300")), True),  # too many connections
        (sa_exc.DBAPIError("SELECT 1", {}, _DriverError("40P01")), True),  # deadlock
        (sa_exc.DBAPIError("SELECT 1", {}, Exception(), connection_invalidated=True), True),
        (sa_exc.DBAPIError("SELECT 1", {}, _DriverError("22021")), False),  # bad byte sequence
        # Code ahead of its migration: wait for the schema, never dead-letter acknowledged messages.
        (sa_exc.ProgrammingError("SELECT 1", {}, _DriverError("42P01")), True),  # undefined table
        (sa_exc.ProgrammingError("SELECT 1", {}, _DriverError("42703")), True),  # undefined column
        (sa_exc.ProgrammingError("SELECT 1", {}, _DriverError("42601")), False),  # syntax error: a bug
        (sa_exc.IntegrityError("SELECT 1", {}, _DriverError("23505")), False),
        (RuntimeError("bug"), False),
        (KeyError("bug"), False),
    ],
)
def test_database_unavailable(error: BaseException, unavailable: bool) -> None:
    assert database_unavailable(error) is unavailable
