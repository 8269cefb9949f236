"""Processors that hand finished log records and spans to the pipeline's worker.

The worker is the only thread that emits into our providers, so a plain list is
enough: the worker appends while mapping and takes batches off when exporting.
"""

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor


class CollectLogRecords(LogRecordProcessor):
    """Appends every emitted log record to ``sink``."""

    def __init__(self, sink: list[ReadWriteLogRecord]) -> None:
        self._sink = sink

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        """Keep the record for the next export."""
        self._sink.append(log_record)

    def shutdown(self) -> None:
        """Nothing to release; the pipeline owns the exporter."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing buffered here; the pipeline exports."""
        return True


class CollectSpans(SpanProcessor):
    """Appends every ended span to ``sink``."""

    def __init__(self, sink: list[ReadableSpan]) -> None:
        self._sink = sink

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Spans are exported when they end."""

    def on_end(self, span: ReadableSpan) -> None:
        """Keep the span for the next export."""
        self._sink.append(span)

    def shutdown(self) -> None:
        """Nothing to release; the pipeline owns the exporter."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing buffered here; the pipeline exports."""
        return True
