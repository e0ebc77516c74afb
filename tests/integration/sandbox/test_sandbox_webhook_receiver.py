"""``/sandbox/webhooks/{name}``: records what arrives and answers as its faults say."""

from __future__ import annotations

import aiohttp

from pigeon.sandbox import SandboxServer


async def _post(http: aiohttp.ClientSession, url: str, body: bytes = b'{"n": 1}') -> int:
    async with http.post(url, data=body, headers={"webhook-id": "msg_1"}) as response:
        return response.status


async def test_requests_are_recorded_with_headers_body_and_answer(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    """Without faults every request is answered 204 and listed, oldest first, per name."""
    url = f"{sandbox.url}/sandbox/webhooks/orders"
    assert await _post(http, url, b'{"n": 1}') == 204
    assert await _post(http, url, b'{"n": 2}') == 204
    assert await _post(http, f"{sandbox.url}/sandbox/webhooks/other") == 204
    async with http.get(url) as response:
        listed = await response.json()
    assert listed["received"] == 2
    assert [r["body"] for r in listed["requests"]] == ['{"n": 1}', '{"n": 2}']
    assert listed["requests"][0]["headers"]["webhook-id"] == "msg_1"
    assert [r["answered"] for r in listed["requests"]] == [204, 204]


async def test_fail_next_then_gone_then_delete_clears(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    """The next n requests get the status; gone answers 410; DELETE forgets all of it."""
    url = f"{sandbox.url}/sandbox/webhooks/flaky"
    async with http.put(f"{url}/faults", json={"fail_next": 2, "status": 503}) as response:
        assert response.status == 200
        assert (await response.json())["fail_next"] == 2
    assert [await _post(http, url) for _ in range(3)] == [503, 503, 204]
    async with http.put(f"{url}/faults", json={"gone": True}) as response:
        assert response.status == 200
    assert await _post(http, url) == 410
    async with http.delete(url) as response:
        assert response.status == 204
    async with http.get(url) as response:
        cleared = await response.json()
    assert cleared["requests"] == [] and cleared["faults"]["gone"] is False
    assert await _post(http, url) == 204


async def test_a_bad_fault_setting_is_a_400_problem_naming_it(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    """Unknown fields, statuses outside 400-599 and non-JSON are refused; nothing changes."""
    url = f"{sandbox.url}/sandbox/webhooks/x/faults"
    for body, words in [
        ({"status": 200}, "status"),
        ({"fail_next": -1}, "fail_next"),
        ({"colour": "red"}, "colour"),
        ({"gone": "yes"}, "gone"),
        ([1], "JSON object"),
    ]:
        async with http.put(url, json=body) as response:
            assert response.status == 400, body
            assert response.content_type == "application/problem+json"
            assert words in (await response.json())["detail"]
    async with http.put(url, data=b"{nope") as response:
        assert response.status == 400
    async with http.get(f"{sandbox.url}/sandbox/webhooks/x") as response:
        assert (await response.json())["faults"] == {
            "fail_next": 0,
            "status": 500,
            "delay_ms": 0,
            "gone": False,
        }
