"""Mapped events straight to OTLP protobuf log records: the fast log path.

(Spans take the same road: :mod:`torchelastic_otel.otel.light_spans`.)

The SDK's way to a wire log record is a LogRecord object, then a
ReadWriteLogRecord with bounded attributes, then the exporter's encoder: about
five times the work of building the protobuf message directly, and what limited
throughput to a few thousand events per second. When the pipeline owns its OTLP
log exporter, it builds :class:`LogRecord` messages here and hands the exporter
a :class:`Prebuilt` batch; the exporter keeps its transport (endpoint, TLS,
headers, compression, timeout and retries from the ``OTEL_*`` variables).

How the exporter accepts a prebuilt batch: the OTLP exporters call their module's
``encode_logs(batch)`` / ``encode_spans(batch)``. :func:`install` wraps those so
that a :class:`Prebuilt` batch passes through as the request it already is, and
every other batch is encoded as before. If a future SDK moves them,
:func:`install` returns ``False`` and the pipeline keeps the SDK path.

The SDK's attribute limits apply here too (``OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT``,
``OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT`` and their ``OTEL_ATTRIBUTE_*``
defaults).
"""

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from torchelastic_otel.otel.mapping import SEVERITY_TEXT, MappedEvent

_ENCODERS = (
    ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "encode_logs"),
    ("opentelemetry.exporter.otlp.proto.http._log_exporter", "encode_logs"),
    ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "encode_spans"),
    ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "encode_spans"),
)


class Prebuilt(list[Any]):
    """A batch of ready protobuf records or spans, with the request that carries them."""

    def __init__(self, items: Sequence[Any], request: Any) -> None:
        super().__init__(items)
        self.request = request


class Envelope:
    """The resource and scope every request of this process carries."""

    def __init__(self, resource_attributes: dict[str, Any], scope: str, version: str) -> None:
        self._resource = Resource(
            attributes=[_kv(k, v, None) for k, v in resource_attributes.items()]
        )
        self._scope = InstrumentationScope(name=scope, version=version)

    def logs(self, records: Sequence[LogRecord]) -> Prebuilt:
        """A batch of log records, ready for the OTLP log exporter."""
        request = ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(
                    resource=self._resource,
                    scope_logs=[ScopeLogs(scope=self._scope, log_records=records)],
                )
            ]
        )
        return Prebuilt(records, request)

    def spans(self, spans: Sequence[Span]) -> Prebuilt:
        """A batch of spans, ready for the OTLP span exporter."""
        request = ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    resource=self._resource,
                    scope_spans=[ScopeSpans(scope=self._scope, spans=spans)],
                )
            ]
        )
        return Prebuilt(spans, request)


def install() -> bool:
    """Let the OTLP exporters accept :class:`Prebuilt` batches; idempotent."""
    for module_name, function in _ENCODERS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return False
        original = getattr(module, function, None)
        if original is None:
            return False
        if not getattr(original, "__torchelastic_otel__", False):
            setattr(module, function, _passing_prebuilt(original))
    return True


def _passing_prebuilt(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def encode(batch: Any) -> Any:
        if isinstance(batch, Prebuilt):
            return batch.request
        return original(batch)

    encode.__torchelastic_otel__ = True  # type: ignore[attr-defined]
    encode.__wrapped__ = original  # type: ignore[attr-defined]
    return encode


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
            attributes=[_kv(k, v, self.max_length) for k, v in items if v is not None],
            dropped_attributes_count=dropped,
            trace_id=trace_id.to_bytes(16, "big") if trace_id else b"",
            span_id=span_id.to_bytes(8, "big") if span_id else b"",
            flags=1 if trace_id else 0,
            event_name=m.event_name,
        )

    def _text(self, text: str) -> str:
        return text if self.max_length is None else text[: self.max_length]


# Most attributes repeat from event to event (run_id, host, role, state...): reuse
# their messages (protobuf copies a message into the record, so sharing is safe).
# Building a KeyValue was most of the encoding time.
_KV_CACHE: dict[tuple[str, type, Any, int | None], KeyValue] = {}
_KV_CACHE_MAX = 8192


def _kv(key: str, value: Any, max_length: int | None) -> KeyValue:
    kind = type(value)
    if kind not in (str, int, bool, float) or (kind is str and len(value) > 256):
        return KeyValue(key=key, value=attribute_value(value, max_length))
    cache_key = (key, kind, value, max_length)
    kv = _KV_CACHE.get(cache_key)
    if kv is None:
        if len(_KV_CACHE) >= _KV_CACHE_MAX:
            _KV_CACHE.clear()
        kv = _KV_CACHE[cache_key] = KeyValue(key=key, value=attribute_value(value, max_length))
    return kv


def key_values(attributes: Any, max_count: int | None, max_length: int | None) -> list[KeyValue]:
    """OTLP attributes (``None`` values left out), at most ``max_count`` of them."""
    items = list(attributes.items())
    if max_count is not None:
        items = items[:max_count]
    return [_kv(k, v, max_length) for k, v in items if v is not None]


def attribute_value(value: Any, max_length: int | None) -> AnyValue:
    """An OTLP ``AnyValue``, strings cut at ``max_length``."""
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
        return AnyValue(
            array_value=ArrayValue(values=[attribute_value(v, max_length) for v in value])
        )
    return AnyValue(string_value=str(value))
