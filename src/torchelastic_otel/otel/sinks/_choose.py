"""Choosing, once, the sink of each signal (see :mod:`torchelastic_otel.otel.sinks`)."""

from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import Tracer

from torchelastic_otel.otel._ids import ForcedIds
from torchelastic_otel.otel._ledger import Ledger
from torchelastic_otel.otel._upstream import is_application_provider
from torchelastic_otel.otel.mapping import MappedEvent
from torchelastic_otel.otel.sinks._base import Batches, LogSink, PlugIns, Sinks, SpanSink


def choose(settings: Any, resource: Any, plugins: PlugIns, ledger: Ledger) -> Sinks:
    """Pick, once, the sink of each signal.

    1. a plug-in exporter: SDK providers of ours around it;
    2. else the application's global provider, when it installed one and
       ``use_global_providers`` is on;
    3. else the fast path, when it proves it works with the installed exporter;
    4. else SDK providers of ours around our OTLP exporter.
    """
    from torchelastic_otel import semconv
    from torchelastic_otel._version import __version__
    from torchelastic_otel.otel.sinks import _protobuf

    sinks = Sinks(logs=_NoLogs(), spans=SpanSink(_NoTracer(), None))
    envelope = _protobuf.Envelope(dict(resource.attributes), semconv.SCOPE, __version__)
    sinks.logs = _choose_logs(settings, resource, plugins, _Owner(sinks, ledger), envelope)
    sinks.spans = _choose_spans(settings, resource, plugins, _Owner(sinks, ledger), envelope)
    from torchelastic_otel.otel.sinks import _metrics

    metrics = _metrics.choose(settings, resource, plugins.metric_exporter, ledger)
    if metrics is not None:
        sinks.metrics = metrics
        sinks.paths["metrics"] = metrics.how
        if metrics.batches is not None:
            sinks.batches.append(metrics.batches)
            sinks.exporters.append(metrics.batches.exporter)
    return sinks


class _Owner:
    """Registers an exporter we export through (and shut down) with its batches."""

    def __init__(self, sinks: Sinks, ledger: Ledger) -> None:
        self.sinks = sinks
        self.ledger = ledger

    def own(self, signal: str, exporter: Any, size: int, how: str, wrap: Any = None) -> Batches:
        batches = Batches(signal, exporter, size, self.ledger, wrap)
        self.sinks.batches.append(batches)
        self.sinks.exporters.append(exporter)
        self.sinks.paths[signal] = how
        return batches


def _choose_logs(s: Any, resource: Any, plugins: PlugIns, owner: _Owner, envelope: Any) -> LogSink:
    from opentelemetry import _logs

    from torchelastic_otel.otel import _exporters
    from torchelastic_otel.otel.sinks import _protobuf, _sdk

    if plugins.log_exporter is not None:
        batches = owner.own("logs", plugins.log_exporter, s.logs_batch_size, "sdk (plug-in)")
        return _sdk.our_logs(resource, batches)
    if s.logs_exporter == "none":
        owner.sinks.paths["logs"] = "none"
        return _NoLogs()
    if s.logs_exporter == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

        batches = owner.own("logs", ConsoleLogRecordExporter(), s.logs_batch_size, "console")
        return _sdk.our_logs(resource, batches)
    provider = _logs.get_logger_provider()
    if s.use_global_providers and is_application_provider(provider):
        owner.sinks.paths["logs"] = "application provider"
        return _sdk.application_logs(provider)
    fast = (
        _protobuf.prebuilt_exporter(s, _exporters.LOGS, owner.sinks.releases)
        if s.fast_path
        else None
    )
    if fast is not None:
        batches = owner.own("logs", fast, s.logs_batch_size, "fast path", envelope.logs)
        return _ProtobufLogs(_protobuf.Encoder.from_env(), batches)
    exporter = _exporters.create(s, _exporters.LOGS)
    return _sdk.our_logs(resource, owner.own("logs", exporter, s.logs_batch_size, "sdk"))


def _choose_spans(
    s: Any, resource: Any, plugins: PlugIns, owner: _Owner, envelope: Any
) -> SpanSink:
    from opentelemetry import trace

    from torchelastic_otel.otel import _exporters
    from torchelastic_otel.otel.sinks import _protobuf, _sdk

    if plugins.span_exporter is not None:
        batches = owner.own("spans", plugins.span_exporter, s.spans_batch_size, "sdk (plug-in)")
        return _sdk.our_spans(resource, batches)
    if s.traces_exporter == "none":
        owner.sinks.paths["spans"] = "none"
        return SpanSink(trace.NoOpTracer(), None)
    if s.traces_exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        batches = owner.own("spans", ConsoleSpanExporter(), s.spans_batch_size, "console")
        return _sdk.our_spans(resource, batches)
    provider = trace.get_tracer_provider()
    if s.use_global_providers and is_application_provider(provider):
        owner.sinks.paths["spans"] = "application provider"
        return _sdk.application_spans(provider)
    fast = (
        _protobuf.prebuilt_exporter(s, _exporters.TRACES, owner.sinks.releases)
        if s.fast_path
        else None
    )
    if fast is not None:
        from torchelastic_otel.otel.sinks._light_spans import LightTracer

        batches = owner.own("spans", fast, s.spans_batch_size, "fast path", envelope.spans)
        tracer = LightTracer(batches.add)  # ours: its id generator is ours to wrap
        ids = ForcedIds(tracer.id_generator)
        tracer.id_generator = ids
        return SpanSink(tracer, ids)
    exporter = _exporters.create(s, _exporters.TRACES)
    return _sdk.our_spans(resource, owner.own("spans", exporter, s.spans_batch_size, "sdk"))


class _NoLogs:
    """No log records: a placeholder, or ``OTEL_LOGS_EXPORTER=none``."""

    def emit(self, m: MappedEvent, t_ns: int, context: Context, weight: int = 1) -> None:
        """Nothing."""


class _NoTracer(Tracer):
    """A placeholder until the span sink is chosen."""

    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        """Never called."""
        raise NotImplementedError

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        """Never called."""
        raise NotImplementedError


class _ProtobufLogs:
    """The fast path's log sink: protobuf records into ``batches``."""

    def __init__(self, encoder: Any, batches: Batches) -> None:
        self._encoder = encoder
        self._batches = batches

    def emit(self, m: MappedEvent, t_ns: int, context: Context, weight: int = 1) -> None:
        """Build ``m``'s record with the ids of the span in ``context``."""
        from opentelemetry import trace

        ids = trace.get_current_span(context).get_span_context()
        self._batches.add(self._encoder.log_record(m, t_ns, ids.trace_id, ids.span_id), weight)
