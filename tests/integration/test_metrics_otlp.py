"""Metrics over OTLP through the real collector, into a Prometheus stand-in that decodes them.

The same job events as the unit tests, exported by the real OTLP metric exporter
(gRPC and HTTP) on the worker's schedule and once more at exit; what arrives must
carry the right values and the node's resource.
"""

from typing import Any

import pytest

from tests.support.collector import RealCollector
from tests.support.waiting import wait_until
from tests.unit.test_metrics import _job_with_a_restart
from tests.unit.test_spans import RUN
from torchelastic_otel import otel
from torchelastic_otel import semconv as sc
from torchelastic_otel.otel.settings import Settings
from torchelastic_otel.otlp_data import MetricPointItem


def _service(point: MetricPointItem) -> Any:
    return point["resource"].get("service.name")


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_metrics_arrive_through_the_collector(collector: RealCollector, protocol: str) -> None:
    endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint
    service = f"metrics-test-{protocol}"
    s = Settings(
        endpoint=endpoint,
        logs_protocol=protocol,
        traces_protocol=protocol,
        metrics_protocol=protocol,
        schedule_delay_ms=50,
        use_global_providers=False,
        service_name=service,
    )
    with otel.use(otel.Pipeline(s)) as pipeline:
        _job_with_a_restart()
        assert pipeline.force_flush(10)
    assert pipeline.exported_counts()["metrics"] >= 1  # the collection at exit
    assert pipeline.drop_counts()["export_failed_metrics"] == 0
    wait_until(
        lambda: {p["name"] for p in list(collector.received.metrics) if _service(p) == service},
        lambda names: sc.METRIC_AGENT_RESTARTS in names,
        20,
        f"{sc.METRIC_AGENT_RESTARTS} at the collector's receiver",
    )
    # Cumulative points: the last one of each metric holds the job's totals.
    last = {}
    for point in list(collector.received.metrics):
        if point["attributes"].get("run_id") == RUN and _service(point) == service:
            key = (point["name"], point["attributes"].get("error.type"))
            last[key] = point
    assert last[(sc.METRIC_AGENT_RESTARTS, None)]["value"] == 1
    assert last[(sc.METRIC_WORKER_FAILURES, "SIGKILL")]["value"] == 1
    duration = last[(sc.METRIC_RENDEZVOUS_DURATION, None)]
    assert (duration["kind"], duration["count"], duration["unit"]) == ("histogram", 2, "s")
    assert last[(sc.METRIC_RESTART_REMAINING, None)]["kind"] == "gauge"
    # The collector's resource processor tagged the cluster.
    assert duration["resource"]["deployment.environment"] == "test"
    assert "host.name" in duration["resource"]
