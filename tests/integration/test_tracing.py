"""Traces across the broker: one notification, one trace, through real components.

Each stack in turn (the embedded SQLite default; Kafka + PostgreSQL with the
outbox relay): a sandbox provider over HTTP, the API served on a real port (so
the sandbox's signed status callbacks reach it), and the sender, projector and
relay running. Spans go to the SDK's in-memory exporter; the tests read the
tree back from parent links, and the events' headers from the bus itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pigeon import tracing
from pigeon.bootstrap import RELAY, Pigeon, build
from pigeon.bus.runner import ConsumerRunner
from pigeon.bus.sqlite import SqliteEventBus
from pigeon.config import Settings
from pigeon.domain.events import TOPIC_SMS_REQUESTED, TOPIC_STATUS, decode
from pigeon.errors import ConfigurationError
from pigeon.providers.port import SmsMessage
from pigeon.providers.twilio_lookup import best_match
from pigeon.sandbox import SandboxServer
from tests.integration.kafka_broker import KafkaBroker, kafka_stack_settings, running_broker
from tests.integration.kafka_reader import read_topic
from tests.integration.postgres import fresh_schema
from tests.support import eventually, free_port

SID = "AC" + "2" * 32
TOKEN = "trace-token"
#: the caller's own trace, which Pigeon must continue
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
TRACESTATE = "vendor=opaque"


@dataclass(frozen=True)
class Stack:
    """Where the test's Pigeon keeps its data and sends its events."""

    name: str
    data_dir: Path
    settings: dict[str, object] = field(default_factory=dict)
    broker: KafkaBroker | None = None


@pytest.fixture(params=("sqlite", "kafka+postgres"))
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """Each stack in turn (a broker and a schema of its own for Kafka + PostgreSQL)."""
    if request.param == "sqlite":
        yield Stack("sqlite", tmp_path)
        return
    with running_broker() as broker, fresh_schema() as database_url:
        yield Stack("kafka+postgres", tmp_path, kafka_stack_settings(broker, database_url), broker)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into an in-memory exporter; off again afterwards."""
    exporter = InMemorySpanExporter()
    assert tracing.configure("pigeon-test", {}, exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.disable()


@contextlib.asynccontextmanager
async def serving(stack: Stack) -> AsyncIterator[tuple[Pigeon, str, str]]:
    """Sandbox, Pigeon, its API on a real port and its workers: ``(pigeon, API URL, key)``."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    async with SandboxServer(account_sid=SID, auth_token=TOKEN, seed=11) as sandbox:
        settings = Settings(
            **{  # type: ignore[arg-type]
                "data_dir": stack.data_dir,
                "sms_provider_url": sandbox.url,
                "twilio_account_sid": SID,
                "twilio_auth_token": TOKEN,
                "public_url": api_url,  # the sandbox calls back the API below
                "auto_migrate": True,
                **stack.settings,
            }
        )
        pigeon = build(settings)
        await pigeon.start()
        _, key = await pigeon.store.create_api_key("acme")
        runners = [*await pigeon.workers("sms-sender"), *await pigeon.workers("status-projector")]
        if stack.broker is not None:
            runners += await pigeon.workers(RELAY)
        tasks = [asyncio.create_task(r.run()) for r in runners]
        server = uvicorn.Server(
            uvicorn.Config(
                pigeon.api(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
            )
        )
        serve = asyncio.create_task(server.serve())
        try:
            await asyncio.wait_for(
                asyncio.gather(
                    *(r.started.wait() for r in runners if isinstance(r, ConsumerRunner))
                ),
                60,
            )
            await eventually(lambda: server.started)
            yield pigeon, api_url, key
        finally:
            server.should_exit = True
            await serve
            for runner in runners:
                runner.request_stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            await pigeon.stop()


async def send(api_url: str, key: str, headers: dict[str, str] | None = None) -> str:
    """POST one SMS (the fast path's route); returns its id."""
    async with httpx.AsyncClient(base_url=api_url) as http:
        answer = await http.post(
            "/v1/notifications",
            json={"channel": "sms", "to": "+14155550123", "body": "traced"},
            headers={"Authorization": f"Bearer {key}", **(headers or {})},
        )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def delivered(api_url: str, key: str, nid: str) -> None:
    """Wait until the notification is projected ``delivered``."""

    async def done() -> bool:
        async with httpx.AsyncClient(base_url=api_url) as http:
            view = await http.get(
                f"/v1/notifications/{nid}", headers={"Authorization": f"Bearer {key}"}
            )
        return bool(view.json()["status"] == "delivered")

    await eventually(done, within=30)


def _projected(exporter: InMemorySpanExporter, event_type: str) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.name == f"process {TOPIC_STATUS}"
        and s.attributes is not None
        and s.attributes.get("pigeon.event_type") == event_type
    ]


def chain(exporter: InMemorySpanExporter, span: ReadableSpan) -> list[ReadableSpan]:
    """``span`` and its ancestors, nearest first, as far as recorded spans go."""
    by_id = {s.context.span_id: s for s in exporter.get_finished_spans() if s.context}
    found = [span]
    while found[-1].parent is not None and found[-1].parent.span_id in by_id:
        found.append(by_id[found[-1].parent.span_id])
    return found


def _group(span: ReadableSpan) -> Any:
    return (span.attributes or {}).get("messaging.consumer.group.name")


async def test_one_notification_is_one_trace_from_the_request_to_the_projection(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    """Given tracing on and a caller's traceparent, when one SMS is sent and delivered,
    then POST, commit, (relay,) sender, provider call, callback and projection are one
    trace, each span the child of the one before, under the caller's span."""
    async with serving(stack) as (_, api_url, key):
        nid = await send(api_url, key, {"traceparent": TRACEPARENT, "tracestate": TRACESTATE})
        await delivered(api_url, key, nid)
        await eventually(lambda: bool(_projected(spans, "SmsDelivered")), within=30)

    (projection,) = _projected(spans, "SmsDelivered")
    names = [s.name for s in chain(spans, projection)]
    relay = stack.broker is not None
    expected = [
        f"process {TOPIC_STATUS}",
        *([f"publish {TOPIC_STATUS}"] if relay else []),
        "POST /v1/providers/twilio/status",
        "send sms",
        f"process {TOPIC_SMS_REQUESTED}",
        *([f"publish {TOPIC_SMS_REQUESTED}"] if relay else []),
        "store commit",
        "POST /v1/notifications",
    ]
    assert names == expected
    tree = chain(spans, projection)
    assert {format(s.context.trace_id, "032x") for s in tree if s.context} == {TRACE_ID}
    root = tree[-1]
    assert root.parent is not None and format(root.parent.span_id, "016x") == CALLER_SPAN
    assert root.parent.is_remote
    # the consumer on the way is the sender's group, the last one the projector's
    (consumed,) = [s for s in tree if s.name == f"process {TOPIC_SMS_REQUESTED}"]
    assert _group(consumed) == "sms-sender"
    assert _group(projection) == "status-projector"
    assert dict(root.attributes or {})["http.response.status_code"] == 202
    # the sender's own SmsSent is projected as a child of its provider call's trace too
    (sent,) = _projected(spans, "SmsSent")
    assert "send sms" in [s.name for s in chain(spans, sent)]
    assert {s.context.trace_id for s in chain(spans, sent) if s.context} == {int(TRACE_ID, 16)}


async def test_a_request_without_traceparent_starts_its_own_trace(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    """Given tracing on and no traceparent, the API's span is a new root and the
    sender's span is in that same trace."""
    async with serving(stack) as (_, api_url, key):
        nid = await send(api_url, key)
        await delivered(api_url, key, nid)
        await eventually(lambda: bool(_projected(spans, "SmsDelivered")), within=30)
    (projection,) = _projected(spans, "SmsDelivered")
    tree = chain(spans, projection)
    assert tree[-1].name == "POST /v1/notifications"
    assert tree[-1].parent is None
    assert len({s.context.trace_id for s in tree if s.context}) == 1
    assert "send sms" in [s.name for s in tree]


async def _events_headers(stack: Stack, pigeon: Pigeon, nid: str) -> dict[str, dict[str, str]]:
    """Every event of notification ``nid`` on the bus: event type -> its headers."""
    found: dict[str, dict[str, str]] = {}
    wanted = {"SmsRequested", "SmsSending", "SmsSent", "SmsDelivered"}
    if isinstance(pigeon.bus, SqliteEventBus):
        bus = pigeon.bus

        async def read_all() -> bool:
            for topic in (TOPIC_SMS_REQUESTED, TOPIC_STATUS):
                for message in await bus.read(topic):
                    event = decode(message.value)
                    if event.notification_id == nid:
                        found[event.type_name] = dict(message.headers)
            return wanted <= set(found)

        await eventually(read_all, within=30)
        return found
    assert stack.broker is not None
    for topic in (TOPIC_SMS_REQUESTED, TOPIC_STATUS):
        need = {"SmsRequested"} if topic == TOPIC_SMS_REQUESTED else wanted - {"SmsRequested"}

        def has_all(records: Any, need: set[str] = need) -> bool:
            mine = [decode(r.value) for r in records]
            return need <= {e.type_name for e in mine if e.notification_id == nid}

        for record in await read_topic(stack.broker.bootstrap_servers, topic, has_all):
            event = decode(record.value)
            if event.notification_id == nid:
                found[event.type_name] = {k: v.decode() for k, v in record.headers}
    return found


async def test_with_tracing_off_events_carry_no_trace_header_unless_the_caller_sent_one(
    stack: Stack,
) -> None:
    """Given tracing off, an SMS sent without traceparent has none on any of its events,
    and one sent with a traceparent has exactly that one on every event (passed through,
    the provider's callback included)."""
    assert not tracing.ENABLED
    async with serving(stack) as (pigeon, api_url, key):
        plain = await send(api_url, key)
        passed = await send(api_url, key, {"traceparent": TRACEPARENT, "tracestate": TRACESTATE})
        await delivered(api_url, key, plain)
        await delivered(api_url, key, passed)
        plain_headers = await _events_headers(stack, pigeon, plain)
        passed_headers = await _events_headers(stack, pigeon, passed)
    for event_type, headers in plain_headers.items():
        assert "traceparent" not in headers, event_type
        assert "tracestate" not in headers, event_type
    for event_type, headers in passed_headers.items():
        assert headers.get("traceparent") == TRACEPARENT, event_type
        # the callback URL carries no tracestate (docs/tracing.md): the callback's event lacks it
        state = None if event_type == "SmsDelivered" else TRACESTATE
        assert headers.get("tracestate") == state, event_type


def test_with_nothing_configured_no_sdk_is_loaded() -> None:
    """Given no OTEL_* variables, configure() keeps tracing off and the SDK unimported,
    while an API process has handled a request."""
    script = (
        "import sys, asyncio, httpx, tempfile\n"
        "from pigeon import tracing\n"
        "from pigeon.bootstrap import build\n"
        "from pigeon.config import Settings\n"
        "assert tracing.configure('pigeon-api', {}) is False\n"
        "async def main():\n"
        "    pigeon = build(Settings(data_dir=tempfile.mkdtemp(), auto_migrate=True))\n"
        "    await pigeon.start()\n"
        "    transport = httpx.ASGITransport(app=pigeon.api())\n"
        "    async with httpx.AsyncClient(transport=transport, base_url='http://x') as http:\n"
        "        assert (await http.post('/v1/notifications', json={}, headers={\n"
        "            'traceparent': '" + TRACEPARENT + "'})).status_code == 401\n"
        "    await pigeon.stop()\n"
        "asyncio.run(main())\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk'))\n"
        "assert not loaded and not tracing.ENABLED, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
    ],
)
def test_the_otel_variables_switch_tracing_on(environ: dict[str, str], on: bool) -> None:
    """Tracing is on exactly when an exporter is asked for and the SDK is not disabled."""
    try:
        assert tracing.configure("pigeon-api", environ) is on
        assert tracing.ENABLED is on
    finally:
        tracing.disable()


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    ],
)
def test_an_unusable_otel_variable_is_an_error_naming_it(
    environ: dict[str, str], named: str
) -> None:
    """A value Pigeon cannot act on is refused with the variable's name, tracing stays off."""
    with pytest.raises(ConfigurationError, match=named):
        tracing.configure("pigeon-api", environ)
    assert not tracing.ENABLED


@pytest.mark.parametrize(
    "value",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "not a traceparent",
    ],
)
def test_an_invalid_incoming_traceparent_is_not_passed_on(value: str) -> None:
    """Only a well-formed W3C traceparent travels on the events."""
    assert tracing.passthrough(value) is None
    assert tracing.passthrough(TRACEPARENT, TRACESTATE) == {
        "traceparent": TRACEPARENT,
        "tracestate": TRACESTATE,
    }


def test_a_look_up_of_an_earlier_attempt_ignores_its_callback_traceparent() -> None:
    """An attempt that never finished is found at the provider although the retry's
    callback URL has another traceparent; another notification's URL still differs."""
    base = "http://api.test/v1/providers/twilio/status?n=ntf_1"
    earlier = {
        "to": "+14155550123",
        "from": "+15005550006",
        "body": "traced",
        "direction": "outbound-api",
        "date_created": "Mon, 30 Nov 2026 19:00:00 +0000",
        "status_callback": f"{base}&traceparent={TRACEPARENT}",
    }
    cutoff = datetime(2026, 11, 30, 18, tzinfo=UTC)
    retry = f"{base}&traceparent=00-{TRACE_ID}-{'1' * 16}-01"
    message = SmsMessage(to="+14155550123", body="traced", status_callback=retry)
    assert best_match([earlier], message, "+15005550006", cutoff) is not None
    other = SmsMessage(
        to="+14155550123", body="traced", status_callback=retry.replace("ntf_1", "ntf_2")
    )
    assert best_match([earlier], other, "+15005550006", cutoff) is None
