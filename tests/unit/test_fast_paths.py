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
        exporter = _protobuf.prebuilt_exporter(s, signal)
        assert exporter is not None
        try:
            assert _protobuf.round_trips(exporter, signal)
        finally:
            exporter.shutdown()


def test_an_untested_exporter_version_takes_the_sdk_path(monkeypatch: pytest.MonkeyPatch) -> None:
    newest = _protobuf.TESTED["opentelemetry-exporter-otlp-proto-grpc"][1]
    monkeypatch.setattr("importlib.metadata.version", lambda name: f"{newest[0]}.{newest[1] + 1}.0")
    assert "outside the tested" in _protobuf.untested_version(
        "opentelemetry-exporter-otlp-proto-grpc"
    )
    assert _protobuf.prebuilt_exporter(Settings(), _exporters.LOGS) is None
    _assert_sdk_path_delivers()


def test_a_probe_that_does_not_round_trip_takes_the_sdk_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exporter whose translation step changed: the fast path must not be used."""
    monkeypatch.setattr(_protobuf, "_grpc_subclass", lambda base: base)  # our seam missing
    assert _protobuf.prebuilt_exporter(Settings(), _exporters.LOGS) is None
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
