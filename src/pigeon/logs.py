"""Logging set-up: readable lines in development, one JSON object per line in production.

A record's ids travel as fields, never inside its message: callers pass them with
``extra=`` (``log.info("sent", extra={"notification_id": nid})``) and both formats
print every such field: JSON as keys of the object, the console format as
``key=value`` after the message. The message stays a short human sentence.

Phone numbers are masked in everything a line shows (message, fields, traceback):
the formatters are the last stop before a line leaves the process, so a number
that slipped into an exception's text is masked too. Message bodies are never
passed to a log call (``docs/logging.md``).

``trace_id``: tracing registers a source with :func:`set_trace_id_source`; the
formatters ask it only for records that carry no ``trace_id`` of their own.
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
import time
from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pigeon.domain.phone import mask_phone

_STANDARD = vars(logging.LogRecord("", 0, "", 0, "", None, None))
#: how many attributes LogRecord.__init__ sets: ``extra=`` keys come after them (a
#: record's __dict__ keeps its order), so a record's fields are read without
#: looking at the twenty-odd standard attributes first
_FIRST_EXTRA = len(_STANDARD)
#: the attributes every LogRecord has; anything else on a record came from ``extra=``
_RESERVED = frozenset(_STANDARD) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's coloured copy of the message
}
# '+' (or '%2B', URL-encoded) then 6+ digits, optionally split by spaces, dashes,
# dots or brackets: Pigeon handles numbers only in E.164, so every number it
# could log starts with '+'. Digits without a '+' (ids, offsets, epoch times) stay.
_PHONE = re.compile(r"(\+|%2[bB])\d(?:[ \-.()]{0,2}\d){5,}")
_NOT_DIGITS = re.compile(r"\D")
_NEEDS_QUOTES = re.compile(r'[\s"=]')

_trace_id_source: Callable[[], str | None] | None = None


def set_trace_id_source(source: Callable[[], str | None] | None) -> None:
    """Have the formatters fill ``trace_id`` from ``source()`` for records without one.

    ``source`` answers the current trace id (``None`` outside a trace); ``None``
    removes the source. It is called once per formatted record, so keep it cheap.
    """
    global _trace_id_source  # noqa: PLW0603  # one process-wide hook, set once by tracing
    _trace_id_source = source


def _mask_match(match: re.Match[str]) -> str:
    prefix = match.group(1)
    masked = mask_phone("+" + _NOT_DIGITS.sub("", match.group(0)[len(prefix) :]))
    return prefix + masked[1:]


def mask_phones(text: str) -> str:
    """``text`` with every phone number in it masked (``+14155550123`` -> ``+1415***0123``)."""
    if "+" not in text and "%2" not in text:  # the usual line: no regex at all
        return text
    return _PHONE.sub(_mask_match, text)


def fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields a record carries (its ``extra=``), phone numbers masked, plus ``trace_id``."""
    found: dict[str, object] = {}
    for key, value in itertools.islice(record.__dict__.items(), _FIRST_EXTRA, None):
        if value is None or key in _RESERVED:  # only the fields a record has
            continue
        if type(value) is str:
            found[key] = mask_phones(value)
        elif isinstance(value, int | float):  # bool is an int
            found[key] = value
        else:  # a list or an object as text, masked like a string
            found[key] = mask_phones(str(value))
    if _trace_id_source is not None and found.get("trace_id") is None:
        trace_id = _trace_id_source()
        if trace_id:
            found["trace_id"] = trace_id
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, milliseconds), ``level``, ``logger``,
    ``message``, then the record's fields; ``exc`` holds a traceback."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # one strftime per second, not per line
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of JSON."""
        payload: dict[str, object] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_phones(record.getMessage()),
        }
        payload.update(fields(record))
        if record.exc_info:
            payload["exc"] = mask_phones(self.formatException(record.exc_info))
        if record.stack_info:
            payload["stack"] = mask_phones(self.formatStack(record.stack_info))
        return orjson.dumps(payload, default=str).decode()


def _console_value(value: object) -> str:
    text = str(value)
    if not text or _NEEDS_QUOTES.search(text):
        return orjson.dumps(text).decode()  # quoted, so that key=value stays one token
    return text


class ConsoleFormatter(logging.Formatter):
    """``19:45:01.123 INFO    pigeon.x: a sentence key=value …`` in local time."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._clock = ""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one readable line (a traceback on the lines after it)."""
        second = int(record.created)
        if second != self._second:  # one strftime per second, not per line
            self._clock = time.strftime("%H:%M:%S", time.localtime(second))
            self._second = second
        line = (
            f"{self._clock}.{int(record.msecs):03d} "
            f"{record.levelname:<7} {record.name}: {mask_phones(record.getMessage())}"
        )
        extra = fields(record)
        if extra:
            line += " " + " ".join(f"{key}={_console_value(v)}" for key, v in extra.items())
        if record.exc_info:
            line += "\n" + mask_phones(self.formatException(record.exc_info))
        if record.stack_info:
            line += "\n" + mask_phones(self.formatStack(record.stack_info))
        return line


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    """Install one handler on the root logger (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # a library's warning is a line in the same format
    # Neither format shows where a call was made nor which thread or process made it:
    # not collecting them halves what a record costs (the logging HOWTO's "Optimization";
    # one line per SMS is logged at its final state)
    logging._srcfile = None  # the documented switch for caller look-ups
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for noisy in ("uvicorn.access", "aiosqlite", "sqlalchemy.engine", "alembic", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


access_log = logging.getLogger("pigeon.access")


class AccessLog:
    """ASGI middleware: one line per HTTP request (``PIGEON_ACCESS_LOG``).

    Fields ``method``, ``path`` (the route's template, e.g.
    ``/v1/notifications/{notification_id}``, so that ids and query strings stay
    out; the raw path when no route matched), ``status`` and ``duration_ms``.
    Installed only when the setting is on: off, requests pay nothing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or scope["path"]
            method = scope["method"]
            access_log.info(
                "%s %s %d",
                method,
                path,
                status,
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )
