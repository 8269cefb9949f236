"""Where each signal goes: one sink per signal, chosen once when the worker starts.

A log sink turns a mapped event into a log record; a span sink is a tracer the
span state machine starts spans on. Each is one of:

* **the application's providers** (global providers it installed): records and
  spans go to its processors and exporters, which it owns;
* **SDK providers of ours** around a plug-in exporter (the SDK's in-memory or
  console exporter, your own), or around our OTLP exporter when the fast path is
  off or cannot be proven to work (:mod:`._sdk`);
* **the fast path** (:mod:`._protobuf`): OTLP protobuf built directly, handed to
  our OTLP exporter as a ready request.

What we export ourselves waits in a :class:`Batches` until the worker exports
it. Adding a signal is adding a sink and its :class:`Batches`; the worker only
sees :class:`Batches` and a :class:`Stage`.
"""

from torchelastic_otel.otel.sinks._base import (
    Batches,
    LogSink,
    PlugIns,
    Sinks,
    SpanSink,
    Stage,
)
from torchelastic_otel.otel.sinks._choose import choose

__all__ = ["Batches", "LogSink", "PlugIns", "Sinks", "SpanSink", "Stage", "choose"]
