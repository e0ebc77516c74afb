"""The web console in a real browser (Debian's chromium, driven by Playwright) against
``pigeon run``: sign in, watch a send reach ``delivered`` without a reload, read its
timeline, switch a sandbox fault on, and replay the dead letter it made.

Each test saves a screenshot of its last page under its ``tmp_path`` (printed; pytest
keeps the folders of the last runs, failed or not).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from tests.e2e.e2e_processes import SQLITE, STACKS, PigeonCluster, send_sms, statuses, wait_for
from tests.support import eventually

CHROMIUM = Path("/usr/bin/chromium")
#: how long the browser waits for a page to show something (ms)
WAIT_MS = 45_000

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/test.sh installs it)"
    ),
]


class Browser:
    """One browser page on the console, recording every URL it asked for."""

    def __init__(self, page: Page, base: str, shot: Path) -> None:
        self.page = page
        self.base = base
        self.shot = shot
        self.urls: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))

    async def open(self, path: str) -> None:
        """Go to a console page."""
        await self.page.goto(self.base + path)

    async def sign_in(self, key: str) -> None:
        """Sign in through the form, as a person would."""
        await self.open("/console/login")
        await self.page.fill("#api_key", key)
        await self.page.click("#sign-in")
        await self.page.wait_for_url(re.compile(r".*/console/notifications$"))

    async def screenshot(self, name: str = "") -> None:
        """Save the page as it looks now (as ``console-NAME.png`` beside the last one)."""
        path = self.shot.with_name(f"console-{name}.png") if name else self.shot
        await self.page.screenshot(path=str(path), full_page=True)
        print(f"\nscreenshot: {path}")


@pytest.fixture
async def browser(cluster: PigeonCluster, tmp_path: Path) -> AsyncIterator[Browser]:
    """A headless chromium page on the cluster's console; a screenshot when done."""
    async with async_playwright() as driver:
        chromium = await driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = await chromium.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(WAIT_MS)
            view = Browser(page, cluster.api_url, tmp_path / "console.png")
            try:
                yield view
            finally:
                await view.screenshot()  # of the last page, whether the test passed or not
        finally:
            await chromium.close()


def admin_key(cluster: PigeonCluster, account: str) -> str:
    """``pigeon keys create --admin``; the key it prints."""
    done = cluster.cli("keys", "create", "--account", account, "--admin")
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("admin api key: ")]
    return line.removeprefix("admin api key: ").strip()


@pytest.mark.parametrize("stack", STACKS)
async def test_a_send_reaches_delivered_in_the_open_console_and_its_timeline_shows_each_step(
    cluster: PigeonCluster, browser: Browser
) -> None:
    """The list updates itself (no reload) until the row is delivered; the timeline has
    every step and the provider's answer."""
    key = cluster.create_api_key("e2e")
    await cluster.start(cluster.run_all_in_one())
    await browser.sign_in(key)
    page = browser.page
    await page.evaluate("window.consoleMarker = 'same document'")

    async with cluster.api_client(key) as api:
        answer = await send_sms(api, "+14155550123", "Hello from the browser test")
        assert answer.status_code == 202
        notification_id = answer.json()["id"]

    row = page.locator(f'tr[data-id="{notification_id}"][data-status="delivered"]')
    await row.wait_for()
    assert await page.evaluate("window.consoleMarker") == "same document"  # never reloaded

    await page.click(f'a[href="/console/notifications/{notification_id}"]')
    await page.wait_for_selector('#detail[data-status="delivered"]')
    # the projector reads two topics: on Kafka the "queued" step (sms.requested) can be
    # projected after "delivered" (it is then placed by its time); a reload shows it
    for _ in range(60):
        if await page.locator('#timeline li[data-status="queued"]').count():
            break
        await asyncio.sleep(0.5)
        await page.reload()
    steps = await page.locator("#timeline li").evaluate_all(
        "items => items.map(item => item.dataset.status)"
    )
    # each status once or more (the sender's "sent" and the provider's may both be steps)
    assert list(dict.fromkeys(steps)) == ["accepted", "queued", "sending", "sent", "delivered"]
    outcomes = await page.locator("#attempts tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.outcome)"
    )
    assert outcomes == ["sent"]
    await browser.screenshot("timeline")

    # The health page shows the provider's good answers and, on the embedded bus, the lag
    await browser.open("/console/health")
    await page.locator('#providers tr[data-provider="twilio"][data-verdict="ok"]').wait_for()
    assert await page.locator("#dead-waiting").inner_text() == "0"
    if cluster.stack == SQLITE:
        await page.locator('#lag tr[data-group="sms-sender"]').wait_for()
    else:
        assert await page.locator("#outbox-rows").count() == 1
    await browser.screenshot("health")

    # and the usage chart a bar for today's segment, once the meter has counted it
    today = answer.json()["created_at"][:10]

    async def metered() -> bool:
        await browser.open("/console/usage")  # the chart is not live: look again
        return await page.locator(f'g.bar[data-day="{today}"][data-segments="1"]').count() == 1

    await eventually(metered, within=30, interval=0.5)
    await browser.screenshot("usage")
    await browser.open("/console/notifications")
    assert not any(key in url for url in browser.urls)


@pytest.mark.parametrize("stack", STACKS)
async def test_a_dead_letter_made_by_a_sandbox_fault_is_replayed_from_the_console(
    cluster: PigeonCluster, browser: Browser
) -> None:
    """An admin switches on a permanent provider error in the sandbox page, sees the
    notification fail and its dead letter appear, switches it off and replays it: the
    notification is delivered."""
    key = admin_key(cluster, "ops")
    await cluster.start(cluster.run_all_in_one())
    await browser.sign_in(key)
    page = browser.page

    # Given the sandbox (a process of its own, maybe still starting) rejecting every
    # send as unsubscribed (21610: permanent)
    async with cluster.sandbox_client() as sandbox:

        async def sandbox_up() -> bool:
            try:
                return (await sandbox.get("/sandbox/health")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(sandbox_up, within=30, interval=0.1)
    await browser.open("/console/sandbox")
    await page.fill('input[name="error_codes"]', "21610=1.0")
    await page.click("#save-faults")
    await page.wait_for_selector("#faults-saved")
    async with cluster.sandbox_client() as sandbox:
        assert (await sandbox.get("/sandbox/faults")).json()["error_codes"] == {"21610": 1.0}

    # When a notification is sent, it fails, and its dead letter is recorded
    async with cluster.api_client(key) as api:
        answer = await send_sms(api, "+14155550124", "to be dead-lettered")
        assert answer.status_code == 202
        notification_id = answer.json()["id"]
        await browser.open("/console/notifications")
        await page.locator(f'tr[data-id="{notification_id}"][data-status="failed"]').wait_for()

        async def listed() -> bool:
            await browser.open("/console/dead-letters")  # the list is not live: look again
            return await page.locator(f'tr[data-notification="{notification_id}"]').count() == 1

        await eventually(listed, within=30, interval=0.5)

        # and the fault is switched off again, and the dead letter replayed
        await browser.open("/console/sandbox")
        await page.fill('input[name="error_codes"]', "")
        await page.click("#save-faults")
        await page.wait_for_selector("#faults-saved")
        await browser.open("/console/dead-letters")
        await page.click(f'tr[data-notification="{notification_id}"] button.replay')
        await page.wait_for_selector('#dead-letter[data-replayed="yes"]')

        # Then the notification is delivered, which its page shows by itself
        await page.click("#notification-link")
        await page.wait_for_selector('#detail[data-status="delivered"]')
        detail = await wait_for(
            lambda: statuses(api, [notification_id]),
            lambda s: s[notification_id]["status"] == "delivered",
            within=30,
            what="delivered after the replay",
        )
        steps = [step["detail"] for step in detail[notification_id]["timeline"]]
        assert any("replayed from dead letter" in step for step in steps)
    outcomes = await page.locator("#attempts tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.outcome)"
    )
    assert outcomes[-1] == "sent" and "superseded" in outcomes
    assert not any(key in url for url in browser.urls)
