"""Metrics over OTLP through a real collector (rotel), into a receiver that decodes them.

The same job events as the unit tests, exported by the real OTLP metric exporter
(gRPC and HTTP) on the worker's schedule and once more at exit; what arrives must
carry the right values and the node's resource.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.otlp import OtlpHttpReceiver, Rotel, run_rotel
from tests.unit.test_metrics import _job_with_a_restart
from tests.unit.test_spans import RUN
from torchelastic_otel import otel
from torchelastic_otel import semconv as sc
from torchelastic_otel.otel.settings import Settings


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OtlpHttpReceiver, Rotel]]:
    log_dir = tmp_path_factory.mktemp("rotel")
    with OtlpHttpReceiver() as receiver, run_rotel(receiver.endpoint, Path(log_dir)) as rotel:
        yield receiver, rotel


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_metrics_arrive_through_rotel(
    collector: tuple[OtlpHttpReceiver, Rotel], protocol: str
) -> None:
    receiver, rotel = collector
    endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
    with receiver.received.lock:
        receiver.received.metrics.clear()
    s = Settings(
        endpoint=endpoint,
        logs_protocol=protocol,
        traces_protocol=protocol,
        metrics_protocol=protocol,
        schedule_delay_ms=50,
        use_global_providers=False,
        service_name="metrics-test",
    )
    with otel.use(otel.Pipeline(s)) as pipeline:
        _job_with_a_restart()
        assert pipeline.force_flush(10)
    assert pipeline.exported_counts()["metrics"] >= 1  # the collection at exit
    assert pipeline.drop_counts()["export_failed_metrics"] == 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        names = {p["name"] for p in receiver.received.metrics}
        if sc.METRIC_AGENT_RESTARTS in names:
            break
        time.sleep(0.1)
    # Cumulative points: the last one of each metric holds the job's totals.
    last = {}
    for point in receiver.received.metrics:
        if point["attributes"].get("run_id") == RUN:
            key = (point["name"], point["attributes"].get("error.type"))
            last[key] = point
    assert last[(sc.METRIC_AGENT_RESTARTS, None)]["value"] == 1
    assert last[(sc.METRIC_WORKER_FAILURES, "SIGKILL")]["value"] == 1
    duration = last[(sc.METRIC_RENDEZVOUS_DURATION, None)]
    assert (duration["kind"], duration["count"], duration["unit"]) == ("histogram", 2, "s")
    assert last[(sc.METRIC_RESTART_REMAINING, None)]["kind"] == "gauge"
    assert duration["resource"]["service.name"] == "metrics-test"
    assert "host.name" in duration["resource"]
