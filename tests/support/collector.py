"""The real collector, running ``otel-collector/config.yaml``, with local backends.

What the integration and e2e tests send to: ``otelcol-torchelastic`` (built from
Go modules, ``make collector``) with our config, its exporters pointed at
receivers in this process that stand in for Tempo (traces), Loki (logs) and
Prometheus (metrics), and for Jaeger (traces again). ``received`` merges what the
backends got, as a backend would see it after the collector: the spans Tempo got,
the records Loki got, the points Prometheus got.

Where the binary is not built, a test that uses it skips with a reason, or fails
where ``TORCHELASTIC_OTEL_REQUIRE`` says it must be there (``make test``).
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.stack import STACK, Otelcol, require_binary, run_otelcol
from torchelastic_otel.otlp_data import Received
from torchelastic_otel.receiver import OtlpGrpcReceiver, OtlpHttpReceiver

CONFIG = STACK / "config.yaml"


@dataclass
class Backends:
    """The stand-ins the collector exports to."""

    tempo: OtlpGrpcReceiver
    jaeger: OtlpGrpcReceiver
    loki: OtlpHttpReceiver
    prometheus: OtlpHttpReceiver


class RealCollector:
    """The running collector and what reached its backends."""

    def __init__(self, collector: Otelcol, backends: Backends) -> None:
        self.collector = collector
        self.backends = backends
        self.received = Received()
        # One store for the tests: spans from Tempo's side, records from Loki's,
        # metric points from Prometheus'.
        self.received.spans = backends.tempo.received.spans
        self.received.logs = backends.loki.received.logs
        self.received.metrics = backends.prometheus.received.metrics

    @property
    def grpc_endpoint(self) -> str:
        """Where agents send OTLP/gRPC."""
        return self.collector.grpc_endpoint

    @property
    def http_endpoint(self) -> str:
        """Where agents send OTLP/HTTP."""
        return self.collector.http_endpoint

    def log(self) -> str:
        """The collector's own output."""
        return self.collector.log()

    def wait_for(self, n_logs: int, n_spans: int = 0, timeout_s: float = 20.0) -> Received:
        """Wait (bounded) until the backends got ``n_logs`` records and ``n_spans`` spans."""
        return self.received.wait_for(n_logs, n_spans, timeout_s)


@contextmanager
def real_collector(log_dir: Path) -> Iterator[RealCollector]:
    """Start the collector with local backends; stop everything by PID after."""
    require_binary("otelcol-torchelastic")
    with ExitStack() as stack:
        backends = Backends(
            tempo=stack.enter_context(OtlpGrpcReceiver()),
            jaeger=stack.enter_context(OtlpGrpcReceiver()),
            loki=stack.enter_context(OtlpHttpReceiver()),
            prometheus=stack.enter_context(OtlpHttpReceiver()),
        )
        env = {
            "TEMPO_OTLP_ENDPOINT": backends.tempo.endpoint.removeprefix("http://"),
            "JAEGER_OTLP_ENDPOINT": backends.jaeger.endpoint.removeprefix("http://"),
            "LOKI_OTLP_ENDPOINT": f"{backends.loki.endpoint}/otlp",
            "PROMETHEUS_OTLP_ENDPOINT": f"{backends.prometheus.endpoint}/api/v1/otlp/v1/metrics",
            "DEPLOYMENT_ENVIRONMENT": "test",
            "BATCH_TIMEOUT": "100ms",
        }
        collector = stack.enter_context(run_otelcol(CONFIG, env, log_dir))
        yield RealCollector(collector, backends)
