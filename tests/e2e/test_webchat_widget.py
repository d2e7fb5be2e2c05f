"""The web chat widget in a real browser: Debian's headless Chromium (never a downloaded one) driven by
Playwright. Ingest serves the widget on a real port; a visitor types, the agent sees the message through
the conversation API and replies, and the reply appears in the page once, also after a reload."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, ConsoleMessage, Page, async_playwright, expect

from tests.conftest import Settings
from tests.integration.test_channels import delivery_of, reply
from tests.integration.test_message_path import System
from tests.integration.test_webchat import IDENTITY_SECRET, assigned_thread, running_webchat, webchat_settings
from tests.support import eventually

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"
    ),
]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile: no stored session from another run
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_webchat(webchat_settings(settings)) as system:
        yield system


def console_errors(page: Page) -> list[str]:
    """What the page logs as errors: a script blocked by the CSP, a failed request, an exception."""
    seen: list[str] = []

    def record(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.append(message.text)

    page.on("console", record)
    page.on("pageerror", lambda error: seen.append(str(error)))
    page.on("response", lambda r: seen.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return seen


async def test_a_visitor_types_and_the_agents_reply_appears_in_the_widget(
    system: System, browser: BrowserContext
) -> None:
    agent = await system.agent("ada@example.com", [])
    user_hash = hmac.new(IDENTITY_SECRET.encode(), b"u-7", hashlib.sha256).hexdigest()
    page = await browser.new_page()
    errors = console_errors(page)
    await page.goto(f"{system.ingest.base_url}/webchat/widget#user_id=u-7&user_hash={user_hash}&name=Grace")
    await expect(page.locator("#status")).to_have_text("online", timeout=TIMEOUT_MS)

    await page.fill("#text", "Hello from the widget")
    await page.press("#text", "Enter")
    visitor = page.locator(".msg.visitor")
    await expect(visitor).to_have_text(["Hello from the widget"])
    await expect(visitor).to_have_class("msg visitor", timeout=TIMEOUT_MS)  # sent: no longer "sending"

    thread = await assigned_thread(system, agent)
    assert [(m["channel"], m["body"]) for m in thread["messages"]] == [("webchat", "Hello from the widget")]
    assert thread["customer"]["display_name"] == "Grace"
    assert {"kind": "webchat", "value": "user:u-7"} in thread["customer"]["identities"]

    first = await reply(system, agent, thread["id"], "Hi Grace, how can I help?")
    agent_messages = page.locator(".msg.agent")
    await expect(agent_messages).to_have_text(["Hi Grace, how can I help?"], timeout=TIMEOUT_MS)
    # The page is visible, so the widget reports the reply read, and the agent's thread shows it.
    await eventually(lambda: delivery_of(system, agent, thread["id"], first["id"], "read"), what="read")

    # A reload keeps the conversation (localStorage) and resumes the stream after the last reply shown:
    # the next reply appears, and the first is not shown twice.
    await page.reload()
    await expect(page.locator("#status")).to_have_text("online", timeout=TIMEOUT_MS)
    await reply(system, agent, thread["id"], "Your order ships today.")
    await expect(agent_messages).to_have_text(
        ["Hi Grace, how can I help?", "Your order ships today."], timeout=TIMEOUT_MS
    )
    await expect(visitor).to_have_text(["Hello from the widget"])
    assert errors == []


async def test_the_widget_page_is_self_contained(system: System, browser: BrowserContext) -> None:
    page = await browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    errors = console_errors(page)
    await page.goto(f"{system.ingest.base_url}/webchat/widget")
    await expect(page.locator("#status")).to_have_text("online", timeout=TIMEOUT_MS)
    base = str(system.ingest.base_url).rstrip("/")
    # The page itself, then only the visitor API: no external scripts, styles, fonts or images.
    assert all(url.startswith(base + "/webchat/") for url in requested), requested
    stored: Any = await page.evaluate("Object.keys(localStorage)")
    assert stored == ["switchboard-webchat:anonymous"]
    assert errors == []
