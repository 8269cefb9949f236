"""The data path on the worker thread: item → event → mapped event → sinks.

One :class:`EventStage` per pipeline. For each queued item it

1. parses it into an event (:func:`~torchelastic_otel.otel.mapping.to_event`: our
   event objects, torch's, or torch's JSON),
2. maps it (:func:`~torchelastic_otel.otel.mapping.map_event`, pure),
3. advances the span state machine (:mod:`~torchelastic_otel.otel.spans`), which
   says which span the event belongs to,
4. emits the event's log record into that span through the log sink.

The sinks were chosen once, when the stage was built (:func:`.sinks.choose`).
"""

import os
import socket

from torchelastic_otel.otel import _exporters, _resource, _selflog, sinks
from torchelastic_otel.otel._ledger import Ledger
from torchelastic_otel.otel.mapping import map_event, to_event
from torchelastic_otel.otel.settings import Settings
from torchelastic_otel.otel.spans import SpanStateMachine


class EventStage:
    """Maps events and feeds the sinks; built on the worker thread."""

    def __init__(self, settings: Settings, plugins: sinks.PlugIns, ledger: Ledger) -> None:
        # Before any exporter is built (they parse the header variables and log
        # about them then), once their modules are imported (their loggers exist).
        _exporters.import_modules(settings)
        _selflog.guard_exporter_loggers(
            settings.warning_interval_s or 60.0, _selflog.header_secrets(os.environ)
        )
        self.sinks = sinks.choose(settings, _resource.create(settings), plugins, ledger)
        self.batches = self.sinks.batches
        self.machine = SpanStateMachine(self.sinks.spans, socket.gethostname())

    def handle(self, item: object, t_ns: int) -> None:
        """Map one event and emit its record (raises for what is not an event)."""
        m = map_event(to_event(item))
        context = self.machine.on_event(m, t_ns)
        self.sinks.logs.emit(m, t_ns, context)

    def tick(self, t_ns: int) -> None:
        """Nothing periodic yet."""

    def finish(self, t_ns: int) -> None:
        """End every open span (the process is exiting)."""
        self.machine.shutdown(t_ns)

    def close(self) -> None:
        """Shut the exporters down."""
        self.sinks.close()
