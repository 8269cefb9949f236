"""The metrics sink: an SDK ``MeterProvider`` and the readers ``OTEL_METRICS_EXPORTER`` asks for.

* ``otlp`` (default), ``console``, or a plug-in exporter: a pull reader that the
  export worker collects every ``OTEL_METRIC_EXPORT_INTERVAL`` (and once more at
  exit); each collection is one item of a :class:`~._base.Batches` (signal
  ``metrics``), exported through the same worker, books and exit bound as logs and
  spans. The OTLP exporter reads ``OTEL_EXPORTER_OTLP_METRICS_*`` itself, the
  temporality preference included.
* ``prometheus``: a scrape endpoint on ``OTEL_EXPORTER_PROMETHEUS_HOST``:
  ``OTEL_EXPORTER_PROMETHEUS_PORT`` (default localhost:9464), served by
  ``prometheus_client`` (the extra ``torchelastic-otel[prometheus]``); it collects
  when scraped.
* ``none``: no metrics.

Several may be given, comma-separated. When the application installed a global
``MeterProvider`` (and ``use_global_providers``), its readers export instead.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

from torchelastic_otel.otel import _exporters
from torchelastic_otel.otel._ledger import Ledger
from torchelastic_otel.otel._upstream import is_application_provider, metric_preferences
from torchelastic_otel.otel.settings import Settings
from torchelastic_otel.otel.sinks._base import Batches

_log = logging.getLogger("torchelastic_otel")


@dataclass
class MetricsSink:
    """The meter provider instruments are made on, and how its data leaves."""

    provider: Any
    batches: Batches | None = None
    readers: list[Any] = field(default_factory=list)  # pull readers we collect
    closers: list[Any] = field(default_factory=list)  # servers and providers to stop
    how: str = ""

    def collect(self) -> None:
        """Collect every pull reader into the batches (the worker exports them)."""
        if self.batches is None:
            return
        for reader in self.readers:
            data = reader.get_metrics_data()
            if data is not None and data.resource_metrics:
                self.batches.add(data, 1)

    def close(self) -> None:
        """Stop the scrape endpoint and the provider."""
        for closer in self.closers:
            try:
                closer()
            except Exception:  # noqa: BLE001 -- exit must go on
                _log.debug("closing the metrics sink failed", exc_info=True)


def choose(s: Settings, resource: Any, plug_in: Any, ledger: Ledger) -> MetricsSink | None:
    """The metrics sink the settings ask for, or ``None`` (``none``, or disabled)."""
    from opentelemetry import metrics

    global_provider = metrics.get_meter_provider()
    if plug_in is None and s.use_global_providers and is_application_provider(global_provider):
        return MetricsSink(global_provider, how="application provider")
    names = ["plug-in"] if plug_in is not None else list(s.metrics_exporters)
    if not names or names == ["none"]:
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    readers: list[Any] = []
    pull: list[Any] = []
    closers: list[Any] = []
    batches: Batches | None = None
    for name in names:
        if name == "prometheus":
            reader = _prometheus(s, closers)
            if reader is not None:
                readers.append(reader)
            continue
        exporter = plug_in if name == "plug-in" else _exporter(s, name)
        if exporter is None:
            continue
        temporality, aggregation = metric_preferences(exporter)
        reader = InMemoryMetricReader(
            preferred_temporality=temporality, preferred_aggregation=aggregation
        )
        readers.append(reader)
        pull.append(reader)
        # One exporter per sink: a second pull exporter shares the batches' exporter slot.
        if batches is None:
            # One collection per export: the exporter takes a MetricsData, not a list.
            batches = Batches("metrics", exporter, 1, ledger, wrap=_only)
        else:
            _log.warning("torchelastic-otel: only one pushing metrics exporter is used: %s", name)
    if not readers:
        return None
    provider = MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
    closers.append(lambda: provider.shutdown(timeout_millis=100))
    return MetricsSink(provider, batches, pull, closers, ",".join(names))


def _only(items: list[Any]) -> Any:
    return items[0]


def _exporter(s: Settings, name: str) -> Any:
    if name == "otlp":
        return _exporters.create(s, _exporters.METRICS)
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    _log.warning(
        "torchelastic-otel: OTEL_METRICS_EXPORTER=%r is not supported "
        "(otlp, prometheus, console, none); no metrics through it",
        name,
    )
    return None


def _prometheus(s: Settings, closers: list[Any]) -> Any:
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        _log.warning(
            "torchelastic-otel: OTEL_METRICS_EXPORTER=prometheus needs "
            "pip install 'torchelastic-otel[prometheus]'; no scrape endpoint"
        )
        return None
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    try:
        server, _ = start_http_server(s.prometheus_port, s.prometheus_host, registry)
    except OSError as e:
        _log.warning(
            "torchelastic-otel: cannot serve metrics on %s:%d: %s "
            "(set OTEL_EXPORTER_PROMETHEUS_PORT to a free port)",
            s.prometheus_host,
            s.prometheus_port,
            e.strerror or e,
        )
        return None
    closers.append(server.shutdown)
    closers.append(server.server_close)
    return reader
