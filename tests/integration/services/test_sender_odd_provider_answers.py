"""Answers no provider should give end as a failed notification quoting them, not a crash.

The real sender and store, on each stack, against a scripted provider on
127.0.0.1 that answers every request with the same odd answer.
"""

from __future__ import annotations

import pytest
from aiohttp import web
from services_testkit import Stack
from sqlalchemy import create_engine, text
from test_sms_sender_service import running
from tests.support import eventually, serve_http

from pigeon.bootstrap import Pigeon
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


@pytest.mark.parametrize(("status", "body", "quoted"), ODD_ANSWERS.values(), ids=ODD_ANSWERS)
async def test_an_odd_provider_answer_fails_the_notification_quoting_the_answer(
    stack: Stack, status: int, body: bytes, quoted: str
) -> None:
    """The sender survives the answer; the notification fails with the answer quoted, short."""
    runner, url = await _scripted(status, body)
    # a sender that gives up after two quick attempts, against the scripted provider
    quick = {"sms_provider_url": url, "retry_base_seconds": 0.02, "retry_max_seconds": 0.05}
    try:
        async with running(stack, max_attempts=2, extra=quick) as (pigeon, _sandbox):
            await _fails_quoting(pigeon, quoted)
    finally:
        await runner.cleanup()


async def _fails_quoting(pigeon: Pigeon, quoted: str) -> None:
    """A notification fails, its last error and its attempt quoting the answer."""
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
