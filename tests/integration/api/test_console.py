"""The web console's routes over in-process HTTP, on both stacks: sessions, CSRF, who sees
what, and bad input answered by an error page that changes nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from api_testkit import AUTH_TOKEN, Tenant

from pigeon.api.app import ApiConfig, create_app
from pigeon.bootstrap import Pigeon
from pigeon.bus.port import Message, dead_letter_headers
from pigeon.console import ConsoleOptions
from pigeon.console.reads import LagRow
from pigeon.domain.events import TOPIC_SMS_DEAD, TOPIC_SMS_REQUESTED, encode
from pigeon.domain.notification import Notification
from pigeon.sandbox.server import SandboxServer
from pigeon.services.projector import USAGE_GROUP
from pigeon.store.webhook_rows import NewDelivery

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def admin(pigeon: Pigeon) -> Tenant:
    """An admin key, of the account 'ops'."""
    account, key = await pigeon.store.create_api_key("ops", admin=True)
    return Tenant(account, key)


@pytest.fixture
def browser(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The API client without an Authorization header: the console's cookies only."""
    return client


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF.search(page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, key: str) -> str:
    """Sign in through the form; the session's CSRF token."""
    form = await http.get("/console/login")
    assert form.status_code == 200
    answer = await http.post("/console/login", data={"csrf_token": csrf_of(form), "api_key": key})
    assert answer.status_code == 303, answer.text[:500]
    assert answer.headers["location"] == "/console/notifications"
    page = await http.get("/console/notifications")
    assert page.status_code == 200
    return csrf_of(page)


async def send(client: httpx.AsyncClient, tenant: Tenant, body: str = "hi") -> str:
    """Accept one SMS through the API; its id."""
    answer = await client.post(
        "/v1/notifications",
        json={"channel": "sms", "to": "+14155550123", "body": body},
        headers=tenant.headers,
    )
    assert answer.status_code == 202
    return str(answer.json()["id"])


async def test_the_key_stays_on_the_server_and_the_cookie_is_httponly_and_strict(
    browser: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Signing in sets an opaque HttpOnly, SameSite=Strict cookie; no URL, header or page
    carries the key."""
    form = await browser.get("/console/login")
    answer = await browser.post(
        "/console/login", data={"csrf_token": csrf_of(form), "api_key": tenant.key}
    )
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    assert tenant.key not in cookie and tenant.key[:12] not in cookie
    assert tenant.key not in str(answer.headers)
    for path in ("/console/notifications", "/console/usage", "/console/health"):
        page = await browser.get(path)
        assert page.status_code == 200
        assert tenant.key not in page.text and tenant.key not in str(page.url)
        assert page.headers["content-security-policy"].startswith("default-src 'self'")


async def test_a_wrong_key_is_refused_and_no_session_is_made(
    browser: httpx.AsyncClient, tenant: Tenant
) -> None:
    """An unknown key gets the form again with the reason; the pages still need a sign-in."""
    form = await browser.get("/console/login")
    answer = await browser.post(
        "/console/login", data={"csrf_token": csrf_of(form), "api_key": "pgn_not-a-key"}
    )
    assert answer.status_code == 401
    assert "unknown or revoked API key" in answer.text
    page = await browser.get("/console/notifications")
    assert page.status_code == 303
    assert page.headers["location"] == "/console/login"


async def test_signing_in_without_the_forms_csrf_token_is_refused(
    browser: httpx.AsyncClient, tenant: Tenant
) -> None:
    """A sign-in posted from elsewhere (no token, or another session's) makes no session."""
    await browser.get("/console/login")
    answer = await browser.post("/console/login", data={"api_key": tenant.key})
    assert answer.status_code == 403
    assert "CSRF" in answer.text
    assert (await browser.get("/console/notifications")).status_code == 303


async def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    pigeon: Pigeon,
    browser: httpx.AsyncClient,
    admin: Tenant,
    tenant: Tenant,
    moved: Callable[[], None],
) -> None:
    """Replay and sign-out need the session's token; with it, the same replay works."""
    notification = Notification.new_sms(account_id=tenant.account.id, to="+14155550123", body="x")
    await pigeon.store.accept(notification)
    moved()
    event = notification.requested_event()
    original = Message(TOPIC_SMS_REQUESTED, 0, 1, event.to, encode(event))
    headers = dead_letter_headers(original, "retries exhausted", "sms-sender")
    await pigeon.store.record_dead_letters(
        [Message(TOPIC_SMS_DEAD, 0, 1, event.to, encode(event), headers)]
    )
    (letter,) = await pigeon.store.dead_letters()

    async def replayed() -> bool:
        found = await pigeon.store.dead_letter(letter.id)
        assert found is not None
        return found.replayed_at is not None

    csrf = await sign_in(browser, admin.key)
    replay = f"/console/dead-letters/{letter.id}/replay"

    for data in ({}, {"csrf_token": "forged"}):
        refused = await browser.post(replay, data=data)
        assert refused.status_code == 403
        assert "CSRF" in refused.text
    assert not await replayed()
    assert (await browser.post("/console/logout", data={})).status_code == 403
    assert (await browser.get("/console/dead-letters")).status_code == 200  # still signed in

    done = await browser.post(replay, data={"csrf_token": csrf})
    assert done.status_code == 303
    assert await replayed()
    again = await browser.post(replay, data={"csrf_token": csrf})
    assert again.status_code == 409
    assert "already replayed" in again.text

    out = await browser.post("/console/logout", data={"csrf_token": csrf})
    assert out.status_code == 303
    assert (await browser.get("/console/dead-letters")).status_code == 303


async def test_a_plain_key_sees_its_own_account_only(
    browser: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    """No other account's notifications, by list, filter or id; no admin pages."""
    mine = await send(browser, tenant, "mine")
    theirs = await send(browser, other_tenant, "theirs")
    await sign_in(browser, tenant.key)

    listed = await browser.get("/console/notifications")
    assert mine in listed.text and theirs not in listed.text
    rows = await browser.get("/console/notifications/rows")
    assert mine in rows.text and theirs not in rows.text
    picked = await browser.get(
        "/console/notifications", params={"account": other_tenant.account.id}
    )
    assert picked.status_code == 403
    assert theirs not in picked.text
    assert (await browser.get(f"/console/notifications/{mine}")).status_code == 200
    other = await browser.get(f"/console/notifications/{theirs}")
    assert other.status_code == 404
    assert "theirs" not in other.text
    for path in ("/console/dead-letters", "/console/sandbox"):
        page = await browser.get(path)
        assert page.status_code == 403
        assert "admin API key" in page.text
    usage = await browser.get("/console/usage", params={"account": other_tenant.account.id})
    assert usage.status_code == 403


async def test_an_admin_sees_every_account_and_can_pick_one(
    browser: httpx.AsyncClient, admin: Tenant, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Every account's notifications by default; the account filter narrows to one."""
    mine = await send(browser, tenant, "mine")
    theirs = await send(browser, other_tenant, "theirs")
    await sign_in(browser, admin.key)
    listed = await browser.get("/console/notifications")
    assert mine in listed.text and theirs in listed.text
    one = await browser.get("/console/notifications", params={"account": tenant.account.id})
    assert mine in one.text and theirs not in one.text
    detail = await browser.get(f"/console/notifications/{theirs}")
    assert detail.status_code == 200
    assert "theirs" in detail.text


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"status": "lost"}, "status", "is not a status"),
        ({"to": "12"}, "to", ""),
        ({"since": "yesterday"}, "since", "is not a time"),
        ({"since": "2026-11-30T10:00", "until": "2026-11-30T09:00"}, "until", "after"),
        ({"metadata": "no-equals-sign"}, "metadata", "key=value"),
        ({"cursor": "garbage"}, "cursor", "not a cursor"),
        ({"limit": "5"}, "limit", "is not a filter"),
    ],
)
async def test_a_bad_filter_gets_an_error_page_that_names_it(
    browser: httpx.AsyncClient, tenant: Tenant, params: dict[str, str], field: str, reason: str
) -> None:
    """A bad filter value is a 400 page saying which field and why, not a 500 or a list."""
    await sign_in(browser, tenant.key)
    page = await browser.get("/console/notifications", params=params)
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    message = re.search(r'id="error-message">([^<]*)<', page.text)
    assert message is not None
    assert message.group(1).startswith(f"{field}:")
    assert reason in message.group(1)
    assert "Nothing was changed" in page.text


async def test_the_list_filters_like_the_listing_api(
    browser: httpx.AsyncClient, tenant: Tenant, moved: Callable[[], None]
) -> None:
    """Status, recipient and metadata filters select the same rows as GET /v1/notifications."""
    tagged = await browser.post(
        "/v1/notifications",
        json={"channel": "sms", "to": "+14155550199", "body": "x", "metadata": {"order": "A-7"}},
        headers=tenant.headers,
    )
    tagged_id = tagged.json()["id"]
    plain = await send(browser, tenant)
    moved()
    await sign_in(browser, tenant.key)
    by_meta = await browser.get("/console/notifications/rows", params={"metadata": "order=A-7"})
    assert tagged_id in by_meta.text and plain not in by_meta.text
    by_to = await browser.get("/console/notifications", params={"to": "+14155550199"})
    assert tagged_id in by_to.text and plain not in by_to.text
    by_status = await browser.get("/console/notifications", params={"status": "delivered"})
    assert tagged_id not in by_status.text and plain not in by_status.text


async def test_signed_out_pages_and_fragments_send_to_the_sign_in(
    browser: httpx.AsyncClient,
) -> None:
    """A page redirects with a 303; an htmx fragment answers HX-Redirect."""
    page = await browser.get("/console/notifications")
    assert page.status_code == 303 and page.headers["location"] == "/console/login"
    fragment = await browser.get("/console/notifications/rows", headers={"HX-Request": "true"})
    assert fragment.headers["hx-redirect"] == "/console/login"
    assert "<tr" not in fragment.text


async def test_a_revoked_key_ends_its_console_session(
    pigeon: Pigeon, browser: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The session checks its key on every request: revoked, the next page asks to sign in."""
    await sign_in(browser, tenant.key)
    (key,) = await pigeon.store.api_keys("acme")
    await pigeon.store.revoke_api_key(key.id)
    page = await browser.get("/console/notifications")
    assert page.status_code == 303
    assert page.headers["location"] == "/console/login"


async def test_static_assets_are_served_by_pigeon_and_nothing_else_is(
    browser: httpx.AsyncClient,
) -> None:
    """htmx and the stylesheet come from the package; no other path is opened."""
    htmx = await browser.get("/console/static/htmx.min.js")
    assert htmx.status_code == 200
    assert htmx.headers["content-type"].startswith("text/javascript")
    assert b"htmx" in htmx.content[:2000]
    assert (await browser.get("/console/static/console.css")).status_code == 200
    for name in ("..%2F__init__.py", "pages.py", "..%2F..%2Fconfig.py"):
        assert (await browser.get(f"/console/static/{name}")).status_code == 404


@pytest.fixture
async def sandbox_console(pigeon: Pigeon) -> AsyncIterator[tuple[httpx.AsyncClient, SandboxServer]]:
    """A console whose provider is a running sandbox."""
    async with SandboxServer(account_sid="AC" + "0" * 32, auth_token=AUTH_TOKEN) as sandbox:
        config = ApiConfig(
            status_callback_url=pigeon.status_callback_url,
            twilio_auth_token=AUTH_TOKEN,
            console=ConsoleOptions(sandbox_urls=(sandbox.url,)),
        )
        app = create_app(pigeon.store, config)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, sandbox


async def test_bad_fault_switches_get_an_error_page_and_change_nothing(
    sandbox_console: tuple[httpx.AsyncClient, SandboxServer], admin: Tenant
) -> None:
    """Not a number, or out of the sandbox's range: a 400 naming the field, faults as they
    were; a good value is applied."""
    http, sandbox = sandbox_console
    csrf = await sign_in(http, admin.key)
    page = await http.get("/console/sandbox")
    assert page.status_code == 200 and 'id="faults"' in page.text
    before = sandbox.faults.state()
    for value, reason in (("lots", "is not a number"), ("2", "the sandbox refused it")):
        bad = await http.post(
            "/console/sandbox/faults", data={"csrf_token": csrf, "error_rate": value}
        )
        assert bad.status_code == 400
        assert "error_rate" in bad.text and reason in bad.text
        assert sandbox.faults.state() == before
    good = await http.post(
        "/console/sandbox/faults",
        data={"csrf_token": csrf, "error_rate": "0.25", "error_codes": "21610=0.5"},
    )
    assert good.status_code == 303
    state = sandbox.faults.state()
    assert state["error_rate"] == 0.25
    assert state["error_codes"] == {"21610": 0.5}


async def test_usage_is_drawn_as_bars_per_day(
    pigeon: Pigeon, browser: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Metered segments show as one bar per day, scaled to the busiest."""
    n = Notification.new_sms(account_id=tenant.account.id, to="+14155550123", body="x" * 200)
    await pigeon.store.meter_usage(USAGE_GROUP, [n.requested_event()])
    await sign_in(browser, tenant.key)
    day = n.created_at.date().isoformat()
    page = await browser.get("/console/usage", params={"from": day, "to": day})
    assert page.status_code == 200
    assert f'data-day="{day}" data-segments="2"' in page.text
    bad = await browser.get("/console/usage", params={"from": "last week"})
    assert bad.status_code == 400
    assert "from:" in bad.text


async def test_the_health_page_shows_the_brokers_lag_or_says_why_not(
    pigeon: Pigeon, admin: Tenant
) -> None:
    """The lag the wiring measures is shown per group; a measurement that fails leaves
    the rest of the page and says so."""

    async def measured() -> list[LagRow]:
        return [LagRow("sms-sender", "sms.requested", 0, 7), LagRow("sms-sender", "t", 1, 5)]

    async def broken() -> list[LagRow]:
        raise TimeoutError("broker too slow")

    for lag, shown in ((measured, 'data-group="sms-sender" data-lag="12"'), (broken, "slow")):
        config = ApiConfig(
            status_callback_url=pigeon.status_callback_url,
            twilio_auth_token=AUTH_TOKEN,
            console=ConsoleOptions(lag=lag),
        )
        transport = httpx.ASGITransport(app=create_app(pigeon.store, config))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            await sign_in(http, admin.key)
            page = await http.get("/console/health")
            assert page.status_code == 200
            assert shown in page.text
            assert 'id="dead-waiting">0<' in page.text


async def test_a_notification_shows_its_webhook_deliveries(
    pigeon: Pigeon, browser: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The delivery log's rows of the notification, with the endpoint and the last answer."""
    sent = await send(browser, tenant, "hooked")
    await sign_in(browser, tenant.key)
    before = await browser.get(f"/console/notifications/{sent}")
    assert 'id="webhooks"' not in before.text and "No webhook for this notification" in before.text

    hooks = pigeon.store.webhooks
    endpoint, _secret = await hooks.create_endpoint(
        tenant.account.id, url="http://127.0.0.1:9/hooks/orders", event_types=(), description=""
    )
    await hooks.enqueue(
        [NewDelivery(endpoint.id, "evt_console_1", sent, "SmsDelivered", '{"data": {}}')]
    )
    page = await browser.get(f"/console/notifications/{sent}")
    assert page.status_code == 200
    table = page.text[page.text.index('id="webhooks"') :]
    assert "http://127.0.0.1:9/hooks/orders" in table
    assert "SmsDelivered" in table and 'data-state="pending"' in table
