"""A real torchrun job's metrics, scraped by a real Prometheus and read back with PromQL.

Two agents on 127.0.0.1 with ``OTEL_METRICS_EXPORTER=prometheus`` (each its own
port), a ``prometheus`` process (Debian's 2.42; it cannot receive OTLP, but it
scrapes) started with a generated config and stopped by PID, the job of the other
e2e tests with one failure and one restart; then PromQL through Prometheus' HTTP
API. ``last_over_time`` reads the last scraped value: the agents have exited, and
their series went stale.
"""

import json
import os
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.waiting import wait_until
from torchelastic_otel.demo.collector import free_port, wait_port
from torchelastic_otel.demo.job import run_job

pytest.importorskip("torch.distributed.run", reason="torch is not installed: e2e tests skipped")
pytest.importorskip(
    "opentelemetry.exporter.prometheus", reason="opentelemetry-exporter-prometheus missing"
)
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus is not installed (apt-get install prometheus)"
)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    """A Prometheus scraping two agent ports every second; (its URL, the ports)."""
    ports = [free_port(), free_port()]
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
                "scrape_configs": [
                    {
                        "job_name": "torchelastic",
                        "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}],
                    }
                ],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("w")
    assert PROMETHEUS is not None
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(web, timeout_s=30)
        yield f"http://127.0.0.1:{web}", ports
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _query(url: str, promql: str) -> list[Any]:
    query = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _scalar(url: str, promql: str) -> float:
    result = _query(url, promql)
    assert len(result) == 1, (promql, result)
    return float(result[0]["value"][1])


def test_restarts_failures_and_rendezvous_through_a_real_scrape(
    prometheus: tuple[str, list[int]],
) -> None:
    url, ports = prometheus
    run_id = f"e2e-prom-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCHELASTIC_"))}
    env.update(
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_LOGS_EXPORTER="none",
        OTEL_TRACES_EXPORTER="none",
        TORCHELASTIC_OTEL_SHUTDOWN_TIMEOUT_MS="500",
    )
    job = run_job(
        run_id,
        env=env,
        node_env=lambda node: {"OTEL_EXPORTER_PROMETHEUS_PORT": str(ports[node])},
        fail_once_ranks=[3],
        max_restarts=1,
        train_seconds=6.0,
        timeout_s=240,
    )
    assert job.returncodes == [0, 0], "\n".join(o[-3000:] for o in job.outputs)
    selector = f'run_id="{run_id}"'

    def last(metric: str, extra: str = "") -> str:
        return f"last_over_time({metric}{{{selector}{extra}}}[10m])"

    # Each node restarted its workers once (node 1 for its own failure, node 0 for its peer);
    # waited for, as Prometheus may still be ingesting the last scrapes.
    restarts = wait_until(
        lambda: _query(url, last("torchelastic_agent_restarts_total")),
        lambda result: len(result) == 2,
        20,
        "both nodes' torchelastic_agent_restarts_total in Prometheus",
    )
    assert sorted(float(r["value"][1]) for r in restarts) == [1.0, 1.0]
    assert {r["metric"]["instance"] for r in restarts} == {f"127.0.0.1:{p}" for p in ports}
    # The failure with its reason: the worker's exception, and its peer killed by SIGTERM.
    failures = {
        r["metric"]["error_type"]: float(r["value"][1])
        for r in _query(url, f"sum by (error_type) ({last('torchelastic_worker_failures_total')})")
    }
    assert failures == {"RuntimeError": 1.0, "SIGTERM": 1.0}
    # One rendezvous-duration observation per round per node: 2 rounds x 2 nodes.
    count = f"sum({last('torchelastic_rendezvous_duration_seconds_count')})"
    assert _scalar(url, count) == 4.0
    buckets = _query(url, last("torchelastic_rendezvous_duration_seconds_bucket", ',le="+Inf"'))
    assert sorted(float(b["value"][1]) for b in buckets) == [2.0, 2.0]
    assert _scalar(url, f"min({last('torchelastic_agent_restart_limit')})") == 1.0
    assert _scalar(url, f"min({last('torchelastic_agent_restart_remaining')})") == 0.0
    # torch's own elastic agent metrics, bridged: every rendezvous step succeeded.
    prof = "last_over_time(torchelastic_simpleelasticagent_rendezvous_success_total[10m])"
    assert sorted(float(r["value"][1]) for r in _query(url, prof)) == [2.0, 2.0]
    healthy = "last_over_time(torchelastic_workers_default_healthy_total[10m])"
    assert all(float(r["value"][1]) > 0 for r in _query(url, healthy))
