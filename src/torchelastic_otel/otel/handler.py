"""The ``otel`` destination's ``logging.Handler``.

``emit()`` only stamps the time and queues the record's message for the export
worker: no mapping, no SDK call and no lock on the caller's thread. It accepts
what both events modules log: our ``record()`` passes the event object
(``accepts_events``), torch's ``record()`` passes ``event.serialize()``; the JSON is
parsed on the worker.
"""

import logging
import time
from typing import ClassVar

from torchelastic_otel.otel import _pipeline


class OtelHandler(logging.Handler):
    """Sends each record's event to the process's OTLP export pipeline.

    Example::

        >>> import logging
        >>> logger = logging.getLogger("torchelastic-events-otel")
        >>> logger.addHandler(OtelHandler())  # what record(e, "otel") sets up for you
    """

    accepts_events: ClassVar[bool] = True

    def handle(self, record: logging.LogRecord) -> bool:
        """Queue the record's event; skips ``Handler``'s lock (the queue needs none)."""
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record.msg`` (an event, or its JSON) with the current time."""
        try:
            _pipeline.current().submit(record.msg, time.time_ns())
        except Exception:  # noqa: BLE001 -- never raise into the caller
            self.handleError(record)
