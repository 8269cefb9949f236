"""``opentelemetry-instrument torchrun ...``: an OpenTelemetry instrumentor.

``opentelemetry-instrument`` loads every ``opentelemetry_instrumentor`` entry point
and calls ``instrument()`` — in torchrun's agents and, since they inherit its
environment, in every worker process too. In an agent, ours installs the torch
integration (:mod:`torchelastic_otel.integration`) with everything on: the agent's
events go to OpenTelemetry whatever ``--event_log_handler`` says (torch's default
``null`` destination is redirected), and so do the rendezvous' events. In a worker
it does nothing at all (it does not import torch): a worker's telemetry is the
user's, and it joins the job's trace through ``TRACEPARENT``.

The events go through this package's own pipeline, configured by the same
``OTEL_*`` variables, not through the global providers ``opentelemetry-instrument``
set up: so the node has its identity (``host.name``, ``process.pid``,
``service.name``), the exit is bounded with the collector down, and losses are
counted and reported, exactly as with ``--event_log_handler otel``.

Example::

    opentelemetry-instrument torchrun --nnodes 2 --rdzv-backend c10d ... train.py
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
        if integration.is_worker_process():
            return
        from torchelastic_otel import otel

        otel.configure(use_global_providers=False)
        integration.install(rdzv_events=True, redirect_null=True)

    def _uninstrument(self, **kwargs: Any) -> None:
        integration.uninstall()
