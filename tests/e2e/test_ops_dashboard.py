"""The ops dashboard in a real browser: Debian's headless Chromium (never a downloaded one) driven by
Playwright. The metrics service runs on a real port against the real PostgreSQL and broker; events are
published to the broker as their producers publish them, and the page, opened once, shows the numbers
change from the live stream. A screenshot test fails when the page renders empty."""

from __future__ import annotations

import re
import struct
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, Route, async_playwright, expect

from switchboard_common.events import (
    AgentStatus,
    AgentStatusChanged,
    Channel,
    ConversationAssigned,
    ConversationMessageAdded,
    ConversationOfferDeclined,
    ConversationOffered,
    ConversationOpened,
    ConversationQueued,
    ConversationResolved,
    ConversationSlaBreached,
    CustomerIdentity,
    DeliveryState,
    DeliveryStatusChanged,
    Direction,
    EventEnvelope,
    IdentityKind,
    MessageOutbound,
    MessageReceived,
    Payload,
    utcnow,
)
from switchboard_devstack.ports import free_port
from switchboard_metrics.app import create_app as metrics_app
from tests.conftest import ADMIN_KEY, Settings
from tests.e2e.test_webchat_widget import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, console_errors
from tests.integration.test_metrics_counting import publish
from tests.integration.test_satisfaction_kpis import survey_answer
from tests.integration.test_webchat import serve_on_port
from tests.support import bearer, eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"
    ),
]
DASH = "\u2013"  # what the page shows for a value it does not have
KPI_TILES = [
    "waiting_now",
    "longest_wait",
    "conversations_opened",
    "messages_in",
    "first_response_p50",
    "first_response_p90",
    "wait_p90",
    "service_level",
    "abandonment_rate",
    "first_contact_resolution",
    "reopen_rate",
    "multichannel_share",
    "sla_breaches",
    "offer_acceptance",
    "csat",
    "nps",
    "ces",
]


@dataclass
class Metrics:
    url: str
    client: httpx.AsyncClient
    settings: Settings

    async def kpis(self) -> dict[str, Any]:
        response = await self.client.get("/v1/kpis", params={"window": "live"}, headers=bearer(ADMIN_KEY))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def opened(self, count: int) -> dict[str, Any]:
        """The report once the service has counted ``count`` conversations opened."""

        async def counted() -> dict[str, Any] | None:
            body = await self.kpis()
            return body if body["volume"]["conversations_opened"] == count else None

        return await eventually(counted, what=f"metrics to count {count} conversations opened")


@pytest.fixture
async def metrics(settings: Settings) -> AsyncIterator[Metrics]:
    values = {
        # A fresh report twice a second keeps the wait for the page short.
        "metrics_stream_interval_s": 0.5,
        # Nothing listens there: the health panel shows it unreachable beside the metrics service itself.
        "metrics_ops_services": {"ingest": f"http://127.0.0.1:{free_port()}"},
    }
    test_settings = Settings.model_validate({**settings.model_dump(), **values})
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(serve_on_port(metrics_app(test_settings)))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=10))
        yield Metrics(url, client, test_settings)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile: no key kept from another run
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()


# --- traffic -------------------------------------------------------------------------------------------

Event = tuple[str, Payload, EventEnvelope]


def _keyed(key: str, payload: Payload) -> Event:
    return key, payload, EventEnvelope.wrap(payload, producer="test")


def waiting(n: int, at: datetime, cid: uuid.UUID | None = None) -> list[Event]:
    """A customer's message opening a conversation that waits in the billing queue: the events ingest, the
    conversation service and the router publish for it, keyed as they key them."""
    cid, mid, customer = cid or uuid.uuid4(), uuid.uuid4(), f"cust-{n}"
    received = MessageReceived(
        message_id=mid,
        channel=Channel.API,
        external_id=f"m-{n}-{uuid.uuid4().hex[:8]}",
        sender=CustomerIdentity(kind=IdentityKind.API, value=customer),
        text="hello",
        sent_at=at,
        received_at=at,
    )
    opened = ConversationOpened(
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        required_skills=[],
        priority=0,
        opened_at=at,
    )
    added = ConversationMessageAdded(
        conversation_id=cid, message_id=mid, channel=Channel.API, direction=Direction.INBOUND, sent_at=at
    )
    queued = ConversationQueued(
        conversation_id=cid, required_skills=[], priority=0, queued_at=at, queue="billing"
    )
    return [_keyed(f"api:{customer}", received)] + [_keyed(str(cid), e) for e in (opened, added, queued)]


def answered_and_resolved(n: int, at: datetime) -> list[Event]:
    """A conversation an agent took after 5 s, answered after 20 s and resolved after a minute."""
    cid, agent_id = uuid.uuid4(), uuid.uuid4()
    online = AgentStatusChanged(
        agent_id=agent_id,
        status=AgentStatus.ONLINE,
        previous_status=AgentStatus.OFFLINE,
        changed_at=at - timedelta(minutes=1),
        capacity=4,
    )
    assigned = ConversationAssigned(
        conversation_id=cid,
        agent_id=agent_id,
        queued_at=at,
        assigned_at=at + timedelta(seconds=5),
        queue="billing",
    )
    reply = MessageOutbound(
        message_id=uuid.uuid4(),
        conversation_id=cid,
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        agent_id=agent_id,
        text="on it",
        sent_at=at + timedelta(seconds=20),
    )
    resolved = ConversationResolved(
        conversation_id=cid, agent_id=agent_id, resolved_at=at + timedelta(minutes=1)
    )
    return [
        _keyed(str(agent_id), online),
        *waiting(n, at, cid),
        *(_keyed(str(cid), e) for e in (assigned, reply, resolved)),
    ]


def delivered(n: int, at: datetime) -> list[Event]:
    """A WhatsApp reply the provider accepted at ``at`` and reported delivered 3 s later and read 10 s later,
    keyed as ingest keys them (the provider's id)."""
    external_id = f"wamid.{n}-{uuid.uuid4().hex[:8]}"
    reports = [
        DeliveryStatusChanged(
            channel=Channel.WHATSAPP, message_id=uuid.uuid4(), external_id=external_id, status=state, at=t
        )
        if state is DeliveryState.SENT
        else DeliveryStatusChanged(channel=Channel.WHATSAPP, external_id=external_id, status=state, at=t)
        for state, t in (
            (DeliveryState.SENT, at),
            (DeliveryState.DELIVERED, at + timedelta(seconds=3)),
            (DeliveryState.READ, at + timedelta(seconds=10)),
        )
    ]
    return [_keyed(r.partition_key, r) for r in reports]


def answer(kind: str, score: int, at: datetime, low: bool = False) -> Event:
    """A customer's survey answer, keyed as the conversation service keys it (by conversation)."""
    survey = survey_answer(kind, score, Channel.WHATSAPP, low, at)
    return _keyed(str(survey.conversation_id), survey)


# --- the page ------------------------------------------------------------------------------------------


async def sign_in(page: Page, key: str) -> None:
    dialog = page.locator("#login")
    await expect(dialog).to_be_visible(timeout=TIMEOUT_MS)
    await page.fill("#key", key)
    await page.click("#login-submit")


def tile(page: Page, name: str) -> Any:
    return page.locator(f'[data-kpi="{name}"] .value')


async def tile_values(page: Page) -> dict[str, str]:
    values: dict[str, str] = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-kpi]')]
             .map(t => [t.dataset.kpi, t.querySelector('.value').textContent]))"""
    )
    return values


async def test_the_tiles_follow_the_live_stream_without_a_reload(
    metrics: Metrics, browser: BrowserContext
) -> None:
    now = utcnow()
    await publish(
        metrics.settings, waiting(1, now - timedelta(minutes=2)) + waiting(2, now - timedelta(minutes=1))
    )
    await metrics.opened(2)

    page = await browser.new_page()
    errors = console_errors(page)
    await page.goto(f"{metrics.url}/dashboard")
    await sign_in(page, ADMIN_KEY)
    await expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT_MS)
    await expect(tile(page, "conversations_opened")).to_have_text("2", timeout=TIMEOUT_MS)
    await expect(tile(page, "messages_in")).to_have_text("2")
    await expect(tile(page, "waiting_now")).to_have_text("2")
    # The longest wait is over two minutes: shown as a duration, not a raw number of seconds.
    await expect(tile(page, "longest_wait")).to_have_text(re.compile(r"^\d+m \d+s$"))
    await expect(page.locator("#queues tbody tr")).to_have_count(1)
    await expect(page.locator("#queues tbody tr td").first).to_have_text("billing")
    await expect(page.locator("#updated")).not_to_have_text(DASH)

    # Marks this document: a reload would lose the mark.
    await page.evaluate("window.__sameDocument = true")
    later = utcnow()
    await publish(metrics.settings, [e for n in (3, 4, 5) for e in waiting(n, later)])
    await expect(tile(page, "conversations_opened")).to_have_text("5", timeout=TIMEOUT_MS)
    await expect(tile(page, "messages_in")).to_have_text("5", timeout=TIMEOUT_MS)
    await expect(tile(page, "waiting_now")).to_have_text("5", timeout=TIMEOUT_MS)
    # Satisfaction too: the first answers fill the empty tiles, a low one shows in the low ratings.
    await expect(tile(page, "csat")).to_have_text(DASH)
    await publish(
        metrics.settings, [answer("csat", 5, later), answer("nps", 10, later), answer("ces", 7, later)]
    )
    await expect(tile(page, "csat")).to_have_text("100%", timeout=TIMEOUT_MS)
    await expect(tile(page, "nps")).to_have_text("+100", timeout=TIMEOUT_MS)
    await expect(tile(page, "ces")).to_have_text("7.0", timeout=TIMEOUT_MS)
    await expect(page.locator("#low-ratings tbody td.empty")).to_have_count(1)
    await publish(metrics.settings, [answer("csat", 1, later, low=True)])
    await expect(tile(page, "csat")).to_have_text("50%", timeout=TIMEOUT_MS)
    await expect(page.locator("#low-ratings tbody tr")).to_have_count(1)
    await expect(page.locator("#low-ratings tbody tr td").nth(1)).to_have_text("CSAT")
    await expect(page.locator("#low-ratings tbody tr td").nth(2)).to_have_text("1")
    assert await page.evaluate("window.__sameDocument === true")

    # The window and the filters query again: nothing came on email, and the last hour holds all five.
    await page.fill("#f-channel", "email")
    await page.click("#controls button[type=submit]")
    await expect(tile(page, "conversations_opened")).to_have_text("0", timeout=TIMEOUT_MS)
    await expect(page.locator("#by-channel tbody td.empty")).to_have_count(1)
    await page.click("#clear-filters")
    await page.select_option("#window", "hour")
    await expect(page.locator("#window-range")).to_contain_text("hour", timeout=TIMEOUT_MS)
    await expect(tile(page, "conversations_opened")).to_have_text("5", timeout=TIMEOUT_MS)
    assert await page.evaluate("location.search") == "?window=hour"

    # The health panel: this service's own readiness, and the configured one nothing answers for.
    await expect(page.locator('[data-service="metrics"]')).to_have_attribute(
        "data-status", "ok", timeout=TIMEOUT_MS
    )
    await expect(page.locator('[data-service="ingest"]')).to_have_attribute("data-status", "unreachable")
    assert errors == []


async def test_a_refused_key_asks_for_the_key_again(metrics: Metrics, browser: BrowserContext) -> None:
    page = await browser.new_page()
    await page.goto(f"{metrics.url}/dashboard")
    await sign_in(page, "not-the-admin-key")
    await expect(page.locator("#login")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(page.locator("#login-message")).to_contain_text("401")
    assert await page.evaluate("Object.keys(sessionStorage)") == []
    for name in KPI_TILES:
        await expect(tile(page, name)).to_have_text(DASH)

    await sign_in(page, ADMIN_KEY)
    await expect(page.locator("#login")).to_be_hidden()
    await expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT_MS)
    await expect(tile(page, "conversations_opened")).to_have_text("0")

    # The key outlives a reload (sessionStorage) and is gone after signing out.
    await page.reload()
    await expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT_MS)
    await page.click("#sign-out")
    await expect(page.locator("#login")).to_be_visible()
    assert await page.evaluate("Object.keys(sessionStorage)") == []


async def test_the_page_reconnects_when_the_stream_fails(metrics: Metrics, browser: BrowserContext) -> None:
    page = await browser.new_page()
    attempts: list[str] = []

    async def refuse_the_first_two(route: Route) -> None:
        attempts.append(route.request.url)
        if len(attempts) <= 2:
            await route.abort("connectionrefused")
        else:
            await route.continue_()

    await page.route("**/v1/kpis/stream?*", refuse_the_first_two)
    await page.goto(f"{metrics.url}/dashboard")
    await sign_in(page, ADMIN_KEY)
    await expect(page.locator("#connection")).to_have_text(re.compile("^reconnecting"), timeout=TIMEOUT_MS)
    await expect(page.locator("#banner")).to_contain_text("unreachable")
    await expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT_MS)
    await expect(page.locator("#banner")).to_be_hidden()
    await expect(tile(page, "conversations_opened")).to_have_text("0")
    assert len(attempts) == 3, attempts  # and then it stays connected
    assert all("window=live" in url for url in attempts)


async def test_the_page_and_its_assets_come_from_the_service_with_a_strict_policy(
    metrics: Metrics, browser: BrowserContext
) -> None:
    page = await browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    errors = console_errors(page)
    response = await page.goto(f"{metrics.url}/dashboard")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    await sign_in(page, ADMIN_KEY)
    await expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT_MS)
    # Only this service: no CDN, no fonts, no images from elsewhere; the script and style ran under the
    # policy (a blocked one would log an error).
    assert requested and all(url.startswith(metrics.url + "/") for url in requested), requested
    assert errors == []

    assets = [u for u in requested if "/dashboard/static/" in u]
    assert {u.split("/")[-1].split("?")[0] for u in assets} == {"dashboard.js", "dashboard.css"}
    for url in assets:
        first = await metrics.client.get(url)
        assert first.status_code == 200
        assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
        again = await metrics.client.get(url.split("?")[0], headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
    missing = await metrics.client.get("/dashboard/static/..%2Fendpoints.py")
    assert missing.status_code == 404


# --- the screenshot ------------------------------------------------------------------------------------


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB value of every pixel of an 8-bit, non-interlaced RGB or RGBA PNG (what
    Chromium writes), decoded with the standard library alone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    prior = bytearray(stride)
    pixels: list[bytes] = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:  # Up
            line = bytearray((a + b) & 255 for a, b in zip(line, prior, strict=True))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prior[i]) >> 1)) & 255
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prior[i], prior[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        pixels.extend(bytes(line[i : i + 3]) for i in range(0, stride, bpp))
        prior = line
    return width, height, pixels


def near(pixel: bytes, rgb: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(p - c) <= tolerance for p, c in zip(pixel, rgb, strict=True))


async def test_a_screenshot_of_the_page_with_data_is_not_blank(
    metrics: Metrics, browser: BrowserContext, tmp_path: Path
) -> None:
    # Ten seconds into a minute, so each conversation's messages (up to 20 s after it opens) fall in the
    # minute it opened in, whatever the clock says when the test runs.
    real = utcnow()
    now = real.replace(second=10, microsecond=0) - timedelta(minutes=1 if real.second < 10 else 0)
    traffic = answered_and_resolved(1, now - timedelta(minutes=6))
    traffic += answered_and_resolved(2, now - timedelta(minutes=4)) + waiting(3, now - timedelta(minutes=2))
    traffic += delivered(1, now - timedelta(minutes=5)) + delivered(2, now - timedelta(minutes=3))
    # CSAT 1 of 2 satisfied, NPS 2 promoters and a detractor of 3, CES 6 and 5.
    answered_at = now - timedelta(minutes=1)
    traffic += [
        answer("csat", 5, answered_at),
        answer("csat", 2, answered_at, low=True),
        answer("nps", 10, answered_at),
        answer("nps", 9, answered_at),
        answer("nps", 3, answered_at, low=True),
        answer("ces", 6, answered_at),
        answer("ces", 5, answered_at),
    ]
    # A conversation breached its SLA; an agent was offered it twice and declined the first offer.
    late = now - timedelta(minutes=1)
    waited, offered_to = uuid.uuid4(), uuid.uuid4()
    traffic += [
        _keyed(str(waited), p)
        for p in (
            ConversationSlaBreached(
                conversation_id=waited,
                queue="billing",
                sla_target_s=30,
                queued_at=late,
                breached_at=late,
                priority=1,
            ),
            ConversationOffered(
                conversation_id=waited, agent_id=offered_to, queued_at=late, offered_at=late, expires_at=late
            ),
            ConversationOfferDeclined(
                conversation_id=waited, agent_id=offered_to, queued_at=late, offered_at=late, ended_at=late
            ),
            ConversationOffered(
                conversation_id=waited,
                agent_id=offered_to,
                queued_at=late,
                offered_at=late + timedelta(seconds=1),
                expires_at=late,
            ),
        )
    ]
    await publish(metrics.settings, traffic)
    await metrics.opened(3)

    page = await browser.new_page()
    await page.goto(f"{metrics.url}/dashboard")
    await sign_in(page, ADMIN_KEY)

    async def filled() -> dict[str, str] | None:
        values = await tile_values(page)
        shown = {k: v for k, v in values.items() if v.strip() not in {"", DASH}}
        return values if len(shown) >= 9 else None

    values = await eventually(filled, what="the tiles to show the KPIs")
    assert set(values) == set(KPI_TILES)
    assert all("null" not in v and "NaN" not in v and "undefined" not in v for v in values.values()), values
    # Three conversations opened in three minutes: a bar for each series in each of those minutes.
    await expect(page.locator("#chart-volume rect.bar.s0")).to_have_count(3, timeout=TIMEOUT_MS)
    await expect(page.locator("#chart-volume rect.bar.s1")).to_have_count(3)
    await expect(page.locator("#chart-wait path.line")).to_have_count(2)
    await expect(page.locator("#agents tbody tr")).to_have_count(2)
    # Each agent resolved what they took: nothing held against a capacity of 4.
    await expect(page.locator("#agents tbody tr td:nth-child(4)")).to_have_text(["0 / 4 (0%)", "0 / 4 (0%)"])
    # The satisfaction tiles and the two low ratings (not empty: the page fails here if they render so).
    await expect(tile(page, "csat")).to_have_text("50%", timeout=TIMEOUT_MS)
    await expect(tile(page, "nps")).to_have_text("+33")
    await expect(tile(page, "ces")).to_have_text("5.5")
    await expect(page.locator('[data-kpi="nps"]')).to_have_attribute("title", "3 answers in this window")
    await expect(page.locator("#low-ratings tbody tr")).to_have_count(2)
    await expect(page.locator("#low-ratings tbody td.empty")).to_have_count(0)
    # One breach in billing; two offers to one agent, one declined, none accepted of the one that ended.
    await expect(tile(page, "sla_breaches")).to_have_text("1")
    await expect(tile(page, "offer_acceptance")).to_have_text("0%")
    await expect(page.locator("#escalations tbody tr td")).to_have_text(["billing", "0", "1"])
    await expect(page.locator("#offers tbody tr td")).to_have_text(
        [str(offered_to)[:8], "2", "0 (0%)", "1", "0"], timeout=TIMEOUT_MS
    )
    # Two WhatsApp replies sent, delivered after 3 s and read: one row, every share full.
    delivery = page.locator("#delivery tbody tr td")
    await expect(delivery).to_have_text(
        [
            "whatsapp",
            "2",
            "2 (100%)",
            "2 (100%)",
            "0 (0%)",
            re.compile(r"^3"),
            re.compile(r"^3"),
            re.compile(r"^3"),
        ],
        timeout=TIMEOUT_MS,
    )

    shot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True, animations="disabled")
    width, height, pixels = png_pixels(shot.read_bytes())
    assert width == 1280 and height >= 900
    colors = Counter(pixels)
    background = sum(n for _, n in colors.most_common(2))  # the page's background and the cards' white
    assert len(colors) >= 200, f"only {len(colors)} colours: the page rendered (nearly) empty"
    assert (len(pixels) - background) / len(pixels) >= 0.05, "almost everything is background"

    # The volume chart drew both series: many pixels of their colours, not only the "no data" text.
    chart = tmp_path / "volume.png"
    await page.locator("#chart-volume").screenshot(path=str(chart), animations="disabled")
    _, _, chart_pixels = png_pixels(chart.read_bytes())
    blue = sum(near(p, (0x2F, 0x5B, 0xEA)) for p in chart_pixels)
    orange = sum(near(p, (0xE8, 0x71, 0x0A)) for p in chart_pixels)
    assert blue >= 30 and orange >= 30, (blue, orange)
