"""Registers the ``otel`` event destination in :mod:`torchelastic_otel.events`.

The events package mirrors torch's and knows nothing of OpenTelemetry; the package
root imports this module, which adds ``otel`` to its registry as a factory. The
factory runs on the destination's first use, so ``import torchelastic_otel.events``
stays free of OpenTelemetry, and so does any process that never records to
``otel``.
"""

import logging

from torchelastic_otel.events import handlers

OTEL = "otel"


def _otel_handler() -> logging.Handler:
    from torchelastic_otel.otel.handler import OtelHandler

    return OtelHandler()


def register() -> None:
    """Add ``otel`` unless it is there already (created, or registered by someone else)."""
    if OTEL not in handlers.known_destinations():
        handlers.register_handler(OTEL, _otel_handler)
