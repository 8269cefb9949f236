"""The ``otel`` destination wired to the SDK's in-memory exporters."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from torchelastic_otel import events
from torchelastic_otel.events import Event, RdzvEvent
from torchelastic_otel.otel import pipeline
from torchelastic_otel.otel.settings import Settings


@dataclass
class Memory:
    pipeline: pipeline.Pipeline
    logs: InMemoryLogRecordExporter
    spans: InMemorySpanExporter

    def flush(self) -> None:
        assert self.pipeline.force_flush(10), "pipeline did not flush within 10 s"

    def shutdown(self) -> None:
        self.pipeline.shutdown(5000)

    def log_records(self) -> list[Any]:
        self.flush()
        return list(self.logs.get_finished_logs())

    def finished_spans(self) -> list[Any]:
        self.flush()
        return list(self.spans.get_finished_spans())


def record_otel(event: Event | RdzvEvent) -> None:
    """``record(event, "otel")`` for either kind (torch types ``record`` for ``Event``)."""
    events.record(event, "otel")  # type: ignore[arg-type]


@contextmanager
def memory_pipeline(**settings: Any) -> Iterator[Memory]:
    """Install a pipeline exporting to memory as the process's ``otel`` pipeline."""
    defaults: dict[str, Any] = {"schedule_delay_ms": 10, "use_global_providers": False}
    defaults.update(settings)
    logs, spans = InMemoryLogRecordExporter(), InMemorySpanExporter()  # type: ignore[no-untyped-call]
    p = pipeline.Pipeline(Settings(**defaults), log_exporter=logs, span_exporter=spans)
    previous = pipeline._current
    pipeline._current = p
    try:
        yield Memory(p, logs, spans)
    finally:
        p.shutdown(5000)
        pipeline._current = previous
        time.sleep(0)
