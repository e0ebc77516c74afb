"""find_sent: looking a message up through Twilio's list API, with Twilio's quirks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import orjson
import pytest
from aiohttp import web

from pigeon.errors import ProviderRejected, ProviderUnavailable
from pigeon.providers.port import ReconcilingProvider, SmsMessage
from pigeon.providers.twilio import TwilioSmsProvider
from pigeon.providers.twilio_lookup import best_match, cutoff_of, lookup_query, next_page_path

SID = "AC" + "3" * 32
FROM = "+15005550006"
CALLBACK = "http://127.0.0.1:8000/v1/callbacks/sms?n=ntf_1"
MESSAGE = SmsMessage(to="+14155550123", body="Your code is 1234", status_callback=CALLBACK)
AFTER = datetime(2024, 5, 1, 12, 0, 0, 700_000, tzinfo=UTC)
LIST_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


def _resource(sid: str, created: datetime, **changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "sid": sid,
        "to": MESSAGE.to,
        "from": FROM,
        "body": MESSAGE.body,
        "direction": "outbound-api",
        "status": "sent",
        "num_segments": "1",
        "date_created": format_datetime(created),
        "date_sent": format_datetime(created),
    }
    resource.update(changes)
    return resource


def test_the_cutoff_is_floored_to_the_whole_second_twilio_writes() -> None:
    """A message created in the same second as sent_after still counts as after it."""
    assert cutoff_of(AFTER) == datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    same_second = _resource("SM1", datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC))
    assert best_match([same_second], MESSAGE, FROM, cutoff_of(AFTER)) is not None


def test_a_naive_sent_after_is_refused() -> None:
    """A datetime without a timezone would silently shift the window: it is refused."""
    with pytest.raises(ValueError, match="timezone"):
        cutoff_of(datetime(2024, 5, 1, 12, 0))


def test_the_dated_query_filters_by_the_utc_day() -> None:
    """DateSent>= carries the UTC day of sent_after (not the local one), with To and From."""
    evening_in_chicago = datetime(2024, 5, 1, 20, 30, tzinfo=timezone(timedelta(hours=-5)))
    query = lookup_query(MESSAGE, FROM, evening_in_chicago, dated=True)
    assert query == {"To": MESSAGE.to, "From": FROM, "PageSize": "100", "DateSent>": "2024-05-02"}
    assert "DateSent>" not in lookup_query(MESSAGE, FROM, AFTER, dated=False)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"body": "Your code is 9999"}, "another body"),
        ({"to": "+14155550199"}, "another recipient"),
        ({"from": "+15005550009"}, "another sender"),
        ({"direction": "inbound"}, "an inbound message"),
        ({"status_callback": "http://127.0.0.1:8000/v1/callbacks/sms?n=ntf_2"}, "another callback"),
        ({"date_created": "Wed, 01 May 2024 11:59:59 +0000"}, "created before the attempt"),
        ({"date_created": None}, "no creation date"),
    ],
)
def test_resources_that_are_not_the_message_do_not_match(changes: dict[str, Any], why: str) -> None:
    """Only the same to, from, body, direction, callback and a late enough date match."""
    resource = _resource("SM1", AFTER, **changes)
    assert best_match([resource], MESSAGE, FROM, cutoff_of(AFTER)) is None, why


def test_among_several_matches_the_oldest_is_the_first_attempt() -> None:
    """Two identical sends after the cutoff: the earlier one is returned."""
    newer = _resource("SM2", AFTER + timedelta(seconds=9))
    older = _resource("SM1", AFTER + timedelta(seconds=2))
    match = best_match([newer, older], MESSAGE, FROM, cutoff_of(AFTER))
    assert match is not None and match[0]["sid"] == "SM1"


def test_only_relative_next_page_paths_are_followed() -> None:
    """A next_page_uri pointing at another host is ignored, keeping our credentials home."""
    assert next_page_path({"next_page_uri": "/2010-04-01/x?Page=1"}) == "/2010-04-01/x?Page=1"
    assert next_page_path({"next_page_uri": "https://evil.example/steal"}) is None
    assert next_page_path({"next_page_uri": "//evil.example/steal"}) is None
    assert next_page_path({"next_page_uri": None}) is None


@dataclass
class FakeList:
    """Answers list requests with ``pages(query)`` and records the queries."""

    pages: Callable[[dict[str, str]], tuple[int, dict[str, Any]]] = lambda q: (200, {})
    queries: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeList, TwilioSmsProvider]]:
    """A scripted list endpoint on 127.0.0.1 and an adapter pointed at it."""
    script = FakeList()

    async def handle(request: web.Request) -> web.Response:
        query = dict(request.query)
        script.queries.append(query)
        status, body = script.pages(query)
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_get(LIST_PATH, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    adapter = TwilioSmsProvider(
        base_url=f"http://{host}:{port}", account_sid=SID, auth_token="t", default_from=FROM
    )
    await adapter.start()
    yield script, adapter
    await adapter.stop()
    await runner.cleanup()


def _page(messages: list[dict[str, Any]], next_uri: str | None = None) -> dict[str, Any]:
    return {"messages": messages, "next_page_uri": next_uri}


async def test_find_sent_follows_pages_and_returns_the_oldest_match(
    fake: tuple[FakeList, TwilioSmsProvider],
) -> None:
    """The dated search pages through next_page_uri and returns the first attempt's receipt."""
    script, adapter = fake
    assert isinstance(adapter, ReconcilingProvider)
    first = _page([_resource("SM3", AFTER, body="other")], f"{LIST_PATH}?Page=1&PageToken=PASM3")
    second = _page(
        [_resource("SM2", AFTER + timedelta(seconds=5)), _resource("SM1", AFTER, status="queued")]
    )
    script.pages = lambda q: (200, second if q.get("Page") == "1" else first)

    receipt = await adapter.find_sent(MESSAGE, sent_after=AFTER)

    assert receipt is not None
    assert (receipt.message_id, receipt.status, receipt.provider) == ("SM1", "queued", "twilio")
    assert script.queries[0] == {
        "To": MESSAGE.to,
        "From": FROM,
        "PageSize": "100",
        "DateSent>": "2024-05-01",
    }
    assert script.queries[1] == {"Page": "1", "PageToken": "PASM3"}


async def test_a_queued_message_without_date_sent_is_found_by_the_undated_search(
    fake: tuple[FakeList, TwilioSmsProvider],
) -> None:
    """Twilio's DateSent filter hides queued messages, so a second search runs without it."""
    script, adapter = fake
    queued = _resource("SM1", AFTER, status="queued", date_sent=None)
    script.pages = lambda q: (200, _page([] if "DateSent>" in q else [queued]))

    receipt = await adapter.find_sent(MESSAGE, sent_after=AFTER)

    assert receipt is not None and receipt.message_id == "SM1"
    assert ["DateSent>" in q for q in script.queries] == [True, False]


async def test_nothing_found_means_none(fake: tuple[FakeList, TwilioSmsProvider]) -> None:
    """When neither search finds the message, find_sent says it was not sent."""
    script, adapter = fake
    script.pages = lambda q: (200, _page([_resource("SM1", AFTER - timedelta(minutes=5))]))
    assert await adapter.find_sent(MESSAGE, sent_after=AFTER) is None
    assert len(script.queries) == 2


async def test_look_up_failures_are_errors_never_a_guess(
    fake: tuple[FakeList, TwilioSmsProvider],
) -> None:
    """A 5xx or an unreadable page is transient; refused credentials are permanent."""
    script, adapter = fake
    script.pages = lambda q: (503, {"code": 20503, "message": "Service Unavailable"})
    with pytest.raises(ProviderUnavailable):
        await adapter.find_sent(MESSAGE, sent_after=AFTER)
    script.pages = lambda q: (200, {"no": "messages"})
    with pytest.raises(ProviderUnavailable, match="'messages' list"):
        await adapter.find_sent(MESSAGE, sent_after=AFTER)
    script.pages = lambda q: (401, {"code": 20003, "message": "Authenticate"})
    with pytest.raises(ProviderRejected, match="look-up"):
        await adapter.find_sent(MESSAGE, sent_after=AFTER)
