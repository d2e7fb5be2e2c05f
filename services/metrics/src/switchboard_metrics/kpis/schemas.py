from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class WindowName(StrEnum):
    LIVE = "live"  # the last 15 minutes
    HOUR = "hour"  # the last 60 minutes
    TODAY = "today"  # since midnight UTC
    RANGE = "range"  # from .. to, given by the caller


class Window(BaseModel):
    name: WindowName
    start: datetime
    end: datetime


class Filters(BaseModel):
    channel: str | None = None
    queue: str | None = None
    agent_id: uuid.UUID | None = None
    tag: str | None = None


class Distribution(BaseModel):
    """Seconds, from a mergeable sketch (DDSketch, 1 % relative accuracy): percentiles are within 1 % of
    the exact value; count, mean and max are exact."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


class Times(BaseModel):
    first_response: Distribution = Field(
        description="First human agent reply minus the conversation's opening (automatic replies excluded)."
    )
    reply: Distribution = Field(
        description="Each human reply minus the earliest customer message it answers (automatic replies "
        "answer nothing)."
    )
    wait: Distribution = Field(description="Assignment minus queueing (speed of answer).")
    resolution: Distribution = Field(description="Resolution minus opening.")
    handle: Distribution = Field(description="Resolution minus assignment.")


class Volume(BaseModel):
    messages_in: int = Field(description="Customer messages received (by channel only: no queue/agent/tag).")
    messages_out: int = Field(description="Agent replies sent, automatic ones included.")
    conversations_opened: int
    conversations_assigned: int
    conversations_resolved: int
    conversations_reopened: int
    conversations_abandoned: int = Field(description="Resolved without ever being assigned to an agent.")
    customers: int = Field(description="Distinct customers among the conversations opened.")
    conversations_per_customer: float | None
    multichannel_share: float | None = Field(
        description="Share of the conversations opened in which the customer used two or more channels."
    )


class Rates(BaseModel):
    service_level: float | None = Field(
        description="Answered (assigned) within the channel's target / (answered + abandoned)."
    )
    service_level_met: int
    abandonment_rate: float | None = Field(description="Abandoned / (abandoned + assigned).")
    resolution_rate: float | None = Field(description="Resolved / opened.")
    first_contact_resolution: float | None = Field(description="Resolved and never reopened / resolved.")
    reopen_rate: float | None = Field(description="Reopens / resolved.")


class Breakdown(BaseModel):
    """Volumes per value of one dimension."""

    key: str
    conversations_opened: int
    conversations_resolved: int
    messages_in: int
    wait_p90: float | None


class QueueRow(BaseModel):
    queue: str = Field(description="The routing queue; '' for conversations no rule sent to a queue.")
    waiting_now: int
    longest_wait_seconds: float | None
    wait: Distribution
    rates: Rates
    conversations_opened: int


class AgentRow(BaseModel):
    agent_id: uuid.UUID
    status: str | None = Field(description="The latest status the agent reported.")
    status_seconds: dict[str, float] = Field(description="Seconds in each status within the window.")
    active_conversations: int = Field(description="Assigned to the agent now and not resolved.")
    capacity: int | None = Field(
        description="Conversations they may hold at once, as the router last told it (with a status change)."
    )
    capacity_used: float | None = Field(description="Active conversations / capacity (none without one).")
    assignments: int
    assignment_share: float | None = Field(description="Their share of all assignments in the window.")
    handled: int = Field(description="Conversations they resolved in the window.")
    handle: Distribution
    occupancy: float | None = Field(
        description="Handle time of the conversations they resolved / their online time, in the window."
    )


class Point(BaseModel):
    """One bucket of the time series (a minute for windows up to two hours, else an hour)."""

    at: datetime
    messages_in: int
    conversations_opened: int
    wait_p50: float | None
    wait_p90: float | None


class LowRating(BaseModel):
    """An answer low enough to follow up (CSAT 1-2, NPS 0-6, CES 1-3)."""

    survey_id: uuid.UUID
    conversation_id: uuid.UUID
    kind: str
    score: int
    channel: str
    agent_id: uuid.UUID | None
    answered_at: datetime


class SatisfactionReport(BaseModel):
    csat_responses: int
    csat_percent: float | None = Field(description="Share of CSAT answers scoring 4 or 5, in percent.")
    nps_responses: int
    nps: float | None = Field(description="Promoters (9-10) minus detractors (0-6), in percent of answers.")
    ces_responses: int
    ces_mean: float | None = Field(description="Mean customer effort score (1-7, 7 easiest).")
    low_ratings: list[LowRating] = Field(description="The latest answers to follow up, newest first.")


class DeliveryFigures(BaseModel):
    """Outbound messages by what their delivery reports say, counted at the first report of each (the
    send): so the rates are about the messages sent in the window, within 0 and 1."""

    reported: int = Field(description="Outbound messages with any delivery report.")
    sent: int = Field(description="Accepted by the provider (or reported delivered or read since).")
    delivered: int = Field(description="Reported delivered or read.")
    read: int
    failed: int = Field(description="Reported failed (by the provider, or the send given up on).")
    delivered_rate: float | None = Field(description="Delivered / reported.")
    read_rate: float | None = Field(description="Read / reported.")
    failed_rate: float | None = Field(description="Failed / reported.")
    latency: Distribution = Field(description="Delivered minus sent, both reported.")


class ChannelDelivery(DeliveryFigures):
    channel: str


class DeliveryReport(DeliveryFigures):
    by_channel: list[ChannelDelivery]


class OfferFigures(BaseModel):
    """Offers made to agents in the window (queues with offers on), and how those that ended in it ended."""

    offered: int
    accepted: int
    declined: int
    timed_out: int = Field(description="Not answered in time, or the agent went offline first.")
    acceptance_rate: float | None = Field(
        description="Accepted / offers that ended (accepted, declined or timed out) in the window."
    )


class AgentOffers(OfferFigures):
    agent_id: uuid.UUID


class QueueEscalations(BaseModel):
    queue: str
    escalations: int = Field(description="Escalation steps taken by conversations waiting in the queue.")
    sla_breaches: int = Field(description="Conversations that waited past their SLA target.")


class RoutingReport(BaseModel):
    """What the router did to waiting conversations in the window: offers (by agent) and escalations and
    SLA breaches (by queue). A filter on the dimension a figure lacks does not narrow it."""

    offers: OfferFigures
    offers_by_agent: list[AgentOffers]
    escalations: int
    sla_breaches: int
    by_queue: list[QueueEscalations]


class KpiReport(BaseModel):
    window: Window
    filters: Filters
    generated_at: datetime
    waiting_now: int = Field(description="Conversations waiting for an agent right now.")
    longest_wait_seconds: float | None
    volume: Volume
    times: Times
    rates: Rates
    by_channel: list[Breakdown]
    by_queue: list[Breakdown]
    by_tag: list[Breakdown]
    queues: list[QueueRow]
    agents: list[AgentRow]
    series: list[Point]
    satisfaction: SatisfactionReport = Field(description="Survey answers within the window and filters.")
    delivery: DeliveryReport = Field(
        description="Delivery reports of outbound messages sent in the window (channel filter only)."
    )
    routing: RoutingReport = Field(description="Offers, escalations and SLA breaches within the window.")
    events_by_type: dict[str, int] = Field(description="Distinct events counted since the start.")


class RebuildReport(BaseModel):
    """What a rebuild of the rollups read."""

    conversations: int
    messages: int
    assignments: int
    deliveries: int = 0
