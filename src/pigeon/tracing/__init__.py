"""Traces across the broker with OpenTelemetry, opt-in by the standard ``OTEL_*`` variables.

One notification makes one trace: ``POST /v1/notifications`` → ``store commit`` →
(``publish sms.requested``, the outbox relay on Kafka) → ``process sms.requested``
(the sender's group, and the usage meter's and projector's) → ``send sms`` (the
provider call) → ``POST /v1/providers/twilio/status`` (the provider's callback)
→ ``process notification.status`` (the projector). Between processes the W3C
trace context travels in every event's message headers (``traceparent``, and
``tracestate`` when there is one), on both buses; a provider cannot send headers,
so the sender adds ``traceparent`` to the per-notification status-callback URL and
the API continues from it.

Off unless configured (:func:`configure`, which the CLI calls with the process's
service name): with no ``OTEL_TRACES_EXPORTER`` and no OTLP endpoint nothing of
OpenTelemetry is even imported, and the hot path pays one check of the module-level
:data:`ENABLED` before any span or header work. An incoming ``traceparent`` is then
still passed through on the events, unchanged, so that a caller's own trace can
follow them.

The ``OTEL_*`` variables are OpenTelemetry's, read by its SDK as well (sampler,
endpoint, headers, batch sizes), not Pigeon settings; see ``docs/tracing.md``.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pigeon import __version__
from pigeon.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

#: whether spans are made; read by the hot path before anything else (one global look-up)
ENABLED = False

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: the exporters ``OTEL_TRACES_EXPORTER`` may name
EXPORTERS = ("otlp", "console", "none")
_OTLP_PROTOCOLS = ("grpc", "http/protobuf")
_TRUE = ("true", "1", "yes", "on")

# version 00 layout; version ff, an all-zero trace id or parent id are invalid (W3C)
_TRACEPARENT_RE = re.compile(
    r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
)
_MAX_TRACESTATE = 512

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_propagator: Any = None


def configure(
    service_name: str,
    environ: Mapping[str, str] | None = None,
    *,
    exporter: SpanExporter | None = None,
) -> bool:
    """Turn tracing on if the ``OTEL_*`` variables ask for it; True when it is on.

    ``service_name`` is the default of ``OTEL_SERVICE_NAME`` (``pigeon-api``,
    ``pigeon-sms-sender`` …). ``exporter``: export to it at once, whatever the
    variables say (tests: the SDK's in-memory exporter). A value Pigeon cannot act
    on is a :class:`~pigeon.errors.ConfigurationError` naming the variable.
    """
    global ENABLED, _tracer, _provider, _propagator  # noqa: PLW0603  # process-wide switch
    env = os.environ if environ is None else environ
    names = _exporter_names(env) if exporter is None else ["given"]
    if not names:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError as exc:
        raise ConfigurationError(
            "OTEL_TRACES_EXPORTER",
            f"tracing needs the OpenTelemetry SDK ({exc.name} is missing); "
            "install it with pip install 'pigeon-notify[otlp]'",
        ) from exc
    name = env.get("OTEL_SERVICE_NAME", "").strip() or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    for chosen in names:
        if chosen == "otlp":
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(env)))
        elif chosen == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        # "none": spans are made and dropped (what an overhead measurement wants)
    if _provider is not None:
        _provider.shutdown()
    _provider = provider
    _tracer = provider.get_tracer("pigeon", __version__)
    _propagator = TraceContextTextMapPropagator()
    # not made the global provider: FastAPI would then trace every request a second
    # time (its native telemetry follows the global one), the fast path included
    from pigeon.logs import set_trace_id_source

    set_trace_id_source(current_trace_id)
    ENABLED = True
    return True


def disable() -> None:
    """Turn tracing off again, flushing what was recorded (tests; process shutdown)."""
    global ENABLED, _tracer, _provider  # noqa: PLW0603  # process-wide switch
    ENABLED = False
    _tracer = None
    provider, _provider = _provider, None
    if provider is not None:
        from pigeon.logs import set_trace_id_source

        set_trace_id_source(None)
        provider.shutdown()


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    """The exporters the variables ask for; empty when tracing stays off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return []
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not raw:
        # an endpoint alone means "export there" (the exporter's default is otlp)
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if endpoint and endpoint.strip() else []
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown or not names:
        raise ConfigurationError(
            "OTEL_TRACES_EXPORTER",
            f"{raw!r} is not an exporter Pigeon knows; use {', '.join(EXPORTERS)} "
            "(comma-separated for several), or leave it unset to trace nothing",
        )
    return names


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    """The OTLP exporter of the protocol asked for (it reads its endpoint itself)."""
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or ""
    ).strip() or "grpc"
    if protocol not in _OTLP_PROTOCOLS:
        raise ConfigurationError(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            f"{protocol!r} is not supported; use {' or '.join(_OTLP_PROTOCOLS)}",
        )
    # imported by name: the exporters are an extra, and the two protocols are two packages
    module = "grpc" if protocol == "grpc" else "http"
    try:
        found = importlib.import_module(
            f"opentelemetry.exporter.otlp.proto.{module}.trace_exporter"
        )
    except ImportError as exc:
        raise ConfigurationError(
            "OTEL_TRACES_EXPORTER",
            f"the OTLP exporter is not installed ({exc.name} is missing); "
            "install it with pip install 'pigeon-notify[otlp]'",
        ) from exc
    exporter: SpanExporter = found.OTLPSpanExporter()
    return exporter


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex characters, or None outside a trace."""
    if not ENABLED:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


# -- headers -------------------------------------------------------------------------
def passthrough(
    traceparent: str | bytes | None, tracestate: str | bytes | None = None
) -> dict[str, str] | None:
    """An incoming trace context to carry on unchanged (tracing off), if it is valid."""
    if traceparent is None:
        return None
    parent = traceparent.decode("latin-1") if isinstance(traceparent, bytes) else traceparent
    parent = parent.strip().lower()
    if not _TRACEPARENT_RE.fullmatch(parent):
        return None
    found = {TRACEPARENT: parent}
    if tracestate:
        state = tracestate.decode("latin-1") if isinstance(tracestate, bytes) else tracestate
        if len(state) <= _MAX_TRACESTATE and state.isascii() and state.isprintable():
            found[TRACESTATE] = state
    return found


def inject(context: Context | None = None) -> dict[str, str] | None:
    """The trace headers of ``context`` (default: the current one); tracing on only."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=context)
    return carrier or None


def extract(headers: Mapping[str, str]) -> Context:
    """The context ``headers`` carry (tracing on only)."""
    context: Context = _propagator.extract(headers)
    return context


def span_kind(name: str) -> Any:
    """``opentelemetry.trace.SpanKind.<name>`` (imported only once tracing is on)."""
    from opentelemetry.trace import SpanKind

    return getattr(SpanKind, name)


def mark_error(span: Span, description: str) -> None:
    """Give ``span`` the error status, with a short description."""
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description[:200]))


# the spans of each part; imported last, since they read the state above when called
from pigeon.tracing.api import (  # noqa: E402  # after the state it reads
    TracingMiddleware,
    instrument,
    traced_accept,
    traced_accept_batch,
    traced_report,
)
from pigeon.tracing.messaging import (  # noqa: E402  # after the state it reads
    callback_param,
    consumed,
    traced_handler,
    traced_publish,
    traced_send,
    without_callback_param,
)

__all__ = [
    "ENABLED",
    "TRACEPARENT",
    "TRACESTATE",
    "TracingMiddleware",
    "callback_param",
    "configure",
    "consumed",
    "current_trace_id",
    "disable",
    "instrument",
    "passthrough",
    "traced_accept",
    "traced_accept_batch",
    "traced_handler",
    "traced_publish",
    "traced_report",
    "traced_send",
    "without_callback_param",
]
