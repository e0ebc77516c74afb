"""pigeon.client's retry and error rules, on httpx's MockTransport (no server: one module).

What the real API answers is in tests/e2e/test_e2e_python_client.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from pigeon.client import (
    ApiError,
    AsyncClient,
    Client,
    Conflict,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unprocessable,
    _retry_after,
)

ACCEPTED = {
    "id": "ntf_1",
    "status": "accepted",
    "channel": "sms",
    "to": "+14155550123",
    "segments": 1,
    "created_at": "2026-11-30T10:00:00.000Z",
}
PROBLEM = "application/problem+json"


def _answers(
    *answers: httpx.Response | Exception,
) -> tuple[list[httpx.Request], Callable[[httpx.Request], httpx.Response]]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return seen, handle


def _client(handler: Callable[[httpx.Request], httpx.Response], **options: float) -> Client:
    return Client(
        "http://pigeon.test",
        "pk_test",
        transport=httpx.MockTransport(handler),
        backoff=0.0,
        **options,
    )  # type: ignore[arg-type]


def _problem(status: int, detail: str, **headers: str) -> httpx.Response:
    body = {"type": "about:blank", "title": "t", "status": status, "detail": detail}
    return httpx.Response(status, json=body, headers={"content-type": PROBLEM, **headers})


def test_a_send_retried_after_503_and_a_dropped_connection_keeps_its_idempotency_key() -> None:
    seen, handle = _answers(
        _problem(503, "store unavailable", **{"Retry-After": "0"}),
        httpx.RemoteProtocolError("server closed the connection"),
        httpx.Response(202, json=ACCEPTED),
    )
    with _client(handle) as pigeon:
        accepted = pigeon.send_sms("+14155550123", "hi")
    assert accepted.id == "ntf_1"
    keys = {r.headers["Idempotency-Key"] for r in seen}
    assert len(seen) == 3 and len(keys) == 1
    assert keys.pop().startswith("pigeon-py-")
    assert seen[0].headers["Authorization"] == "Bearer pk_test"


def test_each_send_gets_a_key_of_its_own_unless_given_one() -> None:
    seen, handle = _answers(*(httpx.Response(202, json=ACCEPTED) for _ in range(3)))
    with _client(handle) as pigeon:
        pigeon.send_sms("+14155550123", "a")
        pigeon.send_sms("+14155550123", "b")
        pigeon.send_sms("+14155550123", "c", idempotency_key="order-7")
    keys = [r.headers["Idempotency-Key"] for r in seen]
    assert keys[0] != keys[1] and keys[2] == "order-7"


def test_429_is_retried_then_raised_as_rate_limited_with_its_problem() -> None:
    seen, handle = _answers(*(_problem(429, "slow down", **{"Retry-After": "0"}) for _ in range(3)))
    with _client(handle, max_retries=2) as pigeon, pytest.raises(RateLimited) as caught:
        pigeon.get("ntf_1")
    assert len(seen) == 3
    assert caught.value.status == 429 and caught.value.detail == "slow down"


def test_other_errors_are_raised_at_once_as_their_type() -> None:
    invalid = httpx.Response(
        422,
        json={
            "title": "Unprocessable Content",
            "status": 422,
            "detail": "to: bad",
            "errors": [{"field": "to", "reason": "bad"}],
        },
        headers={"content-type": PROBLEM},
    )
    seen, handle = _answers(
        invalid, _problem(409, "key used"), httpx.Response(502, text="bad gateway")
    )
    with _client(handle) as pigeon:
        with pytest.raises(Unprocessable) as caught:
            pigeon.send_sms("nope", "hi")
        assert caught.value.errors == [{"field": "to", "reason": "bad"}]
        with pytest.raises(Conflict):
            pigeon.send_sms("+14155550123", "hi")
        with pytest.raises(ServerError) as server:
            pigeon.get("ntf_1")
    assert len(seen) == 3  # none retried
    assert server.value.detail == "bad gateway"
    assert isinstance(server.value, ApiError)


async def test_the_async_client_retries_the_same_way() -> None:
    seen, handle = _answers(
        _problem(503, "broker down", **{"Retry-After": "0"}),
        httpx.ConnectError("refused"),
        _problem(503, "broker down"),
    )
    transport = httpx.MockTransport(handle)
    async with AsyncClient(
        "http://pigeon.test", "pk_test", transport=transport, backoff=0.0, max_retries=2
    ) as pigeon:
        with pytest.raises(ServiceUnavailable):
            await pigeon.send_sms("+14155550123", "hi")
    assert len(seen) == 3
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert _retry_after("7") == 7.0
    later = datetime.now(UTC) + timedelta(seconds=30)
    waited = _retry_after(format_datetime(later, usegmt=True))
    assert waited is not None and 25 <= waited <= 30
    assert _retry_after("not a date") is None
    assert _retry_after(None) is None


def test_a_client_without_a_key_says_which_setting_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIGEON_API_KEY", raising=False)
    with pytest.raises(ValueError, match="PIGEON_API_KEY"):
        Client("http://pigeon.test")
