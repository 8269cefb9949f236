"""The fence around OpenTelemetry's internals (otel/_upstream.py).

Each use of an upstream private is tested twice: with the installed SDK, where
the internal is there and must be found, and with it gone (as in a release that
moved it), where the caller must get the public behaviour or ``None``, never an
exception. ``tools/otel-compat.sh`` runs this file against the oldest supported
OpenTelemetry release too.
"""

import importlib
from typing import Any

import pytest
from opentelemetry import _logs, metrics, trace

from torchelastic_otel.otel import _upstream


def test_placeholder_providers_are_not_the_applications() -> None:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    for placeholder in (
        trace.ProxyTracerProvider(),
        trace.NoOpTracerProvider(),
        _logs.NoOpLoggerProvider(),
        metrics.NoOpMeterProvider(),
        importlib.import_module("opentelemetry._logs._internal").ProxyLoggerProvider(),
        importlib.import_module("opentelemetry.metrics._internal")._ProxyMeterProvider(),
    ):
        assert not _upstream.is_application_provider(placeholder), placeholder
    for provider in (LoggerProvider(), MeterProvider(), TracerProvider()):
        assert _upstream.is_application_provider(provider), provider


def test_placeholders_are_known_by_name_when_the_internal_module_moved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        _upstream,
        "_INTERNAL_PLACEHOLDERS",
        (("opentelemetry._gone", "ProxyLoggerProvider"), ("opentelemetry.metrics", "_Gone")),
    )
    proxy = importlib.import_module("opentelemetry._logs._internal").ProxyLoggerProvider()
    assert not _upstream.is_application_provider(proxy)


def test_metric_preferences_of_the_otlp_exporter_and_of_one_without() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import Counter
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    exporter = OTLPMetricExporter(endpoint="http://127.0.0.1:9", insecure=True)
    try:
        temporality, aggregation = _upstream.metric_preferences(exporter)
    finally:
        exporter.shutdown()
    assert temporality is not None and temporality[Counter] is AggregationTemporality.CUMULATIVE
    assert aggregation is not None
    assert _upstream.metric_preferences(object()) == (None, None)


def test_id_generator_wrapped_on_the_tracer_only() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    original = provider.id_generator
    wrapped = _upstream.wrap_id_generator(tracer, lambda inner: ("wrapped", inner))
    assert wrapped == ("wrapped", original)
    assert getattr(tracer, "id_generator") == wrapped  # noqa: B009
    assert provider.id_generator is original
    assert _upstream.wrap_id_generator(trace.NoOpTracer(), lambda inner: inner) is None


def test_replaced_functions_come_back_when_the_last_user_lets_go() -> None:
    module = importlib.import_module("opentelemetry.exporter.otlp.proto.http._log_exporter")
    original = getattr(module, "encode_logs")  # noqa: B009

    def make(inner: Any) -> Any:
        return lambda batch: ("ours", inner(batch))

    first = _upstream.replace_function(module.__name__, "encode_logs", make)
    second = _upstream.replace_function(module.__name__, "encode_logs", make)
    assert first is not None and second is not None
    replaced = getattr(module, "encode_logs")  # noqa: B009
    assert replaced is not original
    first()
    first()  # idempotent: does not release the second user's hold
    assert getattr(module, "encode_logs") is replaced  # noqa: B009
    second()
    assert getattr(module, "encode_logs") is original  # noqa: B009
    assert _upstream.replace_function(module.__name__, "no_such_function", make) is None


def test_passing_subclass_overrides_translation_locally() -> None:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    marker = object()
    cls = _upstream.passing_subclass(OTLPLogExporter, lambda data: marker if data == 1 else None)
    exporter = cls(endpoint="http://127.0.0.1:9", insecure=True)
    try:
        assert exporter._translate_data(1) is marker
        assert exporter._translate_data([]) is not marker  # the SDK's own translation
        assert "_translate_data" not in vars(OTLPLogExporter) or (
            OTLPLogExporter._translate_data is not cls._translate_data
        )
    finally:
        exporter.shutdown()


def test_failures_are_watched_only_on_the_sdks_exporters() -> None:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    assert _upstream.watch_failures(InMemoryLogRecordExporter(), print) is None  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_refused_connection_is_reported_before_the_retry(protocol: str) -> None:
    """Nothing listens: the watch reports the failure while the exporter waits to retry."""
    from torchelastic_otel.demo.collector import free_port
    from torchelastic_otel.otel import _exporters
    from torchelastic_otel.otel.settings import Settings

    s = Settings(endpoint=f"http://127.0.0.1:{free_port()}", logs_protocol=protocol, timeout_s=0.5)
    exporter = _exporters.create(s, _exporters.LOGS)
    seen: list[str] = []
    arm = _upstream.watch_failures(exporter, seen.append)
    assert arm is not None
    arm()
    try:
        assert exporter.export([]).name != "SUCCESS"
    finally:
        exporter.shutdown()
    assert seen and seen[0] in ("UNAVAILABLE", _upstream.CONNECTION_FAILED), seen


def test_suppressed_instrumentation_with_and_without_the_helper() -> None:
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    assert is_instrumentation_enabled()
    with _upstream.suppressed_instrumentation():
        assert not is_instrumentation_enabled()
    with _upstream._suppressed_by_key():
        assert not is_instrumentation_enabled()
    assert is_instrumentation_enabled()
