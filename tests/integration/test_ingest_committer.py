"""The group committer on its own, against the real PostgreSQL: one bad request does not fail its
neighbours, a failure that is not the database's availability answers every request (never hangs), and
stopping answers everything queued."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox, OutboxEvent
from switchboard_common.errors import Unavailable
from switchboard_ingest.messages import service
from switchboard_ingest.messages.committer import AcceptFailed, GroupCommitter
from switchboard_ingest.messages.schemas import AcceptStatus, MessageAccepted, MessageCreate
from switchboard_ingest.models import outbox_table
from tests.conftest import Settings
from tests.support import api_message


def _submission(message_id: str, external_id: str | None = None) -> service.Submission:
    message = service.from_api(MessageCreate.model_validate(api_message(message_id, "cust")))
    if external_id is not None:
        message = dataclasses.replace(message, external_id=external_id)
    return service.submission_for(message)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database.from_settings(settings)
    try:
        yield database
    finally:
        await database.dispose()


async def _outbox_count(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(sa.text("SELECT count(*) FROM ingest.outbox")) or 0)


async def test_a_request_that_fails_its_batch_fails_alone(settings: Settings, db: Database) -> None:
    committer = GroupCommitter(db, Outbox(outbox_table, settings), settings)
    await committer.start()
    try:
        # PostgreSQL refuses NUL in text: this one fails whichever transaction it is in.
        submissions = [_submission("ok-1"), _submission("bad", external_id="bad\x00id"), _submission("ok-2")]
        results = await asyncio.gather(*(committer.submit(s) for s in submissions), return_exceptions=True)
    finally:
        await committer.stop()
    assert isinstance(results[0], MessageAccepted) and results[0].status is AcceptStatus.ACCEPTED
    assert isinstance(results[1], AcceptFailed)
    assert isinstance(results[2], MessageAccepted) and results[2].status is AcceptStatus.ACCEPTED
    assert await _outbox_count(db) == 2


async def test_a_failing_transaction_answers_every_request(settings: Settings, db: Database) -> None:
    # A statement PostgreSQL refuses for a reason that is not availability (a bug): a NOT NULL column left
    # out of the outbox insert. (A missing table would be "not migrated yet", which answers 503.)
    broken = Outbox(outbox_table, settings)
    original = broken.add_many

    async def add_many_with_a_bug(session: AsyncSession, events: list[OutboxEvent]) -> None:
        await original(session, events)
        await session.execute(sa.text("INSERT INTO ingest.outbox (topic) VALUES ('x')"))

    broken.add_many = add_many_with_a_bug  # type: ignore[method-assign]
    committer = GroupCommitter(db, broken, settings)
    await committer.start()
    try:
        results = await asyncio.gather(
            *(committer.submit(_submission(f"m-{i}")) for i in range(5)), return_exceptions=True
        )
    finally:
        await committer.stop()
    assert all(isinstance(r, AcceptFailed) for r in results), results
    # Rolled back: a retry with a working outbox is a first attempt.
    committer = GroupCommitter(db, Outbox(outbox_table, settings), settings)
    await committer.start()
    try:
        retry = await committer.submit(_submission("m-0"))
    finally:
        await committer.stop()
    assert retry.status is AcceptStatus.ACCEPTED


async def test_stop_answers_everything_queued_then_refuses(settings: Settings, db: Database) -> None:
    committer = GroupCommitter(db, Outbox(outbox_table, settings), settings)
    await committer.start()
    pending = [asyncio.create_task(committer.submit(_submission(f"s-{i}"))) for i in range(50)]
    await asyncio.sleep(0)  # every submission is queued
    await committer.stop()
    assert all(t.done() for t in pending)
    assert {t.result().status for t in pending} == {AcceptStatus.ACCEPTED}
    assert await _outbox_count(db) == 50
    with pytest.raises(Unavailable):
        await committer.submit(_submission("late"))
