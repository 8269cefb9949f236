"""``opentelemetry-instrument torchrun ...``: an OpenTelemetry instrumentor.

``opentelemetry-instrument`` loads every ``opentelemetry_instrumentor`` entry point
and calls ``instrument()``. Ours installs the torch integration
(:mod:`torchelastic_otel.integration`) with everything on: the agent's events
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

from torchelastic_otel import integration


class TorchElasticInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Sends torchrun's agent and rendezvous events to OpenTelemetry."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The torch releases tested with torchrun (2.8 to 2.15; see docs/compatibility.md)."""
        return ("torch >= 2.8, < 2.16",)

    def _instrument(self, **kwargs: Any) -> None:
        integration.install(rdzv_events=True, redirect_null=True)

    def _uninstrument(self, **kwargs: Any) -> None:
        integration.uninstall()
