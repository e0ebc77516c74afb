"""Answers no provider should give end as a failed notification quoting them, not a crash.

The real sender and store (SQLite) against a scripted provider on 127.0.0.1
that answers every request with the same odd answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from sqlalchemy import create_engine, text
from tests.support import eventually, serve_http

from pigeon.bootstrap import Pigeon, build
from pigeon.config import Settings
from pigeon.domain.notification import Notification

#: (HTTP status, body, the start of the escaped answer the error must quote)
ODD_ANSWERS = {
    "400-html-with-nul-and-5kb": (400, b"<html>\x00" + b"x" * 5000, "answer b'<html>\\x00xxx"),
    "200-truncated-json": (200, b'{"sid": "SM', 'answer b\'{"sid": "SM\''),
}


async def _scripted(status: int, body: bytes) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, body=body)

    return await serve_http(handle)


@pytest.fixture
def settings(tmp_path: object) -> Callable[[str], Settings]:
    """Settings for a sender that gives up after two quick attempts."""

    def make(provider_url: str) -> Settings:
        return Settings(
            data_dir=tmp_path,  # type: ignore[arg-type]
            sms_provider_url=provider_url,
            retry_base_seconds=0.02,
            retry_max_seconds=0.05,
            sms_max_attempts=2,
            provider_timeout_seconds=2,
            public_url="http://127.0.0.1:9",
            auto_migrate=True,
        )

    return make


@pytest.fixture
async def pigeon_against() -> AsyncIterator[Callable[[Settings], Awaitable[Pigeon]]]:
    """Starts Pigeon with its sender and projector running; stops them afterwards."""
    started: list[tuple[Pigeon, list[asyncio.Task[None]], list[object]]] = []

    async def start(settings: Settings) -> Pigeon:
        pigeon = build(settings)
        await pigeon.start()
        runners = [*await pigeon.workers("sms-sender"), *await pigeon.workers("status-projector")]
        tasks = [asyncio.create_task(r.run()) for r in runners]
        started.append((pigeon, tasks, list(runners)))
        return pigeon

    yield start
    for pigeon, tasks, runners in started:
        for runner in runners:
            runner.request_stop()  # type: ignore[attr-defined]
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await pigeon.stop()


@pytest.mark.parametrize(("status", "body", "quoted"), ODD_ANSWERS.values(), ids=ODD_ANSWERS)
async def test_an_odd_provider_answer_fails_the_notification_quoting_the_answer(
    settings: Callable[[str], Settings],
    pigeon_against: Callable[[Settings], Awaitable[Pigeon]],
    status: int,
    body: bytes,
    quoted: str,
) -> None:
    """The sender survives the answer; the notification fails with the answer quoted, short."""
    runner, url = await _scripted(status, body)
    try:
        pigeon = await pigeon_against(settings(url))
        account = await pigeon.store.ensure_account("acme")
        notification = Notification.new_sms(account_id=account.id, to="+14155550123", body="hi")
        await pigeon.store.accept(notification)

        async def failed() -> bool:
            view = await pigeon.store.get_view(account.id, notification.id)
            return view is not None and view.notification.status.value == "failed"

        await eventually(failed, within=20.0, interval=0.02)
        view = await pigeon.store.get_view(account.id, notification.id)
        assert view is not None and view.last_error is not None
        assert quoted in view.last_error, view.last_error
        assert len(view.last_error) < 2000
        engine = create_engine(pigeon.settings.database.sqlalchemy_url(asynchronous=False))
        try:
            with engine.connect() as conn:
                errors = conn.execute(
                    text("SELECT error FROM send_attempts WHERE notification_id = :n"),
                    {"n": notification.id},
                ).scalars()
                assert any(quoted in (e or "") for e in errors)
        finally:
            engine.dispose()
    finally:
        await runner.cleanup()
