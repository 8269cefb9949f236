"""The fast path: mapped events straight to OTLP protobuf, handed to the exporter.

The SDK's way to a wire log record is a LogRecord object, then a
ReadWriteLogRecord with bounded attributes, then the exporter's encoder: about
five times the work of building the protobuf message directly, and what limited
throughput to a few thousand events per second. When the pipeline owns its OTLP
exporters, it builds ``LogRecord`` (and, through :mod:`._light_spans`, ``Span``)
messages here and hands the exporter a :class:`Prebuilt` batch; the exporter
keeps its transport (endpoint, TLS, headers, compression, timeout and retries
from the ``OTEL_*`` variables).

How an exporter accepts a prebuilt batch depends on its internals, so the fast
path is used only when :func:`prebuilt_exporter` could prove it works:

* the installed exporter package is one of the versions tested here
  (:data:`TESTED`), and
* a probe batch round-trips: the exporter's own translation step returns the
  probe's request object unchanged. Over gRPC that step is the exporter's
  ``_translate_data`` (overridden in a subclass, local to our exporter); over
  HTTP it is the ``encode_*`` function its module looks up at export time
  (wrapped there, passing every other batch to the original).

Otherwise the pipeline uses the SDK path, with one debug line saying why.

The SDK's attribute limits apply here too (``OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT``,
``OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT`` and their ``OTEL_ATTRIBUTE_*``
defaults).
"""

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
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

from torchelastic_otel import semconv
from torchelastic_otel.otel import _exporters, _upstream
from torchelastic_otel.otel.mapping import MappedEvent
from torchelastic_otel.otel.settings import Settings

_log = logging.getLogger("torchelastic_otel")

TESTED: Mapping[str, tuple[tuple[int, int], tuple[int, int]]] = {
    # distribution: (oldest, newest) major.minor whose internals the fast path relies on
    "opentelemetry-exporter-otlp-proto-grpc": ((1, 40), (1, 45)),
    "opentelemetry-exporter-otlp-proto-http": ((1, 40), (1, 45)),
}
"""Exporter versions the fast path was tested with; outside them the SDK path is used."""

_HTTP_ENCODER = {"logs": "encode_logs", "traces": "encode_spans"}


class Prebuilt(list[Any]):
    """A batch of ready protobuf records or spans, with the request that carries them."""

    def __init__(self, items: Sequence[Any], request: Any) -> None:
        super().__init__(items)
        self.request = request


class Envelope:
    """The resource and scope every request of this process carries."""

    def __init__(self, resource_attributes: Mapping[str, Any], scope: str, version: str) -> None:
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


# --- the exporters ---------------------------------------------------------------------


def prebuilt_exporter(
    s: Settings, signal: _exporters.Signal, releases: list[Callable[[], None]]
) -> Any | None:
    """An OTLP exporter for ``signal`` that takes :class:`Prebuilt` batches, or ``None``.

    ``None`` (the caller then takes the SDK path) when the installed exporter is not
    a tested version or the probe batch does not round-trip. What had to be
    replaced upstream for it is put back by the functions added to ``releases``
    (call them once the exporter is shut down).
    """
    grpc = _exporters.protocol_of(s, signal) == "grpc"
    distribution = (
        "opentelemetry-exporter-otlp-proto-grpc"
        if grpc
        else "opentelemetry-exporter-otlp-proto-http"
    )
    why_not = untested_version(distribution)
    if why_not:
        _log.debug("torchelastic-otel: fast path off for %s: %s", signal.name, why_not)
        return None
    base = _exporters.exporter_class(s, signal)
    release = None
    if grpc:
        cls = _grpc_subclass(base)
    else:
        cls = base
        release = _upstream.replace_function(
            base.__module__, _HTTP_ENCODER[signal.name], _passing_prebuilt
        )
    exporter = _exporters.create(s, signal, cls)
    if not round_trips(exporter, signal):
        _log.debug("torchelastic-otel: fast path off for %s: probe did not round-trip", signal.name)
        exporter.shutdown()
        if release is not None:
            release()
        return None
    if release is not None:
        releases.append(release)
    return exporter


def untested_version(distribution: str) -> str:
    """Why ``distribution``'s installed version is not one the fast path knows ('' if it is)."""
    try:
        version = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return f"{distribution} is not installed"
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return f"{distribution} {version}: unrecognised version"
    oldest, newest = TESTED[distribution]
    if not oldest <= major_minor <= newest:
        return (
            f"{distribution} {version} is outside the tested "
            f"{'.'.join(map(str, oldest))}-{'.'.join(map(str, newest))}"
        )
    return ""


def _grpc_subclass(base: type[Any]) -> type[Any]:
    return _upstream.passing_subclass(
        base, lambda data: data.request if isinstance(data, Prebuilt) else None
    )


def _passing_prebuilt(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def encode(batch: Any) -> Any:
        if isinstance(batch, Prebuilt):
            return batch.request
        return original(batch)

    encode.__torchelastic_otel__ = True  # type: ignore[attr-defined]
    encode.__wrapped__ = original  # type: ignore[attr-defined]
    return encode


def round_trips(exporter: Any, signal: _exporters.Signal) -> bool:
    """Whether ``exporter``'s translation step passes a probe request through unchanged.

    Over gRPC the step is the exporter's ``_translate_data``, which its export loop
    calls; over HTTP it is the module's ``encode_*``, which its ``export`` looks up
    by that name. Both are checked: the step returns the probe's own request, and
    the export code really goes through that step.
    """
    request = ExportLogsServiceRequest() if signal.name == "logs" else ExportTraceServiceRequest()
    probe = Prebuilt([], request)
    try:
        translate = getattr(exporter, "_translate_data", None)
        if translate is not None and "_translate_data" in _export_names(exporter):
            return bool(translate(probe) is request)
        name = _HTTP_ENCODER[signal.name]
        encode = getattr(importlib.import_module(type(exporter).__module__), name, None)
        return encode is not None and name in _export_names(exporter) and encode(probe) is request
    except Exception:  # noqa: BLE001 -- any failure means: do not use the fast path
        _log.debug("fast-path probe failed", exc_info=True)
        return False


def _export_names(exporter: Any) -> set[str]:
    """The global and attribute names the exporter's export code refers to."""
    names: set[str] = set()
    for attr in ("export", "_export"):
        function = getattr(type(exporter), attr, None)
        code = getattr(function, "__code__", None)
        if code is not None:
            names.update(code.co_names)
    return names


# --- log records -------------------------------------------------------------------------


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
            # As the SDK's bounded attributes: the newest are kept.
            dropped = len(items) - self.max_attributes
            items = items[dropped:]
        return LogRecord(
            time_unix_nano=m.timestamp_ns or t_ns,
            observed_time_unix_nano=t_ns,
            severity_number=m.severity,  # type: ignore[arg-type]
            severity_text=semconv.SEVERITY_TEXT[m.severity],
            body=AnyValue(string_value=m.body),  # the SDK limits attributes, not the body
            attributes=[_kv(k, v, self.max_length) for k, v in items if v is not None],
            dropped_attributes_count=dropped,
            trace_id=trace_id.to_bytes(16, "big") if trace_id else b"",
            span_id=span_id.to_bytes(8, "big") if span_id else b"",
            flags=1 if trace_id else 0,
            event_name=m.event_name,
        )


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
