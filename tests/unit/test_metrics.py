"""Metrics derived from the events, and torch's own, bridged (docs/mapping.md, "Metrics").

Each test records a job's events through a pipeline with a plug-in metric
exporter and reads the last (cumulative) collection, taken at shutdown.
"""

import logging
from collections.abc import Iterator
from typing import Any, cast

import pytest

from tests.support.memory import MemoryMetricExporter, record_otel
from tests.unit.test_mapping import TRACEBACK, rdzv_event
from tests.unit.test_spans import RUN, cycle_event, rendezvous_start, step, worker
from torchelastic_otel import otel
from torchelastic_otel import semconv as sc
from torchelastic_otel.events import Event, EventSource, NodeState
from torchelastic_otel.otel import settings
from torchelastic_otel.otel._metrics import TorchMetric


@pytest.fixture
def metrics() -> Iterator[MemoryMetricExporter]:
    exporter = MemoryMetricExporter()
    s = settings.Settings(schedule_delay_ms=10, use_global_providers=False)
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    pipeline = otel.Pipeline(
        s,
        log_exporter=InMemoryLogRecordExporter(),  # type: ignore[no-untyped-call]
        span_exporter=InMemorySpanExporter(),
        metric_exporter=exporter,
    )
    with otel.use(pipeline):
        yield exporter


def _value(points: list[Any], **attrs: Any) -> Any:
    matching = [p for p in points if all(p.attributes.get(k) == v for k, v in attrs.items())]
    assert len(matching) == 1, [dict(p.attributes) for p in points]
    return matching[0]


def _job_with_a_restart() -> None:
    """Two cycles on node 0: a worker fails in the first (SIGKILL for its peer)."""
    record_otel(rendezvous_start())
    record_otel(step("RENDEZVOUS", duration_ms=1500.0, group_rank=None))
    record_otel(cycle_event(0, remaining=1))
    record_otel(worker("START", 0))
    record_otel(worker("START", 1))
    record_otel(worker("FAILED", 0, raw_error=TRACEBACK))
    record_otel(worker("FAILED", 1, exit_code=-9))
    record_otel(step("RENDEZVOUS", duration_ms=250.0))
    record_otel(cycle_event(1, remaining=0))
    record_otel(worker("START", 0))
    record_otel(worker("SUCCEEDED", 0))


def test_the_rendezvous_histogram_has_one_observation_per_round(
    metrics: MemoryMetricExporter,
) -> None:
    _job_with_a_restart()
    otel.shutdown(5000)
    points = metrics.points()
    duration = _value(points[sc.METRIC_RENDEZVOUS_DURATION], run_id=RUN)
    assert duration.count == 2
    assert duration.sum == pytest.approx(1.75)
    assert metrics.units()[sc.METRIC_RENDEZVOUS_DURATION] == "s"
    assert _value(points[sc.METRIC_RENDEZVOUS_ROUNDS], run_id=RUN).value == 2


def test_restarts_failures_and_the_restart_budget(metrics: MemoryMetricExporter) -> None:
    _job_with_a_restart()
    otel.shutdown(5000)
    points = metrics.points()
    assert _value(points[sc.METRIC_AGENT_RESTARTS], run_id=RUN).value == 1
    failures = points[sc.METRIC_WORKER_FAILURES]
    # The reason is low-cardinality: the exception's class, or the signal.
    assert _value(failures, run_id=RUN, **{"error.type": "RendezvousTimeoutError"}).value == 1
    assert _value(failures, run_id=RUN, **{"error.type": "SIGKILL"}).value == 1
    assert _value(points[sc.METRIC_RESTART_REMAINING], run_id=RUN).value == 0
    assert _value(points[sc.METRIC_RESTART_LIMIT], run_id=RUN).value == 3
    startup = _value(points[sc.METRIC_WORKER_STARTUP], run_id=RUN)
    assert startup.count == 2  # one per cycle


def test_attributes_stay_low_cardinality(metrics: MemoryMetricExporter) -> None:
    _job_with_a_restart()
    otel.shutdown(5000)
    ours = {k for k in metrics.points() if k.startswith("torchelastic.")}
    keys = {key for name in ours for point in metrics.points()[name] for key in point.attributes}
    # error.type and the lost-node reason are short enumerations, never a message.
    assert keys <= {sc.RUN_ID, "error.type", sc.LOST_REASON}


def test_a_lost_node_is_counted_once_by_reason_from_zero(metrics: MemoryMetricExporter) -> None:
    record_otel(cycle_event(0))
    assert otel.force_flush(5)
    before = metrics.points()[sc.METRIC_NODES_LOST]
    assert {p.attributes[sc.LOST_REASON]: p.value for p in before} == {
        sc.LOST_REASON_PREEMPTED: 0,
        sc.LOST_REASON_COLLECTIVE: 0,
        sc.LOST_REASON_HEARTBEAT: 0,
    }
    lost = cycle_event(1)
    # The integration writes lists there (torch serializes metadata as JSON).
    cast(dict[str, Any], lost.metadata).update(
        {"lost.nodes": ["h2_9_0"], "lost.hosts": ["h2"], "lost.ranks": [1]}
    )
    record_otel(lost)
    otel.shutdown(5000)
    after = {p.attributes[sc.LOST_REASON]: p.value for p in metrics.points()[sc.METRIC_NODES_LOST]}
    assert after[sc.LOST_REASON_HEARTBEAT] == 1
    assert after[sc.LOST_REASON_PREEMPTED] == after[sc.LOST_REASON_COLLECTIVE] == 0


def test_a_node_waiting_in_a_rendezvous_shows_in_the_active_gauge(
    metrics: MemoryMetricExporter,
) -> None:
    record_otel(rendezvous_start())  # the agent starts a rendezvous, and waits
    assert otel.force_flush(5)  # which collects the metrics, as the SDK's does
    waiting = metrics.points()[sc.METRIC_RENDEZVOUS_ACTIVE]
    assert _value(waiting, run_id=RUN).value == 1
    record_otel(cycle_event(0))
    otel.shutdown(5000)
    assert _value(metrics.points()[sc.METRIC_RENDEZVOUS_ACTIVE], run_id=RUN).value == 0


def test_rendezvous_failures_and_heartbeats(metrics: MemoryMetricExporter) -> None:
    record_otel(rdzv_event())
    record_otel(rdzv_event(NodeState.FAILED, error_trace=TRACEBACK))
    keep_alive = rdzv_event(name="dynamic_rendezvous.py:DynamicRendezvousHandler._keep_alive")
    for _ in range(5):
        record_otel(keep_alive)
    otel.shutdown(5000)
    points = metrics.points()
    failed = _value(points[sc.METRIC_RENDEZVOUS_FAILURES], run_id=RUN)
    assert (failed.value, failed.attributes["error.type"]) == (1, "RendezvousTimeoutError")
    assert _value(points[sc.METRIC_RENDEZVOUS_HEARTBEATS], run_id=RUN).value == 5


def test_torch_metrics_are_bridged_by_group_and_name(metrics: MemoryMetricExporter) -> None:
    pipeline = otel._pipeline.current()
    for name, value in (
        ("workers.default.run_total", 1),
        ("workers.default.run_success_with_retries", 1),
        ("workers.default.run_failed_no_retries", 0),
        ("workers.default.remaining_restarts", 2),
        ("workers.default.remaining_restarts", 1),
        ("SimpleElasticAgent._rendezvous.duration.ms", 120),
        ("SimpleElasticAgent._rendezvous.duration.ms", 80),
        ("SimpleElasticAgent._rendezvous.success", 1),
    ):
        pipeline.submit(TorchMetric("torchelastic", name, value), 0)
    otel.shutdown(5000)
    points = metrics.points()
    assert points["torchelastic.workers.default.run_total"][0].value == 1
    assert points["torchelastic.workers.default.run_failed_no_retries"][0].value == 0
    assert points["torchelastic.workers.default.remaining_restarts"][0].value == 1  # a gauge
    # OpenTelemetry instrument names are case-insensitive; the SDK writes them lower-case.
    rendezvous = points["torchelastic.simpleelasticagent._rendezvous.duration"][0]
    assert (rendezvous.count, rendezvous.sum) == (2, 200)
    # Six bounds, not the SDK's fifteen: a bucket is a Prometheus series per node.
    assert list(rendezvous.explicit_bounds) == [10, 100, 1000, 10000, 60000, 600000]
    assert metrics.units()["torchelastic.simpleelasticagent._rendezvous.duration"] == "ms"
    assert points["torchelastic.simpleelasticagent._rendezvous.success"][0].value == 1


def test_metrics_exporter_settings(caplog: pytest.LogCaptureFixture) -> None:
    assert settings.from_env({}).metrics_exporters == ("otlp",)
    assert settings.from_env({"OTEL_METRICS_EXPORTER": "prometheus, otlp"}).metrics_exporters == (
        "prometheus",
        "otlp",
    )
    assert settings.from_env({"OTEL_METRICS_EXPORTER": "none"}).metrics_exporters == ("none",)
    with caplog.at_level(logging.WARNING, logger="torchelastic_otel"):
        s = settings.from_env({"OTEL_METRICS_EXPORTER": "statsd"})
    assert s.metrics_exporters == ("none",)
    assert "OTEL_METRICS_EXPORTER='statsd'" in caplog.text
    s = settings.from_env(
        {"OTEL_METRIC_EXPORT_INTERVAL": "5000", "OTEL_EXPORTER_PROMETHEUS_PORT": "99999"}
    )
    assert (s.metric_export_interval_ms, s.prometheus_port) == (5000, 9464)


def test_prometheus_endpoint_serves_the_metrics() -> None:
    """OTEL_METRICS_EXPORTER=prometheus: a scrape endpoint with the Prometheus names."""
    import urllib.request

    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from torchelastic_otel.demo.collector import free_port

    port = free_port()
    s = settings.Settings(
        schedule_delay_ms=10,
        use_global_providers=False,
        metrics_exporters=("prometheus",),
        prometheus_host="127.0.0.1",
        prometheus_port=port,
    )
    pipeline = otel.Pipeline(
        s,
        log_exporter=InMemoryLogRecordExporter(),  # type: ignore[no-untyped-call]
        span_exporter=InMemorySpanExporter(),
    )
    with otel.use(pipeline):
        _job_with_a_restart()
        assert otel.force_flush(10)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    text = body.decode()
    for name in (
        "torchelastic_rendezvous_duration_seconds_bucket",
        "torchelastic_rendezvous_duration_seconds_count",
        "torchelastic_agent_restarts_total",
        "torchelastic_worker_failures_total",
        "torchelastic_agent_restart_remaining",
    ):
        assert name in text, name
    assert f'run_id="{RUN}"' in text
    assert 'error_type="SIGKILL"' in text


def test_a_prometheus_port_in_use_is_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = settings.Settings(
            schedule_delay_ms=10,
            use_global_providers=False,
            metrics_exporters=("prometheus",),
            prometheus_host="127.0.0.1",
            prometheus_port=port,
        )
        with (
            caplog.at_level(logging.WARNING, logger="torchelastic_otel"),
            otel.use(otel.Pipeline(s)),
        ):
            record_otel(Event("e", EventSource.AGENT, metadata={"run_id": RUN}))
            otel.force_flush(10)
    warnings = [r.getMessage() for r in caplog.records if "cannot serve metrics" in r.getMessage()]
    assert len(warnings) == 1
    assert "OTEL_EXPORTER_PROMETHEUS_PORT" in warnings[0]
