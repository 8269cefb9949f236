"""The export worker: a bounded queue in front of one thread, with an exit bound.

The caller's side (:meth:`ExportWorker.submit`) appends to a deque and returns; it
never touches the network, the OpenTelemetry SDK or a lock. The worker thread
builds its :class:`~torchelastic_otel.otel.sinks.Stage` (which imports the SDK),
hands it every queued item, and exports the stage's batches when one is full,
every ``schedule_delay_ms``, on :meth:`~ExportWorker.force_flush`, and at exit.
Every item is either delivered or counted in the :class:`~._ledger.Ledger`. An
unexpected error in a step of the thread's loop (a bug here or upstream) loses
what that step held, counted as ``internal_error_<signal>`` with one warning; the
thread goes on exporting.

**The exit bound.** :meth:`ExportWorker.shutdown` lets the worker drain and export
for as long as the collector keeps taking batches, up to a hard cap
(``shutdown_max_ms``, 20 s), and gives up as soon as the collector is the reason to
wait: when a request has been in flight for ``shutdown_timeout_ms`` (1 s: a
collector that hangs), or at once when the request failed already and the SDK's
retry could not come within that bound (a collector that is down). A signal whose
batch the collector refuses during the exit stops there (a collector with no metrics
pipeline refuses metrics, and must not cost the logs and spans). The worker's own
work (mapping, encoding, ending open spans) is never what gives up, and neither is
the SDK's import at start-up: a process that exits right after its first events
still delivers them. Giving up closes the books: what the worker still held,
including a batch whose request was in flight, is counted as ``shutdown_<signal>``.

**Fork.** ``os.fork()`` waits (up to 5 s) for a worker that is still building its
stage: a child forked in the middle of the SDK's imports would inherit modules that
never finish initialising, and could not export its own events.

Example::

    >>> worker = ExportWorker(settings, setup=lambda ledger: MyStage(ledger))  # doctest: +SKIP
    >>> worker.submit(event, time.time_ns())  # doctest: +SKIP
    >>> worker.shutdown()  # doctest: +SKIP
"""

import collections

# Imported before our fork hook is registered, so that its hook (which takes the
# lock every ThreadPoolExecutor.submit needs, and the SDK's Resource.create submits)
# runs after ours: os.fork() runs "before" hooks newest first, and ours waits for a
# setup that may be submitting. See _before_fork.
import concurrent.futures.thread  # noqa: F401
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from torchelastic_otel.otel._ledger import Ledger
from torchelastic_otel.otel.settings import Settings

if TYPE_CHECKING:  # the sinks import OpenTelemetry; the worker imports them lazily
    from torchelastic_otel.otel.sinks import Stage


_log = logging.getLogger("torchelastic_otel")

# Of the exit bound, what closing the exporters and the interpreter's teardown need.
_EXIT_RESERVE_S = 0.15
# The SDK's OTLP exporters retry a failed request after 2**0 s +-20% (gRPC and HTTP).
_SDK_FIRST_BACKOFF_S = 0.8
# How often shutdown() looks at the worker's progress.
_POLL_S = 0.02
# How long os.fork() waits for a worker that is still importing the SDK.
_FORK_WAIT_S = 5.0

# Held while a worker builds its stage, i.e. while it imports the SDK and the
# exporters. A fork in the middle of those imports would hand the child modules
# that stay half-initialised for ever (the importing thread does not exist there),
# and the child's own pipeline would fail on them ("partially initialized module");
# so a fork waits, within a bound, for the imports to finish. See _before_fork.
_setup_lock = threading.Lock()
_fork_held = False  # the forking thread holds _setup_lock
_forked_mid_setup = False  # this process is a child forked while a setup was running


class ExportWorker:
    """Bounded queue, one thread, batched export; see the module docstring.

    Args:
        settings: queue size, schedule, exit bounds, warning interval.
        setup: builds the stage, on the worker thread (it may import the SDK);
            given the ledger its batches report to.
    """

    def __init__(self, settings: Settings, setup: Callable[[Ledger], "Stage"]) -> None:
        self.settings = settings
        self.ledger = Ledger(settings.warning_interval_s)
        self._setup = setup
        self._disabled = settings.disabled  # OTEL_SDK_DISABLED=true: a silent no-op
        self._queue: collections.deque[tuple[object, int]] = collections.deque()
        self._max = settings.max_queue_size
        batch = max(settings.logs_batch_size, 1)
        self._wake_at = max(1, min(batch, settings.max_queue_size // 2))
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._stage: "Stage | None" = None
        self._ready = False  # the stage is built
        self._stop = False
        self._closed = False  # no more submissions
        self._closed_reason = "shutdown_logs"  # what a submission after that counts as
        self._flush_requested = False
        self._collect_requested = False  # force_flush: collect the metrics once
        self._in_hand = 0  # an item taken off the queue and not yet mapped
        self._invalid_warned = False
        self._internal_warned = False

    # --- the caller's side --------------------------------------------------------------

    def submit(self, item: object, t_ns: int) -> None:
        """Queue ``item`` recorded at ``t_ns``; never blocks, never raises."""
        if self._disabled:
            return
        if self._closed:
            self.ledger.drop(self._closed_reason, 1)
            return
        if len(self._queue) >= self._max:
            self.ledger.drop("queue_full", 1)
            return
        self._queue.append((item, t_ns))
        if self._thread is None:
            self._start()
        elif len(self._queue) >= self._wake_at and not self._wake.is_set():
            # is_set() reads a flag; set() takes a lock the worker holds while it
            # waits, and calling it on every event of a burst made the caller wait.
            self._wake.set()

    def drop_counts(self) -> dict[str, int]:
        """What was lost so far, by reason (see ``DROP_REASONS``)."""
        return self.ledger.drop_counts()

    def exported_counts(self) -> dict[str, int]:
        """Events (as log records), spans and metric exports the collector accepted."""
        return self.ledger.exported_counts()

    @property
    def paths(self) -> dict[str, str]:
        """How each signal is exported (empty until the worker started)."""
        stage = self._stage
        sinks = getattr(stage, "sinks", None)
        return dict(getattr(sinks, "paths", {}))

    def _busy(self) -> bool:
        stage = self._stage
        held = stage is not None and any(len(b) or b.in_flight for b in stage.batches)
        return bool(self._queue or self._in_hand or held)

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything submitted so far was exported (or counted as lost).

        Metrics are collected once more first, as the SDK's ``force_flush`` does.
        """
        deadline = time.monotonic() + timeout_s
        self._collect_requested = True
        with self._idle:
            while self._busy() or (self._thread is not None and not self._ready):
                left = deadline - time.monotonic()
                thread = self._thread
                if left <= 0 or thread is None or not thread.is_alive():
                    return not self._busy()
                self._flush_requested = True
                self._wake.set()
                self._idle.wait(min(left, 0.05))
        return True

    def shutdown(self, timeout_ms: int | None = None) -> None:
        """Flush and stop; see the module docstring for how long it may take.

        Args:
            timeout_ms: how long to wait for a collector that acknowledges nothing
                (default: ``shutdown_timeout_ms``); the hard cap stays
                ``shutdown_max_ms`` (or ``timeout_ms``, if larger).
        """
        if self._closed:
            return
        self._closed = True
        bound_s = (self.settings.shutdown_timeout_ms if timeout_ms is None else timeout_ms) / 1000
        cap_s = max(self.settings.shutdown_max_ms / 1000, bound_s)
        start = time.monotonic()
        thread = self._thread
        self.ledger.exiting = True
        if thread is not None and thread.is_alive():
            self._stop = True
            self._wake.set()
            while thread.is_alive():
                now = time.monotonic()
                if self._collector_does_not_answer(now, bound_s) or now >= start + cap_s:
                    self._abandon()
                    break
                thread.join(_POLL_S)
        stage = self._stage
        if stage is not None:
            stage.close()
        self.ledger.warn(force=True)

    def _collector_does_not_answer(self, now: float, bound_s: float) -> bool:
        """A request has waited on the collector for the bound, or cannot succeed within it.

        A request that failed once (a collector that is down refuses the
        connection at once) is retried by the SDK after a backoff of at least
        ``_SDK_FIRST_BACKOFF_S``: when less than that is left of the bound, waiting
        for the retry only makes the exit longer.
        """
        since = self.ledger.in_flight_since
        if not since:
            return False
        # Part of the bound is left for closing the exporters and the interpreter's
        # own teardown, so that the exit as a whole stays within it.
        left = max(0.0, bound_s - _EXIT_RESERVE_S) - (now - since)
        return left <= 0 or (self.ledger.in_flight_failed and left < _SDK_FIRST_BACKOFF_S)

    def _abandon(self) -> None:
        """Count everything the worker still holds as lost, and close the books."""
        stage = self._stage
        with self.ledger.lock:
            lost_logs = len(self._queue) + self._in_hand
            self._queue.clear()
            for batches in stage.batches if stage is not None else []:
                held = batches.held_locked()
                if batches.signal == "logs":
                    lost_logs += held
                else:
                    self.ledger.drop_locked(f"shutdown_{batches.signal}", held)
            self.ledger.drop_locked("shutdown_logs", lost_logs)
            self.ledger.close_locked()

    # --- the worker -------------------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(
                target=self._run, name="torchelastic-otel-export", daemon=True
            )
            self._thread = thread
            thread.start()

    def _run(self) -> None:
        try:
            with _setup_lock:
                self._stage = stage = self._setup(self.ledger)
        except Exception as e:  # noqa: BLE001 -- report once, keep the job alive
            _log.warning(
                "torchelastic-otel: the otel destination is disabled: %s: %s%s",
                type(e).__name__,
                e,
                " (this process was forked while its parent was still importing the "
                "OpenTelemetry SDK)"
                if _forked_mid_setup
                else "",
            )
            self._disable()
            return
        self._ready = True
        delay_s = self.settings.schedule_delay_ms / 1000
        next_export = time.monotonic() + delay_s
        while not self.ledger.closed:
            self._wake.wait(max(0.0, next_export - time.monotonic()))
            self._wake.clear()
            stopping = self._stop
            self._contain("reading the queue", "logs", self._drain, stage)
            if stopping:
                self._contain("ending the open spans", "spans", stage.finish, time.time_ns())
                self._export(stage, everything=True)
                return
            if self._flush_requested or time.monotonic() >= next_export:
                self._flush_requested = False
                collect, self._collect_requested = self._collect_requested, False
                self._contain("collecting metrics", "metrics", stage.tick, time.time_ns(), collect)
                self._export(stage, everything=True)
                next_export = time.monotonic() + delay_s
            else:
                self._export(stage, everything=False)
            self._contain("counting losses", None, self.ledger.warn)

    def _contain(
        self, step: str, signal: str | None, work: Callable[..., object], *args: object
    ) -> None:
        """Run one step of the loop; an unexpected error is counted, not fatal.

        This is the only export thread: an exception escaping it would leave every
        later event queued for nobody (and counted as ``queue_full``). A failed step
        loses at most what it held, counted as ``internal_error_<signal>``.
        """
        try:
            work(*args)
        except Exception as e:  # noqa: BLE001 -- counted and warned; the thread goes on
            self._internal_error(step, e)
            if signal is not None:
                self.ledger.drop(f"internal_error_{signal}", 1)

    def _internal_error(self, step: str, e: Exception) -> None:
        _log.debug("torchelastic-otel: error while %s", step, exc_info=True)
        if not self._internal_warned:
            self._internal_warned = True
            _log.warning(
                "torchelastic-otel: unexpected error on the export thread while %s: %s: %s "
                "(exporting goes on; what it held is counted as internal_error_*, "
                "further errors only counted)",
                step,
                type(e).__name__,
                e,
            )

    def _disable(self) -> None:
        self._closed_reason = "disabled"
        self._closed = True
        with self._idle:
            with self.ledger.lock:
                n = len(self._queue)
                self._queue.clear()
                self.ledger.drop_locked("disabled", n)
            self._idle.notify_all()

    def _drain(self, stage: "Stage") -> None:
        """Hand everything queued so far to the stage, exporting full batches as they fill."""
        queue, ledger = self._queue, self.ledger
        while queue:
            with ledger.lock:
                if ledger.closed:
                    return
                item, t_ns = queue.popleft()
                self._in_hand = 1
            try:
                stage.handle(item, t_ns)
            except Exception as e:  # noqa: BLE001 -- one bad item must not stop the rest
                ledger.drop("invalid", 1)
                self._warn_once_invalid(e)
            finally:
                with ledger.lock:
                    self._in_hand = 0
            if any(b.full() for b in stage.batches):
                self._export(stage, everything=False)

    def _export(self, stage: "Stage", everything: bool) -> None:
        for batches in stage.batches:
            try:
                batches.export(everything)
            except Exception as e:  # noqa: BLE001 -- one batch is lost, not the thread
                # The exporter's own failures are counted inside export(); this is
                # anything else. Drop what the signal held: retrying a batch that
                # broke the export code would break it again, forever.
                self._internal_error(f"exporting {batches.signal}", e)
                with self.ledger.lock:
                    lost = batches.discard_locked()
                    self.ledger.in_flight_since = 0.0
                    self.ledger.drop_locked(f"internal_error_{batches.signal}", max(lost, 1))
        with self._idle:
            self._idle.notify_all()

    def _warn_once_invalid(self, e: Exception) -> None:
        if not self._invalid_warned:
            self._invalid_warned = True
            _log.warning(
                "torchelastic-otel: dropping an event that could not be mapped: %s: %s "
                "(further ones are only counted)",
                type(e).__name__,
                e,
            )


def _before_fork() -> None:
    # Bounded: if the forking thread itself holds an import lock the setup needs
    # (a fork from a module's top level), waiting longer would not help.
    global _fork_held  # noqa: PLW0603
    _fork_held = _setup_lock.acquire(timeout=_FORK_WAIT_S)


def _after_fork_in_parent() -> None:
    global _fork_held  # noqa: PLW0603
    if _fork_held:
        _fork_held = False
        _setup_lock.release()


def _after_fork_in_child() -> None:
    # A fresh lock either way: one held by the parent's worker would never be released.
    global _setup_lock, _fork_held, _forked_mid_setup  # noqa: PLW0603
    _forked_mid_setup = not _fork_held
    _fork_held = False
    _setup_lock = threading.Lock()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
