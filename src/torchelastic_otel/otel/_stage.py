"""The data path on the worker thread: item → event → mapped event → sinks.

One :class:`EventStage` per pipeline. For each queued item it

1. parses it into an event (:func:`~torchelastic_otel.otel.mapping.to_event`: our
   event objects, torch's, or torch's JSON),
2. maps it (:func:`~torchelastic_otel.otel.mapping.map_event`, pure),
3. folds it into a periodic summary if it is rendezvous chatter (:mod:`._chatter`),
4. else advances the span state machine (:mod:`~torchelastic_otel.otel.spans`),
   which says which span the event belongs to,
5. and emits the event's log record into that span through the log sink.

On every tick (each export, about once a second) it also reads the workers' progress
(:mod:`._progress`): the stall and resume records are written like the summaries, in
the run's current span, and the goodput of each run (:mod:`._goodput`) is updated for
its gauge.

The sinks were chosen once, when the stage was built (:func:`.sinks.choose`).
"""

import os
import time

from opentelemetry.context import Context

from torchelastic_otel.events import RdzvEvent
from torchelastic_otel.otel import _exporters, _resource, _selflog, sinks
from torchelastic_otel.otel._chatter import Chatter
from torchelastic_otel.otel._goodput import GoodputClock
from torchelastic_otel.otel._ledger import Ledger
from torchelastic_otel.otel._metrics import MetricsRecorder, TorchMetric
from torchelastic_otel.otel._progress import ProgressWatch, ProgressWatcher, Snapshot, Stall
from torchelastic_otel.otel.mapping import MappedEvent, map_event, to_event
from torchelastic_otel.otel.settings import Settings
from torchelastic_otel.otel.spans import Fact, SpanStateMachine
from torchelastic_otel.semconv import HEARTBEATS, RANK


class EventStage:
    """Maps events and feeds the sinks; built on the worker thread."""

    def __init__(self, settings: Settings, plugins: sinks.PlugIns, ledger: Ledger) -> None:
        # Before any exporter is built (they parse the header variables and log
        # about them then), once their modules are imported (their loggers exist).
        _exporters.import_modules(settings)
        _selflog.guard_exporter_loggers(
            settings.warning_interval_s, _selflog.header_secrets(os.environ)
        )
        self.sinks = sinks.choose(settings, _resource.create(settings), plugins, ledger)
        self.batches = self.sinks.batches
        self.machine = SpanStateMachine(
            self.sinks.spans,
            _resource.host_name(),
            self._on_fact,
            self._on_record,
            settings.trace_shard_nodes,
        )
        self.chatter = Chatter(settings.chatter_summary_s)
        self.goodput = GoodputClock()
        self.progress = ProgressWatcher(settings.stall_timeout_s, on_stall=self._on_stall)
        # Read by the metric callbacks, perhaps on another thread (a Prometheus scrape):
        # replaced whole on each tick, never changed in place.
        self.goodput_now: dict[str, float] = {}
        self.metrics: MetricsRecorder | None = None
        if self.sinks.metrics is not None:
            self.metrics = MetricsRecorder(
                self.sinks.metrics.provider,
                self.machine.waiting,
                self.machine.budget,
                progress=self._progress_snapshot,
                goodput=lambda: self.goodput_now,
            )
        self._metric_interval_s = settings.metric_export_interval_ms / 1000
        self._last_collect = time.monotonic()

    def handle(self, item: object, t_ns: int) -> None:
        """Map one event and emit its record (raises for what is not an event)."""
        if isinstance(item, TorchMetric):
            if self.metrics is not None:
                self.metrics.on_torch_metric(item)
            return
        if isinstance(item, ProgressWatch):
            self.progress.watch(item)
            return
        event = to_event(item)
        self._summaries(t_ns)  # the intervals that ended before this event
        if isinstance(event, RdzvEvent) and self.chatter.fold(event, t_ns):
            return
        m = map_event(event)
        context = self.machine.on_event(m, t_ns)
        self.sinks.logs.emit(m, t_ns, context)

    def _summaries(self, t_ns: int, everything: bool = False) -> None:
        for summary, folded in self.chatter.due(t_ns, everything):
            heartbeats = summary.attributes[HEARTBEATS]
            if self.metrics is not None and isinstance(heartbeats, int):
                self.metrics.on_heartbeats(summary.run_id, heartbeats)
            summary.attributes[RANK] = self.machine.rank_of(summary.run_id)
            context = self.machine.context_of(summary.run_id)
            self.sinks.logs.emit(summary, t_ns, context, weight=folded)

    def _on_record(self, m: MappedEvent, t_ns: int, context: Context) -> None:
        """A record the state machine writes itself (a lost node): no event of the
        caller's, so it weighs nothing in the books."""
        self.sinks.logs.emit(m, t_ns, context, weight=0)

    def _on_fact(self, fact: Fact) -> None:
        """What the span state machine concluded: the metrics' and goodput's input."""
        if self.metrics is not None:
            self.metrics.on_fact(fact)
        t_s = fact.t_ns / 1e9
        if fact.kind == "run_seen":
            self.goodput.begin(fact.run_id, t_s)
        elif fact.kind == "workers_started":
            self.goodput.working(fact.run_id, t_s)
        elif fact.kind == "cycle":  # the cycle ended: so did its workers' progress
            self.progress.unwatch(fact.run_id)
            self.goodput.stopped(fact.run_id, t_s)

    def _on_stall(self, stall: Stall) -> None:
        self.goodput.stalled(stall.run_id, stall.start_s, stall.end_s)

    def _progress_snapshot(self) -> Snapshot:
        return self.progress.snapshot

    def _progress(self, t_ns: int) -> None:
        """Write the stall and resume records due; update the goodput gauge's values."""
        for record in self.progress.poll():
            context = self.machine.context_of(record.run_id)
            # Stands for no recorded event: weight 0 keeps the books (events) exact.
            self.sinks.logs.emit(record, record.timestamp_ns or t_ns, context, weight=0)
        open_stalls: dict[str, float] = {}
        for stall in self.progress.stalls_open():
            open_stalls[stall.run_id] = stall.end_s - stall.start_s
        self.goodput_now = self.goodput.goodput(t_ns / 1e9, open_stalls)

    def tick(self, t_ns: int, collect: bool = False) -> None:
        """Read the workers' progress; collect the metrics when due, or now when asked."""
        self._progress(t_ns)
        metrics = self.sinks.metrics
        now = time.monotonic()
        due = now - self._last_collect >= self._metric_interval_s
        if metrics is not None and (collect or due):
            self._last_collect = now
            metrics.collect()

    def finish(self, t_ns: int) -> None:
        """Flush the summaries, end every open span, collect the metrics a last time."""
        self._summaries(t_ns, everything=True)
        self._progress(t_ns)
        self.machine.shutdown(t_ns)
        self.progress.close()
        if self.sinks.metrics is not None:
            self.sinks.metrics.collect()

    def close(self) -> None:
        """Shut the exporters down."""
        self.sinks.close()
