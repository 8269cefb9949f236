"""The ``otel`` event destination: torchelastic events as OTLP logs and spans.

``record(event, "otel")`` works with no set-up: the destination reads the standard
``OTEL_*`` environment variables on first use (see docs/configuration.md).
``configure()`` is the programmatic alternative; :class:`Pipeline` and :func:`use`
plug exporters in. Importing this package does not import the OpenTelemetry SDK;
the export worker does, on the first event.

The data path, one module each: ``handler`` (the caller's side) → ``_worker``
(bounded queue, thread, exit bound, the books in ``_ledger``) → ``_stage``
(``mapping`` → ``spans`` → sinks) → ``sinks`` (one per signal: the application's
providers, SDK providers of ours, or the protobuf fast path) → ``_exporters``.

Example::

    >>> from torchelastic_otel import events, otel
    >>> otel.configure(endpoint="http://127.0.0.1:4317", service_name="trainer")
    >>> events.record(events.Event("my_event", events.EventSource.AGENT), "otel")
    >>> otel.drop_counts()["queue_full"]
    0
"""

from collections.abc import Mapping
from typing import Any

from torchelastic_otel.otel import _pipeline
from torchelastic_otel.otel._ledger import DROP_REASONS
from torchelastic_otel.otel._pipeline import Pipeline, use
from torchelastic_otel.otel.settings import check_protocol

__all__ = [
    "DROP_REASONS",
    "Pipeline",
    "configure",
    "drop_counts",
    "exported_counts",
    "force_flush",
    "shutdown",
    "use",
]


def configure(
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    insecure: bool | None = None,
    timeout_s: float | None = None,
    service_name: str | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    max_queue_size: int | None = None,
    schedule_delay_ms: int | None = None,
    shutdown_timeout_ms: int | None = None,
    shutdown_max_ms: int | None = None,
    use_global_providers: bool | None = None,
) -> None:
    """Configure the ``otel`` destination in code; unset arguments keep env/defaults.

    Takes effect at once, also after events were recorded: the current pipeline
    is replaced by a new one with these settings (the old one is flushed within
    its bound, and nothing recorded meanwhile is lost).

    Args:
        endpoint: collector address, e.g. ``http://127.0.0.1:4317`` (gRPC) or
            ``http://127.0.0.1:4318`` (HTTP; ``/v1/logs`` and ``/v1/traces`` are added).
        protocol: ``grpc`` or ``http/protobuf``, for every signal.
        headers: sent with every export request (e.g. an auth token).
        insecure: gRPC without TLS.
        timeout_s: per export request.
        service_name: the ``service.name`` resource attribute.
        resource_attributes: more resource attributes.
        max_queue_size: events held waiting for export before new ones are dropped.
        schedule_delay_ms: longest wait between exports.
        shutdown_timeout_ms: how long the exit waits for a collector that
            acknowledges nothing.
        shutdown_max_ms: the hard cap on the exit flush.
        use_global_providers: use global OpenTelemetry providers when the
            application installed them (default ``True``).

    Raises:
        ValueError: an unsupported ``protocol`` or a non-positive size.
    """
    overrides: dict[str, Any] = {
        "endpoint": endpoint,
        "insecure": insecure,
        "timeout_s": timeout_s,
        "service_name": service_name,
        "resource_attributes": dict(resource_attributes) if resource_attributes else None,
        "max_queue_size": _positive(max_queue_size, "max_queue_size"),
        "schedule_delay_ms": _positive(schedule_delay_ms, "schedule_delay_ms"),
        "shutdown_timeout_ms": shutdown_timeout_ms,
        "shutdown_max_ms": shutdown_max_ms,
        "use_global_providers": use_global_providers,
    }
    if protocol is not None:
        checked = check_protocol(protocol, "protocol")
        for signal in ("logs", "traces", "metrics"):
            overrides[f"{signal}_protocol"] = checked
    if headers is not None:
        for signal in ("logs", "traces", "metrics"):
            overrides[f"{signal}_headers"] = dict(headers)
    _pipeline.set_overrides(overrides)
    _pipeline.replace()


def _positive(value: int | None, name: str) -> int | None:
    if value is not None and value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def drop_counts() -> dict[str, int]:
    """Events lost so far in this process, by reason; all zero when nothing was lost.

    Reasons: ``queue_full``, ``invalid``, ``export_failed_logs``,
    ``export_failed_spans``, ``export_failed_metrics``, ``shutdown_logs``,
    ``shutdown_spans``, ``shutdown_metrics``, ``disabled``, ``internal_error_logs``,
    ``internal_error_spans``, ``internal_error_metrics`` (an unexpected error on the
    export thread: one warning says where; exporting goes on), ``unsupported_logs``,
    ``unsupported_spans``, ``unsupported_metrics`` (the endpoint has no service for the
    signal; one warning, then it is no longer sent). Events are counted
    under the ``*_logs`` reasons; spans and metric exports apart.
    """
    return _pipeline.current().drop_counts()


def exported_counts() -> dict[str, int]:
    """Events (as log records), spans and metric exports the collector accepted so far."""
    return _pipeline.current().exported_counts()


def force_flush(timeout_s: float = 5.0) -> bool:
    """Export everything recorded so far; ``False`` if ``timeout_s`` ran out first."""
    return _pipeline.current().force_flush(timeout_s)


def shutdown(timeout_ms: int | None = None) -> None:
    """Flush and stop now (see :meth:`Pipeline.shutdown` for the bound).

    Open spans are ended and marked unfinished. Runs by itself at exit.
    """
    _pipeline.current().shutdown(timeout_ms)
