"""The ``otel`` destination's ``logging.Handler``.

``emit()`` only stamps the time and queues the record's message for the export
pipeline's worker: no mapping, no SDK call and no lock on the caller's thread.
It accepts what both events modules log: our ``record()`` passes the event object
(``accepts_events``), torch's ``record()`` passes ``event.serialize()``; the JSON is
parsed on the worker.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import ClassVar

from torchelastic_otel.otel import pipeline

# One-shot callbacks run on the first event any OtelHandler sees; the torch
# integration uses it to patch modules that were half-imported when it ran.
_on_first_event: list[Callable[[], None]] = []
_first_event_lock = threading.Lock()


def call_on_first_event(callback: Callable[[], None]) -> None:
    """Run ``callback`` once, when an ``OtelHandler`` handles its next event."""
    with _first_event_lock:
        _on_first_event.append(callback)


def _run_first_event_callbacks() -> None:
    with _first_event_lock:
        callbacks = list(_on_first_event)
        _on_first_event.clear()
    for callback in callbacks:
        try:
            callback()
        except Exception:
            logging.getLogger("torchelastic_otel").debug("callback failed", exc_info=True)


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
        if _on_first_event:
            _run_first_event_callbacks()
        try:
            pipeline.current().submit(record.msg, time.time_ns())
        except Exception:  # noqa: BLE001 -- never raise into the caller
            self.handleError(record)
