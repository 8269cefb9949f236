"""Through the real collector: our exporter → otelcol (gRPC or HTTP) → backends here.

The collector runs ``otel-collector/config.yaml``; local receivers stand in for
Tempo, Loki and Prometheus and decode the OTLP requests it forwards, so these
tests see exactly what those backends would see (tests/support/collector.py).
"""

import time
from typing import Any

import pytest

from tests.support.collector import RealCollector
from tests.support.docs import undocumented
from tests.support.memory import record_otel
from tests.unit.test_mapping import TRACEBACK, agent_event, rdzv_event
from torchelastic_otel import otel
from torchelastic_otel.events import NodeState
from torchelastic_otel.otel import derived_ids
from torchelastic_otel.otel.settings import Settings
from torchelastic_otel.otlp_data import Received

JOINED = (
    "The node 'n1' has joined round 2 of the rendezvous 'job-7' as rank 0 in a world of size 2."
)


def _send_job(
    endpoint: str, protocol: str, headers: dict[str, str] | None = None
) -> tuple[int, int]:
    settings = Settings(
        logs_protocol=protocol,
        traces_protocol=protocol,
        metrics_protocol=protocol,
        endpoint=endpoint,
        schedule_delay_ms=50,
        use_global_providers=False,
        logs_headers=headers,
        traces_headers=headers,
        metrics_headers=headers,
    )
    before = time.time_ns()
    with otel.use(otel.Pipeline(settings)) as p:
        record_otel(rdzv_event())
        record_otel(rdzv_event(message=JOINED, rank=0))
        record_otel(
            agent_event(
                "RENDEZVOUS", duration_ms=120.0, group_rank=0, worker_id=None, global_rank=None
            )
        )
        record_otel(agent_event("START", worker_id="11", global_rank=0, group_rank=0))
        record_otel(
            agent_event("FAILED", worker_id="11", global_rank=0, group_rank=0, raw_error=TRACEBACK)
        )
        record_otel(rdzv_event(NodeState.FAILED, error_trace=TRACEBACK, rank=0))
        assert p.force_flush(10)
    assert p.drop_counts() == dict.fromkeys(otel.DROP_REASONS, 0)
    counts = p.exported_counts()
    # Spans: job, node, cycle root, the node's part (its worker is an event of it).
    assert (counts["logs"], counts["spans"]) == (6, 4)
    assert counts["metrics"] >= 1  # collected at least at exit
    return before, time.time_ns()


def _only_run(received: Received, run_id: str, start_ns: int) -> tuple[list[Any], list[Any]]:
    logs = [r for r in received.logs if r["observed_time_unix_nano"] >= start_ns]
    spans = [s for s in received.spans if s["end"] >= start_ns]
    return (
        [r for r in logs if r["attributes"]["run_id"] == run_id],
        [s for s in spans if s["attributes"]["run_id"] == run_id],
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_job_arrives_through_the_collector(collector: RealCollector, protocol: str) -> None:
    endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint
    n_logs, n_spans = len(collector.received.logs), len(collector.received.spans)
    before, after = _send_job(endpoint, protocol)
    received = collector.wait_for(n_logs + 6, n_spans + 4, timeout_s=20)
    logs, spans = _only_run(received, "job-7", before)
    assert len(logs) == 6, collector.log()[-2000:]
    assert len(spans) == 4  # job, node, cycle root, the part

    run_trace = f"{derived_ids.run_trace_id('job-7'):032x}"
    cycle_trace = f"{derived_ids.cycle_trace_id('job-7', 2):032x}"
    job_span_id = f"{derived_ids.job_span_id('job-7'):016x}"
    by_name = {s["name"].split(" ")[0]: s for s in spans}
    assert set(by_name) == {
        "torchelastic.job",
        "torchelastic.node",
        "torchelastic.cycle",
        "torchelastic.cycle.node",
    }
    # The run trace: the job span is its root and the node span names it.
    assert {by_name[n]["trace_id"] for n in ("torchelastic.job", "torchelastic.node")} == {
        run_trace
    }
    assert by_name["torchelastic.job"]["span_id"] == job_span_id
    assert by_name["torchelastic.job"]["parent_span_id"] == ""
    assert by_name["torchelastic.node"]["parent_span_id"] == job_span_id
    # The cycle (round 2) trace: root and the node's part, the worker an event of the
    # part; ids derived.
    cycle, part = (by_name[n] for n in ("torchelastic.cycle", "torchelastic.cycle.node"))
    assert {cycle["trace_id"], part["trace_id"]} == {cycle_trace}
    assert cycle["span_id"] == f"{derived_ids.cycle_span_id('job-7', 2):016x}"
    assert part["parent_span_id"] == cycle["span_id"]
    assert part["span_id"] == f"{derived_ids.cycle_node_span_id('job-7', 2, 0):016x}"
    (worker,) = part["events"]
    assert worker["name"] == "torchelastic.worker"
    assert [link["span_id"] for link in cycle["links"]] == [job_span_id]
    assert [link["span_id"] for link in part["links"]] == [by_name["torchelastic.node"]["span_id"]]
    span_ids = {s["span_id"] for s in spans}
    for s in spans:
        for key in ("run_id", "rank", "node_state"):
            assert key in s["attributes"], (s["name"], key)
        assert before - 200_000_000 <= s["start"] <= s["end"] <= after  # RENDEZVOUS: -120 ms
    assert part["attributes"]["torchelastic.round"] == 2
    assert part["attributes"]["torchelastic.rendezvous.duration_ms"] == 120.0
    assert part["attributes"]["torchelastic.cycle.outcome"] == "failed"
    assert part["status_code"] == 2  # ERROR
    assert part["status_message"] == "RendezvousTimeoutError: timed out"
    assert worker["attributes"]["torchelastic.end_reason"] == "failed"
    # The error's detail is on its log record; the event says only its type.
    assert "exception.message" not in worker["attributes"]

    # Log records: typed attributes, severity, event name, body, time, link to spans.
    for r in logs:
        a = r["attributes"]
        assert isinstance(a["rank"], int)
        assert a["run_id"] == "job-7"
        assert before <= r["time_unix_nano"] <= after
        assert r["span_id"] in span_ids
        assert r["trace_id"] in (run_trace, cycle_trace)
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


def test_headers_reach_the_collector(collector: RealCollector) -> None:
    """Headers configured for export are sent and accepted (the collector does not forward them)."""
    n = len(collector.received.logs)
    _send_job(collector.http_endpoint, "http/protobuf", headers={"x-tenant": "ml"})
    assert len(collector.wait_for(n + 6, timeout_s=20).logs) >= n + 6
