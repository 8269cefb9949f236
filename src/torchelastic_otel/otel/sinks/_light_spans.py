"""Spans straight to OTLP protobuf: the fast span path.

An SDK span costs about 100 µs from ``start_span`` to its wire form (bounded
attributes, a ReadableSpan, the exporter's encoder), which capped the export of
worker events near 7k/s. When the pipeline owns its OTLP span exporter and the
fast path is proven (:mod:`._protobuf`), the span state machine gets a
:class:`LightTracer` instead: its spans hold plain fields and become protobuf
``Span`` messages when they end. The exporter gets them as a
:class:`~torchelastic_otel.otel.sinks._protobuf.Prebuilt` request, exactly as the
log path does, and keeps its own transport.

Only the span API the state machine uses is implemented, with the SDK's rules
(status, attributes and events are frozen once a span ended; an ``OK`` status is
final; ``UNSET`` is ignored; a description goes with ``ERROR`` only; an updated
attribute moves last) and its span limits (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``,
``OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT``, ``OTEL_SPAN_EVENT_COUNT_LIMIT``,
``OTEL_SPAN_LINK_COUNT_LIMIT``, the event and link attribute limits and their
``OTEL_ATTRIBUTE_*`` defaults), which keep the newest attributes, events and links
and count the rest as dropped, as the SDK does. tests/unit/test_fast_paths.py runs
the same calls on an SDK span and on a light one and compares their protobuf.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Link, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.util import types

from torchelastic_otel.otel._ids import SeedIndependentIds
from torchelastic_otel.otel.sinks._protobuf import key_values

_STATUS = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags in the OTLP trace proto


class Limits:
    """The SDK's span limits, read from the environment the way the SDK reads them."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace import SpanLimits

        limits = SpanLimits()
        self.max_attributes = limits.max_span_attributes
        self.max_length = limits.max_span_attribute_length
        self.max_events = limits.max_events
        self.max_event_attributes = limits.max_event_attributes
        self.max_links = limits.max_links
        self.max_link_attributes = limits.max_link_attributes


def _newest(items: list[Any], limit: int | None) -> tuple[list[Any], int]:
    """The last ``limit`` items and how many went (the SDK's bounded containers keep the newest)."""
    if limit is None or len(items) <= limit:
        return items, 0
    return (items[len(items) - limit :] if limit else []), len(items) - limit


class LightSpan(trace.Span):
    """A recording span with plain fields; handed to ``on_end`` as protobuf."""

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        start_ns: int,
        attributes: Mapping[str, Any] | None,
        on_end: Callable[[PbSpan], None],
        limits: Limits,
        links: Sequence[Link] = (),
    ) -> None:
        self.name = name
        self._context = context
        self._parent = parent
        self._start = start_ns
        self._limits = limits
        self._attributes: dict[str, Any] = {}
        self._dropped_attributes = 0
        for key, value in (attributes or {}).items():
            self._set(key, value)
        self._events: list[tuple[str, int, dict[str, Any]]] = []
        self._dropped_events = 0
        self._status = Status(StatusCode.UNSET)
        self._ended = False
        self._on_end = on_end
        self._links, self._dropped_links = _newest(list(links), limits.max_links)

    def get_span_context(self) -> SpanContext:
        """This span's ids."""
        return self._context

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        """Set several attributes (ignored once ended, as the SDK does)."""
        if not self._ended:
            for key, value in attributes.items():
                self._set(key, value)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        """Set one attribute."""
        if not self._ended:
            self._set(key, value)

    def _set(self, key: str, value: Any) -> None:
        """As the SDK's ``BoundedAttributes``: an update moves last; when full, the oldest goes."""
        if value is None:  # the SDK refuses it, and keeps what was there
            return
        attributes = self._attributes
        if key in attributes:
            del attributes[key]
        elif (
            self._limits.max_attributes is not None
            and len(attributes) >= self._limits.max_attributes
        ):
            self._dropped_attributes += 1
            if not attributes:  # a limit of 0
                return
            del attributes[next(iter(attributes))]
        attributes[key] = value

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        """Add a span event (beyond the event limit, the oldest goes, as in the SDK)."""
        if self._ended:
            return
        from time import time_ns

        self._events.append((name, timestamp or time_ns(), dict(attributes or {})))
        max_events = self._limits.max_events
        if max_events is not None and len(self._events) > max_events:
            self._dropped_events += len(self._events) - max_events
            del self._events[: len(self._events) - max_events]

    def update_name(self, name: str) -> None:
        """Rename the span (ignored once ended)."""
        if not self._ended:
            self.name = name

    def is_recording(self) -> bool:
        """True until the span ends."""
        return not self._ended

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Set the status as the SDK does: ignored once ended, after ``OK``, or to ``UNSET``."""
        if self._ended or self._status.status_code is StatusCode.OK:
            return
        code = status.status_code if isinstance(status, Status) else status
        if code is StatusCode.UNSET:
            return
        if isinstance(status, Status):
            # The SDK ignores a separate description when given a Status.
            self._status = status
        else:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Add an ``exception`` event for ``exception``."""
        attrs = {
            "exception.type": type(exception).__name__,
            "exception.message": str(exception),
            **dict(attributes or {}),
        }
        self.add_event("exception", attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """End the span once and hand its protobuf to the sink."""
        if self._ended:
            return
        self._ended = True
        from time import time_ns

        self._on_end(self._encode(end_time or time_ns()))

    def _encode(self, end_ns: int) -> PbSpan:
        limits = self._limits
        attributes = key_values(self._attributes, None, limits.max_length)
        events = []
        for name, t, attrs in self._events:
            kept, dropped = _newest(list(attrs.items()), limits.max_event_attributes)
            events.append(
                PbSpan.Event(
                    time_unix_nano=t,
                    name=name,
                    attributes=key_values(dict(kept), None, limits.max_length),
                    dropped_attributes_count=dropped,
                )
            )
        links = []
        for link in self._links:
            kept, dropped = _newest(
                list((link.attributes or {}).items()), limits.max_link_attributes
            )
            links.append(
                PbSpan.Link(
                    trace_id=link.context.trace_id.to_bytes(16, "big"),
                    span_id=link.context.span_id.to_bytes(8, "big"),
                    # The SDK does not cut link attribute values to the length limit.
                    attributes=key_values(dict(kept), None, None),
                    dropped_attributes_count=dropped,
                    flags=_HAS_IS_REMOTE | (_IS_REMOTE if link.context.is_remote else 0),
                )
            )
        parent = self._parent
        return PbSpan(
            trace_id=self._context.trace_id.to_bytes(16, "big"),
            span_id=self._context.span_id.to_bytes(8, "big"),
            parent_span_id=parent.span_id.to_bytes(8, "big") if parent else b"",
            # As the SDK's encoder: "has is_remote", and whether the parent is remote.
            flags=_HAS_IS_REMOTE | (_IS_REMOTE if parent and parent.is_remote else 0),
            name=self.name,
            kind=PbSpan.SpanKind.SPAN_KIND_INTERNAL,
            start_time_unix_nano=self._start,
            end_time_unix_nano=max(end_ns, self._start),
            attributes=attributes,
            dropped_attributes_count=self._dropped_attributes,
            events=events,
            dropped_events_count=self._dropped_events,
            links=links,
            dropped_links_count=self._dropped_links,
            status=PbStatus(
                code=_STATUS[self._status.status_code],  # type: ignore[arg-type]
                message=self._status.description or "",
            ),
        )


class LightTracer(trace.Tracer):
    """Makes :class:`LightSpan` s; ids from ``id_generator`` (wrapped by the state machine)."""

    def __init__(self, on_end: Callable[[PbSpan], None]) -> None:
        self.id_generator: IdGenerator = SeedIndependentIds()
        self._on_end = on_end
        self._limits = Limits()

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> LightSpan:
        """A span child of the span in ``context`` (a new trace if there is none)."""
        parent = trace.get_current_span(context).get_span_context()
        # A root span (the job span) takes the generator's trace id, which the state
        # machine forces to the run's.
        trace_id = parent.trace_id if parent.is_valid else self.id_generator.generate_trace_id()
        span_context = SpanContext(
            trace_id=trace_id,
            span_id=self.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=_SAMPLED,
        )
        from time import time_ns

        return LightSpan(
            name,
            span_context,
            parent if parent.is_valid else None,
            start_time or time_ns(),
            attributes,
            self._on_end,
            self._limits,
            list(links or ()),
        )

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        """Not used by the state machine."""
        raise NotImplementedError("LightTracer only supports start_span")
