"""Sinks through the SDK's own objects: the application's providers, or ours.

Ours wrap an exporter (a plug-in, or our OTLP exporter when the fast path is off)
in SDK providers whose processors only hand finished records and spans to a
:class:`~torchelastic_otel.otel.sinks.Batches`: the worker is the only thread
that emits into them, and it exports on its own schedule and within its exit
bound, not the SDK's.
"""

from typing import Any

from opentelemetry._logs import Logger, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from torchelastic_otel import semconv
from torchelastic_otel._version import __version__
from torchelastic_otel.otel._ids import ForcedIds
from torchelastic_otel.otel._upstream import wrap_id_generator
from torchelastic_otel.otel.mapping import MappedEvent
from torchelastic_otel.otel.sinks._base import Batches, SpanSink


class LoggerSink:
    """Log records through an OpenTelemetry ``Logger`` (ours or the application's)."""

    def __init__(self, logger: Logger, batches: Batches | None = None) -> None:
        self._logger = logger
        self._batches = batches

    def emit(self, m: MappedEvent, t_ns: int, context: Context, weight: int = 1) -> None:
        """Emit ``m``'s record in the span of ``context``."""
        if self._batches is not None:
            self._batches.next_weight = weight  # read by our processor, on this thread
        self._logger.emit(
            timestamp=m.timestamp_ns or t_ns,
            observed_timestamp=t_ns,
            context=context,
            severity_number=SeverityNumber(m.severity),
            severity_text=semconv.SEVERITY_TEXT[m.severity],
            body=m.body,
            attributes=m.attributes,
            event_name=m.event_name,
        )


class _CollectLogRecords(LogRecordProcessor):
    """Hands every emitted log record to ``batches``."""

    def __init__(self, batches: Batches) -> None:
        self._batches = batches

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        """Keep the record for the next export."""
        self._batches.add(log_record)

    def shutdown(self) -> None:
        """Nothing to release; the worker owns the exporter."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing buffered here; the worker exports."""
        return True


class _CollectSpans(SpanProcessor):
    """Hands every ended span to ``batches``."""

    def __init__(self, batches: Batches) -> None:
        self._batches = batches

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Spans are exported when they end."""

    def on_end(self, span: ReadableSpan) -> None:
        """Keep the span for the next export."""
        self._batches.add(span, 1)

    def shutdown(self) -> None:
        """Nothing to release; the worker owns the exporter."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing buffered here; the worker exports."""
        return True


def our_logs(resource: Resource, batches: Batches) -> LoggerSink:
    """A logger of a provider of ours whose records go to ``batches``."""
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(_CollectLogRecords(batches))
    return LoggerSink(provider.get_logger(semconv.SCOPE, __version__), batches)


def our_spans(resource: Resource, batches: Batches) -> SpanSink:
    """A tracer of a provider of ours whose spans go to ``batches``, ids ours to force."""
    ids = ForcedIds()
    # Explicitly: left unset, the SDK reads OTEL_TRACES_SAMPLER, and this path would
    # sample where the fast path keeps every span (settings warns about the variable).
    provider = TracerProvider(
        resource=resource, id_generator=ids, sampler=ALWAYS_ON, shutdown_on_exit=False
    )
    provider.add_span_processor(_CollectSpans(batches))
    return SpanSink(provider.get_tracer(semconv.SCOPE, __version__), ids)


def application_logs(provider: Any) -> LoggerSink:
    """A logger of the application's global provider (it exports them)."""
    return LoggerSink(provider.get_logger(semconv.SCOPE, __version__))


def application_spans(provider: Any) -> SpanSink:
    """A tracer of the application's global provider, with our ids when it lets us.

    The SDK's tracer takes its ids from ``tracer.id_generator``; wrapping that one
    tracer's generator (not the provider's) lets the state machine fix the ids of
    the spans every node derives, and replaces the SDK's seed-dependent default.
    """
    tracer = provider.get_tracer(semconv.SCOPE, __version__)
    return SpanSink(tracer, wrap_id_generator(tracer, ForcedIds))
