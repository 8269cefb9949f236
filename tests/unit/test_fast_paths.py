"""The fast log and span paths (protobuf built by us) against the SDK's path.

The same events go through a pipeline with the SDK's in-memory exporters and
through one whose OTLP exporters receive our prebuilt requests; decoded, the two
must carry the same records and spans.
"""

from typing import Any

import pytest

from tests.support.memory import memory_pipeline, record_otel
from tests.unit.test_mapping import TRACEBACK, agent_event, rdzv_event
from torchelastic_otel.events import Event, NodeState, RdzvEvent
from torchelastic_otel.otel import encoding, pipeline
from torchelastic_otel.otel.settings import Settings
from torchelastic_otel.otlp_data import Received


class _Capture:
    """Stands in for an OTLP exporter: keeps the requests it would send."""

    def __init__(self, received: Received, signal: str) -> None:
        self.received = received
        self.signal = signal

    def export(self, batch: Any) -> Any:
        assert isinstance(batch, encoding.Prebuilt), "the fast path hands over requests"
        if self.signal == "logs":
            self.received.add_logs(batch.request)
        else:
            self.received.add_spans(batch.request)
        return type("Result", (), {"name": "SUCCESS"})()

    def shutdown(self) -> None:
        pass


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


def _span_shape(
    name: str,
    attributes: dict[str, Any],
    events: list[tuple[str, dict[str, Any]]],
    status: tuple[int, str],
    parent_name: str,
) -> tuple[Any, ...]:
    return (name, sorted(attributes.items(), key=str), events, status, parent_name)


def test_fast_paths_match_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    # Through the SDK.
    with memory_pipeline() as m:
        for event in EVENTS:
            record_otel(event)
        m.pipeline.shutdown(5000)
        sdk_logs = [
            (
                r.log_record.event_name,
                r.log_record.body,
                r.log_record.severity_number.value,  # type: ignore[union-attr]
                dict(r.log_record.attributes or {}),
            )
            for r in m.logs.get_finished_logs()
        ]
        sdk_spans = list(m.spans.get_finished_spans())
    by_id = {s.context.span_id: s.name for s in sdk_spans}
    sdk_shapes = sorted(
        _span_shape(
            s.name,
            dict(s.attributes or {}),
            [(e.name, dict(e.attributes or {})) for e in s.events],
            (s.status.status_code.value, s.status.description or ""),
            by_id.get(s.parent.span_id, "?") if s.parent else "",
        )
        for s in sdk_spans
    )

    # Through our protobuf.
    received = Received()
    monkeypatch.setattr(pipeline, "_log_exporter", lambda s: _Capture(received, "logs"))
    monkeypatch.setattr(pipeline, "_span_exporter", lambda s: _Capture(received, "spans"))
    p = pipeline.Pipeline(Settings(schedule_delay_ms=10, use_global_providers=False))
    previous, pipeline._current = pipeline._current, p
    try:
        for event in EVENTS:
            record_otel(event)
        p.shutdown(5000)
    finally:
        pipeline._current = previous
    assert p._encoder is not None and p._prebuilt_spans
    fast_logs = [
        (r["event_name"], r["body"], r["severity_number"], r["attributes"]) for r in received.logs
    ]
    names = {s["span_id"]: s["name"] for s in received.spans}
    fast_shapes = sorted(
        _span_shape(
            s["name"],
            s["attributes"],
            [(e["name"], e["attributes"]) for e in s["events"]],
            (s["status_code"], s["status_message"]),
            names.get(s["parent_span_id"], "?") if s["parent_span_id"] else "",
        )
        for s in received.spans
    )

    def normal(logs: list[Any]) -> list[Any]:
        # Arrays arrive as lists from protobuf and as tuples from the SDK.
        return [
            (n, b, sev, {k: list(v) if isinstance(v, tuple) else v for k, v in a.items()})
            for n, b, sev, a in logs
        ]

    assert normal(fast_logs) == normal(sdk_logs)
    assert fast_shapes == sdk_shapes
    # Same ids: both derive the trace from run_id and the job span id likewise.
    assert {s["trace_id"] for s in received.spans} == {f"{sdk_spans[0].context.trace_id:032x}"}
