"""The ``otel`` destination wired to memory, on either of its two export paths.

``path="sdk"``: the SDK's in-memory exporters, plugged in (records and spans are
the SDK's own objects). ``path="fast"``: our OTLP exporters on the fast path
(protobuf built by us), over real gRPC to a receiver in this process; what it
decodes is shown through views with the SDK objects' field names, so one test
checks both paths.
"""

import atexit
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from torchelastic_otel import events, otel
from torchelastic_otel.events import Event, RdzvEvent
from torchelastic_otel.otel.settings import Settings
from torchelastic_otel.otlp_data import LogItem, Received, SpanItem
from torchelastic_otel.receiver import OtlpGrpcReceiver

PATHS = ("sdk", "fast")


def record_otel(event: Event | RdzvEvent) -> None:
    """``record(event, "otel")`` for either kind (torch types ``record`` for ``Event``)."""
    events.record(event, "otel")  # type: ignore[arg-type]


class LogView:
    """A decoded OTLP log record with a ``ReadableLogRecord``'s field names."""

    def __init__(self, item: LogItem) -> None:
        self.resource = SimpleNamespace(attributes=item["resource"])
        self.instrumentation_scope = SimpleNamespace(name=item["scope"])
        self.log_record = SimpleNamespace(
            attributes=item["attributes"],
            event_name=item["event_name"],
            body=item["body"],
            severity_number=SeverityNumber(item["severity_number"]),
            severity_text=item["severity_text"],
            timestamp=item["time_unix_nano"],
            observed_timestamp=item["observed_time_unix_nano"],
            trace_id=int(item["trace_id"] or "0", 16),
            span_id=int(item["span_id"] or "0", 16),
        )


class SpanView:
    """A decoded OTLP span with a ``ReadableSpan``'s field names."""

    def __init__(self, item: SpanItem) -> None:
        self.name = item["name"]
        self.attributes = item["attributes"]
        self.resource = SimpleNamespace(attributes=item["resource"])
        self.start_time = item["start"]
        self.end_time = item["end"]
        self.context = SimpleNamespace(
            trace_id=int(item["trace_id"], 16), span_id=int(item["span_id"], 16)
        )
        parent = item["parent_span_id"]
        self.parent = SimpleNamespace(span_id=int(parent, 16)) if parent else None
        self.status = SimpleNamespace(
            status_code=StatusCode(item["status_code"]),
            description=item["status_message"] or None,
        )
        self.events = [
            SimpleNamespace(name=e["name"], attributes=e["attributes"], timestamp=e["time"])
            for e in item["events"]
        ]
        self.links = [
            SimpleNamespace(
                context=SimpleNamespace(
                    trace_id=int(link["trace_id"], 16), span_id=int(link["span_id"], 16)
                ),
                attributes=link["attributes"],
            )
            for link in item["links"]
        ]


@dataclass
class Memory:
    """A pipeline and what it exported, on one path."""

    pipeline: otel.Pipeline
    path: str
    logs: InMemoryLogRecordExporter | None = None
    spans: InMemorySpanExporter | None = None
    received: Received | None = None

    def flush(self) -> None:
        assert self.pipeline.force_flush(10), "pipeline did not flush within 10 s"

    def shutdown(self) -> None:
        self.pipeline.shutdown(5000)

    def log_records(self, flush: bool = True) -> list[Any]:
        if flush:
            self.flush()
        if self.logs is not None:
            return list(self.logs.get_finished_logs())
        assert self.received is not None
        return [LogView(item) for item in list(self.received.logs)]

    def finished_spans(self, flush: bool = True) -> list[Any]:
        if flush:
            self.flush()
        if self.spans is not None:
            return list(self.spans.get_finished_spans())
        assert self.received is not None
        return [SpanView(item) for item in list(self.received.spans)]

    def clear(self) -> None:
        self.flush()
        if self.logs is not None and self.spans is not None:
            self.logs.clear()
            self.spans.clear()
        if self.received is not None:
            with self.received.lock:
                self.received.logs.clear()
                self.received.spans.clear()


_receiver: OtlpGrpcReceiver | None = None
_receiver_lock = threading.Lock()


def shared_receiver() -> OtlpGrpcReceiver:
    """One gRPC receiver on 127.0.0.1 for every fast-path pipeline of this test run."""
    global _receiver  # noqa: PLW0603 -- started once, stopped at exit
    with _receiver_lock:
        if _receiver is None:
            _receiver = OtlpGrpcReceiver().__enter__()
            atexit.register(_receiver.__exit__, None, None, None)
        return _receiver


@contextmanager
def memory_pipeline(path: str = "sdk", **settings: Any) -> Iterator[Memory]:
    """Install a pipeline exporting to memory (on ``path``) as the process's ``otel``."""
    defaults: dict[str, Any] = {"schedule_delay_ms": 10, "use_global_providers": False}
    defaults.update(settings)
    if path == "sdk":
        logs, spans = InMemoryLogRecordExporter(), InMemorySpanExporter()  # type: ignore[no-untyped-call]
        p = otel.Pipeline(Settings(**defaults), log_exporter=logs, span_exporter=spans)
        memory = Memory(p, path, logs=logs, spans=spans)
    else:
        receiver = shared_receiver()
        with receiver.received.lock:
            receiver.received.logs.clear()
            receiver.received.spans.clear()
        defaults.update(endpoint=receiver.endpoint, fast_path=True)
        p = otel.Pipeline(Settings(**defaults))
        memory = Memory(p, path, received=receiver.received)
    with otel.use(p, timeout_ms=5000):
        yield memory
    if path == "fast" and p.paths:
        assert p.paths == {"logs": "fast path", "spans": "fast path"}, p.paths
