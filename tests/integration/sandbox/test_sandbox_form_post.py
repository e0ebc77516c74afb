"""The sandbox's callback poster against real HTTP servers on loopback.

aiohttp's server stands for a well-behaved receiver (Pigeon's API is uvicorn);
a raw asyncio server answers what a real one may: chunked bodies, bodies that
run to the close, ``Connection: close``, silence, garbage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from pigeon.sandbox.form_post import FormPoster, FormPostError

FORM = {"MessageSid": "SM0123", "MessageStatus": "delivered", "To": "+15551230000", "x y": "a&b=c"}

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Receiver:
    """An aiohttp server recording each post's form, headers and connection."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], dict[str, str], object]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.posts.append((form, dict(request.headers), request.transport))
        if request.query.get("chunked"):
            response = web.StreamResponse(status=201)
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b"part one, ")
            await response.write(b"part two")
            await response.write_eof()
            return response
        return web.Response(status=int(request.query.get("status", "200")), text="ok")

    def connections(self) -> int:
        return len({id(transport) for _, _, transport in self.posts})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/cb", recv.handle)
    runner = web.AppRunner(app, keepalive_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recv.url = f"http://127.0.0.1:{port}/cb"
    yield recv
    await runner.cleanup()


@pytest.fixture
async def poster() -> AsyncIterator[FormPoster]:
    posting = FormPoster(limit=4, timeout_seconds=1.0)
    yield posting
    await posting.close()


async def raw_server(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    """A raw server running ``handler`` per connection; its URL and a connection counter."""
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/cb", accepted


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


async def test_the_form_and_headers_arrive_and_one_connection_serves_many_posts(
    receiver: Receiver, poster: FormPoster
) -> None:
    """Each post arrives urlencoded with its headers; sequential posts share a connection."""
    statuses = [
        await poster.post(receiver.url, FORM, {"X-Twilio-Signature": f"sig{n}"}) for n in range(3)
    ]

    assert statuses == [200, 200, 200]
    assert [form for form, _, _ in receiver.posts] == [FORM] * 3
    assert [headers["X-Twilio-Signature"] for _, headers, _ in receiver.posts] == [
        "sig0",
        "sig1",
        "sig2",
    ]
    assert receiver.posts[0][1]["Content-Type"] == "application/x-www-form-urlencoded"
    assert receiver.connections() == 1


async def test_the_status_is_the_answers_and_an_error_status_keeps_the_connection(
    receiver: Receiver, poster: FormPoster
) -> None:
    assert await poster.post(receiver.url + "?status=503", FORM, {}) == 503
    assert await poster.post(receiver.url + "?status=204", FORM, {}) == 204
    assert await poster.post(receiver.url, FORM, {}) == 200
    assert receiver.connections() == 1


async def test_a_chunked_answer_is_read_to_its_end_and_the_connection_reused(
    receiver: Receiver, poster: FormPoster
) -> None:
    assert await poster.post(receiver.url + "?chunked=1", FORM, {}) == 201
    assert await poster.post(receiver.url, FORM, {}) == 200
    assert receiver.connections() == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_lost_post(
    receiver: Receiver, poster: FormPoster
) -> None:
    """The receiver closes idle connections after 0.2 s: the next post goes on a new one, once."""
    assert await poster.post(receiver.url, FORM, {}) == 200
    await asyncio.sleep(0.5)

    assert await poster.post(receiver.url, FORM, {}) == 200
    assert len(receiver.posts) == 2
    assert receiver.connections() == 2


async def test_a_kept_connection_that_dies_unseen_is_retried_once_on_a_new_one(
    poster: FormPoster,
) -> None:
    """The server reads the second request and closes without a word: sent once more."""
    requests: list[bytes] = []

    async def first_answers_then_drops(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        requests.append(await read_request(r))
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await w.drain()
        if len(requests) == 1:
            requests.append(await read_request(r))  # then hang up, unanswered
            return
        await asyncio.sleep(1)

    server, url, accepted = await raw_server(first_answers_then_drops)
    async with server:
        assert await poster.post(url, FORM, {}) == 200
        assert await poster.post(url, FORM, {}) == 200
    assert len(accepted) == 2
    assert len(requests) == 3  # the unanswered one was posted again


async def test_a_body_that_runs_to_the_close_and_connection_close_are_not_reused(
    poster: FormPoster,
) -> None:
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end",
            b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        ]
    )

    async def answer_once(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(next(answers))
        await w.drain()

    server, url, accepted = await raw_server(answer_once)
    async with server:
        assert [await poster.post(url, FORM, {}) for _ in range(3)] == [200, 202, 200]
        assert len(accepted) == 3


async def test_a_server_that_never_answers_times_out(poster: FormPoster) -> None:
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server, url, _ = await raw_server(silent)
    async with server:
        with pytest.raises(TimeoutError):
            await poster.post(url, FORM, {})


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_an_answer_that_is_not_http_raises_a_post_error(
    poster: FormPoster, answer: bytes
) -> None:
    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(answer)
        await w.drain()

    server, url, _ = await raw_server(garbage)
    async with server:
        with pytest.raises(FormPostError):
            await poster.post(url, FORM, {})


async def test_nobody_listening_and_urls_it_does_not_post_to_raise_a_post_error(
    poster: FormPoster,
) -> None:
    server, url, _ = await raw_server(read_request)  # type: ignore[arg-type]
    server.close()
    await server.wait_closed()

    with pytest.raises(FormPostError, match="cannot connect"):
        await poster.post(url, FORM, {})
    for bad in (
        "https://example.com/cb",
        "ftp://example.com/",
        "http:///no-host",
        "http://127.0.0.1:99999/cb",
        "http://user:secret@127.0.0.1:1/cb",  # basic auth: aiohttp's to send
        "http://127.0.0.1:1/cb HTTP/1.1\r\nX-Injected: 1",
    ):
        assert not FormPoster.handles(bad)
        with pytest.raises(FormPostError, match="not a plain http"):
            await poster.post(bad, FORM, {})
    assert FormPoster.handles("http://127.0.0.1:1/cb?a=b")
    assert FormPoster.handles("http://[::1]:8080/cb")
