"""Through a real collector: our exporter → rotel (gRPC or HTTP) → a receiver here.

The receiver decodes the OTLP protobuf requests rotel forwards, so these tests see
exactly what a backend such as Jaeger, Tempo or Loki would see.
"""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.docs import undocumented
from tests.support.memory import record_otel
from tests.support.otlp import OtlpHttpReceiver, Received, Rotel, run_rotel
from tests.unit.test_mapping import TRACEBACK, agent_event, rdzv_event
from torchelastic_otel import otel
from torchelastic_otel.events import NodeState
from torchelastic_otel.otel import mapping
from torchelastic_otel.otel.settings import Settings

JOINED = (
    "The node 'n1' has joined round 2 of the rendezvous 'job-7' as rank 0 in a world of size 2."
)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OtlpHttpReceiver, Rotel]]:
    log_dir = tmp_path_factory.mktemp("rotel")
    with OtlpHttpReceiver() as receiver, run_rotel(receiver.endpoint, Path(log_dir)) as rotel:
        yield receiver, rotel


def _send_job(
    endpoint: str, protocol: str, headers: dict[str, str] | None = None
) -> tuple[int, int]:
    settings = Settings(
        logs_protocol=protocol,
        traces_protocol=protocol,
        endpoint=endpoint,
        schedule_delay_ms=50,
        use_global_providers=False,
        logs_headers=headers,
        traces_headers=headers,
    )
    before = time.time_ns()
    with otel.use(otel.Pipeline(settings)) as p:
        record_otel(rdzv_event())
        record_otel(rdzv_event(message=JOINED, rank=0))
        record_otel(agent_event("RENDEZVOUS", duration_ms=120.0, group_rank=0))
        record_otel(agent_event("START", worker_id="11", global_rank=0, group_rank=0))
        record_otel(
            agent_event("FAILED", worker_id="11", global_rank=0, group_rank=0, raw_error=TRACEBACK)
        )
        record_otel(rdzv_event(NodeState.FAILED, error_trace=TRACEBACK, rank=0))
        assert p.force_flush(10)
    assert p.drop_counts() == dict.fromkeys(otel.DROP_REASONS, 0)
    assert p.exported_counts() == {"logs": 6, "spans": 5, "metrics": 0}
    return before, time.time_ns()


def _only_run(received: Received, run_id: str, start_ns: int) -> tuple[list[Any], list[Any]]:
    logs = [r for r in received.logs if r["observed_time_unix_nano"] >= start_ns]
    spans = [s for s in received.spans if s["end"] >= start_ns]
    return (
        [r for r in logs if r["attributes"]["run_id"] == run_id],
        [s for s in spans if s["attributes"]["run_id"] == run_id],
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_job_arrives_through_rotel(
    collector: tuple[OtlpHttpReceiver, Rotel], protocol: str
) -> None:
    receiver, rotel = collector
    endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
    n_logs, n_spans = len(receiver.received.logs), len(receiver.received.spans)
    before, after = _send_job(endpoint, protocol)
    received = receiver.wait_for(n_logs + 6, n_spans + 5, timeout_s=20)
    logs, spans = _only_run(received, "job-7", before)
    assert len(logs) == 6, rotel.log_path.read_text()[-2000:]
    assert len(spans) == 5

    trace_id = f"{mapping.trace_id_for_run('job-7'):032x}"
    job_span_id = f"{mapping.job_span_id_for_run('job-7'):016x}"
    by_name = {s["name"].split(" ")[0]: s for s in spans}
    assert set(by_name) == {
        "torchelastic.job",
        "torchelastic.node",
        "torchelastic.rendezvous",
        "torchelastic.agent.RENDEZVOUS",
        "torchelastic.worker",
    }
    # One trace; the job span is the root and every node span names it.
    assert {s["trace_id"] for s in spans} == {trace_id}
    assert {r["trace_id"] for r in logs} == {trace_id}
    assert by_name["torchelastic.job"]["span_id"] == job_span_id
    assert by_name["torchelastic.job"]["parent_span_id"] == ""
    assert by_name["torchelastic.node"]["parent_span_id"] == job_span_id
    node_id = by_name["torchelastic.node"]["span_id"]
    span_ids = {s["span_id"] for s in spans}
    for s in spans:
        assert s["parent_span_id"] == "" or s["parent_span_id"] in span_ids
        for key in ("run_id", "rank", "node_state"):
            assert key in s["attributes"], (s["name"], key)
        assert before - 200_000_000 <= s["start"] <= s["end"] <= after  # RENDEZVOUS: -120 ms
    for name in ("torchelastic.rendezvous", "torchelastic.agent.RENDEZVOUS", "torchelastic.worker"):
        assert by_name[name]["parent_span_id"] == node_id
    rdzv_span = by_name["torchelastic.rendezvous"]
    assert rdzv_span["attributes"]["torchelastic.round"] == 2
    assert len(rdzv_span["events"]) == 2
    agent = by_name["torchelastic.agent.RENDEZVOUS"]
    assert agent["end"] - agent["start"] == 120_000_000
    worker = by_name["torchelastic.worker"]
    assert worker["status_code"] == 2  # ERROR
    assert worker["status_message"] == "timed out"
    assert [e["name"] for e in worker["events"]] == ["exception"]

    # Log records: typed attributes, severity, event name, body, time, link to spans.
    for r in logs:
        a = r["attributes"]
        assert isinstance(a["rank"], int)
        assert a["run_id"] == "job-7"
        assert before <= r["time_unix_nano"] <= after
        assert r["span_id"] in span_ids
        assert r["resource"]["service.name"] == "torchelastic"
        assert r["scope"] == "torchelastic_otel"
    failed = [r for r in logs if r["severity_text"] == "ERROR"]
    assert len(failed) == 2
    assert all(r["severity_number"] == 17 for r in failed)
    assert {r["attributes"]["exception.type"] for r in failed} == {
        "torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError"
    }
    first = next(r for r in logs if r["attributes"]["torchelastic.event.kind"] == "rendezvous")
    assert first["event_name"] == "dynamic_rendezvous.py:DynamicRendezvousHandler.next_rendezvous"
    assert first["body"].startswith("The node 'n1' attempts")
    assert first["attributes"]["process.pid"] == 321
    assert first["attributes"]["host.name"] == "node-1.example"

    # docs/mapping.md names every attribute that arrived.
    keys = {k for r in logs for k in r["attributes"]}
    assert undocumented(keys) == []


def test_headers_reach_the_collector(collector: tuple[OtlpHttpReceiver, Rotel]) -> None:
    """Headers configured for export are sent (rotel accepts them; it does not forward them)."""
    receiver, rotel = collector
    n = len(receiver.received.logs)
    _send_job(rotel.http_endpoint, "http/protobuf", headers={"x-tenant": "ml"})
    assert len(receiver.wait_for(n + 6, timeout_s=20).logs) >= n + 6
