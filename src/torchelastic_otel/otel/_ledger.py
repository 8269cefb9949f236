"""The books of the export path: what was delivered, what was lost and why.

Every event submitted ends either delivered (its log record, or a summary record
that counts it, was acknowledged by the collector) or counted under exactly one
loss reason; spans and metric exports are counted apart. Once the exit bound ran
out, the books are closed (:meth:`Ledger.close`): the worker thread may still
return from an export, and must not count it a second time.
"""

import logging
import threading
import time

_log = logging.getLogger("torchelastic_otel")

DROP_REASONS = (
    "queue_full",  # events: the caller outran the export and the bounded queue was full
    "invalid",  # events: not an event, or JSON that is not one
    "export_failed_logs",  # events whose log records the collector refused or never answered
    "export_failed_spans",  # spans, likewise
    "export_failed_metrics",  # metric exports (one per collection), likewise
    "shutdown_logs",  # events still held when the exit flush gave up on the collector
    "shutdown_spans",  # spans, likewise
    "shutdown_metrics",  # metric exports (collections), likewise
    "disabled",  # events: the export path could not start (see its warning)
    # An unexpected error on the export thread (a bug here or upstream; one warning
    # says which step): what that step held is lost, at least one per failure.
    "internal_error_logs",  # events of a batch whose export raised
    "internal_error_spans",  # spans likewise, or the spans left open when ending them raised
    "internal_error_metrics",  # metric collections likewise, or a collection that raised
    # The endpoint has no such service (gRPC UNIMPLEMENTED, HTTP 404/405/501): one
    # warning, then the signal is no longer sent; what it would have sent is counted.
    "unsupported_logs",  # events
    "unsupported_spans",  # spans
    "unsupported_metrics",  # metric collections
)

SIGNALS = ("logs", "spans", "metrics")


def _said_once(reason: str) -> bool:
    return reason.startswith("unsupported_")


class Ledger:
    """Thread-safe counts; :attr:`lock` also guards what the worker holds in hand.

    ``exported_counts()["logs"]`` counts events (a summary record counts every
    event it stands for), ``["spans"]`` spans, ``["metrics"]`` metric exports.
    """

    def __init__(self, warning_interval_s: float) -> None:
        self.lock = threading.Lock()
        self._counts = dict.fromkeys(DROP_REASONS, 0)
        self._exported = dict.fromkeys(SIGNALS, 0)
        self.closed = False
        self.in_flight_since = 0.0  # monotonic start of the export in flight (0: none)
        self.in_flight_failed = False  # ... and it failed once already (the SDK retries)
        self.exiting = False  # the exit flush began: a signal the collector refuses stops
        self._interval_s = warning_interval_s
        self._last_warning = 0.0
        self._last_reported: dict[str, int] = {}

    def drop(self, reason: str, n: int) -> None:
        """Count ``n`` lost for ``reason`` (nothing once the books are closed)."""
        if n:
            with self.lock:
                if not self.closed:
                    self._counts[reason] += n

    def drop_locked(self, reason: str, n: int) -> None:
        """:meth:`drop` for a caller that holds :attr:`lock`."""
        if n and not self.closed:
            self._counts[reason] += n

    def delivered_locked(self, signal: str, n: int) -> None:
        """Count ``n`` acknowledged by the collector; the caller holds :attr:`lock`."""
        if not self.closed:
            self._exported[signal] += n

    def failed_locked(self, signal: str, n: int) -> None:
        """Count ``n`` the collector refused or never answered for; caller holds the lock."""
        if not self.closed:
            self._counts[f"export_failed_{signal}"] += n

    def close_locked(self) -> None:
        """No more counting; the caller holds :attr:`lock` and counted what was held."""
        self.closed = True

    def drop_counts(self) -> dict[str, int]:
        """A copy of the loss counts, by reason."""
        return dict(self._counts)

    def exported_counts(self) -> dict[str, int]:
        """A copy of the delivered counts, by signal."""
        return dict(self._exported)

    def warn(self, force: bool = False) -> None:
        """Say what was lost so far, at most once per interval (always when forced).

        A signal the endpoint does not take was said once when it was found; its
        count growing alone is no reason to repeat the line (the exit's does).
        """
        now = time.monotonic()
        if not force and now - self._last_warning < self._interval_s:
            return
        lost = {k: v for k, v in self._counts.items() if v}
        news = lost if force else {k: v for k, v in lost.items() if not _said_once(k)}
        last = (
            self._last_reported
            if force
            else {k: v for k, v in self._last_reported.items() if not _said_once(k)}
        )
        if not news or news == last:
            return
        self._last_reported = lost
        self._last_warning = now
        _log.warning(
            "torchelastic-otel: lost so far: %s (see torchelastic_otel.otel.drop_counts())",
            ", ".join(f"{k}={v}" for k, v in lost.items()),
        )
