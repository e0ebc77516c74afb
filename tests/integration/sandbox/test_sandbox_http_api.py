"""The sandbox's Twilio list/fetch endpoints and its own /sandbox endpoints."""

from __future__ import annotations

import base64
import re

import aiohttp
import pytest
from sandbox_testkit import ACCOUNT_SID, AUTH_TOKEN, FROM, TO

from pigeon.errors import ProviderRateLimited
from pigeon.providers.port import SmsMessage
from pigeon.providers.twilio import TwilioSmsProvider
from pigeon.sandbox import SandboxServer

OTHER = "+14155550199"
RFC2822 = re.compile(r"^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$")


def _api(sandbox: SandboxServer, path: str) -> str:
    return f"{sandbox.url}/2010-04-01/Accounts/{ACCOUNT_SID}/{path}"


AUTH = {
    "Authorization": "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
}


async def test_fetch_returns_twilios_message_resource(
    sandbox: SandboxServer, provider: TwilioSmsProvider, http: aiohttp.ClientSession
) -> None:
    """GET Messages/{Sid}.json returns every field Twilio's Message resource has."""
    receipt = await provider.send(SmsMessage(to=TO, body="hello"))

    async with http.get(_api(sandbox, f"Messages/{receipt.message_id}.json"), headers=AUTH) as rsp:
        assert rsp.status == 200
        resource = await rsp.json()

    assert resource["sid"] == receipt.message_id
    assert re.fullmatch(r"SM[0-9a-f]{32}", resource["sid"])
    assert resource["account_sid"] == ACCOUNT_SID
    assert (resource["to"], resource["from"], resource["body"]) == (TO, FROM, "hello")
    assert resource["num_segments"] == "1"
    assert resource["num_media"] == "0"
    assert resource["direction"] == "outbound-api"
    assert resource["api_version"] == "2010-04-01"
    assert resource["status"] == "delivered"  # no callback and no delay: delivered at once
    for key in ("date_created", "date_updated", "date_sent"):
        assert RFC2822.match(resource[key]), resource[key]
    assert resource["price"] is None
    assert resource["error_code"] is None
    assert resource["error_message"] is None
    assert resource["messaging_service_sid"] is None
    assert resource["uri"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{resource['sid']}.json"
    assert resource["subresource_uris"]["media"].endswith("/Media.json")


async def test_fetching_an_unknown_sid_is_twilios_404(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    """An unknown SID answers 404 with Twilio's error body (code 20404)."""
    async with http.get(_api(sandbox, "Messages/SM" + "f" * 32 + ".json"), headers=AUTH) as rsp:
        body = await rsp.json()
    assert rsp.status == 404
    assert body["code"] == 20404
    assert body["more_info"] == "https://www.twilio.com/docs/errors/20404"


async def test_list_filters_by_to_and_pages_newest_first(
    sandbox: SandboxServer, provider: TwilioSmsProvider, http: aiohttp.ClientSession
) -> None:
    """GET Messages.json filters by To and pages newest first, in Twilio's page shape."""
    sids = [(await provider.send(SmsMessage(to=TO, body=f"m{i}"))).message_id for i in range(3)]
    await provider.send(SmsMessage(to=OTHER, body="elsewhere"))

    params = {"To": TO, "PageSize": "2"}
    async with http.get(_api(sandbox, "Messages.json"), params=params, headers=AUTH) as rsp:
        first = await rsp.json()
    assert [m["sid"] for m in first["messages"]] == [sids[2], sids[1]]
    assert (first["page"], first["page_size"], first["previous_page_uri"]) == (0, 2, None)
    assert first["next_page_uri"] is not None

    async with http.get(sandbox.url + first["next_page_uri"], headers=AUTH) as rsp:
        second = await rsp.json()
    assert [m["sid"] for m in second["messages"]] == [sids[0]]
    assert second["next_page_uri"] is None


async def test_list_filters_by_date_sent(
    sandbox: SandboxServer, provider: TwilioSmsProvider, http: aiohttp.ClientSession
) -> None:
    """DateSent>=today keeps today's messages and DateSent<=yesterday keeps none."""
    await provider.send(SmsMessage(to=TO, body="today"))
    url = _api(sandbox, "Messages.json")
    async with http.get(url + "?DateSent>=2000-01-01", headers=AUTH) as rsp:
        assert len((await rsp.json())["messages"]) == 1
    async with http.get(url + "?DateSent<=2000-01-01", headers=AUTH) as rsp:
        assert (await rsp.json())["messages"] == []


async def test_list_requires_credentials(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    """Listing without HTTP basic auth answers 401 with Twilio's 20003."""
    async with http.get(_api(sandbox, "Messages.json")) as rsp:
        body = await rsp.json()
    assert rsp.status == 401
    assert body["code"] == 20003


async def test_inbox_filters_fetches_and_clears(
    sandbox: SandboxServer, provider: TwilioSmsProvider, http: aiohttp.ClientSession
) -> None:
    """The inbox lists newest last, filters by ?to=, fetches by SID and empties on DELETE."""
    first = await provider.send(SmsMessage(to=TO, body="one"))
    await provider.send(SmsMessage(to=OTHER, body="two"))

    async with http.get(f"{sandbox.url}/sandbox/messages") as rsp:
        assert [m["body"] for m in (await rsp.json())["messages"]] == ["one", "two"]
    async with http.get(f"{sandbox.url}/sandbox/messages", params={"to": OTHER}) as rsp:
        assert [m["body"] for m in (await rsp.json())["messages"]] == ["two"]
    async with http.get(f"{sandbox.url}/sandbox/messages/{first.message_id}") as rsp:
        assert (await rsp.json())["body"] == "one"
    async with http.delete(f"{sandbox.url}/sandbox/messages") as rsp:
        assert (await rsp.json())["deleted"] == 2
    async with http.get(f"{sandbox.url}/sandbox/messages/{first.message_id}") as rsp:
        assert rsp.status == 404
        assert rsp.content_type == "application/problem+json"


async def test_stats_count_accepted_and_faulted_sends(
    sandbox: SandboxServer, provider: TwilioSmsProvider, http: aiohttp.ClientSession
) -> None:
    """GET /sandbox/stats counts accepted sends and those answered with a fault."""
    await provider.send(SmsMessage(to=TO, body="ok"))
    async with http.put(f"{sandbox.url}/sandbox/faults", json={"rate_429": 1}):
        pass
    with pytest.raises(ProviderRateLimited):
        await provider.send(SmsMessage(to=TO, body="limited"))
    async with http.get(f"{sandbox.url}/sandbox/stats") as rsp:
        stats = await rsp.json()
    assert stats["accepted"] == 1
    assert stats["rejected_by_fault"] == 1
    assert stats["faults"] == {"rate_limited": 1}


async def test_invalid_fault_update_is_a_problem_naming_the_field(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    """PUT /sandbox/faults with a rate above 1 answers 400 problem+json naming the field."""
    async with http.put(f"{sandbox.url}/sandbox/faults", json={"error_rate": 3}) as rsp:
        problem = await rsp.json(content_type=None)
    assert rsp.status == 400
    assert rsp.content_type == "application/problem+json"
    assert problem["field"] == "error_rate"
    async with http.get(f"{sandbox.url}/sandbox/faults") as rsp:
        assert (await rsp.json())["error_rate"] == 0


async def test_fault_update_that_is_not_json_is_refused(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    """A PUT body that is not a JSON object answers 400."""
    async with http.put(f"{sandbox.url}/sandbox/faults", data=b"down please") as rsp:
        assert rsp.status == 400
    async with http.put(f"{sandbox.url}/sandbox/faults", json=[1]) as rsp:
        assert rsp.status == 400
