"""The sinks' building blocks: the two sink kinds, batches, the stage protocol."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.context import Context
from opentelemetry.trace import Tracer

from torchelastic_otel.otel import _selflog, _upstream
from torchelastic_otel.otel._ids import ForcedIds
from torchelastic_otel.otel._ledger import Ledger
from torchelastic_otel.otel.mapping import MappedEvent

_log = logging.getLogger("torchelastic_otel")


class LogSink(Protocol):
    """Turns mapped events into log records."""

    def emit(self, m: MappedEvent, t_ns: int, context: Context, weight: int = 1) -> None:
        """One record for ``m`` (standing for ``weight`` events), in the span of ``context``."""


@dataclass
class SpanSink:
    """The tracer spans start on, and its id generator when we can force ids."""

    tracer: Tracer
    ids: ForcedIds | None


class Batches:
    """Items of one signal waiting for export through an exporter we own.

    Args:
        signal: ``logs``, ``spans`` or ``metrics`` (the ledger's names).
        exporter: an SDK exporter (``export(batch)`` returning a result whose
            ``name`` is ``SUCCESS`` on success).
        batch_size: items per export request.
        ledger: where deliveries and losses are counted.
        wrap: turns a list of items into what ``exporter.export`` takes (the fast
            path's prebuilt request); by default the list itself.
    """

    def __init__(
        self,
        signal: str,
        exporter: Any,
        batch_size: int,
        ledger: Ledger,
        wrap: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.signal = signal
        self.exporter = exporter
        self.batch_size = batch_size
        self._ledger = ledger
        self._wrap = wrap
        self._items: list[Any] = []
        self._weights: list[int] = []
        self.next_weight = 1  # for sinks whose items arrive through an SDK processor
        self.in_flight = 0  # the weight of the batch being exported
        self.refused = ""  # the endpoint's answer, once it said it has no such service
        self._failure = ""  # the status of the export in flight, if it failed
        self._arm = _upstream.watch_failures(exporter, self._on_failure)

    def add(self, item: Any, weight: int | None = None) -> None:
        """Hold ``item`` (standing for ``weight`` events; default :attr:`next_weight`)."""
        w = self.next_weight if weight is None else weight
        self.next_weight = 1
        if self.refused:
            self._ledger.drop(f"unsupported_{self.signal}", w)
            return
        self._items.append(item)
        self._weights.append(w)

    def _on_failure(self, status: str) -> None:
        """The exporter's transport failed with ``status`` (on the exporting thread)."""
        self._failure = status
        self._ledger.in_flight_failed = True  # the exporter will retry after a backoff
        if status in _NO_SUCH_SERVICE:
            _selflog.hush(True)  # we say it in one line of our own, below

    def full(self) -> bool:
        """At least one whole batch is waiting."""
        return len(self._items) >= self.batch_size

    def __len__(self) -> int:
        return len(self._items)

    def held_locked(self) -> int:
        """The weight of everything held (waiting and in flight); caller holds the lock."""
        return sum(self._weights) + self.in_flight

    def discard_locked(self) -> int:
        """Forget everything held; return its weight. The caller holds the ledger's lock."""
        lost = self.held_locked()
        self._items.clear()
        self._weights.clear()
        self.in_flight = 0
        return lost

    def export(self, everything: bool) -> None:
        """Export whole batches (and the last partial one when ``everything``).

        During the exit flush, a signal whose batch the collector refused stops
        there: what it still holds is counted as ``shutdown_<signal>`` at once, and
        the other signals go on.
        """
        while self._items and (everything or self.full()) and not self._ledger.closed:
            n = min(self.batch_size, len(self._items))
            items = self._items[:n]
            with self._ledger.lock:
                weight = sum(self._weights[:n])
                del self._items[:n], self._weights[:n]
                self.in_flight = weight
                self._ledger.in_flight_since = time.monotonic()
                self._ledger.in_flight_failed = False
            ok = False
            self._failure = ""
            try:
                if self._arm is not None:
                    self._arm()
                batch = items if self._wrap is None else self._wrap(items)
                with _upstream.suppressed_instrumentation():
                    ok = self.exporter.export(batch).name == "SUCCESS"
            except Exception as e:  # noqa: BLE001 -- counted below; the job goes on
                _log.debug("export of %s failed: %s: %s", self.signal, type(e).__name__, e)
            finally:
                _selflog.hush(False)
            if not ok and self._failure in _NO_SUCH_SERVICE:
                self._stop_sending(weight)
                return
            with self._ledger.lock:
                self.in_flight = 0
                self._ledger.in_flight_since = 0.0
                if ok:
                    self._ledger.delivered_locked(self.signal, weight)
                else:
                    self._ledger.failed_locked(self.signal, weight)
                    if self._ledger.exiting:
                        self._ledger.drop_locked(f"shutdown_{self.signal}", sum(self._weights))
                        self._items.clear()
                        self._weights.clear()
                        return

    def _stop_sending(self, weight: int) -> None:
        """The endpoint has no service for this signal: say so once, send no more."""
        self.refused = self._failure
        with self._ledger.lock:
            self.in_flight = 0
            self._ledger.in_flight_since = 0.0
            self._ledger.drop_locked(f"unsupported_{self.signal}", weight + sum(self._weights))
            self._items.clear()
            self._weights.clear()
        signal = _SIGNAL_NAMES.get(self.signal, self.signal.upper())
        endpoint = _upstream.exporter_endpoint(self.exporter)
        _log.warning(
            "torchelastic-otel: %s does not take %s (%s): no more are sent, they are counted "
            "as unsupported_%s; point OTEL_EXPORTER_OTLP_%s_ENDPOINT at a collector that "
            "takes them, or set OTEL_%s_EXPORTER=none",
            endpoint or "the endpoint",
            self.signal,
            self.refused,
            self.signal,
            signal,
            signal,
        )


# What an endpoint without a service for the signal answers: gRPC's status, the
# HTTP status (no such path, method not allowed, not implemented).
_NO_SUCH_SERVICE = frozenset({"UNIMPLEMENTED", "404", "405", "501"})
# A Batches' signal -> the infix of its OTEL_* variables.
_SIGNAL_NAMES = {"logs": "LOGS", "spans": "TRACES", "metrics": "METRICS"}


class Stage(Protocol):
    """What the worker drives: it handles items and owns the batches to export."""

    batches: list[Batches]

    def handle(self, item: object, t_ns: int) -> None:
        """Map one queued item (raises for one that is not an event)."""

    def tick(self, t_ns: int, collect: bool = False) -> None:
        """Periodic work before an export (metric collection; now if ``collect``)."""

    def finish(self, t_ns: int) -> None:
        """End what is still open (the process is exiting)."""

    def close(self) -> None:
        """Shut the exporters down (aborts a request still pending)."""


@dataclass
class Sinks:
    """The chosen sink per signal, what we export ourselves, and what to shut down."""

    logs: LogSink
    spans: SpanSink
    metrics: Any = None  # a MetricsSink, or None: no metrics
    batches: list[Batches] = field(default_factory=list)
    exporters: list[Any] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)  # signal -> how, for debugging
    releases: list[Callable[[], None]] = field(default_factory=list)  # upstream patches

    def close(self) -> None:
        """Shut down every exporter we created or were given; put back what we replaced."""
        if self.metrics is not None:
            self.metrics.close()
        for exporter in self.exporters:
            try:
                exporter.shutdown()
            except Exception:  # noqa: BLE001 -- exit must go on whatever the exporter does
                _log.debug("exporter shutdown failed", exc_info=True)
        for release in self.releases:
            release()
        self.releases.clear()


@dataclass
class PlugIns:
    """Exporters given in code instead of OTLP (a plug-in takes the SDK path)."""

    log_exporter: Any = None
    span_exporter: Any = None
    metric_exporter: Any = None
