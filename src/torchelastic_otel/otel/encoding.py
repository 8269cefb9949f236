"""Mapped events straight to OTLP protobuf log records: the fast log path.

The SDK's way to a wire log record is a LogRecord object, then a
ReadWriteLogRecord with bounded attributes, then the exporter's encoder: about
five times the work of building the protobuf message directly, and what limited
throughput to a few thousand events per second. When the pipeline owns its OTLP
log exporter, it builds :class:`LogRecord` messages here and hands the exporter
a :class:`Prebuilt` batch; the exporter keeps its transport (endpoint, TLS,
headers, compression, timeout and retries from the ``OTEL_*`` variables).

How the exporter accepts a prebuilt batch: both OTLP log exporters call their
module's ``encode_logs(batch)``. :func:`install` wraps that function so that a
:class:`Prebuilt` batch passes through as the request it already is, and every
other batch is encoded as before. If a future SDK moves that function,
:func:`install` returns ``False`` and the pipeline keeps the SDK path.

The SDK's attribute limits apply here too (``OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT``,
``OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT`` and their ``OTEL_ATTRIBUTE_*``
defaults).
"""

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from torchelastic_otel.otel.mapping import SEVERITY_TEXT, MappedEvent

_EXPORTER_MODULES = (
    "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
)


class Prebuilt(list[LogRecord]):
    """A batch of ready protobuf log records, with the request that carries them."""

    def __init__(self, records: Sequence[LogRecord], envelope: "Envelope") -> None:
        super().__init__(records)
        self.request = envelope.request(self)


class Envelope:
    """The resource and scope every request of this process carries."""

    def __init__(self, resource_attributes: dict[str, Any], scope: str, version: str) -> None:
        self._resource = Resource(
            attributes=[_kv(k, v, None) for k, v in resource_attributes.items()]
        )
        self._scope = InstrumentationScope(name=scope, version=version)

    def request(self, records: Sequence[LogRecord]) -> ExportLogsServiceRequest:
        """One ``ExportLogsServiceRequest`` holding ``records``."""
        return ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(
                    resource=self._resource,
                    scope_logs=[ScopeLogs(scope=self._scope, log_records=records)],
                )
            ]
        )


def install() -> bool:
    """Let the OTLP log exporters accept :class:`Prebuilt` batches; idempotent."""
    for name in _EXPORTER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            return False
        original = getattr(module, "encode_logs", None)
        if original is None:
            return False
        if getattr(original, "__torchelastic_otel__", False):
            continue
        module.encode_logs = _passing_prebuilt(original)  # type: ignore[attr-defined]
    return True


def _passing_prebuilt(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def encode_logs(batch: Any) -> Any:
        if isinstance(batch, Prebuilt):
            return batch.request
        return original(batch)

    encode_logs.__torchelastic_otel__ = True  # type: ignore[attr-defined]
    encode_logs.__wrapped__ = original  # type: ignore[attr-defined]
    return encode_logs


class Encoder:
    """Builds protobuf log records, applying the SDK's attribute limits."""

    def __init__(self, max_attributes: int | None, max_length: int | None) -> None:
        self.max_attributes = max_attributes
        self.max_length = max_length

    @classmethod
    def from_env(cls) -> "Encoder":
        """Limits as the SDK's ``LogRecordLimits`` reads them from the environment."""
        from opentelemetry.sdk._logs import LogRecordLimits

        limits = LogRecordLimits()
        return cls(limits.max_attributes, limits.max_attribute_length)

    def log_record(self, m: MappedEvent, t_ns: int, trace_id: int, span_id: int) -> LogRecord:
        """The wire record of ``m``, recorded at ``t_ns``, inside span ``span_id``."""
        items = list(m.attributes.items())
        dropped = 0
        if self.max_attributes is not None and len(items) > self.max_attributes:
            dropped = len(items) - self.max_attributes
            items = items[: self.max_attributes]
        return LogRecord(
            time_unix_nano=m.timestamp_ns or t_ns,
            observed_time_unix_nano=t_ns,
            severity_number=m.severity,  # type: ignore[arg-type]
            severity_text=SEVERITY_TEXT[m.severity],
            body=AnyValue(string_value=self._text(m.body)),
            attributes=[_kv(k, v, self.max_length) for k, v in items],
            dropped_attributes_count=dropped,
            trace_id=trace_id.to_bytes(16, "big") if trace_id else b"",
            span_id=span_id.to_bytes(8, "big") if span_id else b"",
            flags=1 if trace_id else 0,
            event_name=m.event_name,
        )

    def _text(self, text: str) -> str:
        return text if self.max_length is None else text[: self.max_length]


def _kv(key: str, value: Any, max_length: int | None) -> KeyValue:
    return KeyValue(key=key, value=_any(value, max_length))


def _any(value: Any, max_length: int | None) -> AnyValue:
    # bool before int: True is an int too.
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value if max_length is None else value[:max_length])
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[_any(v, max_length) for v in value]))
    return AnyValue(string_value=str(value))
