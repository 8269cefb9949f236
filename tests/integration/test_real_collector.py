"""OTLP through the real collector running ``otel-collector/config.yaml``.

The data is sent with the plain OpenTelemetry SDK (not this package's pipeline),
so these tests check the collector config and the backends' ends of the stack:

- ``test_config_routes_every_signal`` (``make test``): the collector built from
  ``otel-collector/builder-config.yaml`` with local receivers standing in for
  Jaeger, Tempo, Loki and Prometheus: every signal reaches every exporter of its
  pipeline, with the resource the config adds and no tenant header for Loki.
- ``test_torchrun_job_reads_back_from_jaeger_and_prometheus`` (``make
  stack-test``, needs torch): a real 2-node torchrun job with a failure and a
  restart, through the collector into real Jaeger and Prometheus 3: every node's
  spans of the run trace and of each cycle's trace read back from Jaeger's query
  API, the restarts, failures and rendezvous rounds from PromQL.
- ``test_a_lost_nodes_part_reads_back_from_jaeger`` (``make stack-test``, needs
  torch): issue 18's 3-node job in which one node is SIGKILLed, through the
  collector into real Jaeger v2: the cycle in which the node died holds every node's
  part (the lost one's exported by a survivor), and the next cycle's root names it.
- ``test_jaeger_and_prometheus_read_back`` (``make stack-test``): the same config
  in front of real Jaeger v2 and Prometheus 3 (built from Go modules): the trace
  reads back through Jaeger's query API and the metrics through PromQL, under the
  names tests/unit/test_collector_stack.py lists (METRICS) and with the node's
  resource attributes promoted to labels; Prometheus 3 loads the compose stack's
  prometheus.yml (its otlp block: Debian's promtool 2.42 is too old to check it)
  and alerts.yaml.

A missing binary fails the test where the make target builds it and skips it
elsewhere (tests/support/stack.py).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.support.stack import (
    STACK,
    Otelcol,
    OtlpMetricsHttpReceiver,
    get_json,
    poll,
    require_binary,
    run_jaeger,
    run_otelcol,
    run_prometheus,
)
from tests.unit.test_collector_stack import METRICS
from torchelastic_otel.otlp_data import SpanItem
from torchelastic_otel.receiver import OtlpGrpcReceiver, OtlpHttpReceiver

CONFIG = STACK / "config.yaml"
RESOURCE = {
    "service.name": "torchelastic",
    "service.instance.id": "node-0-agent",
    "host.name": "node-0",
    "k8s.pod.name": "job-it-node-0-0",
}


@dataclass
class Sent:
    """What :func:`_send` sent: the trace id (32 hex digits) and the job's run_id."""

    trace_id: str
    run_id: str


def _send(collector: Otelcol, run_id: str) -> Sent:
    """One span, one log record and the rendezvous/restart metrics, with the plain SDK."""
    resource = Resource.create(RESOURCE)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.grpc_endpoint, insecure=True))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{collector.http_endpoint}/v1/logs"))
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=collector.grpc_endpoint, insecure=True),
        export_interval_millis=3_600_000,  # exported by force_flush below only
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    try:
        tracer = tracer_provider.get_tracer("test_real_collector")
        with tracer.start_as_current_span("torchelastic.cycle 1", attributes={"run_id": run_id}):
            with tracer.start_as_current_span(
                "torchelastic.worker 0", attributes={"run_id": run_id}
            ) as worker:
                worker.set_status(Status(StatusCode.ERROR, "exit code 1"))
                trace_id = f"{worker.get_span_context().trace_id:032x}"
            logger_provider.get_logger("test_real_collector").emit(
                body="worker 0 failed",
                severity_number=SeverityNumber.ERROR,
                attributes={"run_id": run_id, "rank": 0, "node_state": "FAILED"},
            )
        meter = meter_provider.get_meter("test_real_collector")
        attrs = {"run_id": run_id}
        meter.create_histogram("torchelastic.rendezvous.duration", unit="s").record(4.2, attrs)
        meter.create_counter("torchelastic.agent.restarts").add(1, attrs)
        meter.create_counter("torchelastic.worker.failures").add(
            1, {**attrs, "error.type": "exit_code_1"}
        )
        assert tracer_provider.force_flush(10_000)
        assert logger_provider.force_flush(10_000)
        assert meter_provider.force_flush(10_000)
    finally:
        tracer_provider.shutdown()
        logger_provider.shutdown()
        meter_provider.shutdown(timeout_millis=10_000)
    return Sent(trace_id, run_id)


@dataclass
class Receivers:
    """Local stand-ins for the backends the exporters of config.yaml point at."""

    tempo: OtlpGrpcReceiver
    loki: OtlpHttpReceiver

    def env(self) -> dict[str, str]:
        """The config's endpoint variables for these receivers."""
        return {
            "TEMPO_OTLP_ENDPOINT": self.tempo.endpoint.removeprefix("http://"),
            "LOKI_OTLP_ENDPOINT": f"{self.loki.endpoint}/otlp",
            "DEPLOYMENT_ENVIRONMENT": "it",
            "BATCH_TIMEOUT": "100ms",
        }


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    with OtlpGrpcReceiver() as tempo, OtlpHttpReceiver() as loki:
        yield Receivers(tempo, loki)


def _check_tempo_and_loki(receivers: Receivers, sent: Sent) -> None:
    def both() -> list[SpanItem]:
        # The worker's span and its cycle's can come in separate batches.
        found = [s for s in receivers.tempo.received.spans if s["trace_id"] == sent.trace_id]
        return found if len(found) >= 2 else []

    spans = poll(both, timeout_s=20)
    assert {s["name"] for s in spans} == {"torchelastic.cycle 1", "torchelastic.worker 0"}
    assert {s["resource"]["deployment.environment"] for s in spans} == {"it"}
    logs = poll(lambda: list(receivers.loki.received.logs), timeout_s=20)
    assert [r["attributes"]["run_id"] for r in logs] == [sent.run_id]
    assert logs[0]["resource"]["host.name"] == "node-0"
    # With auth disabled Loki ignores X-Scope-OrgID; the config sends none.
    assert all("x-scope-orgid" not in h for h in receivers.loki.received.headers)


def test_config_routes_every_signal(receivers: Receivers, tmp_path: Path) -> None:
    require_binary("otelcol-torchelastic")
    with (
        OtlpGrpcReceiver() as jaeger,
        OtlpMetricsHttpReceiver() as prometheus,
    ):
        env = {
            **receivers.env(),
            "JAEGER_OTLP_ENDPOINT": jaeger.endpoint.removeprefix("http://"),
            "PROMETHEUS_OTLP_ENDPOINT": f"{prometheus.endpoint}/api/v1/otlp/v1/metrics",
        }
        with run_otelcol(CONFIG, env, tmp_path) as collector:
            sent = _send(collector, "job-route")
            _check_tempo_and_loki(receivers, sent)
            jaeger_spans = poll(lambda: list(jaeger.received.spans), timeout_s=20)
            assert {s["trace_id"] for s in jaeger_spans} == {sent.trace_id}
            names = poll(prometheus.metric_names, timeout_s=20)
            assert names == {
                "torchelastic.rendezvous.duration",
                "torchelastic.agent.restarts",
                "torchelastic.worker.failures",
            }, collector.log()


def test_jaeger_and_prometheus_read_back(receivers: Receivers, tmp_path: Path) -> None:
    require_binary("otelcol-torchelastic")
    require_binary("jaeger")
    require_binary("prometheus")
    (tmp_path / "prometheus").mkdir()
    with run_jaeger(tmp_path) as jaeger, run_prometheus(tmp_path / "prometheus") as prometheus:
        env = {
            **receivers.env(),
            "JAEGER_OTLP_ENDPOINT": jaeger.otlp_grpc_endpoint,
            "PROMETHEUS_OTLP_ENDPOINT": prometheus.otlp_metrics_endpoint,
        }
        with run_otelcol(CONFIG, env, tmp_path) as collector:
            sent = _send(collector, "job-stack")
            _check_tempo_and_loki(receivers, sent)

            spans = poll(lambda: jaeger.trace(sent.trace_id), timeout_s=30, interval_s=0.5)
            assert {s["operationName"] for s in spans} == {
                "torchelastic.cycle 1",
                "torchelastic.worker 0",
            }, collector.log()
            worker = next(s for s in spans if s["operationName"] == "torchelastic.worker 0")
            tags = {t["key"]: t["value"] for t in worker["tags"]}
            assert tags["run_id"] == "job-stack"
            assert tags["error"] is True

            selector = '{run_id="job-stack"}'
            duration = METRICS["torchelastic.rendezvous.duration"][0]
            counts = poll(
                lambda: prometheus.query(f"{duration}_count{selector}"),
                timeout_s=30,
                interval_s=0.5,
            )
            assert [float(r["value"][1]) for r in counts] == [1.0], collector.log()
            labels = counts[0]["metric"]
            # Resource attributes promoted by prometheus.yml's otlp block.
            assert labels["host_name"] == "node-0"
            assert labels["k8s_pod_name"] == "job-it-node-0-0"
            assert labels["instance"] == "node-0-agent"
            assert labels["job"] == "torchelastic"
            restarts = prometheus.query(METRICS["torchelastic.agent.restarts"][0] + selector)
            assert [float(r["value"][1]) for r in restarts] == [1.0]
            failures = prometheus.query(METRICS["torchelastic.worker.failures"][0] + selector)
            assert [r["metric"]["error_type"] for r in failures] == ["exit_code_1"]

            rules = prometheus_rules(prometheus.port)
            alerts = yaml.safe_load((STACK / "prometheus/alerts.yaml").read_text())
            assert len(rules) == sum(len(g["rules"]) for g in alerts["groups"])
            assert {r["health"] for r in rules} == {"ok"}


def test_torchrun_job_reads_back_from_jaeger_and_prometheus(
    receivers: Receivers, tmp_path: Path
) -> None:
    pytest.importorskip("torch.distributed.run", reason="torch is not installed")
    require_binary("otelcol-torchelastic")
    require_binary("jaeger")
    require_binary("prometheus")
    import os
    import uuid

    from torchelastic_otel.demo.job import run_job
    from torchelastic_otel.otel import derived_ids

    (tmp_path / "prometheus").mkdir()
    run_id = f"stack-{uuid.uuid4().hex[:8]}"
    with run_jaeger(tmp_path) as jaeger, run_prometheus(tmp_path / "prometheus") as prometheus:
        env = {
            **receivers.env(),
            "JAEGER_OTLP_ENDPOINT": jaeger.otlp_grpc_endpoint,
            "PROMETHEUS_OTLP_ENDPOINT": prometheus.otlp_metrics_endpoint,
        }
        with run_otelcol(CONFIG, env, tmp_path) as collector:
            agents = {
                k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCHELASTIC_"))
            }
            agents.update(
                OTEL_EXPORTER_OTLP_ENDPOINT=collector.grpc_endpoint,
                TORCHELASTIC_OTEL_RDZV_EVENTS="1",
            )
            job = run_job(run_id, env=agents, fail_once_ranks=[3], max_restarts=1, timeout_s=240)
            assert job.returncodes == [0, 0], "\n".join(o[-2000:] for o in job.outputs)

            def trace(trace_id: int, n: int) -> list[dict[str, Any]]:
                hex_id = f"{trace_id:032x}"
                return poll(
                    lambda: spans if len(spans := jaeger.trace(hex_id)) >= n else [],
                    timeout_s=30,
                    interval_s=0.5,
                )

            # The run: the job span and both nodes' spans, from two processes.
            run = trace(derived_ids.run_trace_id(run_id), 3)
            names = sorted(s["operationName"].split(" ")[0] for s in run)
            assert names.count("torchelastic.node") == 2, names
            assert names.count("torchelastic.job") == 1
            # Each cycle: its root and both nodes' parts, all four workers as the
            # parts' span events (Jaeger's "logs").
            for round_ in (0, 1):
                cycle = trace(derived_ids.cycle_trace_id(run_id, round_), 3)
                parts = [
                    s for s in cycle if s["operationName"].startswith("torchelastic.cycle.node")
                ]
                assert len(parts) == 2, collector.log()[-2000:]
                workers = sorted(
                    _field(log, "torchelastic.global_rank")
                    for part in parts
                    for log in part["logs"]
                    if _field(log, "event") == "torchelastic.worker"
                )
                assert workers == [0, 1, 2, 3]

            selector = f'{{run_id="{run_id}"}}'
            restarts = poll(
                lambda: prometheus.query(f"sum(torchelastic_agent_restarts_total{selector})"),
                timeout_s=30,
                interval_s=0.5,
            )
            assert float(restarts[0]["value"][1]) == 2  # one group restart, on both nodes
            rounds = prometheus.query(
                f"sum(torchelastic_rendezvous_duration_seconds_count{selector})"
            )
            assert float(rounds[0]["value"][1]) == 4  # 2 rounds x 2 nodes
            failures = prometheus.query(
                f"sum by (error_type) (torchelastic_worker_failures_total{selector})"
            )
            by_type = {r["metric"]["error_type"]: float(r["value"][1]) for r in failures}
            assert by_type.get("RuntimeError") == 1, by_type
            # torch's own elastic metrics, bridged.
            assert prometheus.query("torchelastic_workers_default_run_total")


def _field(log: dict[str, Any], key: str) -> Any:
    """A field of a span event as Jaeger's query API returns it (its ``logs``)."""
    return next((f["value"] for f in log["fields"] if f["key"] == key), None)


def _tag(span: dict[str, Any], key: str) -> Any:
    return next((t["value"] for t in span["tags"] if t["key"] == key), None)


def test_a_lost_nodes_part_reads_back_from_jaeger(receivers: Receivers, tmp_path: Path) -> None:
    """Issue 18's lost node, as a user sees it in Jaeger: the cycle in which the node
    died holds every node's part, the lost one's exported by a survivor."""
    pytest.importorskip("torch.distributed.run", reason="torch is not installed")
    require_binary("otelcol-torchelastic")
    require_binary("jaeger")
    import signal

    from tests.e2e.test_lost_nodes import NODES, run_with_a_node_going
    from torchelastic_otel import semconv as sc
    from torchelastic_otel.otel import derived_ids

    with run_jaeger(tmp_path) as jaeger:
        env = {**receivers.env(), "JAEGER_OTLP_ENDPOINT": jaeger.otlp_grpc_endpoint}
        with run_otelcol(CONFIG, env, tmp_path) as collector:
            run_id = run_with_a_node_going(collector.grpc_endpoint, tmp_path, signal.SIGKILL)

            def died_in() -> list[dict[str, Any]]:
                # The survivor's part for the lost node names the cycle (a round of
                # the first few: gloo may cost a restart or two on a loaded host).
                for round_ in range(6):
                    spans = jaeger.trace(f"{derived_ids.cycle_trace_id(run_id, round_):032x}")
                    if any(_tag(s, sc.INFERRED) for s in spans):
                        return spans
                return []

            cycle = poll(died_in, timeout_s=30, interval_s=0.5)
            parts = [s for s in cycle if s["operationName"].startswith(sc.CYCLE_NODE_SPAN)]
            assert sorted(_tag(p, sc.RANK) for p in parts) == list(range(NODES)), [
                (p["operationName"], p["tags"]) for p in parts
            ]
            (lost,) = [p for p in parts if _tag(p, sc.INFERRED)]
            assert _tag(lost, sc.OUTCOME) == sc.OUTCOME_LOST
            assert _tag(lost, "error") is True  # Jaeger's mark of an ERROR status
            # The next cycle's root names it.
            lost_round = _tag(lost, sc.ROUND)
            later = jaeger.trace(f"{derived_ids.cycle_trace_id(run_id, lost_round + 1):032x}")
            roots = [s for s in later if s["operationName"].startswith(f"{sc.CYCLE_SPAN} ")]
            assert roots and _tag(roots[0], sc.LOST_COUNT) == 1, later


def prometheus_rules(port: int) -> list[dict[str, object]]:
    """The alerting rules Prometheus loaded, after its first evaluation."""

    def evaluated() -> list[dict[str, object]]:
        groups = get_json(f"http://127.0.0.1:{port}/api/v1/rules")["data"]["groups"]
        rules: list[dict[str, object]] = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("health") != "unknown" for r in rules) else []

    return poll(evaluated, timeout_s=20, interval_s=0.5)
