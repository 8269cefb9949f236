"""Run the stack's real programs on 127.0.0.1, on free ports, and stop them by PID.

The binaries are built from Go modules by ``otel-collector/build.sh`` into
``${TORCHELASTIC_OTEL_CACHE:-~/.cache/torchelastic-otel}/bin``: ``make collector``
builds ``otelcol-torchelastic`` (``make test`` does it first), ``make stack-build``
also builds ``jaeger`` (v2) and ``prometheus`` (3.x).

A test that needs a binary asks :func:`require_binary`. When the binary is
missing the test *fails* if ``TORCHELASTIC_OTEL_REQUIRE`` (comma-separated names,
set by ``make test`` and ``make stack-test`` for what they build) names it, and
skips with the command to build it otherwise. So ``make test`` can never pass
without exercising the collector, and a bare ``pytest`` on a machine without Go
says what it left out.

Every process here listens on 127.0.0.1 only; every wait is bounded; every stop
is by PID: SIGTERM, then SIGKILL after 10 s.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.support.otlp import free_port
from torchelastic_otel.receiver import OtlpHttpReceiver

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "otel-collector"

T = TypeVar("T")

#: Binary name -> how to get it.
BUILT_BY = {
    "otelcol-torchelastic": "make collector",
    "jaeger": "make stack-build",
    "prometheus": "make stack-build",
    "promtool": "apt-get install prometheus (Debian; .ci/run does it)",
    "debian-prometheus": "apt-get install prometheus (Debian; .ci/run does it)",
}


def cache_dir() -> Path:
    """Where ``otel-collector/build.sh`` puts what it builds."""
    default = Path.home() / ".cache" / "torchelastic-otel"
    return Path(os.environ.get("TORCHELASTIC_OTEL_CACHE", default))


def binary(name: str) -> Path | None:
    """The built ``name`` (or ``promtool`` and Debian's ``prometheus`` on PATH), or ``None``."""
    if name in ("promtool", "debian-prometheus"):
        found = shutil.which(name.removeprefix("debian-"))
        return Path(found) if found else None
    path = cache_dir() / "bin" / name
    return path if os.access(path, os.X_OK) else None


def required() -> set[str]:
    """The binaries this run must have (``TORCHELASTIC_OTEL_REQUIRE``)."""
    return {n.strip() for n in os.environ.get("TORCHELASTIC_OTEL_REQUIRE", "").split(",") if n}


def require_binary(name: str) -> Path:
    """``name``'s path; fails the test if this run requires it, else skips it."""
    path = binary(name)
    if path is not None:
        return path
    message = f"{name} is not built: {BUILT_BY[name]}"
    if name in required():
        pytest.fail(f"{message} (TORCHELASTIC_OTEL_REQUIRE names it)")
    pytest.skip(message)


def wait_http(url: str, timeout_s: float, process: "subprocess.Popen[bytes]", log: Path) -> None:
    """Wait until GET ``url`` answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s}s:\n{log.read_text()[-3000:]}")


def get_json(url: str) -> Any:
    """GET ``url`` (127.0.0.1 only) and decode its JSON."""
    assert url.startswith("http://127.0.0.1:"), url
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.load(reply)


def stop(process: "subprocess.Popen[bytes]") -> None:
    """SIGTERM ``process`` by PID, SIGKILL after 10 s."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextmanager
def _run(
    argv: list[str], env: Mapping[str, str], log_path: Path, ready_url: str, timeout_s: float
) -> Iterator["subprocess.Popen[bytes]"]:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_http(ready_url, timeout_s, process, log_path)
        yield process
    finally:
        stop(process)


def validate_collector_config(config: Path, env: Mapping[str, str]) -> None:
    """``otelcol-torchelastic validate --config=config``; raises with its output on failure."""
    otelcol = require_binary("otelcol-torchelastic")
    result = subprocess.run(
        [str(otelcol), "validate", f"--config={config}"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"{config}: collector validate failed:\n{result.stderr}")


@dataclass
class Otelcol:
    """A running ``otelcol-torchelastic``."""

    process: "subprocess.Popen[bytes]"
    grpc_port: int
    http_port: int
    telemetry_port: int
    log_path: Path

    @property
    def grpc_endpoint(self) -> str:
        """Where to send OTLP/gRPC."""
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """Where to send OTLP/HTTP (the exporters append ``/v1/...``)."""
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        """The collector's own output so far."""
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_otelcol(
    config_path: Path, env: Mapping[str, str], log_dir: Path, overlays: Sequence[Path] = ()
) -> Iterator[Otelcol]:
    """Run ``otelcol-torchelastic --config=config_path`` until the block ends.

    Args:
        config_path: a collector config; its listen addresses must be the
            ``${env:...}`` placeholders of ``otel-collector/config.yaml``, which
            this sets to free ports on 127.0.0.1.
        env: more environment, e.g. the exporters' endpoints.
        log_dir: where the collector's output goes (``otelcol-<port>.log``).
        overlays: more ``--config`` files, merged over ``config_path`` by the
            collector (maps merge, lists are replaced).
    """
    otelcol = require_binary("otelcol-torchelastic")
    grpc, http, health, telemetry = free_port(), free_port(), free_port(), free_port()
    ports = {
        "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc}",
        "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http}",
        "HEALTH_CHECK_ENDPOINT": f"127.0.0.1:{health}",
        "COLLECTOR_TELEMETRY_HOST": "127.0.0.1",
        "COLLECTOR_TELEMETRY_PORT": str(telemetry),
    }
    log_path = log_dir / f"otelcol-{grpc}.log"
    with _run(
        [str(otelcol), f"--config={config_path}", *(f"--config={o}" for o in overlays)],
        {**ports, **env},
        log_path,
        f"http://127.0.0.1:{health}/",
        timeout_s=30,
    ) as process:
        yield Otelcol(process, grpc, http, telemetry, log_path)


@dataclass
class Jaeger:
    """A running Jaeger v2 with ``otel-collector/jaeger.yaml`` (in-memory storage)."""

    process: "subprocess.Popen[bytes]"
    otlp_grpc_port: int
    query_port: int
    log_path: Path

    @property
    def otlp_grpc_endpoint(self) -> str:
        """host:port of Jaeger's OTLP/gRPC receiver (what the collector exports to)."""
        return f"127.0.0.1:{self.otlp_grpc_port}"

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """The spans Jaeger's query API has for ``trace_id`` (32 hex digits), maybe none."""
        try:
            reply = get_json(f"http://127.0.0.1:{self.query_port}/api/traces/{trace_id}")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise
        return [span for trace in reply.get("data") or [] for span in trace["spans"]]


@contextmanager
def run_jaeger(log_dir: Path) -> Iterator[Jaeger]:
    """Run Jaeger v2 with ``otel-collector/jaeger.yaml`` on free ports until the block ends."""
    jaeger = require_binary("jaeger")
    ports = {
        name: free_port()
        for name in ("otlp_grpc", "otlp_http", "query_http", "query_grpc", "health", "telemetry")
    }
    env = {
        "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['otlp_grpc']}",
        "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['otlp_http']}",
        "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{ports['query_http']}",
        "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{ports['query_grpc']}",
        "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{ports['health']}",
        "JAEGER_TELEMETRY_HOST": "127.0.0.1",
        "JAEGER_TELEMETRY_PORT": str(ports["telemetry"]),
    }
    log_path = log_dir / f"jaeger-{ports['otlp_grpc']}.log"
    with _run(
        [str(jaeger), f"--config={STACK / 'jaeger.yaml'}"],
        env,
        log_path,
        f"http://127.0.0.1:{ports['health']}/status",
        timeout_s=60,
    ) as process:
        yield Jaeger(process, ports["otlp_grpc"], ports["query_http"], log_path)


@dataclass
class Prometheus:
    """A running Prometheus 3 with its OTLP receiver on."""

    process: "subprocess.Popen[bytes]"
    port: int
    log_path: Path

    @property
    def otlp_metrics_endpoint(self) -> str:
        """The full OTLP/HTTP metrics URL (the collector's ``metrics_endpoint``)."""
        return f"http://127.0.0.1:{self.port}/api/v1/otlp/v1/metrics"

    @property
    def remote_write_endpoint(self) -> str:
        """Where Prometheus takes remote write (``--web.enable-remote-write-receiver``)."""
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant PromQL query's result vector (at ``at``, Unix seconds, else now)."""
        params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        return self._api("query", params)

    def query_range(
        self, promql: str, start: float, end: float, step_s: float
    ) -> list[dict[str, Any]]:
        """A range query's result matrix: one entry per series, with its ``values``."""
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step_s}
        return self._api("query_range", params)

    def _api(self, path: str, params: Mapping[str, object]) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        try:
            reply = get_json(url)
        except urllib.error.HTTPError as e:  # 400/422: the query's own error, in the body
            raise AssertionError(f"{params['query']}: {e.read().decode(errors='replace')}") from e
        assert reply["status"] == "success", reply
        return list(reply["data"]["result"])


def prometheus_config(rules: Path, port: int) -> dict[str, Any]:
    """The compose stack's ``prometheus.yml``, with paths and ports for this machine."""
    config: dict[str, Any] = yaml.safe_load((STACK / "prometheus/prometheus.yml").read_text())
    config["rule_files"] = [str(rules)]
    # Evaluate the rules at once, not after the stack's 30 s.
    config["global"]["evaluation_interval"] = "1s"
    config["scrape_configs"] = [
        {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
    ]
    return config


@contextmanager
def run_prometheus(work_dir: Path, *, debian: bool = False) -> Iterator[Prometheus]:
    """Run Prometheus with the compose stack's config and alerts, until the block ends.

    Args:
        work_dir: for the generated config, the TSDB and Prometheus' output.
        debian: Debian's Prometheus 2.42 (``make test`` has it with promtool)
            instead of the Prometheus 3 ``make stack-build`` builds. 2.42 has no
            OTLP receiver: it takes remote write, and the config's ``otlp`` block
            (unknown to 2.42, which refuses unknown keys) is left out.
    """
    prometheus = require_binary("debian-prometheus" if debian else "prometheus")
    port = free_port()
    settings = prometheus_config(STACK / "prometheus/alerts.yaml", port)
    if debian:
        settings.pop("otlp")
    config = work_dir / "prometheus.yml"
    config.write_text(yaml.safe_dump(settings))
    log_path = work_dir / f"prometheus-{port}.log"
    with _run(
        [
            str(prometheus),
            f"--config.file={config}",
            f"--storage.tsdb.path={work_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver" if debian else "--web.enable-otlp-receiver",
        ],
        {},
        log_path,
        f"http://127.0.0.1:{port}/-/ready",
        timeout_s=60,
    ) as process:
        yield Prometheus(process, port, log_path)


class OtlpMetricsHttpReceiver(OtlpHttpReceiver):
    """:class:`OtlpHttpReceiver` (which takes ``/v1/metrics`` too), with the names received."""

    def __enter__(self) -> "OtlpMetricsHttpReceiver":
        super().__enter__()
        return self

    def metric_names(self) -> set[str]:
        """Every metric name received so far."""
        with self.received.lock:
            return {p["name"] for p in self.received.metrics}


def poll(check: Callable[[], T], timeout_s: float, interval_s: float = 0.2) -> T:
    """Call ``check()`` until it returns something truthy (returned) or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval_s)


__all__ = [
    "STACK",
    "Jaeger",
    "Otelcol",
    "OtlpMetricsHttpReceiver",
    "Prometheus",
    "binary",
    "cache_dir",
    "get_json",
    "poll",
    "prometheus_config",
    "require_binary",
    "required",
    "run_jaeger",
    "run_otelcol",
    "run_prometheus",
    "validate_collector_config",
]
