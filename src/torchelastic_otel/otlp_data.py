"""OTLP data as plain Python: decoded from protobuf requests or from OTLP JSON files.

One flat record per log record and per span, with its resource attributes, so
that tests, the demo and the timeline read exported data the same way whether it
came over the wire (:mod:`torchelastic_otel.receiver`) or from the OpenTelemetry
Collector's ``file`` exporter (one JSON ``ExportLogsServiceRequest`` /
``ExportTraceServiceRequest`` per line).
"""

import base64
import binascii
import functools
import gc
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, TypeVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Status


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


class MetricPointItem(TypedDict):
    """One metric data point: ``kind`` is ``sum``, ``gauge`` or ``histogram``."""

    resource: dict[str, Any]
    scope: str
    name: str
    unit: str
    kind: str
    attributes: dict[str, Any]
    time_unix_nano: int
    value: float  # sum and gauge points; a histogram's sum
    count: int  # histogram points
    bucket_counts: list[int]
    explicit_bounds: list[float]


def flatten_metrics(request: Any) -> Iterator[MetricPointItem]:
    """Every data point of an ``ExportMetricsServiceRequest``."""
    for rm in request.resource_metrics:
        resource = attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind not in ("sum", "gauge", "histogram"):
                    continue
                for p in getattr(metric, kind).data_points:
                    histogram = kind == "histogram"
                    value = p.sum if histogram else getattr(p, p.WhichOneof("value") or "as_int")
                    yield MetricPointItem(
                        resource=resource,
                        scope=sm.scope.name,
                        name=metric.name,
                        unit=metric.unit,
                        kind=kind,
                        attributes=attrs(p.attributes),
                        time_unix_nano=p.time_unix_nano,
                        value=float(value),
                        count=int(p.count) if histogram else 0,
                        bucket_counts=list(p.bucket_counts) if histogram else [],
                        explicit_bounds=list(p.explicit_bounds) if histogram else [],
                    )


@dataclass
class Received:
    """Log records, spans and metric points collected so far (thread-safe to add to).

    With ``max_items`` set, at most that many items (log records, spans and metric
    points together) are kept: the first ones. Later ones are decoded, counted in
    :attr:`dropped` by kind, and let go, so that a receiver listening for days holds
    a bounded amount. The headers of at most :data:`MAX_HEADERS` requests are kept.
    """

    logs: list[LogItem] = field(default_factory=list)
    spans: list[SpanItem] = field(default_factory=list)
    metrics: list[MetricPointItem] = field(default_factory=list)
    requests: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    max_items: int = 0  # 0: no limit
    dropped: dict[str, int] = field(default_factory=lambda: {"logs": 0, "spans": 0, "metrics": 0})
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_headers(self, headers: dict[str, Any]) -> None:
        """Keep a request's headers (gRPC metadata), names lower-cased."""
        with self.lock:
            if len(self.headers) < MAX_HEADERS:
                self.headers.append({str(k).lower(): str(v) for k, v in headers.items()})

    def add_logs(self, request: ExportLogsServiceRequest) -> None:
        """Add a decoded logs request."""
        self.add_items("logs", list(flatten_logs(request)))

    def add_spans(self, request: ExportTraceServiceRequest) -> None:
        """Add a decoded traces request."""
        self.add_items("spans", list(flatten_spans(request)))

    def add_metrics(self, request: Any) -> None:
        """Add a decoded metrics request."""
        self.add_items("metrics", list(flatten_metrics(request)))

    def add_items(self, kind: str, items: list[Any]) -> None:
        """Add one request's flat items of ``kind`` (``logs``, ``spans``, ``metrics``)."""
        into: list[Any] = getattr(self, kind)
        with self.lock:
            self.requests += 1
            if self.max_items:
                room = max(0, self.max_items - len(self.logs) - len(self.spans) - len(self.metrics))
                if len(items) > room:
                    self.dropped[kind] += len(items) - room
                    items = items[:room]
            into.extend(items)

    def wait_for(self, n_logs: int, n_spans: int = 0, timeout_s: float = 20.0) -> "Received":
        """Wait (bounded) until at least ``n_logs`` records and ``n_spans`` spans arrived.

        Raises:
            TimeoutError: at the deadline, saying how many arrived.
        """
        deadline = time.monotonic() + timeout_s
        while len(self.logs) < n_logs or len(self.spans) < n_spans:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"after {timeout_s:g} s: {len(self.logs)} of {n_logs} log records and "
                    f"{len(self.spans)} of {n_spans} spans arrived"
                )
            time.sleep(0.05)
        return self


MAX_HEADERS = 1000
"""How many requests' headers a :class:`Received` keeps (the first ones)."""


class OtlpRequestError(ValueError):
    """An OTLP request body that cannot be decoded; the message is one line."""


def decode_json_request(kind: str, body: bytes) -> list[Any]:
    """The flat items of one OTLP/JSON request body of ``kind`` (``logs``, ``spans``, ``metrics``).

    Ids are taken as OTLP/JSON writes them (hex) or as protobuf's JSON mapping
    does (base64).

    Raises:
        OtlpRequestError: not JSON, or not OTLP of that kind.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise OtlpRequestError(f"not JSON: {_one_line(e)}") from None
    except RecursionError:
        raise OtlpRequestError("not OTLP JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise OtlpRequestError("not an OTLP JSON object")
    try:
        if kind == "logs":
            logs: list[LogItem] = []
            _json_logs(data, logs, None)
            return logs
        if kind == "spans":
            spans: list[SpanItem] = []
            _json_spans(data, spans)
            return spans
        from google.protobuf import json_format
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        request = json_format.ParseDict(
            data, ExportMetricsServiceRequest(), ignore_unknown_fields=True
        )
        return list(flatten_metrics(request))
    except (_MalformedError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise OtlpRequestError(f"malformed OTLP JSON: {_one_line(e)}") from None
    except RecursionError:
        raise OtlpRequestError("malformed OTLP JSON: nested too deeply") from None


def decode_protobuf_request(kind: str, body: bytes) -> list[Any]:
    """The flat items of one OTLP protobuf request body of ``kind``.

    Raises:
        OtlpRequestError: not a protobuf message of that kind.
    """
    from google.protobuf.message import DecodeError

    try:
        if kind == "logs":
            return list(flatten_logs(ExportLogsServiceRequest.FromString(body)))
        if kind == "spans":
            return list(flatten_spans(ExportTraceServiceRequest.FromString(body)))
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        return list(flatten_metrics(ExportMetricsServiceRequest.FromString(body)))
    except (DecodeError, RecursionError) as e:
        raise OtlpRequestError(f"not an OTLP protobuf {kind} request: {_one_line(e)}") from None
    except (UnicodeDecodeError, ValueError) as e:  # e.g. a string field that is not UTF-8
        raise OtlpRequestError(f"malformed OTLP protobuf {kind}: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200]


class OtlpFileError(ValueError):
    """A file that is not OTLP JSON, with the file and line it failed on."""


# OTLP/JSON writes ids as hex; protobuf's JSON mapping expects base64 for bytes.
_ID_KEYS = ("traceId", "spanId", "parentSpanId")
_SEVERITY = {name: number for name, number in SeverityNumber.items()}
_STATUS = {name: number for name, number in Status.StatusCode.items()}
_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class _MalformedError(ValueError):
    """A JSON value of the wrong type where OTLP expects another."""


def _json_id(value: Any, hex_len: int) -> str:
    """An id as lower-case hex: OTLP/JSON writes hex, protobuf's JSON mapping base64."""
    if not value:
        return ""
    if not isinstance(value, str):
        raise _MalformedError(f"an id must be a string, not {value!r}")
    if len(value) == hex_len:
        return value.lower()
    try:
        return base64.b64decode(value, validate=True).hex()
    except (ValueError, binascii.Error):
        raise _MalformedError(f"id {value!r} is neither hex nor base64") from None


def _json_int(value: Any) -> int:
    # int64 is a string in OTLP/JSON; some writers use numbers. Never a bool.
    if value.__class__ is str or value.__class__ is int:
        return int(value)
    raise _MalformedError(f"expected an integer, not {value!r}")


def _json_value(v: Any) -> Any:  # noqa: PLR0911 -- one return per OTLP value kind
    """The Python value of an OTLP/JSON ``AnyValue`` (as :func:`any_value` gives)."""
    if not v:
        return None
    if not isinstance(v, dict):
        raise _MalformedError(f"expected an AnyValue object, not {v!r}")
    for kind, x in v.items():
        if kind == "stringValue":
            return x
        if kind == "intValue":
            return _json_int(x)
        if kind == "boolValue":
            return bool(x)
        if kind == "doubleValue":
            return _FLOATS[x] if isinstance(x, str) and x in _FLOATS else float(x)
        if kind == "arrayValue":
            return [_json_value(item) for item in (x or {}).get("values", ())]
        if kind == "kvlistValue":
            return _json_attrs((x or {}).get("values", ()))
        if kind == "bytesValue":
            return base64.b64decode(x)
        raise _MalformedError(f"unknown AnyValue kind {kind!r}")
    return None


def _json_attrs(kvs: Any, intern: Callable[[str], str] = sys.intern) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        value = kv.get("value")
        # Strings and ints are most attributes: take them without a call.
        if value.__class__ is dict:
            x = value.get("stringValue")
            if x is None:
                i = value.get("intValue")
                x = int(i) if i.__class__ is str else _json_value(value)
            else:
                x = intern(x)
        else:
            x = _json_value(value)
        # A few dozen keys and mostly repeated values in millions of copies: one
        # string each (as _otlp_json_fast does; ~1.7 GB less at 10,000 nodes).
        out[intern(kv["key"])] = x
    return out


def _json_enum(value: Any, names: dict[str, int]) -> int:
    if isinstance(value, str) and not value.isdigit():
        if value not in names:
            raise _MalformedError(f"unknown enum value {value!r}")
        return names[value]
    return _json_int(value) if value is not None else 0


def _json_logs(data: dict[str, Any], into: list[LogItem], keep: "LogFilter | None") -> None:
    for rl in data.get("resourceLogs") or ():
        resource = _json_attrs((rl.get("resource") or {}).get("attributes") or ())
        for sl in rl.get("scopeLogs") or ():
            scope = str((sl.get("scope") or {}).get("name", ""))
            for r in sl.get("logRecords") or ():
                event_name = r.get("eventName", "")
                if not isinstance(event_name, str):
                    raise _MalformedError(f"eventName must be a string, not {event_name!r}")
                severity = _json_enum(r.get("severityNumber"), _SEVERITY)
                if keep is not None and not keep(event_name, severity):
                    continue
                into.append(
                    LogItem(
                        resource=resource,
                        scope=scope,
                        event_name=event_name,
                        body=_json_value(r.get("body")),
                        severity_number=severity,
                        severity_text=str(r.get("severityText", "")),
                        time_unix_nano=_json_int(r.get("timeUnixNano", 0)),
                        observed_time_unix_nano=_json_int(r.get("observedTimeUnixNano", 0)),
                        trace_id=_json_id(r.get("traceId"), 32),
                        span_id=_json_id(r.get("spanId"), 16),
                        attributes=_json_attrs(r.get("attributes") or ()),
                    )
                )


def _json_spans(data: dict[str, Any], into: list[SpanItem]) -> None:
    for rs in data.get("resourceSpans") or ():
        resource = _json_attrs((rs.get("resource") or {}).get("attributes") or ())
        for ss in rs.get("scopeSpans") or ():
            for s in ss.get("spans") or ():
                name = s.get("name", "")
                if not isinstance(name, str):
                    raise _MalformedError(f"a span's name must be a string, not {name!r}")
                status = s.get("status") or {}
                into.append(
                    SpanItem(
                        resource=resource,
                        name=name,
                        trace_id=_json_id(s.get("traceId"), 32),
                        span_id=_json_id(s.get("spanId"), 16),
                        parent_span_id=_json_id(s.get("parentSpanId"), 16),
                        start=_json_int(s.get("startTimeUnixNano", 0)),
                        end=_json_int(s.get("endTimeUnixNano", 0)),
                        status_code=_json_enum(status.get("code"), _STATUS),
                        status_message=str(status.get("message", "")),
                        attributes=_json_attrs(s.get("attributes") or ()),
                        events=[
                            SpanEventItem(
                                name=str(e.get("name", "")),
                                time=_json_int(e.get("timeUnixNano", 0)),
                                attributes=_json_attrs(e.get("attributes") or ()),
                            )
                            for e in s.get("events") or ()
                        ],
                        links=[
                            SpanLinkItem(
                                trace_id=_json_id(link.get("traceId"), 32),
                                span_id=_json_id(link.get("spanId"), 16),
                                attributes=_json_attrs(link.get("attributes") or ()),
                            )
                            for link in s.get("links") or ()
                        ],
                    )
                )


LogFilter = Callable[[str, int], bool]
"""Which log records to keep, by event name and severity number."""

_LineDecoder = Callable[[bytes, list[LogItem], list[SpanItem], "LogFilter | None"], int]


@functools.cache
def _fast_decoder() -> "_LineDecoder | None":
    """msgspec's decoder of OTLP JSON lines when msgspec is installed, else None."""
    try:
        from torchelastic_otel._otlp_json_fast import Decoder
    except ImportError:  # msgspec is an extra of the timeline: the standard library then
        return None
    return Decoder()


def _read_line(
    path: Path,
    f: Any,
    number: int,
    line: bytes,
    logs: list[LogItem],
    spans: list[SpanItem],
    keep_log: "LogFilter | None",
) -> int:
    """One line with the standard library: its requests, or an error naming the line."""
    try:
        data = json.loads(line)
    except UnicodeDecodeError as e:
        raise OtlpFileError(f"{path}:{number}: cannot read: {e}") from None
    except ValueError as e:
        last = not line.endswith(b"\n") or not f.read(1)
        hint = " (truncated?)" if last else ""
        raise OtlpFileError(f"{path}:{number}: not JSON{hint}: {e}") from None
    if not isinstance(data, dict) or not (
        "resourceLogs" in data or "resourceSpans" in data or "resourceMetrics" in data
    ):
        raise OtlpFileError(
            f"{path}:{number}: not OTLP JSON (expected resourceLogs or resourceSpans)"
        )
    requests = 0
    try:
        if "resourceLogs" in data:
            _json_logs(data, logs, keep_log)
            requests += 1
        if "resourceSpans" in data:
            _json_spans(data, spans)
            requests += 1
    except (_MalformedError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise OtlpFileError(f"{path}:{number}: malformed OTLP: {e}") from None
    return requests


def read_otlp_json(
    path: Path, into: Received | None = None, *, keep_log: LogFilter | None = None
) -> Received:
    """Read an OTLP JSON file (the Collector's ``file`` exporter: one request per line).

    The JSON is read directly into flat items (ids as hex, as the Collector writes
    them; base64, as protobuf's JSON mapping writes them, is taken too).

    Args:
        path: the file.
        into: add to this :class:`Received` (default: a new one).
        keep_log: keep only the log records for which this returns true (given the
            event name and severity number); the others are not decoded.

    Raises:
        OtlpFileError: naming the file and line, for unreadable, truncated or
            non-OTLP content. Empty lines are skipped.
    """
    received = into if into is not None else Received()
    logs: list[LogItem] = []
    spans: list[SpanItem] = []
    found = requests = 0
    fast = _fast_decoder()
    # Nothing read here is garbage: the collector's passes over a growing heap of
    # dicts would cost a third of the time on a large file.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if not line or line.isspace():
                    continue
                if fast is not None:
                    try:
                        requests += fast(line, logs, spans, keep_log)
                        found += 1
                        continue
                    except (ValueError, TypeError):
                        # msgspec's errors are ValueErrors: the standard library reads
                        # the line again, and names what is wrong with it.
                        pass
                requests += _read_line(path, f, number, line, logs, spans, keep_log)
                found += 1
    except OSError as e:
        raise OtlpFileError(f"{path}: cannot read: {e}") from None
    finally:
        if collecting:
            gc.enable()
    if not found:
        raise OtlpFileError(f"{path}: no OTLP data in the file")
    with received.lock:
        received.logs.extend(logs)
        received.spans.extend(spans)
        received.requests += requests
    return received


def write_otlp_json(received: Received, path: Path) -> None:
    """Write logs and spans as OTLP JSON lines (what ``read_otlp_json`` reads).

    As the Collector's ``file`` exporter writes them: hex ids, one request per
    line; consecutive items of one resource share a line.
    """
    lines: list[str] = []
    for resource, group in _runs(received.logs):
        records = [
            {
                "timeUnixNano": str(log["time_unix_nano"]),
                "observedTimeUnixNano": str(log["observed_time_unix_nano"]),
                "severityNumber": log["severity_number"],
                "severityText": log["severity_text"],
                "body": _json_any(log["body"]),
                "attributes": _json_kvs(log["attributes"]),
                "traceId": log["trace_id"],
                "spanId": log["span_id"],
                "eventName": log["event_name"],
            }
            for log in group
        ]
        scope = {"name": group[0]["scope"]} if group[0]["scope"] else {}
        request = {
            "resourceLogs": [
                {
                    "resource": {"attributes": _json_kvs(resource)},
                    "scopeLogs": [{"scope": scope, "logRecords": records}],
                }
            ]
        }
        lines.append(json.dumps(request, separators=(",", ":")))
    for resource, spans in _runs(received.spans):
        items = [
            {
                "traceId": s["trace_id"],
                "spanId": s["span_id"],
                "parentSpanId": s["parent_span_id"],
                "name": s["name"],
                "startTimeUnixNano": str(s["start"]),
                "endTimeUnixNano": str(s["end"]),
                "attributes": _json_kvs(s["attributes"]),
                "status": {"code": s["status_code"], "message": s["status_message"]},
                "events": [
                    {
                        "timeUnixNano": str(e["time"]),
                        "name": e["name"],
                        "attributes": _json_kvs(e["attributes"]),
                    }
                    for e in s["events"]
                ],
                "links": [
                    {
                        "traceId": link["trace_id"],
                        "spanId": link["span_id"],
                        "attributes": _json_kvs(link["attributes"]),
                    }
                    for link in s.get("links", [])
                ],
            }
            for s in spans
        ]
        request = {
            "resourceSpans": [
                {
                    "resource": {"attributes": _json_kvs(resource)},
                    "scopeSpans": [{"spans": items}],
                }
            ]
        }
        lines.append(json.dumps(request, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


_Item = TypeVar("_Item", LogItem, SpanItem)


def _runs(items: list[_Item]) -> Iterator[tuple[dict[str, Any], list[_Item]]]:
    """Consecutive items that share a resource (and, for logs, a scope)."""
    group: list[_Item] = []
    for item in items:
        if group and (
            item["resource"] != group[0]["resource"]
            or item.get("scope") != group[0].get("scope")
            or len(group) >= 512
        ):
            yield group[0]["resource"], group
            group = []
        group.append(item)
    if group:
        yield group[0]["resource"], group


def _json_kvs(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _json_any(v)} for k, v in d.items()]


def _json_any(value: Any) -> dict[str, Any]:  # noqa: PLR0911 -- one return per OTLP value kind
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"doubleValue": value}
        return {
            "doubleValue": "NaN"
            if math.isnan(value)
            else ("Infinity" if value > 0 else "-Infinity")
        }
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_json_any(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": _json_kvs({str(k): v for k, v in value.items()})}}
    return {"stringValue": str(value)}
