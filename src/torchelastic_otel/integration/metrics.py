"""torch's own elastic metrics, into OpenTelemetry.

torch's agent reports through ``torch.distributed.elastic.metrics`` (``put_metric``,
``@prof``): ``workers.<role>.run_total``, ``run_success_with_retries``,
``run_failed_*``, ``flakiness``, ``remaining_restarts``, and each step's
``.success`` / ``.failure`` / ``.duration.ms`` — to a ``NullMetricHandler`` unless
configured. :func:`bridge` makes :class:`OtelMetricHandler` the default handler (a
handler the user configured before keeps getting every value too): each data point
is queued for the export worker, which records it (see
:mod:`torchelastic_otel.otel._metrics`). The agent calls it when it starts its first
rendezvous with the ``otel`` destination, so only agents that export bridge, unless
``TORCHELASTIC_OTEL_TORCH_METRICS`` is ``false`` (:func:`requested`).

Needs (gate): ``torch.distributed.elastic.metrics.api`` with ``MetricHandler`` and
``_default_metrics_handler``.
"""

import time
from typing import Any

from torchelastic_otel.integration import _features
from torchelastic_otel.otel import settings

WHAT = "torch's elastic metrics"
_bridged = False


def requested() -> bool:
    """``TORCHELASTIC_OTEL_TORCH_METRICS`` is on (the default; see :mod:`..otel.settings`)."""
    return settings.from_env().torch_metrics


def bridge() -> None:
    """Make torch's default metric handler ours (once; gated)."""
    global _bridged  # noqa: PLW0603 -- once per process
    if _bridged:
        return
    _bridged = True
    from torch.distributed.elastic.metrics import api

    if not _features.require(
        api,
        "torch.distributed.elastic.metrics",
        WHAT,
        "MetricHandler",
        "_default_metrics_handler",
        "configure",
    ):
        return
    previous = api._default_metrics_handler
    handler_class = _handler_class(api.MetricHandler)
    api.configure(
        handler_class(None if type(previous).__name__ == "NullMetricHandler" else previous)
    )


def _handler_class(base: type[Any]) -> type[Any]:
    class OtelMetricHandler(base):  # type: ignore[misc]
        """Queues each data point for the export worker; never blocks or raises."""

        def __init__(self, forward_to: Any) -> None:
            self._forward_to = forward_to

        def emit(self, metric_data: Any) -> None:
            from torchelastic_otel.otel import _pipeline
            from torchelastic_otel.otel._metrics import TorchMetric

            try:
                value = float(metric_data.value)
                point = TorchMetric(str(metric_data.group_name), str(metric_data.name), value)
                _pipeline.current().submit(point, time.time_ns())
            except Exception:  # noqa: BLE001, S110 -- a metric must never hurt the agent
                pass
            if self._forward_to is not None:
                self._forward_to.emit(metric_data)

    return OtelMetricHandler
