"""Counting events into KPIs, and reading them.

Metrics counts natural keys, not log records: each counted event type has a key and a column only it sets
(see ``facts``), and counts when that column becomes known. The same event met again changes nothing,
however it comes back: redelivered after a crash or a rebalance, replayed in a poll, republished by an
outbox relay at a new offset (a crash between the broker's ack and the outbox DELETE), or read again from a
recreated topic. So no offsets are kept, and no row per event.

A call's before-image is exact under concurrency: it is taken by an upsert that locks every row of the call
(creating the missing ones) and reads its latest committed version (see ``repository``), so two
transactions on the same message or conversation, e.g. two replicas consuming ``conversation.events`` and
``routing.events``, or the same record handled by an old and a new owner during a rebalance, take turns,
and each counts only what the other had not. Agent status changes and conversation reopens are counted
by the rows an insert-if-absent adds, which is exact the same way. What is exact is the count of distinct
keys: an event that comes back with another key (a new message id) is a new event here.

A call costs at most seven statements whatever the number of deliveries: the before-image, the delivery
reports' before-image, the messages of the conversations it touches (for reply times), the message and
conversation facts (one statement), the delivery facts, the status changes, reopens, handoffs and routing
occurrences, the KPI rollup cells and the counts (one statement). A statement with nothing to do is
skipped: a replayed poll writes no fact, no cell and no count.

The KPI rollups (``observe``) move by the difference each changed fact row makes, so they always equal a
recomputation from the facts.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.events import (
    AgentCapacityChanged,
    AgentStatusChanged,
    ConversationReopened,
    ConversationRequeued,
    ConversationTagsChanged,
    Payload,
    SurveyAnswered,
)
from switchboard_common.kafka.consumer import Delivery
from switchboard_metrics.kpis import observe, report, repository, satisfaction
from switchboard_metrics.kpis.facts import (
    OCCURRENCE_EVENTS,
    ConversationFacts,
    DeliveryFacts,
    DeliveryKey,
    MessageFacts,
    News,
    OccurrenceKind,
    merge,
    news_of,
)
from switchboard_metrics.kpis.observe import (
    Cell,
    Tally,
    assignment_cell,
    cells_of,
    delivery_cells_of,
    delta,
    message_cells_of,
)
from switchboard_metrics.kpis.schemas import (
    Filters,
    KpiReport,
    LowRating,
    RebuildReport,
    SatisfactionReport,
    Times,
    Window,
)


async def record_batch(session: AsyncSession, deliveries: Sequence[Delivery[Payload]]) -> None:
    """Fill the facts of ``deliveries``, count what is new in them, and move the KPI rollups by what the
    new facts change.

    Called with a whole poll, a part of one, or one record (the runner's failure isolation), possibly
    several times in one transaction: each call reads the rows its predecessors wrote.
    """
    batch = merge(d.payload for d in deliveries)
    # A message told in its conversation changes that conversation's reply times: claim it too.
    touched = batch.conversations.keys() | {
        m.conversation_id for m in batch.messages.values() if m.conversation_id is not None
    }
    stored_messages: dict[uuid.UUID, MessageFacts] = {}
    stored_conversations: dict[uuid.UUID, ConversationFacts] = {}
    if batch.messages or touched:
        stored_messages, stored_conversations = await repository.claim_facts(
            session, batch.messages.keys(), touched
        )
    stored_reports = await repository.claim_deliveries(session, batch.deliveries.keys())
    news = news_of(batch, stored_messages, stored_conversations, stored_reports)
    threads = await repository.conversation_messages(session, _rethreaded(news, stored_conversations.keys()))
    await repository.fill_facts(session, news.messages, news.conversations)
    await repository.fill_deliveries(session, news.deliveries)
    counts = news.counts
    changes = await repository.insert_changes(
        session, batch.statuses, batch.reopens, batch.handoffs, batch.retags, batch.occurrences
    )
    counts[AgentStatusChanged.event_type] += changes.statuses
    counts[ConversationReopened.event_type] += changes.reopens
    counts[ConversationRequeued.event_type] += changes.requeues
    counts[ConversationTagsChanged.event_type] += changes.retags
    counts[AgentCapacityChanged.event_type] += changes.resizes
    for kind, n in changes.occurrences.items():
        if (event_type := OCCURRENCE_EVENTS.get(OccurrenceKind(kind))) is not None:
            counts[event_type] += n
    cells = rollup_delta(news, stored_messages, stored_conversations, threads, changes, stored_reports)
    await repository.add_cells_and_counts(session, cells, counts)


def _rethreaded(news: News, claimed: Collection[uuid.UUID]) -> set[uuid.UUID]:
    """The conversations whose cells may change: those with new facts, and those a message was told in
    (claimed). A message's news without its conversation (``message.received`` after the message was
    told in its thread) only adds its receipt, which no conversation cell depends on."""
    out = set(news.conversations)
    for after in news.messages_after.values():
        if after.conversation_id is not None and after.conversation_id in claimed:
            out.add(after.conversation_id)
    return out


def rollup_delta(
    news: News,
    stored_messages: Mapping[uuid.UUID, MessageFacts],
    stored_conversations: Mapping[uuid.UUID, ConversationFacts],
    threads: Mapping[uuid.UUID, Mapping[uuid.UUID, MessageFacts]],
    changes: repository.Changes,
    stored_reports: Mapping[DeliveryKey, DeliveryFacts] | None = None,
) -> dict[Cell, Tally]:
    """How the rollup cells change with a call's news (pure): each changed message's, conversation's and
    delivery's cells after, minus before, and a cell per new assignment. ``threads`` holds the stored
    messages (before this call) of every conversation with news or with a new message."""
    cells: dict[Cell, Tally] = {}
    for (channel, subject), after_d in news.deliveries_after.items():
        stored = (stored_reports or {}).get((channel, subject))
        delta(delivery_cells_of(channel, stored), delivery_cells_of(channel, after_d), cells)
    told: dict[uuid.UUID, dict[uuid.UUID, MessageFacts]] = defaultdict(dict)  # conversation -> new messages
    for key, after in news.messages_after.items():
        delta(message_cells_of(stored_messages.get(key)), message_cells_of(after), cells)
        if after.conversation_id is not None:
            told[after.conversation_id][key] = after
    for cid, thread in threads.items():
        after_thread = {**thread, **told.get(cid, {})}
        before_c = stored_conversations.get(cid)
        after_c = news.conversations_after.get(cid, before_c)
        delta(cells_of(before_c, thread.values()), cells_of(after_c, after_thread.values()), cells)
    for agent_id, at in changes.assignments:
        delta({}, {assignment_cell(agent_id, at): Tally(1, 0.0)}, cells)
    return cells


# --- rebuilding ------------------------------------------------------------------------------------------

_PAGE = 1000


async def rebuild_rollups(session: AsyncSession) -> RebuildReport:
    """Recompute every rollup cell from the stored facts, in this transaction: after a KPI definition
    changes, or for facts recorded before the rollups existed. The consumer's calls wait for it (the
    rollups are locked) and then add their deltas to the rebuilt cells."""
    await repository.start_rebuild(session)
    conversations = messages = 0
    after = uuid.UUID(int=0)
    while page := await repository.page_conversations(session, after, _PAGE):
        threads = await repository.conversation_messages(session, [cid for cid, _ in page])
        cells: dict[Cell, Tally] = {}
        for cid, facts in page:
            delta({}, cells_of(facts, threads[cid].values()), cells)
        await repository.add_cells(session, cells)
        conversations += len(page)
        after = page[-1][0]
    after = uuid.UUID(int=0)
    while message_page := await repository.page_messages(session, after, _PAGE):
        cells = {}
        for _, m in message_page:
            delta({}, message_cells_of(m), cells)
        await repository.add_cells(session, cells)
        messages += len(message_page)
        after = message_page[-1][0]
    reports = 0
    after_report: DeliveryKey = ("", "")
    while report_page := await repository.page_deliveries(session, after_report, _PAGE):
        cells = {}
        for key, d in report_page:
            delta({}, delivery_cells_of(key[0], d), cells)
        await repository.add_cells(session, cells)
        reports += len(report_page)
        after_report = report_page[-1][0]
    handed = await repository.assignments(session)
    for start in range(0, len(handed), _PAGE):
        cells = {}
        for agent_id, at in handed[start : start + _PAGE]:
            delta({}, {assignment_cell(agent_id, at): Tally(1, 0.0)}, cells)
        await repository.add_cells(session, cells)
    return RebuildReport(
        conversations=conversations, messages=messages, assignments=len(handed), deliveries=reports
    )


# --- reading ---------------------------------------------------------------------------------------------


async def kpi_report(
    session: AsyncSession,
    window: Window,
    filters: Filters,
    level: report.ServiceLevel,
    now: datetime,
) -> KpiReport:
    """The KPIs of ``window`` under ``filters``: sums of rollup cells, plus what is open right now."""
    q = repository.Query(
        start=observe.minute(window.start),
        end=window.end,
        now=now,
        channel=filters.channel,
        queue=filters.queue,
        agent=None if filters.agent_id is None else str(filters.agent_id),
        tag=filters.tag or "",
    )
    main = report.summed(await repository.cells_by_queue_channel(session, q))
    open_now = report.open_now(await repository.open_now(session, q))
    waiting = sum(open_now.waiting.values())
    total = main.total
    return KpiReport(
        window=window,
        filters=filters,
        generated_at=now,
        waiting_now=waiting,
        longest_wait_seconds=max(open_now.longest.values(), default=None),
        volume=report.volume(total, await repository.customers(session, q)),
        times=Times(
            first_response=report.distribution(total.get(observe.Metric.FIRST_RESPONSE)),
            reply=report.distribution(total.get(observe.Metric.REPLY)),
            wait=report.distribution(total.get(observe.Metric.WAIT)),
            resolution=report.distribution(total.get(observe.Metric.RESOLUTION)),
            handle=report.distribution(total.get(observe.Metric.HANDLE)),
        ),
        rates=report.rates(total, report.wait_by_channel(main), level),
        by_channel=[report.breakdown(ch, s) for ch, s in sorted(main.by_channel.items()) if ch],
        by_queue=[report.breakdown(qn, s) for qn, s in sorted(main.by_queue.items())],
        by_tag=report.by_tag(await repository.cells_by_tag(session, q)),
        queues=report.queues(main, open_now, level),
        agents=report.agents(
            await repository.cells_by_agent(session, q),
            await repository.status_seconds(session, q),
            open_now,
            filters.agent_id,
        ),
        series=report.series(await repository.series(session, q, report.series_step(window))),
        satisfaction=await _satisfaction(session, q),
        delivery=report.delivery(main),
        routing=report.routing(await repository.occurrences(session, q)),
        events_by_type=await repository.counts(session),
    )


LOW_RATINGS_SHOWN = 20


async def _satisfaction(session: AsyncSession, q: repository.Query) -> SatisfactionReport:
    figures = satisfaction.summarize(await repository.scores(session, q))
    low = await repository.low_ratings(session, q, LOW_RATINGS_SHOWN)
    return SatisfactionReport(
        **dataclasses.asdict(figures),
        low_ratings=[LowRating.model_validate(r, from_attributes=True) for r in low],
    )


async def record_surveys(session: AsyncSession, deliveries: Sequence[Delivery[SurveyAnswered]]) -> None:
    """Keep each answered survey once (one statement per batch)."""
    await repository.add_answers(session, [d.payload for d in deliveries])
