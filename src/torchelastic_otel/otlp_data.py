"""OTLP data as plain Python: decoded from protobuf requests or from OTLP JSON files.

One flat record per log record and per span, with its resource attributes, so
that tests, the demo and the timeline read exported data the same way whether it
came over the wire (:mod:`torchelastic_otel.receiver`) or from the OpenTelemetry
Collector's ``file`` exporter (one JSON ``ExportLogsServiceRequest`` /
``ExportTraceServiceRequest`` per line).
"""

import base64
import contextlib
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


class LogItem(TypedDict):
    """One log record."""

    resource: dict[str, Any]
    scope: str
    event_name: str
    body: Any
    severity_number: int
    severity_text: str
    time_unix_nano: int
    observed_time_unix_nano: int
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


class SpanEventItem(TypedDict):
    """One span event."""

    name: str
    time: int
    attributes: dict[str, Any]


class SpanLinkItem(TypedDict):
    """One span link."""

    trace_id: str
    span_id: str
    attributes: dict[str, Any]


class SpanItem(TypedDict):
    """One span; ``status_code`` is 0 unset, 1 ok, 2 error."""

    resource: dict[str, Any]
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start: int
    end: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    events: list[SpanEventItem]
    links: list[SpanLinkItem]


def any_value(v: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue``."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attrs(kvs: Iterable[Any]) -> dict[str, Any]:
    """OTLP ``KeyValue`` attributes as a dict."""
    return {kv.key: any_value(kv.value) for kv in kvs}


def flatten_logs(request: ExportLogsServiceRequest) -> Iterator[LogItem]:
    """Every log record of a request, with its resource and scope."""
    for rl in request.resource_logs:
        resource = attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                yield LogItem(
                    resource=resource,
                    scope=sl.scope.name,
                    event_name=r.event_name,
                    body=any_value(r.body),
                    severity_number=r.severity_number,
                    severity_text=r.severity_text,
                    time_unix_nano=r.time_unix_nano,
                    observed_time_unix_nano=r.observed_time_unix_nano,
                    trace_id=r.trace_id.hex(),
                    span_id=r.span_id.hex(),
                    attributes=attrs(r.attributes),
                )


def flatten_spans(request: ExportTraceServiceRequest) -> Iterator[SpanItem]:
    """Every span of a request, with its resource."""
    for rs in request.resource_spans:
        resource = attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield SpanItem(
                    resource=resource,
                    name=s.name,
                    trace_id=s.trace_id.hex(),
                    span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex(),
                    start=s.start_time_unix_nano,
                    end=s.end_time_unix_nano,
                    status_code=s.status.code,
                    status_message=s.status.message,
                    attributes=attrs(s.attributes),
                    events=[
                        SpanEventItem(
                            name=e.name, time=e.time_unix_nano, attributes=attrs(e.attributes)
                        )
                        for e in s.events
                    ],
                    links=[
                        SpanLinkItem(
                            trace_id=link.trace_id.hex(),
                            span_id=link.span_id.hex(),
                            attributes=attrs(link.attributes),
                        )
                        for link in s.links
                    ],
                )


@dataclass
class Received:
    """Log records and spans collected so far (thread-safe to add to)."""

    logs: list[LogItem] = field(default_factory=list)
    spans: list[SpanItem] = field(default_factory=list)
    requests: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_headers(self, headers: dict[str, Any]) -> None:
        """Keep a request's headers (gRPC metadata), names lower-cased."""
        with self.lock:
            self.headers.append({str(k).lower(): str(v) for k, v in headers.items()})

    def add_logs(self, request: ExportLogsServiceRequest) -> None:
        """Add a decoded logs request."""
        items = list(flatten_logs(request))
        with self.lock:
            self.requests += 1
            self.logs.extend(items)

    def add_spans(self, request: ExportTraceServiceRequest) -> None:
        """Add a decoded traces request."""
        items = list(flatten_spans(request))
        with self.lock:
            self.requests += 1
            self.spans.extend(items)


class OtlpFileError(ValueError):
    """A file that is not OTLP JSON, with the file and line it failed on."""


# OTLP/JSON writes ids as hex; protobuf's JSON mapping expects base64 for bytes.
_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _hex_ids_to_base64(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str) and value:
                with contextlib.suppress(ValueError):  # already base64, as some writers do
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def read_otlp_json(path: Path, into: Received | None = None) -> Received:
    """Read an OTLP JSON file (the Collector's ``file`` exporter: one request per line).

    Raises:
        OtlpFileError: naming the file and line, for unreadable, truncated or
            non-OTLP content. Empty lines are skipped.
    """
    received = into if into is not None else Received()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise OtlpFileError(f"{path}: cannot read: {e}") from None
    found = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as e:
            hint = " (truncated?)" if number == len(text.splitlines()) else ""
            raise OtlpFileError(f"{path}:{number}: not JSON{hint}: {e}") from None
        if not isinstance(data, dict) or not (
            "resourceLogs" in data or "resourceSpans" in data or "resourceMetrics" in data
        ):
            raise OtlpFileError(
                f"{path}:{number}: not OTLP JSON (expected resourceLogs or resourceSpans)"
            )
        _hex_ids_to_base64(data)
        try:
            if "resourceLogs" in data:
                received.add_logs(json_format.ParseDict(data, ExportLogsServiceRequest()))
            if "resourceSpans" in data:
                received.add_spans(json_format.ParseDict(data, ExportTraceServiceRequest()))
        except json_format.ParseError as e:
            raise OtlpFileError(f"{path}:{number}: malformed OTLP: {e}") from None
        found += 1
    if not found:
        raise OtlpFileError(f"{path}: no OTLP data in the file")
    return received


def write_otlp_json(received: Received, path: Path) -> None:
    """Write logs and spans back as OTLP JSON lines (what ``read_otlp_json`` reads)."""
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

    def kvs(d: dict[str, Any]) -> list[KeyValue]:
        return [KeyValue(key=k, value=_to_any(v)) for k, v in d.items()]

    lines = []
    for log in received.logs:
        record = LogRecord(
            time_unix_nano=log["time_unix_nano"],
            observed_time_unix_nano=log["observed_time_unix_nano"],
            severity_number=log["severity_number"],  # type: ignore[arg-type]
            severity_text=log["severity_text"],
            body=_to_any(log["body"]),
            attributes=kvs(log["attributes"]),
            trace_id=bytes.fromhex(log["trace_id"]),
            span_id=bytes.fromhex(log["span_id"]),
            event_name=log["event_name"],
        )
        request = ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(
                    resource=Resource(attributes=kvs(log["resource"])),
                    scope_logs=[ScopeLogs(log_records=[record])],
                )
            ]
        )
        lines.append(_to_json_line(request))
    for s in received.spans:
        span = Span(
            trace_id=bytes.fromhex(s["trace_id"]),
            span_id=bytes.fromhex(s["span_id"]),
            parent_span_id=bytes.fromhex(s["parent_span_id"]),
            name=s["name"],
            start_time_unix_nano=s["start"],
            end_time_unix_nano=s["end"],
            attributes=kvs(s["attributes"]),
            status=Status(code=s["status_code"], message=s["status_message"]),  # type: ignore[arg-type]
            events=[
                Span.Event(
                    time_unix_nano=e["time"], name=e["name"], attributes=kvs(e["attributes"])
                )
                for e in s["events"]
            ],
            links=[
                Span.Link(
                    trace_id=bytes.fromhex(link["trace_id"]),
                    span_id=bytes.fromhex(link["span_id"]),
                    attributes=kvs(link["attributes"]),
                )
                for link in s.get("links", [])
            ],
        )
        treq = ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    resource=Resource(attributes=kvs(s["resource"])),
                    scope_spans=[ScopeSpans(spans=[span])],
                )
            ]
        )
        lines.append(_to_json_line(treq))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _to_json_line(message: Any) -> str:
    data = json_format.MessageToDict(message)
    _base64_ids_to_hex(data)
    return json.dumps(data, separators=(",", ":"))


def _base64_ids_to_hex(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _base64_ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _base64_ids_to_hex(item)


def _to_any(value: Any) -> AnyValue:  # noqa: PLR0911 -- one return per OTLP value kind
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, (list, tuple)):
        from opentelemetry.proto.common.v1.common_pb2 import ArrayValue

        return AnyValue(array_value=ArrayValue(values=[_to_any(v) for v in value]))
    if isinstance(value, dict):
        from opentelemetry.proto.common.v1.common_pb2 import KeyValue, KeyValueList

        return AnyValue(
            kvlist_value=KeyValueList(
                values=[KeyValue(key=str(k), value=_to_any(v)) for k, v in value.items()]
            )
        )
    return AnyValue(string_value=str(value))
