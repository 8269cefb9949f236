"""OTLP JSON lines decoded with msgspec: the timeline's fast path for large files.

:func:`torchelastic_otel.otlp_data.read_otlp_json` uses this when ``msgspec`` is
installed (the ``timeline`` extra brings it; agents never need it) and the
standard library otherwise. On a 1,024-node job (156 MB of OTLP JSON) the
standard library spends ~2 s in ``json.loads`` building a dict for every
``{"key": ..., "value": {"stringValue": ...}}`` and ~3 s more walking them;
msgspec decodes each line straight into the typed structs below (in C, skipping
what the timeline never reads, such as metrics) in ~0.5 s, and only the flat
items are built in Python.

The items are exactly those of the standard-library path. Anything this path does
not take as is (a malformed line, an unusual id or enum) raises, and the caller
decodes that line again with the standard library, which either reads it or
raises the error that names the problem: the two paths never disagree on what a
file holds.

Example::

    >>> decode = Decoder()
    >>> logs, spans = [], []
    >>> decode(b'{"resourceSpans": []}', logs, spans, None)
    1
"""

import base64
import sys
from collections.abc import Callable
from typing import Any

import msgspec
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Status

# Self-contained: otlp_data imports this module, so nothing is imported back from it.
# The items are otlp_data's LogItem and SpanItem (tests check them item for item).
Item = dict[str, Any]
LogFilter = Callable[[str, int], bool]
_SEVERITY = dict(SeverityNumber.items())
_STATUS = dict(Status.StatusCode.items())

# The OTLP/JSON schema, as far as the timeline reads it; unknown fields are skipped
# by the decoder without being built. gc=False: these are acyclic, short-lived and
# made by the hundred thousand.


class _AnyValue(msgspec.Struct, frozen=True, gc=False):
    stringValue: str | None = None  # noqa: N815 -- OTLP/JSON's field names
    intValue: int | None = None  # noqa: N815
    boolValue: bool | None = None  # noqa: N815
    doubleValue: float | None = None  # noqa: N815
    arrayValue: "_ArrayValue | None" = None  # noqa: N815
    kvlistValue: "_KvList | None" = None  # noqa: N815
    bytesValue: str | None = None  # noqa: N815


class _ArrayValue(msgspec.Struct, gc=False):
    values: list[_AnyValue] = []


_NONE = _AnyValue()


class _KeyValue(msgspec.Struct, gc=False):
    key: str
    value: _AnyValue = _NONE


class _KvList(msgspec.Struct, gc=False):
    values: list[_KeyValue] = []


class _Resource(msgspec.Struct, gc=False):
    attributes: list[_KeyValue] = []


class _Scope(msgspec.Struct, gc=False):
    name: str = ""


class _LogRecord(msgspec.Struct, gc=False):
    timeUnixNano: int = 0  # noqa: N815
    observedTimeUnixNano: int = 0  # noqa: N815
    severityNumber: int | str | None = None  # noqa: N815 -- a number or the enum's name
    severityText: str = ""  # noqa: N815
    body: _AnyValue | None = None
    attributes: list[_KeyValue] = []
    traceId: str = ""  # noqa: N815
    spanId: str = ""  # noqa: N815
    eventName: str = ""  # noqa: N815


class _ScopeLogs(msgspec.Struct, gc=False):
    scope: _Scope | None = None
    logRecords: list[_LogRecord] = []  # noqa: N815


class _ResourceLogs(msgspec.Struct, gc=False):
    resource: _Resource | None = None
    scopeLogs: list[_ScopeLogs] = []  # noqa: N815


class _Event(msgspec.Struct, gc=False):
    timeUnixNano: int = 0  # noqa: N815
    name: str = ""
    attributes: list[_KeyValue] = []


class _Link(msgspec.Struct, gc=False):
    traceId: str = ""  # noqa: N815
    spanId: str = ""  # noqa: N815
    attributes: list[_KeyValue] = []


class _Status(msgspec.Struct, gc=False):
    code: int | str | None = None
    message: str = ""


class _Span(msgspec.Struct, gc=False):
    traceId: str = ""  # noqa: N815
    spanId: str = ""  # noqa: N815
    parentSpanId: str = ""  # noqa: N815
    name: str = ""
    startTimeUnixNano: int = 0  # noqa: N815
    endTimeUnixNano: int = 0  # noqa: N815
    attributes: list[_KeyValue] = []
    status: _Status | None = None
    events: list[_Event] = []
    links: list[_Link] = []


class _ScopeSpans(msgspec.Struct, gc=False):
    spans: list[_Span] = []


class _ResourceSpans(msgspec.Struct, gc=False):
    resource: _Resource | None = None
    scopeSpans: list[_ScopeSpans] = []  # noqa: N815


class _Request(msgspec.Struct, gc=False):
    resourceLogs: list[_ResourceLogs] | None = None  # noqa: N815
    resourceSpans: list[_ResourceSpans] | None = None  # noqa: N815
    # Not read by the timeline: checked for presence, never decoded.
    resourceMetrics: msgspec.Raw | None = None  # noqa: N815


class NotOtlpError(ValueError):
    """The line decoded, but holds none of the three OTLP requests."""


def _value(v: _AnyValue) -> Any:  # noqa: PLR0911 -- one return per OTLP value kind
    """An AnyValue that is not a string (those are taken inline)."""
    if v.intValue is not None:
        return v.intValue
    if v.boolValue is not None:
        return v.boolValue
    if v.doubleValue is not None:
        return v.doubleValue
    if v.arrayValue is not None:
        return [
            x.stringValue if x.stringValue is not None else _value(x) for x in v.arrayValue.values
        ]
    if v.kvlistValue is not None:
        return _attrs(v.kvlistValue.values)
    if v.bytesValue is not None:
        return base64.b64decode(v.bytesValue)
    return None


def _attrs(kvs: list[_KeyValue], intern: Callable[[str], str] = sys.intern) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        x = v.stringValue  # most attributes: no call
        # A few dozen distinct keys and mostly repeated values (run ids, hosts,
        # states), in millions of copies: one string each. At 10,000 nodes the
        # timeline's peak memory went from 3.6 GB to 1.9 GB, and its time down.
        out[intern(kv.key)] = intern(x) if x is not None else _value(v)
    return out


def _id(value: str, hex_len: int) -> str:
    """An id as lower-case hex; base64 (protobuf's JSON mapping) is converted."""
    if len(value) == hex_len:
        return value.lower()
    if not value:
        return ""
    return base64.b64decode(value, validate=True).hex()  # else: the standard library's turn


def _enum(value: int | str | None, names: dict[str, int]) -> int:
    """An enum given by number, digits or name (``SEVERITY_NUMBER_INFO``)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if value.isdigit():
        return int(value)
    number = names.get(value)
    if number is None:
        raise ValueError(f"unknown enum value {value!r}")  # the standard library says so
    return number


class Decoder:
    """Decodes one OTLP JSON line into flat items (see the module docstring)."""

    def __init__(self) -> None:
        # strict=False: int64 is a string in OTLP/JSON ("1700000000000000000"), and
        # doubles may be "NaN", "Infinity" or "-Infinity"; the decoder converts them
        # in C.
        self._decode = msgspec.json.Decoder(_Request, strict=False).decode

    def __call__(
        self,
        line: bytes,
        logs: list[Any],  # of otlp_data.LogItem
        spans: list[Any],  # of otlp_data.SpanItem
        keep: LogFilter | None,
    ) -> int:
        """Append the line's items to ``logs`` and ``spans``; return its requests.

        Raises:
            msgspec.MsgspecError, NotOtlpError, ValueError: the line is for the
                standard library to decode (or to name what is wrong with it).
                Nothing is appended then.
        """
        request = self._decode(line)
        if request.resourceLogs is None and request.resourceSpans is None:
            if request.resourceMetrics is None:
                raise NotOtlpError("no resourceLogs, resourceSpans or resourceMetrics")
            return 0
        new_logs: list[Item] = []
        new_spans: list[Item] = []
        requests = 0
        if request.resourceLogs is not None:
            self._logs(request.resourceLogs, new_logs, keep)
            requests += 1
        if request.resourceSpans is not None:
            self._spans(request.resourceSpans, new_spans)
            requests += 1
        logs.extend(new_logs)
        spans.extend(new_spans)
        return requests

    @staticmethod
    def _logs(resource_logs: list[_ResourceLogs], into: list[Item], keep: LogFilter | None) -> None:
        for rl in resource_logs:
            resource = _attrs(rl.resource.attributes) if rl.resource is not None else {}
            for sl in rl.scopeLogs:
                scope = sl.scope.name if sl.scope is not None else ""
                for r in sl.logRecords:
                    severity = _enum(r.severityNumber, _SEVERITY)
                    if keep is not None and not keep(r.eventName, severity):
                        continue
                    body = r.body
                    text = body.stringValue if body is not None else None
                    into.append(
                        dict(
                            resource=resource,
                            scope=scope,
                            event_name=r.eventName,
                            body=text if text is not None or body is None else _value(body),
                            severity_number=severity,
                            severity_text=r.severityText,
                            time_unix_nano=r.timeUnixNano,
                            observed_time_unix_nano=r.observedTimeUnixNano,
                            trace_id=_id(r.traceId, 32),
                            span_id=_id(r.spanId, 16),
                            attributes=_attrs(r.attributes),
                        )
                    )

    @staticmethod
    def _spans(resource_spans: list[_ResourceSpans], into: list[Item]) -> None:
        for rs in resource_spans:
            resource = _attrs(rs.resource.attributes) if rs.resource is not None else {}
            for ss in rs.scopeSpans:
                for s in ss.spans:
                    status = s.status
                    into.append(
                        dict(
                            resource=resource,
                            name=s.name,
                            trace_id=_id(s.traceId, 32),
                            span_id=_id(s.spanId, 16),
                            parent_span_id=_id(s.parentSpanId, 16),
                            start=s.startTimeUnixNano,
                            end=s.endTimeUnixNano,
                            status_code=_enum(status.code, _STATUS) if status is not None else 0,
                            status_message=status.message if status is not None else "",
                            attributes=_attrs(s.attributes),
                            events=[
                                dict(
                                    name=e.name,
                                    time=e.timeUnixNano,
                                    attributes=_attrs(e.attributes),
                                )
                                for e in s.events
                            ],
                            links=[
                                dict(
                                    trace_id=_id(link.traceId, 32),
                                    span_id=_id(link.spanId, 16),
                                    attributes=_attrs(link.attributes),
                                )
                                for link in s.links
                            ],
                        )
                    )
