"""Real multi-node torchrun jobs on 127.0.0.1, exporting through the real collector.

Each job is two torchrun agents (``--nnodes 2``, c10d rendezvous), two workers
each, running ``torchelastic_otel.demo.train``. Every job is bounded in time.
"""

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector import RealCollector
from tests.support.waiting import wait_until
from torchelastic_otel.demo.collector import free_port
from torchelastic_otel.demo.job import JobResult, run_job
from torchelastic_otel.otel import derived_ids

pytest.importorskip("torch.distributed.run", reason="torch is not installed: e2e tests skipped")

THREE_KEYS = ("run_id", "rank", "node_state")


def _env(endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCHELASTIC_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, TORCHELASTIC_OTEL_RDZV_EVENTS="1")
    env.update(extra)
    return env


def _job_data(
    receiver: RealCollector, run_id: str, timeout_s: float = 20.0
) -> tuple[list[Any], list[Any]]:
    """The job's records and spans, once the job span (exported last by rank 0) arrived."""
    wait_until(
        lambda: sorted(
            s["name"]
            for s in list(receiver.received.spans)
            if s["attributes"].get("run_id") == run_id
        ),
        lambda names: "torchelastic.job" in names,
        timeout_s,
        "the job span (exported last by rank 0)",
    )
    # The collector forwards logs and spans through separate pipelines: the other
    # node's last batch of logs may follow the job span by up to a batch timeout.
    time.sleep(0.5)
    logs = [r for r in receiver.received.logs if r["attributes"].get("run_id") == run_id]
    spans = [s for s in receiver.received.spans if s["attributes"].get("run_id") == run_id]
    return logs, spans


def _check_ok(job: JobResult) -> None:
    assert job.returncodes == [0, 0], "\n".join(o[-3000:] for o in job.outputs)


def _by_prefix(spans: list[Any], prefix: str) -> list[Any]:
    return [s for s in spans if s["name"].startswith(prefix)]


def _traces(spans: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for s in spans:
        out.setdefault(s["trace_id"], []).append(s)
    return out


def test_two_node_job_is_a_run_trace_and_a_cycle_trace(
    collector: RealCollector,
) -> None:
    run_id = f"e2e-ok-{uuid.uuid4().hex[:8]}"
    job = run_job(run_id, env=_env(collector.grpc_endpoint), train_seconds=1.0, timeout_s=180)
    _check_ok(job)
    logs, spans = _job_data(collector, run_id)
    agents = {s["resource"]["process.pid"] for s in spans}
    assert len(agents) == 2

    run_trace = f"{derived_ids.run_trace_id(run_id):032x}"
    cycle_trace = f"{derived_ids.cycle_trace_id(run_id, 0):032x}"
    traces = _traces(spans)
    assert set(traces) == {run_trace, cycle_trace}
    # The run: one job span (rank 0's), parent of both node spans.
    (job_span,) = _by_prefix(traces[run_trace], "torchelastic.job")
    nodes = _by_prefix(traces[run_trace], "torchelastic.node")
    assert {n["parent_span_id"] for n in nodes} == {job_span["span_id"]}
    assert {n["attributes"]["node_state"] for n in nodes} == {"SUCCEEDED"}
    # The cycle (round 0): its root, each node's part, all four workers.
    cycle = traces[cycle_trace]
    (root,) = _by_prefix(cycle, "torchelastic.cycle ")
    parts = _by_prefix(cycle, "torchelastic.cycle.node")
    assert {p["parent_span_id"] for p in parts} == {root["span_id"]}
    assert sorted(p["attributes"]["rank"] for p in parts) == [0, 1]
    assert {p["attributes"]["torchelastic.cycle.outcome"] for p in parts} == {"succeeded"}
    assert all(p["attributes"]["torchelastic.rendezvous.duration_ms"] > 0 for p in parts)
    assert root["attributes"]["torchelastic.nodes"] == 2
    assert root["attributes"]["torchelastic.workers"] == 4
    # Workers are span events of their node's part, which their TRACEPARENT names.
    assert not _by_prefix(cycle, "torchelastic.worker")
    workers = [e for p in parts for e in p["events"] if e["name"] == "torchelastic.worker"]
    assert sorted(e["attributes"]["torchelastic.global_rank"] for e in workers) == [0, 1, 2, 3]
    assert {e["attributes"]["node_state"] for e in workers} == {"SUCCEEDED"}
    assert {p["span_id"] for p in parts} == {
        f"{derived_ids.cycle_node_span_id(run_id, 0, r):016x}" for r in range(2)
    }
    # No missing parents; every record names a span that arrived.
    ids = {s["span_id"] for s in spans}
    assert all(s["parent_span_id"] in ids for s in spans if s is not job_span and s is not root)
    assert {(r["trace_id"], r["span_id"]) for r in logs} <= {
        (s["trace_id"], s["span_id"]) for s in spans
    }
    rdzv_logs = [r for r in logs if r["attributes"]["torchelastic.event.kind"] == "rendezvous"]
    assert any(
        r["event_name"] == "dynamic_rendezvous.py:DynamicRendezvousHandler.next_rendezvous"
        for r in rdzv_logs
    )
    for item in [*logs, *spans]:
        for key in THREE_KEYS:
            assert key in item["attributes"], (item.get("name") or item["event_name"], key)


def test_failure_and_restart_are_two_linked_cycles(
    collector: RealCollector,
) -> None:
    run_id = f"e2e-restart-{uuid.uuid4().hex[:8]}"
    job = run_job(
        run_id,
        env=_env(collector.grpc_endpoint),
        fail_once_ranks=[3],
        max_restarts=1,
        train_seconds=3.0,
        timeout_s=180,
    )
    _check_ok(job)
    logs, spans = _job_data(collector, run_id)

    # the failure, with its state and error
    failed = [
        r
        for r in logs
        if r["attributes"]["node_state"] == "FAILED"
        and r["attributes"]["torchelastic.event.kind"] == "agent"
    ]
    culprit = [r for r in failed if r["attributes"]["torchelastic.global_rank"] == 3]
    assert culprit, [r["attributes"] for r in failed]
    assert culprit[0]["severity_text"] == "ERROR"
    assert "simulated failure" in culprit[0]["attributes"]["exception.message"]
    assert culprit[0]["attributes"]["exception.type"] == "RuntimeError"

    # two cycles, each a trace; the first failed on the node of worker 3
    roots = sorted(
        _by_prefix(spans, "torchelastic.cycle "),
        key=lambda s: s["attributes"]["torchelastic.round"],
    )
    assert len(roots) == 2
    first, second = roots
    assert second["links"][-1]["span_id"] == first["span_id"]  # the previous cycle
    parts = _by_prefix(spans, "torchelastic.cycle.node")
    first_parts = [p for p in parts if p["trace_id"] == first["trace_id"]]
    assert sorted(p["attributes"]["torchelastic.cycle.outcome"] for p in first_parts) == [
        "failed",
        "restarted",
    ]
    # Workers are events of their node's part: worker 3 failed with its own error.
    (failed_part,) = [p for p in first_parts if p["attributes"]["rank"] == 1]
    assert failed_part["status_code"] == 2
    assert "simulated failure" in failed_part["status_message"]
    ended = {
        e["attributes"]["torchelastic.global_rank"]: e["attributes"]
        for p in first_parts
        for e in p["events"]
        if e["name"] == "torchelastic.worker"
    }
    assert ended[3]["torchelastic.end_reason"] == "failed"
    # workers of the other node, stopped for the restart, ended as such
    assert {ended[r]["torchelastic.end_reason"] for r in (0, 1)} == {"restarted"}
    # and the job's success: every worker of the second cycle succeeded
    last = [
        e["attributes"]
        for p in parts
        if p["trace_id"] == second["trace_id"]
        for e in p["events"]
        if e["name"] == "torchelastic.worker"
    ]
    assert sorted(a["torchelastic.global_rank"] for a in last) == list(range(4))
    assert {a["node_state"] for a in last} == {"SUCCEEDED"}
    assert second["attributes"]["torchelastic.cycle.outcome"] == "succeeded"


def test_collector_down_same_exit_code_bounded_wall(
    collector: RealCollector,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    bound_s = 1.0
    results = {}
    for handler in ("null", "otel"):
        for fail in (False, True):
            env = _env(dead, TORCHELASTIC_OTEL_SHUTDOWN_TIMEOUT_MS=str(int(bound_s * 1000)))
            results[handler, fail] = run_job(
                f"e2e-down-{handler}-{fail}-{uuid.uuid4().hex[:6]}",
                event_log_handler=handler,
                env=env,
                # Both nodes fail: one failed node alone leaves the other agent
                # waiting in torch's exit barrier (300 s).
                fail_once_ranks=[1, 3] if fail else [],
                max_restarts=0,
                train_seconds=1.0,
                timeout_s=180,
            )
    for fail in (False, True):
        assert results["otel", fail].returncodes == results["null", fail].returncodes
    assert results["otel", True].returncode != 0
    assert results["otel", False].returncode == 0
    # Each agent flushes for at most the bound, in parallel; torchrun's own timing
    # varies by about a second on this 2-core machine, hence the margin.
    extra = results["otel", False].wall_s - results["null", False].wall_s
    assert extra < bound_s + 2.5, (extra, {k: r.wall_s for k, r in results.items()})
    # The dead collector is reported, once per agent at exit, not per event.
    for out in results["otel", False].outputs:
        assert out.count("lost so far") <= 2, out[-3000:]


def test_misconfigured_protocol_one_warning(collector: RealCollector) -> None:
    job = run_job(
        f"e2e-badproto-{uuid.uuid4().hex[:6]}",
        env=_env(collector.grpc_endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="smoke-signals"),
        train_seconds=0.5,
        timeout_s=180,
    )
    _check_ok(job)
    for out in job.outputs:
        assert out.count("OTEL_EXPORTER_OTLP_PROTOCOL='smoke-signals' is not supported") == 1


def test_opentelemetry_instrument_torchrun(collector: RealCollector) -> None:
    """``opentelemetry-instrument torchrun ...`` with no --event_log_handler flag."""
    import subprocess
    import sys

    run_id = f"e2e-instrument-{uuid.uuid4().hex[:8]}"
    bindir = Path(sys.executable).parent
    env = _env(
        collector.grpc_endpoint,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="none",
        OTEL_SERVICE_NAME="instrumented-job",
    )
    env.pop("TORCHELASTIC_OTEL_RDZV_EVENTS")
    proc = subprocess.run(
        [
            str(bindir / "opentelemetry-instrument"),
            str(bindir / "torchrun"),
            "--nnodes=1",
            "--nproc-per-node=2",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{free_port()}",
            f"--rdzv-id={run_id}",
            "--monitor-interval=0.2",
            "-m",
            "torchelastic_otel.demo.train",
            "--train-seconds=0.5",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs, spans = _job_data(collector, run_id)
    # The agent's events (torch's default `null` destination, redirected) and the
    # rendezvous' (on under the instrumentor), through the providers it configured.
    kinds = {r["attributes"]["torchelastic.event.kind"] for r in logs}
    assert kinds == {"agent", "rendezvous"}
    assert {r["resource"]["service.name"] for r in logs} == {"instrumented-job"}
    (part,) = _by_prefix(spans, "torchelastic.cycle.node")
    assert [e["name"] for e in part["events"]] == ["torchelastic.worker"] * 2
    assert len(_by_prefix(spans, "torchelastic.cycle ")) == 1
    assert "not installed into torch" not in proc.stderr
