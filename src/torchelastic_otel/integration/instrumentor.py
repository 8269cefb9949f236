"""``opentelemetry-instrument torchrun ...``: an OpenTelemetry instrumentor.

``opentelemetry-instrument`` loads every ``opentelemetry_instrumentor`` entry point
and calls ``instrument()``. Ours installs the torch integration
(:mod:`torchelastic_otel.torch_integration`) with everything on: the agent's events
go to OpenTelemetry whatever ``--event_log_handler`` says (torch's default ``null``
destination is redirected), and so do the rendezvous' events. The global providers
``opentelemetry-instrument`` configured are used, with their exporters.

Example::

    opentelemetry-instrument --logs_exporter otlp --traces_exporter otlp \\
        torchrun --nnodes 2 --rdzv-backend c10d ... train.py
"""

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from torchelastic_otel import torch_integration


class TorchElasticInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Sends torchrun's agent and rendezvous events to OpenTelemetry."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """torch 2.4 or newer (the events API this package mirrors)."""
        return ("torch >= 2.4",)

    def _instrument(self, **kwargs: Any) -> None:
        torch_integration.install(rdzv_events=True, redirect_null=True)

    def _uninstrument(self, **kwargs: Any) -> None:
        torch_integration.uninstall()
