"""A job beyond two nodes: eight torchrun agents, one worker each, on 127.0.0.1.

Rank 5 fails on its first attempt; every agent restarts its worker once. Through
the real collector (tests/support/collector.py), the job must read as the trace
model says (docs/mapping.md, "Traces") at a node count where a per-node
assumption would show: one run trace with a node span per agent, one trace per
cycle with every node's part (its worker an event of it), nothing orphaned, and a timeline that
names the failed node and rank. Bounded in time (torch imports on 16 processes
dominate: about a minute on 2 cores).
"""

import os
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from tests.support.collector import RealCollector
from tests.support.waiting import wait_until
from torchelastic_otel.demo.job import run_job
from torchelastic_otel.otel import derived_ids
from torchelastic_otel.otlp_data import Received

pytest.importorskip("torch.distributed.run", reason="torch is not installed: e2e tests skipped")

NODES = 8
FAILING_RANK = 5


def _wait_for_run(collector: RealCollector, run_id: str, n_nodes: int) -> Received:
    """The run's data once every node's node span (each exported at its exit) arrived."""
    wait_until(
        lambda: sorted(
            s["name"]
            for s in list(collector.received.spans)
            if s["attributes"].get("run_id") == run_id
            and s["name"].startswith("torchelastic.node ")
        ),
        lambda nodes: len(nodes) >= n_nodes,
        30,
        f"the node spans of {n_nodes} nodes",
    )
    # The collector forwards logs and spans through separate pipelines: its last
    # batch of logs may follow the node spans by up to a batch timeout.
    time.sleep(1.0)
    return Received(
        logs=[r for r in collector.received.logs if r["attributes"].get("run_id") == run_id],
        spans=[s for s in collector.received.spans if s["attributes"].get("run_id") == run_id],
    )


def _named(spans: list[Any], prefix: str) -> list[Any]:
    return [s for s in spans if s["name"].startswith(prefix)]


def test_eight_nodes_one_failure_one_restart(collector: RealCollector) -> None:
    run_id = f"e2e-8n-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCHELASTIC_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.grpc_endpoint,
        TORCHELASTIC_OTEL_RDZV_EVENTS="1",
        OTEL_METRICS_EXPORTER="none",
    )
    job = run_job(
        run_id,
        nnodes=NODES,
        nproc_per_node=1,
        fail_once_ranks=[FAILING_RANK],
        max_restarts=1,
        train_seconds=2.0,
        env=env,
        timeout_s=420,
    )
    assert job.returncodes == [0] * NODES, "\n".join(o[-2000:] for o in job.outputs)
    data = _wait_for_run(collector, run_id, NODES)
    spans, logs = data.spans, data.logs

    # The run trace: the job span (rank 0's) and one node span per agent under it.
    run_trace = f"{derived_ids.run_trace_id(run_id):032x}"
    in_run = [s for s in spans if s["trace_id"] == run_trace]
    (job_span,) = _named(in_run, "torchelastic.job")
    node_spans = _named(in_run, "torchelastic.node ")
    assert len(node_spans) == NODES
    assert len({s["resource"]["process.pid"] for s in node_spans}) == NODES
    assert {s["parent_span_id"] for s in node_spans} == {job_span["span_id"]}
    assert {s["attributes"]["node_state"] for s in node_spans} == {"SUCCEEDED"}

    # Two cycles, each its own trace: round 0 failed on one node, round 1 succeeded.
    roots = sorted(
        _named(spans, "torchelastic.cycle "), key=lambda s: s["attributes"]["torchelastic.round"]
    )
    assert len(roots) == 2, [s["name"] for s in roots]
    first, second = roots
    assert second["links"][-1]["span_id"] == first["span_id"]
    for root in roots:
        assert root["attributes"]["torchelastic.nodes"] == NODES
        assert root["attributes"]["torchelastic.workers"] == NODES
        cycle = [s for s in spans if s["trace_id"] == root["trace_id"]]
        parts = _named(cycle, "torchelastic.cycle.node")
        assert sorted(p["attributes"]["rank"] for p in parts) == list(range(NODES))
        assert {p["parent_span_id"] for p in parts} == {root["span_id"]}
        # Each worker is an event of its own node's part (one worker a node).
        assert not _named(cycle, "torchelastic.worker")
        for p in parts:
            (worker,) = [e for e in p["events"] if e["name"] == "torchelastic.worker"]
            assert worker["attributes"]["torchelastic.global_rank"] == p["attributes"]["rank"]

    first_parts = _named(
        [s for s in spans if s["trace_id"] == first["trace_id"]], "torchelastic.cycle.node"
    )
    outcomes = Counter(p["attributes"]["torchelastic.cycle.outcome"] for p in first_parts)
    assert outcomes == {"failed": 1, "restarted": NODES - 1}
    (culprit,) = [p for p in first_parts if p["attributes"]["rank"] == FAILING_RANK]
    assert culprit["status_code"] == 2 and "simulated failure" in culprit["status_message"]
    assert second["attributes"]["torchelastic.cycle.outcome"] == "succeeded"

    # Nothing orphaned: every parent arrived, every record points at a span that did.
    ids = {s["span_id"] for s in spans}
    assert all(s["parent_span_id"] in ids for s in spans if s["parent_span_id"])
    assert {(r["trace_id"], r["span_id"]) for r in logs if r["span_id"]} <= {
        (s["trace_id"], s["span_id"]) for s in spans
    }
    # A bounded number of spans per node: its node span, per cycle its part (its
    # worker is an event of it), at most one rendezvous attempt that failed or
    # waited; then the job span and the cycle roots (docs/operations.md sizes on this).
    assert len(spans) <= NODES * (1 + 2 + 1) + 1 + 2

    from torchelastic_otel.timeline.model import build_timelines
    from torchelastic_otel.timeline.terminal import render

    (timeline,) = build_timelines(data, run_id=run_id)
    assert len(timeline.nodes) == NODES
    # A cycle's outcome is rank 0's (its agent restarted); the failure is its node's.
    assert [c.outcome for c in timeline.cycles] == ["restarted", "succeeded"]
    assert len(timeline.cycles[0].failed_nodes) == 1
    # The one error of its own; the workers its agent stopped are told apart, and
    # nodes that could not leave the c10d rendezvous at exit are a note, not failures.
    own_errors = [f for f in timeline.failures if not f.killed]
    assert len(own_errors) == 1, [(f.kind, f.exc_type, f.message[:80]) for f in own_errors]
    (own,) = own_errors
    assert own.global_rank == FAILING_RANK and own.exc_type == "RuntimeError"
    assert own.node is timeline.cycles[0].failed_nodes[0]

    from rich.console import Console

    console = Console(width=120, record=True, color_system=None)
    console.print(render(timeline, width=120))
    text = console.export_text()
    assert "RuntimeError" in text and "simulated failure" in text
