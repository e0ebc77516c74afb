"""The sandbox's Messages list API filters and pages like Twilio's."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sandbox_testkit import ACCOUNT_SID, AUTH_TOKEN, FROM, TO

from pigeon.providers.port import SmsMessage
from pigeon.providers.twilio import TwilioSmsProvider
from pigeon.sandbox import SandboxServer

OTHER_TO = "+14155550199"
OTHER_FROM = "+15005550009"
AUTH = {
    "Authorization": "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
}


def _url(sandbox: SandboxServer) -> str:
    return f"{sandbox.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


async def _list(
    http: aiohttp.ClientSession, sandbox: SandboxServer, **params: str
) -> dict[str, Any]:
    async with http.get(_url(sandbox), params=params, headers=AUTH) as rsp:
        assert rsp.status == 200, await rsp.text()
        page: dict[str, Any] = await rsp.json()
        return page


def _set_day(sandbox: SandboxServer, sid: str, day: datetime) -> None:
    stored = sandbox.inbox.get(sid)
    assert stored is not None
    stored.date_created = stored.date_sent = day


async def test_from_filter_keeps_one_senders_messages(
    sandbox: SandboxServer, provider: TwilioSmsProvider, http: aiohttp.ClientSession
) -> None:
    """From= lists only what that number sent, To= only what went to that number."""
    mine = await provider.send(SmsMessage(to=TO, body="a"))
    await provider.send(SmsMessage(to=TO, body="b", from_number=OTHER_FROM))
    await provider.send(SmsMessage(to=OTHER_TO, body="c"))

    page = await _list(http, sandbox, From=FROM, To=TO)
    assert [m["sid"] for m in page["messages"]] == [mine.message_id]
    assert len((await _list(http, sandbox, From=OTHER_FROM))["messages"]) == 1


async def test_date_sent_filters_are_day_granular_and_inclusive(
    sandbox: SandboxServer, provider: TwilioSmsProvider, http: aiohttp.ClientSession
) -> None:
    """DateSent=, DateSent<= and DateSent>= compare UTC days, bounds included."""
    today = datetime.now(UTC)
    sids = [(await provider.send(SmsMessage(to=TO, body=f"m{i}"))).message_id for i in range(3)]
    _set_day(sandbox, sids[0], today - timedelta(days=2))
    _set_day(sandbox, sids[1], today - timedelta(days=1))
    yesterday = (today - timedelta(days=1)).date().isoformat()

    async def sids_for(**params: str) -> list[str]:
        return [m["sid"] for m in (await _list(http, sandbox, **params))["messages"]]

    assert await sids_for(DateSent=yesterday) == [sids[1]]
    assert await sids_for(**{"DateSent>": yesterday}) == [sids[2], sids[1]]
    assert await sids_for(**{"DateSent<": yesterday}) == [sids[1], sids[0]]
    assert await sids_for(**{"DateSent>": yesterday, "DateSent<": yesterday}) == [sids[1]]
    # Twilio's SDKs send a full timestamp; only its day counts.
    assert await sids_for(**{"DateSent>": f"{yesterday}T23:59:59Z"}) == [sids[2], sids[1]]


async def test_queued_messages_have_no_date_sent_and_escape_date_filters(
    http: aiohttp.ClientSession,
) -> None:
    """Like Twilio, a message still queued is listed without filters but not with DateSent."""
    async with SandboxServer(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, callback_delay_seconds=30
    ) as sandbox:
        adapter = TwilioSmsProvider(
            base_url=sandbox.url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, default_from=FROM
        )
        await adapter.start()
        try:
            await adapter.send(SmsMessage(to=TO, body="still queued"))
        finally:
            await adapter.stop()
        [listed] = (await _list(http, sandbox, To=TO))["messages"]
        assert (listed["status"], listed["date_sent"]) == ("queued", None)
        today = datetime.now(UTC).date().isoformat()
        assert (await _list(http, sandbox, **{"DateSent>": today}))["messages"] == []


async def test_page_tokens_keep_paging_stable_while_messages_arrive(
    sandbox: SandboxServer, provider: TwilioSmsProvider, http: aiohttp.ClientSession
) -> None:
    """next_page_uri continues after the last message seen, even if new ones arrived since."""
    sids = [(await provider.send(SmsMessage(to=TO, body=f"m{i}"))).message_id for i in range(5)]
    first = await _list(http, sandbox, To=TO, PageSize="2")
    assert [m["sid"] for m in first["messages"]] == [sids[4], sids[3]]
    assert f"PageToken=PA{sids[3]}" in first["next_page_uri"]

    await provider.send(SmsMessage(to=TO, body="newcomer"))

    seen = [m["sid"] for m in first["messages"]]
    uri = first["next_page_uri"]
    while uri is not None:
        async with http.get(sandbox.url + uri, headers=AUTH) as rsp:
            page = await rsp.json()
        seen += [m["sid"] for m in page["messages"]]
        uri = page["next_page_uri"]
    assert seen == list(reversed(sids))


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"PageSize": "lots"}, "PageSize must be a whole number of at least 1, got 'lots'"),
        ({"PageSize": "0"}, "PageSize must be a whole number of at least 1"),
        ({"Page": "-1"}, "Page must be a whole number of at least 0"),
        ({"PageToken": "nonsense"}, "PageToken must look like PA<message SID>"),
        ({"DateSent": "yesterday"}, "DateSent must be YYYY-MM-DD"),
    ],
)
async def test_bad_list_parameters_are_twilio_400s_saying_what_is_wrong(
    sandbox: SandboxServer, http: aiohttp.ClientSession, params: dict[str, str], reason: str
) -> None:
    """An unreadable parameter answers 400 with Twilio's error body and a precise message."""
    async with http.get(_url(sandbox), params=params, headers=AUTH) as rsp:
        body = await rsp.json()
    assert rsp.status == 400
    assert body["code"] == 20001
    assert reason in body["message"]


@pytest.fixture
async def filled(
    sandbox: SandboxServer, provider: TwilioSmsProvider
) -> AsyncIterator[SandboxServer]:
    """A sandbox holding 120 messages to one number."""
    for i in range(120):
        await provider.send(SmsMessage(to=TO, body=f"bulk {i}"))
    yield sandbox


async def test_page_size_is_honoured_up_to_twilios_maximum(
    filled: SandboxServer, http: aiohttp.ClientSession
) -> None:
    """PageSize picks the page length; the default is 50 and the last page has no next."""
    assert len((await _list(http, filled))["messages"]) == 50
    page = await _list(http, filled, PageSize="100", Page="1")
    assert len(page["messages"]) == 20
    assert page["next_page_uri"] is None
    assert page["previous_page_uri"] is not None
