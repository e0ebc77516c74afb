"""The log formats: JSON lines and console lines, ids as fields, phone numbers masked."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pigeon.logs import (
    AccessLog,
    ConsoleFormatter,
    JsonFormatter,
    configure_logging,
    mask_phones,
    set_trace_id_source,
)
from pigeon.store.projection import FinalState

#: 2026-11-30T19:45:01.123Z
AT = datetime(2026, 11, 30, 19, 45, 1, 123_000, tzinfo=UTC).timestamp()


def _record(
    message: str,
    *args: object,
    level: int = logging.INFO,
    exc: BaseException | None = None,
    **extra: object,
) -> logging.LogRecord:
    """A record as ``logging.getLogger("pigeon.test").log(level, message, *args, extra=extra)``
    would make it, created at :data:`AT`."""
    record = logging.getLogger("pigeon.test").makeRecord(
        "pigeon.test",
        level,
        __file__,
        1,
        message,
        args,
        (type(exc), exc, exc.__traceback__) if exc is not None else None,
        extra=extra,
    )
    record.created = AT
    record.msecs = 123.0
    return record


def _json(record: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = orjson.loads(line)
    return parsed


@pytest.fixture(autouse=True)
def _no_trace_id_source() -> Iterator[None]:
    """Every test starts and ends without a trace id source."""
    set_trace_id_source(None)
    yield
    set_trace_id_source(None)


def test_a_json_line_has_a_millisecond_utc_timestamp_level_logger_message_and_fields() -> None:
    """The ids passed with ``extra=`` are keys of the object; the message keeps its words."""
    record = _record(
        "sent %s",
        "now",
        notification_id="ntf_1",
        account_id="acc_1",
        event_id="evt_1",
        group="sms-sender",
        partition=3,
        provider="primary",
    )
    assert _json(record) == {
        "ts": "2026-11-30T19:45:01.123Z",
        "level": "info",
        "logger": "pigeon.test",
        "message": "sent now",
        "notification_id": "ntf_1",
        "account_id": "acc_1",
        "event_id": "evt_1",
        "group": "sms-sender",
        "partition": 3,
        "provider": "primary",
    }


def test_a_json_line_has_only_the_fields_the_record_carries() -> None:
    """No id given, no key; a field given as None is left out too."""
    assert set(_json(_record("hello", provider=None))) == {"ts", "level", "logger", "message"}


def test_phone_numbers_are_masked_in_the_message_in_fields_and_in_tracebacks() -> None:
    """Whatever way a number reaches a record, the line shows it masked."""
    try:
        raise ValueError("The 'To' number +14155550123 is not a valid phone number.")
    except ValueError as error:
        record = _record(
            "to %s failed",
            "+14155550123",
            exc=error,
            to="+14155550123",
            url="https://api.example/Messages.json?To=%2B14155550123",
            numbers=["+4915123456789"],
        )
    line = JsonFormatter().format(record)
    assert "4155550123" not in line
    assert "15123456789" not in line
    parsed = orjson.loads(line)
    assert parsed["message"] == "to +1415***0123 failed"
    assert parsed["to"] == "+1415***0123"
    assert parsed["url"] == "https://api.example/Messages.json?To=%2B1415***0123"
    assert parsed["numbers"] == "['+4915***6789']"
    assert "The 'To' number +1415***0123 is not a valid phone number." in parsed["exc"]


def test_masking_finds_numbers_written_with_separators_and_leaves_other_digits() -> None:
    """Spaced or dashed numbers are masked; ids, offsets and epoch times are not numbers."""
    assert mask_phones("call +1 415-555-0123 now") == "call +1415***0123 now"
    assert mask_phones("+44 (20) 7946 0958") == "+4420***0958"
    assert mask_phones("short +1234567") == "short +1***"
    untouched = "offset 1764531901123 at +00:00, ntf_01JD4 retry +1.5s, sms.requested[3]"
    assert mask_phones(untouched) == untouched


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+12345678", "+12***678"),
        ("+123456789", "+123***789"),
        ("+3541234567", "+354***4567"),
        ("+14155550123", "+1415***0123"),
        ("+123456789012345", "+1234***2345"),
    ],
)
def test_every_masked_number_hides_at_least_three_digits(number: str, masked: str) -> None:
    """A short number is not shown nearly whole: fewer digits each side, three hidden."""
    assert mask_phones(f"to {number}.") == f"to {masked}."
    shown = sum(c.isdigit() for c in masked)
    assert shown <= len(number) - 1 - 3


def test_the_trace_id_comes_from_the_source_when_the_record_has_none() -> None:
    """A registered source fills ``trace_id``; a record's own ``trace_id`` wins."""
    calls: list[None] = []

    def source() -> str | None:
        calls.append(None)
        return "4bf92f3577b34da6a3ce929d0e0e4736"

    assert "trace_id" not in _json(_record("before"))
    set_trace_id_source(source)
    assert _json(_record("in a trace"))["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert _json(_record("its own", trace_id="abc"))["trace_id"] == "abc"
    assert len(calls) == 1


def test_no_trace_id_field_when_the_source_knows_no_trace() -> None:
    """Outside a trace the source answers None, and the line has no ``trace_id``."""
    set_trace_id_source(lambda: None)
    assert "trace_id" not in _json(_record("outside"))


def test_a_console_line_is_readable_with_milliseconds_and_fields_after_the_message() -> None:
    """``HH:MM:SS.mmm LEVEL logger: message key=value``; a value with spaces is quoted."""
    record = _record(
        "notification %s", "failed", notification_id="ntf_1", error="HTTP 400, +14155550123"
    )
    clock = datetime.fromtimestamp(AT).strftime("%H:%M:%S")  # local time, for people
    assert ConsoleFormatter().format(record) == (
        f"{clock}.123 INFO    pigeon.test: notification failed "
        'notification_id=ntf_1 error="HTTP 400, +1415***0123"'
    )


def test_a_console_line_masks_its_traceback() -> None:
    """The traceback follows the line, numbers masked."""
    try:
        raise RuntimeError("no route to +14155550123")
    except RuntimeError as error:
        text = ConsoleFormatter().format(_record("boom", level=logging.ERROR, exc=error))
    assert text.splitlines()[0].endswith("ERROR   pigeon.test: boom")
    assert "RuntimeError: no route to +1415***0123" in text
    assert "4155550123" not in text


_SWITCHES = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The root logger's handlers and level, and logging's switches, restored after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    switches = {name: getattr(logging, name) for name in _SWITCHES}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)
    for name, value in switches.items():
        setattr(logging, name, value)


@pytest.mark.usefixtures("root_logging")
@pytest.mark.parametrize(
    ("fmt", "formatter"), [("json", JsonFormatter), ("console", ConsoleFormatter)]
)
def test_configure_logging_installs_one_handler_of_the_chosen_format(
    fmt: str, formatter: type[logging.Formatter]
) -> None:
    """Called twice, it still leaves one handler on the root logger, with the format asked for."""
    configure_logging("warning", fmt)
    configure_logging("warning", fmt)
    root = logging.getLogger()
    assert len(root.handlers) == 1
    assert type(root.handlers[0].formatter) is formatter
    assert root.level == logging.WARNING


def _capture(logger: logging.Logger) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    return stream, handler


@pytest.fixture
def final_lines() -> Iterator[io.StringIO]:
    """What ``pigeon.notifications`` logs, as JSON lines."""
    logger = logging.getLogger("pigeon.notifications")
    stream, handler = _capture(logger)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_final_state_is_one_info_line_with_its_ids_as_fields(final_lines: io.StringIO) -> None:
    """Each notification that reached its final state is one line; a canceled one has no
    provider."""
    FinalState.log_all(
        [
            FinalState("ntf_1", "acc_1", "delivered", 2, "primary"),
            FinalState("ntf_2", "acc_1", "canceled", 0, None),
        ]
    )
    lines = [orjson.loads(line) for line in final_lines.getvalue().splitlines()]
    assert [{k: v for k, v in line.items() if k != "ts"} for line in lines] == [
        {
            "level": "info",
            "logger": "pigeon.notifications",
            "message": "notification delivered",
            "notification_id": "ntf_1",
            "account_id": "acc_1",
            "status": "delivered",
            "attempts": 2,
            "provider": "primary",
        },
        {
            "level": "info",
            "logger": "pigeon.notifications",
            "message": "notification canceled",
            "notification_id": "ntf_2",
            "account_id": "acc_1",
            "status": "canceled",
            "attempts": 0,
        },
    ]


def test_final_states_log_nothing_when_info_is_off(final_lines: io.StringIO) -> None:
    """With the logger above INFO the lines are not even built."""
    logging.getLogger("pigeon.notifications").setLevel(logging.WARNING)
    FinalState.log_all([FinalState("ntf_1", "acc_1", "delivered", 1, "primary")])
    assert final_lines.getvalue() == ""


async def _thing(request: Request) -> Response:
    return PlainTextResponse("ok", status_code=201)


async def _broken(request: Request) -> Response:
    raise RuntimeError("a bug")


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    """What ``pigeon.access`` logs, as JSON lines."""
    logger = logging.getLogger("pigeon.access")
    stream, handler = _capture(logger)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_the_access_log_has_one_line_per_request_with_the_route_template(
    access_lines: io.StringIO,
) -> None:
    """Method, the route's template (not the id in the path), status and duration."""
    app = Starlette(
        routes=[Route("/things/{thing_id}", _thing), Route("/broken", _broken, methods=["POST"])],
    )
    app.add_middleware(AccessLog)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/things/ntf_42?to=%2B14155550123")).status_code == 201
        assert (await client.get("/nowhere/ntf_43")).status_code == 404
        assert (await client.post("/broken")).status_code == 500
    lines = [orjson.loads(line) for line in access_lines.getvalue().splitlines()]
    assert [(r["method"], r["path"], r["status"], r["message"]) for r in lines] == [
        ("GET", "/things/{thing_id}", 201, "GET /things/{thing_id} 201"),
        ("GET", "/nowhere/ntf_43", 404, "GET /nowhere/ntf_43 404"),
        ("POST", "/broken", 500, "POST /broken 500"),
    ]
    assert all(isinstance(r["duration_ms"], float) and r["duration_ms"] >= 0 for r in lines)
    assert "4155550123" not in access_lines.getvalue()


def test_the_formatters_are_what_configure_logging_writes_to_stderr(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record logged after ``configure_logging(fmt="json")`` reaches stderr as one JSON line."""
    configure_logging("INFO", "json")
    logging.getLogger("pigeon.test").info("hello", extra={"notification_id": "ntf_9"})
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert orjson.loads(line)["notification_id"] == "ntf_9"
