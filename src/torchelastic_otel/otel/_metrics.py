"""The third signal: metrics derived from the events, and torch's own, bridged.

:class:`MetricsRecorder` lives on the export worker, like the span state machine,
and records from what the machine concludes (:class:`~.spans.Fact`): rendezvous
durations and rounds, restarts, worker and rendezvous failures, the time from a
completed rendezvous to the workers started. Gauges are observed at each
collection: the restart budget, whether the node waits in a rendezvous now, each
worker's progress (last step, seconds since; :mod:`._progress`), the node's stalled
workers and its goodput (:mod:`._goodput`).
Attributes are chosen for bounded cardinality: ``run_id`` (one per job) and, on
failures, ``error.type`` (a signal name or an exception's class name); the node is
the resource (Prometheus' ``instance``), never a worker's pid.

torch's ``torch.distributed.elastic.metrics`` (``put_metric``, ``@prof``) reach the
worker as :class:`TorchMetric` items (the torchrun integration's metric handler
queues them) and become instruments named as torch names them, in the scope
``torch.distributed.elastic.metrics``: ``<name>.duration.ms`` a histogram in ms,
``remaining_restarts`` and ``flakiness`` gauges, everything else a counter.
"""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torchelastic_otel import semconv as sc
from torchelastic_otel.otel._progress import Snapshot
from torchelastic_otel.otel.mapping import AttrValue
from torchelastic_otel.otel.spans import Fact

# torch's own step durations (ms). Fewer buckets than the SDK's default 15: each
# bucket is a Prometheus series per node, and torch reports about ten such steps.
_TORCH_MS_BUCKETS = (10.0, 100.0, 1000.0, 10000.0, 60000.0, 600000.0)

# Seconds: rendezvous of 10 ms to 30 min, worker start-up likewise.
_SECONDS_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
)
_GAUGE_SUFFIXES = ("remaining_restarts", "flakiness")
# OpenTelemetry instrument names: a letter, then letters, digits, "_", ".", "-", "/".
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.\-/]")
_DURATION_SUFFIX = ".duration.ms"


@dataclass(frozen=True)
class TorchMetric:
    """One data point of torch's elastic metrics (``MetricData``), queued for the worker."""

    group: str
    name: str
    value: float


_LOST_REASONS = (sc.LOST_REASON_PREEMPTED, sc.LOST_REASON_COLLECTIVE, sc.LOST_REASON_HEARTBEAT)


class MetricsRecorder:
    """Instruments on ``meter_provider``; call :meth:`on_fact` and friends on the worker.

    Args:
        meter_provider: an SDK (or the application's) ``MeterProvider``.
        waiting: for the ``rendezvous.active`` gauge: run id -> 1 if this node waits
            in a rendezvous now.
        budget: for the restart gauges: run id -> (remaining, limit) as last known.
        progress: for the progress gauges: what the last poll of the workers saw.
        goodput: for the goodput gauge: run id -> goodput (0..1).
    """

    def __init__(
        self,
        meter_provider: Any,
        waiting: Callable[[], dict[str, int]],
        budget: Callable[[], dict[str, tuple[int, int]]],
        progress: Callable[[], Snapshot] = Snapshot,
        goodput: Callable[[], dict[str, float]] = dict,
    ) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation

        from torchelastic_otel._version import __version__

        meter = meter_provider.get_meter(sc.SCOPE, __version__)
        self._torch_meter = meter_provider.get_meter(sc.TORCH_METRICS_SCOPE, __version__)
        self._rdzv_duration = meter.create_histogram(
            sc.METRIC_RENDEZVOUS_DURATION,
            unit="s",
            description="Time a node took to complete a rendezvous (one per round per node)",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self._rounds = meter.create_counter(
            sc.METRIC_RENDEZVOUS_ROUNDS,
            unit="{round}",
            description="Rendezvous rounds a node completed",
        )
        self._rdzv_failures = meter.create_counter(
            sc.METRIC_RENDEZVOUS_FAILURES,
            unit="{failure}",
            description="Rendezvous attempts that failed",
        )
        self._heartbeats = meter.create_counter(
            sc.METRIC_RENDEZVOUS_HEARTBEATS,
            unit="{heartbeat}",
            description="Keep-alive heartbeats a node sent to the rendezvous",
        )
        self._restarts = meter.create_counter(
            sc.METRIC_AGENT_RESTARTS,
            unit="{restart}",
            description="Times an agent restarted its workers (a new cycle after the first)",
        )
        self._worker_failures = meter.create_counter(
            sc.METRIC_WORKER_FAILURES,
            unit="{failure}",
            description="Worker processes that failed, by error.type",
        )
        self._nodes_lost = meter.create_counter(
            sc.METRIC_NODES_LOST,
            unit="{node}",
            description="Nodes that left the run, counted by the next cycle's rank 0, by reason",
        )
        self._startup = meter.create_histogram(
            sc.METRIC_WORKER_STARTUP,
            unit="s",
            description="Time from a completed rendezvous to the node's workers started",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )

        def observe_waiting(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, {sc.RUN_ID: run}) for run, v in waiting().items()]

        def observe_remaining(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(r, {sc.RUN_ID: run}) for run, (r, _) in budget().items()]

        def observe_limit(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(limit, {sc.RUN_ID: run}) for run, (_, limit) in budget().items()]

        # "{node}", not "1": Prometheus 3's OTLP translation appends _ratio to a
        # gauge in "1" and the scrape exporter does not; one name for both ways in.
        meter.create_observable_gauge(
            sc.METRIC_RENDEZVOUS_ACTIVE,
            [observe_waiting],
            unit="{node}",
            description="1 while the node waits in a rendezvous, else 0",
        )
        meter.create_observable_gauge(
            sc.METRIC_RESTART_REMAINING,
            [observe_remaining],
            unit="{restart}",
            description="Restarts the agent has left",
        )
        meter.create_observable_gauge(
            sc.METRIC_RESTART_LIMIT,
            [observe_limit],
            unit="{restart}",
            description="Restarts the agent was allowed (--max-restarts)",
        )
        self._progress_gauges(meter, progress, goodput)
        self._torch: dict[str, Any] = {}

    @staticmethod
    def _progress_gauges(
        meter: Any, progress: Callable[[], Snapshot], goodput: Callable[[], dict[str, float]]
    ) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation

        def worker_attrs(run_id: str, local_rank: int) -> dict[str, AttrValue]:
            return {sc.RUN_ID: run_id, sc.LOCAL_RANK: local_rank}

        def observe_step(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(w.step, worker_attrs(w.run_id, w.local_rank))
                for w in progress().workers
            ]

        def observe_idle(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(round(w.idle_s, 3), worker_attrs(w.run_id, w.local_rank))
                for w in progress().workers
            ]

        def observe_stalled(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(n, {sc.RUN_ID: run}) for run, n in progress().stalled.items()]

        def observe_goodput(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(round(v, 4), {sc.RUN_ID: run}) for run, v in goodput().items()]

        meter.create_observable_gauge(
            sc.METRIC_PROGRESS_STEP,
            [observe_step],
            unit="{step}",
            description="A worker's last training step (optimizer steps, or its own count)",
        )
        meter.create_observable_gauge(
            sc.METRIC_PROGRESS_IDLE,
            [observe_idle],
            unit="s",
            description="Seconds since a worker's last training step",
        )
        meter.create_observable_gauge(
            sc.METRIC_WORKERS_STALLED,
            [observe_stalled],
            unit="{worker}",
            description="Workers of this node with no step for the stall timeout",
        )
        meter.create_observable_gauge(
            sc.METRIC_GOODPUT,
            [observe_goodput],
            unit="1",
            description="Share of this node's time in the run with its workers making progress",
        )

    def on_fact(self, fact: Fact) -> None:
        """Record what the span state machine concluded."""
        attrs: dict[str, AttrValue] = {sc.RUN_ID: fact.run_id}
        if fact.kind == "run_seen":
            # Counters start at 0: PromQL's increase() then sees their first step.
            for counter in (self._rounds, self._restarts, self._heartbeats):
                counter.add(0, attrs)
        elif fact.kind == "rendezvous":
            self._rdzv_duration.record(fact.value, attrs)
            self._rounds.add(1, attrs)
        elif fact.kind == "cycle_opened" and fact.value > 0:
            self._restarts.add(1, attrs)
        elif fact.kind == "worker_failure":
            self._worker_failures.add(1, {**attrs, **fact.attributes})
        elif fact.kind == "rendezvous_failure":
            self._rdzv_failures.add(1, {**attrs, **fact.attributes})
        elif fact.kind == "counts_lost_nodes":
            # Each reason starts at 0 where it will be counted: increase() sees a loss.
            for reason in _LOST_REASONS:
                self._nodes_lost.add(0, {**attrs, sc.LOST_REASON: reason})
        elif fact.kind == "node_lost":
            self._nodes_lost.add(1, {**attrs, **fact.attributes})
        elif fact.kind == "workers_started":
            self._startup.record(fact.value, attrs)

    def on_heartbeats(self, run_id: str, count: int) -> None:
        """Keep-alive heartbeats folded into a chatter summary."""
        if count:
            self._heartbeats.add(count, {sc.RUN_ID: run_id})

    def on_torch_metric(self, point: TorchMetric) -> None:
        """One of torch's ``put_metric`` / ``@prof`` data points."""
        name = _NOT_IN_NAME.sub("_", f"{point.group}.{point.name}")[:255]
        if not name[:1].isalpha():
            name = f"torch.{name}"[:255]
        if name.endswith(_DURATION_SUFFIX):
            name = name[: -len(".ms")]
            kind, unit = "histogram", "ms"
        elif name.endswith(_GAUGE_SUFFIXES):
            kind, unit = "gauge", "1"
        else:
            kind, unit = "counter", "1"
        instrument = self._torch.get(name)
        if instrument is None:
            meter = self._torch_meter
            description = f"torch.distributed.elastic.metrics {name}"
            if kind == "histogram":
                instrument = meter.create_histogram(
                    name,
                    unit=unit,
                    description=description,
                    explicit_bucket_boundaries_advisory=_TORCH_MS_BUCKETS,
                )
            elif kind == "gauge":
                instrument = meter.create_gauge(name, unit=unit, description=description)
            else:
                instrument = meter.create_counter(name, unit=unit, description=description)
            self._torch[name] = instrument
        if kind == "histogram":
            instrument.record(point.value)
        elif kind == "gauge":
            instrument.set(point.value)
        elif point.value >= 0:  # counters only go up; torch puts 0 for "did not happen"
            instrument.add(point.value)
