"""The fast path (protobuf built by us) against the SDK path, and its start-up proof.

The same events go through a pipeline with the SDK's in-memory exporters and
through one whose real OTLP exporters receive our prebuilt requests; decoded, the
two must carry the same records and spans. The fast path is used only when the
installed exporter is a tested version and a probe round-trips through it;
otherwise the pipeline falls back to the SDK path.
"""

from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from tests.support.memory import memory_pipeline, record_otel, shared_receiver
from tests.unit.test_mapping import TRACEBACK, agent_event, rdzv_event
from torchelastic_otel import otel
from torchelastic_otel.events import Event, NodeState, RdzvEvent
from torchelastic_otel.otel import _exporters
from torchelastic_otel.otel.settings import Settings
from torchelastic_otel.otel.sinks import _light_spans, _protobuf
from torchelastic_otel.semconv import DURATION_MS

JOINED = (
    "The node 'n1' has joined round 2 of the rendezvous 'job-7' as rank 0 in a world of size 2."
)
EVENTS: list[Event | RdzvEvent] = [
    rdzv_event(),
    rdzv_event(message=JOINED, rank=0),
    agent_event("RENDEZVOUS", duration_ms=12.5, group_rank=0),
    agent_event("START", worker_id="7", global_rank=0, group_rank=0),
    agent_event("FAILED", worker_id="7", global_rank=0, group_rank=0, raw_error=TRACEBACK),
    agent_event("START", worker_id="8", global_rank=1, group_rank=0),
    rdzv_event(NodeState.FAILED, error_trace=TRACEBACK, rank=0),
]


def _normal(value: Any) -> Any:
    # Arrays arrive as lists from protobuf and as tuples from the SDK.
    return list(value) if isinstance(value, tuple) else value


def _shapes(path: str) -> tuple[list[Any], list[Any], set[int]]:
    with memory_pipeline(path) as m:
        for event in EVENTS:
            record_otel(event)
        m.pipeline.shutdown(5000)
        logs = [
            (
                r.log_record.event_name,
                r.log_record.body,
                r.log_record.severity_number.value,
                {k: _normal(v) for k, v in (r.log_record.attributes or {}).items()},
            )
            for r in m.log_records()
        ]
        spans = m.finished_spans()
    names = {s.context.span_id: s.name for s in spans}
    shapes = sorted(
        (
            s.name,
            sorted(((k, _normal(v)) for k, v in (s.attributes or {}).items()), key=str),
            # A worker event's duration is a time (the moment each run saw it), like
            # the spans' own times, which are not compared either.
            [
                (e.name, {k: v for k, v in (e.attributes or {}).items() if k != DURATION_MS})
                for e in s.events
            ],
            (s.status.status_code.value, s.status.description or ""),
            names.get(s.parent.span_id, "?") if s.parent else "",
        )
        for s in spans
    )
    return logs, shapes, {s.context.trace_id for s in spans}


def test_fast_path_matches_the_sdk() -> None:
    sdk_logs, sdk_spans, sdk_traces = _shapes("sdk")
    fast_logs, fast_spans, fast_traces = _shapes("fast")
    assert fast_logs == sdk_logs
    assert fast_spans == sdk_spans
    # Same ids: both derive the trace from run_id.
    assert fast_traces == sdk_traces


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_prebuilt_exporter_proves_the_round_trip(protocol: str) -> None:
    s = Settings(endpoint="http://127.0.0.1:9", logs_protocol=protocol, traces_protocol=protocol)
    for signal in (_exporters.LOGS, _exporters.TRACES):
        releases: list[Any] = []
        exporter = _protobuf.prebuilt_exporter(s, signal, releases)
        assert exporter is not None
        try:
            assert _protobuf.round_trips(exporter, signal)
        finally:
            exporter.shutdown()
            for release in releases:
                release()


def test_an_untested_exporter_version_takes_the_sdk_path(monkeypatch: pytest.MonkeyPatch) -> None:
    newest = _protobuf.TESTED["opentelemetry-exporter-otlp-proto-grpc"][1]
    monkeypatch.setattr("importlib.metadata.version", lambda name: f"{newest[0]}.{newest[1] + 1}.0")
    assert "outside the tested" in _protobuf.untested_version(
        "opentelemetry-exporter-otlp-proto-grpc"
    )
    assert _protobuf.prebuilt_exporter(Settings(), _exporters.LOGS, []) is None
    _assert_sdk_path_delivers()


def test_a_probe_that_does_not_round_trip_takes_the_sdk_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exporter whose translation step changed: the fast path must not be used."""
    monkeypatch.setattr(_protobuf, "_grpc_subclass", lambda base: base)  # our seam missing
    assert _protobuf.prebuilt_exporter(Settings(), _exporters.LOGS, []) is None
    _assert_sdk_path_delivers()


def _assert_sdk_path_delivers() -> None:
    receiver = shared_receiver()
    with receiver.received.lock:
        receiver.received.logs.clear()
    s = Settings(
        endpoint=receiver.endpoint,
        schedule_delay_ms=10,
        use_global_providers=False,
        metrics_exporters=("none",),
    )
    with otel.use(otel.Pipeline(s)) as p:
        record_otel(rdzv_event(rank=0))
        assert p.force_flush(10)
        assert p.paths == {"logs": "sdk", "spans": "sdk"}
    assert [r["attributes"]["rank"] for r in receiver.received.logs] == [0]


def _span_pair() -> tuple[Any, Any]:
    """An SDK span and a light span, each fresh and recording."""
    from opentelemetry.sdk.trace import TracerProvider

    sdk = TracerProvider().get_tracer("t").start_span("s")
    light = _light_spans.LightTracer(lambda pb: None).start_span("s")
    return sdk, light


def _status(span: Any) -> tuple[StatusCode, str | None]:
    if isinstance(span, _light_spans.LightSpan):
        return span._status.status_code, span._status.description
    return span.status.status_code, span.status.description


@pytest.mark.parametrize(
    "calls",
    [
        [("set", StatusCode.ERROR, "boom"), ("set", StatusCode.UNSET, None)],
        [("set", StatusCode.OK, None), ("set", StatusCode.ERROR, "late")],
        [("set", StatusCode.ERROR, "first"), ("set", StatusCode.OK, None)],
        [("set", StatusCode.OK, "ignored description"), ("end",)],
        [("end",), ("set", StatusCode.ERROR, "after end")],
        [("status", StatusCode.ERROR, "as a Status"), ("set", StatusCode.UNSET, None)],
    ],
)
def test_light_span_status_follows_the_sdk(calls: list[tuple[Any, ...]]) -> None:
    from opentelemetry.trace import Status

    sdk, light = _span_pair()
    for span in (sdk, light):
        for call in calls:
            if call[0] == "end":
                span.end()
            elif call[0] == "status":
                span.set_status(Status(call[1], call[2]))
            else:
                span.set_status(call[1], call[2])
    assert _status(light) == _status(sdk)


# --- light spans against SDK spans: the same calls, the same protobuf --------------------

_TRACE, _PARENT = 0x5B8EFFF798038103D269B633813FC60C, 0xEEE19B7EC3C1B174
_LINKED: list[tuple[int, int, bool, dict[str, int | str]]] = [
    (0x1000 + i, 0x2000 + i, i % 2 == 0, {"k": i, "n": f"link-{i}"}) for i in range(3)
]

_LIMITS = {
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "3",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "5",
    "OTEL_SPAN_EVENT_COUNT_LIMIT": "2",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "2",
    "OTEL_SPAN_LINK_COUNT_LIMIT": "2",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT": "1",
}


def _script(span: Any) -> None:
    """What the state machine does to a span, and more: attributes, events, renames."""
    span.set_attribute("a", "a long string value")
    span.set_attributes({"b": 2, "c": [1, 2, 3], "d": True})
    span.set_attribute("a", "again, longer")  # an update: moves "a" last in the SDK
    span.set_attribute("e", 2.5)
    span.add_event("first", {"x": 1, "y": "a long event value", "z": 3}, timestamp=10)
    span.add_event("second", None, timestamp=20)
    span.add_event("third", {"x": 3}, timestamp=30)
    span.update_name("renamed")
    span.end(end_time=100)
    span.set_attribute("after", "end")  # ignored once ended
    span.add_event("after end", timestamp=200)


def _links() -> list[Any]:
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    return [
        Link(SpanContext(t, s, is_remote=remote, trace_flags=TraceFlags(1)), attributes)
        for t, s, remote, attributes in _LINKED
    ]


def _parent_context() -> Any:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    parent = SpanContext(_TRACE, _PARENT, is_remote=False, trace_flags=TraceFlags(1))
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _sdk_protobuf(sampler: Any = None) -> Any:
    """The span as the SDK records it and as its OTLP encoder writes it."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    span = provider.get_tracer("t").start_span(
        "s", _parent_context(), attributes={"start": 1}, links=_links(), start_time=5
    )
    _script(span)
    (finished,) = memory.get_finished_spans()
    request = encode_spans([finished])
    return request.resource_spans[0].scope_spans[0].spans[0]


def _light_protobuf() -> Any:
    ended: list[Any] = []
    span = _light_spans.LightTracer(ended.append).start_span(
        "s", _parent_context(), attributes={"start": 1}, links=_links(), start_time=5
    )
    _script(span)
    (pb,) = ended
    return pb


def _comparable(pb: Any) -> Any:
    """The span without the ids each side generates for itself."""
    out = type(pb)()
    out.CopyFrom(pb)
    out.span_id = b""
    return out


@pytest.mark.parametrize("limits", [{}, _LIMITS], ids=["no limits", "limits"])
def test_light_span_protobuf_is_the_sdks(
    monkeypatch: pytest.MonkeyPatch, limits: dict[str, str]
) -> None:
    """Attributes, their limits, events, links, renames and ending, byte for byte."""
    for name, value in limits.items():
        monkeypatch.setenv(name, value)
    sdk, light = _comparable(_sdk_protobuf()), _comparable(_light_protobuf())
    assert light == sdk, f"light:\n{light}\nSDK:\n{sdk}"


def test_light_spans_are_never_sampled_out_and_neither_are_ours_on_the_sdk_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_TRACES_SAMPLER applies on neither path: both record and mark the span sampled."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    from torchelastic_otel.otel.sinks import _sdk
    from torchelastic_otel.otel.sinks._base import Batches

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from torchelastic_otel.otel._ledger import Ledger

    batches = Batches("spans", InMemorySpanExporter(), 10, Ledger(60.0))
    sink = _sdk.our_spans(Resource.create({}), batches)
    ours = sink.tracer.start_span("s", _parent_context())
    light = _light_spans.LightTracer(lambda pb: None).start_span("s", _parent_context())
    for span in (ours, light):
        assert span.is_recording()
        assert span.get_span_context().trace_flags.sampled
    ours.end()
    assert len(batches) == 1
    assert _comparable(_sdk_protobuf(ALWAYS_ON)) == _comparable(_light_protobuf())


@pytest.mark.parametrize(
    "limits",
    [{}, {"OTEL_ATTRIBUTE_COUNT_LIMIT": "2", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "4"}],
    ids=["no limits", "limits"],
)
def test_fast_log_record_is_the_sdks(
    monkeypatch: pytest.MonkeyPatch, limits: dict[str, str]
) -> None:
    """The fast path's log record against the SDK's, limits included (the newest kept)."""
    from opentelemetry import context
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from torchelastic_otel.otel.mapping import MappedEvent
    from torchelastic_otel.otel.sinks._sdk import LoggerSink

    for name, value in limits.items():
        monkeypatch.setenv(name, value)
    m = MappedEvent(
        "agent",
        "torchelastic.worker.status.FAILED",
        "a body longer than the limit",
        17,
        {"run_id": "r", "a": "a long value", "b": 2, "c": [1, 2], "e": True},
        123,
    )
    memory = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    LoggerSink(provider.get_logger("s")).emit(m, 456, context.Context())
    (record,) = memory.get_finished_logs()
    sdk = encode_logs([record]).resource_logs[0].scope_logs[0].log_records[0]
    fast = _protobuf.Encoder.from_env().log_record(m, 456, 0, 0)
    assert fast == sdk, f"fast:\n{fast}\nSDK:\n{sdk}"
