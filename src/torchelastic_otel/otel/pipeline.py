"""The export pipeline: a bounded queue in front of one worker thread.

The caller's side (:meth:`Pipeline.submit`) appends to a deque and returns; it
never touches the network, the OpenTelemetry SDK or a lock. The worker thread
imports the SDK, maps each event (``mapping``), drives the span state machine
(``spans``), and exports batches through the exporters. The worker is the only
thread that feeds our processors, so every event is either exported or counted
in :meth:`Pipeline.drop_counts` under the reason it was lost.

At exit, :meth:`Pipeline.shutdown` gives the worker a bounded time (default 1 s)
to drain and export, then abandons it and closes the exporters, which aborts a
request pending on a collector that does not answer. Everything not exported by
then (including a batch whose request was aborted, even if it reached the
collector) is counted as ``shutdown_logs`` / ``shutdown_spans``.
"""

import atexit
import collections
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torchelastic_otel import __version__
from torchelastic_otel.otel.mapping import SEVERITY_TEXT, map_event, to_event
from torchelastic_otel.otel.settings import Settings

if TYPE_CHECKING:
    from opentelemetry._logs import Logger
    from opentelemetry.sdk._logs import ReadWriteLogRecord
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Tracer

    from torchelastic_otel.otel.encoding import Encoder, Envelope
    from torchelastic_otel.otel.spans import SpanStateMachine

_log = logging.getLogger("torchelastic_otel")

SCOPE = "torchelastic_otel"

# Of the exit bound, what closing the exporters and the interpreter's teardown need.
_EXIT_RESERVE_S = 0.15

# Loggers of the OTLP exporters, which log every failed request.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http",
)

DROP_REASONS = (
    "queue_full",  # events: the caller outran the export and the bounded queue was full
    "invalid",  # events: not an event, or JSON that is not one
    "export_failed_logs",  # log records the collector refused or could not be reached for
    "export_failed_spans",  # same, spans
    "shutdown_logs",  # log records (events) not exported within the exit bound
    "shutdown_spans",  # same, spans
    "disabled",  # events: the pipeline could not start (see its warning)
)


class HideHeaderValues(logging.Filter):
    """Drops the SDK's "Header format invalid" warnings, which print the raw header.

    Our settings already warned about the same entries, naming only their position.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the SDK's malformed-header warnings."""
        return "Header format invalid" not in str(record.msg)


class RateLimitFilter(logging.Filter):
    """Let one record per (logger, message template) through per interval."""

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """True for the first record of its kind in each interval."""
        key = (record.name, record.msg)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[key] = now
        return True


class Pipeline:
    """Bounded queue, one worker, batched export; see the module docstring.

    Args:
        settings: what to export where.
        log_exporter: an SDK ``LogRecordExporter`` to use instead of OTLP (a plug-in:
            the SDK's in-memory or console exporter, or your own).
        span_exporter: likewise, a ``SpanExporter``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        log_exporter: Any = None,
        span_exporter: Any = None,
    ) -> None:
        self.settings = settings
        self._sdk_disabled = settings.disabled  # OTEL_SDK_DISABLED=true: a silent no-op
        self._queue: collections.deque[tuple[object, int]] = collections.deque()
        self._max = settings.max_queue_size
        self._wake_at = max(1, min(settings.logs_batch_size, settings.max_queue_size // 2))
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._idle = threading.Condition()
        self._stop = False  # the worker should drain, export and exit
        self._closed = False  # no more submissions
        self._abandoned = False  # the exit bound ran out: the worker must not count
        self._flush_requested = False
        self._counts = dict.fromkeys(DROP_REASONS, 0)
        self._counts_lock = threading.Lock()
        self._exported = {"logs": 0, "spans": 0}
        self._tracer: Tracer | None = None
        self._logger: Logger | None = None
        self._owned: list[Any] = []  # exporters we use and must shut down
        self._pending_logs: list[ReadWriteLogRecord] = []
        self._pending_spans: list[ReadableSpan] = []
        # What the worker holds outside those lists: an event being mapped, and the
        # batches being exported. Counted as lost if the exit bound runs out.
        self._in_hand = 0
        self._exporting = {"logs": 0, "spans": 0}
        self._log_exporter: Any = log_exporter
        self._span_exporter: Any = span_exporter
        self._machine: SpanStateMachine | None = None
        # The fast log path (encoding.py), when we own an OTLP log exporter.
        self._encoder: Encoder | None = None
        self._envelope: Envelope | None = None
        self._span_of: Callable[[Any], Any] | None = None
        self._prebuilt_spans = False  # the fast span path (light_spans.py)
        self._severity: Callable[[int], Any] | None = None
        self._last_warning = 0.0
        self._last_reported: dict[str, int] = {}
        self._invalid_warned = False
        self._pid = os.getpid()

    # --- the caller's side --------------------------------------------------------------

    def submit(self, item: object, t_ns: int) -> None:
        """Queue ``item`` (an event or its JSON) recorded at ``t_ns``; never blocks."""
        if self._sdk_disabled:
            return
        if self._closed:
            self._drop("shutdown_logs", 1)
            return
        if len(self._queue) >= self._max:
            self._drop("queue_full", 1)
            return
        self._queue.append((item, t_ns))
        if self._worker is None:
            self._start()
        elif len(self._queue) >= self._wake_at:
            self._wake.set()

    def drop_counts(self) -> dict[str, int]:
        """What was lost so far, by reason (see ``DROP_REASONS``)."""
        return dict(self._counts)

    def exported_counts(self) -> dict[str, int]:
        """Log records and spans the exporters accepted so far."""
        return dict(self._exported)

    def _busy(self) -> bool:
        return bool(
            self._queue
            or self._pending_logs
            or self._pending_spans
            or self._in_hand
            or self._exporting["logs"]
            or self._exporting["spans"]
        )

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything submitted so far was exported (or counted as lost)."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._busy():
                left = deadline - time.monotonic()
                if left <= 0 or self._worker is None or not self._worker.is_alive():
                    return not self._busy()
                self._flush_requested = True
                self._wake.set()
                self._idle.wait(min(left, 0.05))
        return True

    def shutdown(self, timeout_ms: int | None = None) -> None:
        """Flush and stop, within ``timeout_ms`` (default: the settings' bound) in total."""
        if self._closed:
            return
        self._closed = True
        bound_ms = self.settings.shutdown_timeout_ms if timeout_ms is None else timeout_ms
        deadline = time.monotonic() + bound_ms / 1000
        worker = self._worker
        if worker is not None and worker.is_alive():
            self._stop = True
            self._wake.set()
            # Leave part of the bound for closing the exporters and the interpreter's
            # own teardown, so that the whole exit stays within it.
            worker.join(max(0.0, deadline - time.monotonic() - _EXIT_RESERVE_S))
            if worker.is_alive():
                self._abandon()
        for exporter in self._owned:
            try:
                exporter.shutdown()
            except Exception:  # noqa: BLE001 -- exit must go on whatever the exporter does
                _log.debug("exporter shutdown failed", exc_info=True)
        self._warn_drops(force=True)

    def _abandon(self) -> None:
        """Count everything the worker still holds as lost; from now on it counts nothing."""
        self._abandoned = True
        lost_logs = len(self._queue) + self._in_hand + len(self._pending_logs)
        lost_spans = len(self._pending_spans)
        lost_logs += self._exporting["logs"]
        lost_spans += self._exporting["spans"]
        self._queue.clear()
        self._drop("shutdown_logs", lost_logs)
        self._drop("shutdown_spans", lost_spans)

    # --- the worker -------------------------------------------------------------------------

    def _start(self) -> None:
        # concurrent.futures.thread (imported by gRPC) registers with threading's exit
        # hooks, which refuses once the interpreter is exiting: a process that records
        # and exits at once would leave the worker unable to import its exporter.
        # Importing it here, once, on the first event, costs ~10 ms in a bare process
        # and nothing under torchrun, which has imported it already.
        import concurrent.futures.thread  # noqa: F401

        _register_early_exit_hook()
        with self._start_lock:
            if self._worker is not None:
                return
            self._worker = threading.Thread(
                target=self._run, name="torchelastic-otel-export", daemon=True
            )
            self._worker.start()

    def _run(self) -> None:
        try:
            self._setup()
        except Exception as e:  # noqa: BLE001 -- report once, keep the job alive
            _log.warning(
                "torchelastic-otel: the otel destination is disabled: %s: %s",
                type(e).__name__,
                e,
            )
            self._disable()
            return
        delay_s = self.settings.schedule_delay_ms / 1000
        next_export = time.monotonic() + delay_s
        while not self._abandoned:
            self._wake.wait(max(0.0, next_export - time.monotonic()))
            self._wake.clear()
            stopping = self._stop
            self._drain()
            if stopping:
                self._finish()
                return
            full = (
                len(self._pending_logs) >= self.settings.logs_batch_size
                or len(self._pending_spans) >= self.settings.spans_batch_size
            )
            if full or self._flush_requested or time.monotonic() >= next_export:
                self._flush_requested = False
                self._export_pending()
                next_export = time.monotonic() + delay_s
            self._warn_drops()

    def _setup(self) -> None:
        from opentelemetry._logs import SeverityNumber

        from torchelastic_otel.otel.spans import SpanStateMachine

        self._severity = SeverityNumber
        self._build_providers()
        assert self._tracer is not None
        self._machine = SpanStateMachine(self._tracer, socket.gethostname())
        if self._owned:
            limiter = RateLimitFilter(self.settings.warning_interval_s or 60.0)
            for name in _EXPORTER_LOGGERS:
                logging.getLogger(name).addFilter(limiter)

    def _build_providers(self) -> None:
        # Before any exporter parses OTEL_EXPORTER_OTLP_*HEADERS itself.
        logging.getLogger("opentelemetry.util.re").addFilter(HideHeaderValues())
        from opentelemetry import _logs, trace
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk.trace import TracerProvider

        from torchelastic_otel.otel import encoding
        from torchelastic_otel.otel.processors import CollectLogRecords, CollectSpans

        s = self.settings
        global_logs = _logs.get_logger_provider()
        global_traces = trace.get_tracer_provider()
        use_logs = s.use_global_providers and type(global_logs).__name__ != "ProxyLoggerProvider"
        use_traces = s.use_global_providers and not isinstance(
            global_traces, trace.ProxyTracerProvider
        )
        resource = _resource(s)
        # Our own protobuf for the OTLP exporters we create (encoding.py); the SDK's
        # objects for plug-in exporters and for the application's providers.
        fast = encoding.install()
        if fast:
            self._envelope = encoding.Envelope(dict(resource.attributes), SCOPE, __version__)
        if use_logs and self._log_exporter is None:
            self._logger = global_logs.get_logger(SCOPE, __version__)
        elif self._log_exporter is None and fast:
            self._log_exporter = _log_exporter(s)
            self._owned.append(self._log_exporter)
            self._encoder = encoding.Encoder.from_env()
            self._span_of = trace.get_current_span
        else:
            provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
            provider.add_log_record_processor(CollectLogRecords(self._pending_logs))
            self._log_exporter = self._log_exporter or _log_exporter(s)
            self._owned.append(self._log_exporter)
            self._logger = provider.get_logger(SCOPE, __version__)
        if use_traces and self._span_exporter is None:
            self._tracer = global_traces.get_tracer(SCOPE, __version__)
        elif self._span_exporter is None and fast:
            from torchelastic_otel.otel.light_spans import LightTracer

            self._span_exporter = _span_exporter(s)
            self._owned.append(self._span_exporter)
            self._tracer = LightTracer(self._pending_spans.append)
            self._prebuilt_spans = True
        else:
            tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
            tracer_provider.add_span_processor(CollectSpans(self._pending_spans))
            self._span_exporter = self._span_exporter or _span_exporter(s)
            self._owned.append(self._span_exporter)
            self._tracer = tracer_provider.get_tracer(SCOPE, __version__)

    def _disable(self) -> None:
        self._closed = True
        with self._idle:
            n = len(self._queue)
            self._queue.clear()
            self._drop("disabled", n)
            self._idle.notify_all()

    def _drain(self) -> None:
        """Map everything queued so far into pending log records and spans."""
        queue = self._queue
        while queue and not self._abandoned:
            self._in_hand = 1
            item, t_ns = queue.popleft()
            try:
                self._map_one(item, t_ns)
            except Exception as e:  # noqa: BLE001 -- one bad event must not stop the rest
                self._drop("invalid", 1)
                self._warn_once_invalid(e)
            finally:
                self._in_hand = 0
            if len(self._pending_logs) >= self.settings.logs_batch_size:
                self._export_pending()

    def _map_one(self, item: object, t_ns: int) -> None:
        assert self._machine is not None
        m = map_event(to_event(item))
        context = self._machine.on_event(m, t_ns)
        if self._encoder is not None and self._span_of is not None:
            ids = self._span_of(context).get_span_context()
            self._pending_logs.append(self._encoder.log_record(m, t_ns, ids.trace_id, ids.span_id))
            return
        assert self._logger is not None
        assert self._severity is not None
        self._logger.emit(
            timestamp=m.timestamp_ns or t_ns,
            observed_timestamp=t_ns,
            context=context,
            severity_number=self._severity(m.severity),
            severity_text=SEVERITY_TEXT[m.severity],
            body=m.body,
            attributes=m.attributes,
            event_name=m.event_name,
        )

    def _finish(self) -> None:
        assert self._machine is not None
        self._machine.shutdown(time.time_ns())
        self._export_pending()

    def _export_pending(self) -> None:
        self._export("logs", self._pending_logs, self._log_exporter, self.settings.logs_batch_size)
        self._export(
            "spans", self._pending_spans, self._span_exporter, self.settings.spans_batch_size
        )
        with self._idle:
            self._idle.notify_all()

    def _export(self, signal: str, pending: list[Any], exporter: Any, batch_size: int) -> None:
        while pending and not self._abandoned:
            batch: list[Any] = pending[:batch_size]
            # The fast paths: protobuf built by us, wrapped in its request.
            if signal == "logs" and self._encoder is not None and self._envelope is not None:
                batch = self._envelope.logs(batch)
            elif signal == "spans" and self._prebuilt_spans and self._envelope is not None:
                batch = self._envelope.spans(batch)
            self._exporting[signal] = len(batch)
            del pending[:batch_size]
            ok = exporter is None  # None: a caller's provider exports these
            if not ok:
                try:
                    ok = exporter.export(batch).name == "SUCCESS"
                except Exception as e:  # noqa: BLE001 -- counted and reported below
                    _log.debug("export of %s failed: %s", signal, e)
            if self._abandoned:
                return  # shutdown() already counted this batch
            self._exporting[signal] = 0
            if exporter is None:
                continue
            if ok:
                self._exported[signal] += len(batch)
            else:
                self._drop(f"export_failed_{signal}", len(batch))

    # --- bookkeeping -------------------------------------------------------------------

    def _drop(self, reason: str, n: int) -> None:
        if n:
            with self._counts_lock:  # only taken when something is lost
                self._counts[reason] += n

    def _warn_drops(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_warning < self.settings.warning_interval_s:
            return
        lost = {k: v for k, v in self._counts.items() if v}
        if not lost or lost == self._last_reported:
            return
        self._last_reported = lost
        self._last_warning = now
        _log.warning(
            "torchelastic-otel: lost so far: %s (see torchelastic_otel.otel.drop_counts())",
            ", ".join(f"{k}={v}" for k, v in lost.items()),
        )

    def _warn_once_invalid(self, e: Exception) -> None:
        if not self._invalid_warned:
            self._invalid_warned = True
            _log.warning(
                "torchelastic-otel: dropping an event that could not be mapped: %s: %s "
                "(further ones are only counted)",
                type(e).__name__,
                e,
            )


def _resource(s: Settings) -> Any:
    from opentelemetry.sdk.resources import Resource

    env_resource = Resource.create({})
    attrs: dict[str, Any] = {
        "service.instance.id": str(uuid.uuid4()),
        "host.name": socket.gethostname(),
        "process.pid": os.getpid(),
    }
    service = s.service_name
    if service is None and str(env_resource.attributes.get("service.name", "")).startswith(
        "unknown_service"
    ):
        service = "torchelastic"
    if service is not None:
        attrs["service.name"] = service
    attrs.update(s.resource_attributes)
    return env_resource.merge(Resource(attrs))


def _compression(name: str | None, protocol: str) -> Any:
    if name is None or name == "none":
        return None
    if protocol == "grpc":
        from grpc import Compression as GrpcCompression

        return GrpcCompression.Gzip if name == "gzip" else GrpcCompression.Deflate
    from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression

    return HttpCompression.Gzip if name == "gzip" else HttpCompression.Deflate


def _exporter_kwargs(
    s: Settings, headers: Any, path: str, protocol: str, compression: str | None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if compression is not None:
        kwargs["compression"] = _compression(compression, protocol)
    if headers is not None:
        kwargs["headers"] = dict(headers)
    if s.timeout_s is not None:
        kwargs["timeout"] = s.timeout_s
    if s.endpoint is not None:
        if protocol == "grpc":
            kwargs["endpoint"] = s.endpoint
        else:
            kwargs["endpoint"] = s.endpoint.rstrip("/") + path
    if s.insecure is not None and protocol == "grpc":
        kwargs["insecure"] = s.insecure
    if protocol != "grpc":
        ca_file = os.environ.get(
            f"OTEL_EXPORTER_OTLP_{path.rsplit('/', 1)[-1].upper()}_CERTIFICATE",
            os.environ.get("OTEL_EXPORTER_OTLP_CERTIFICATE"),
        )
        if ca_file:
            kwargs["session"] = _session_trusting(ca_file)
    return kwargs


def _session_trusting(ca_file: str) -> Any:
    """A requests session that keeps ``verify=ca_file`` even when REQUESTS_CA_BUNDLE is set.

    requests lets the environment's CA bundle override a session's ``verify``
    (psf/requests#3829), so with ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` set, as
    on many machines, the HTTP exporter would ignore OTEL_EXPORTER_OTLP_CERTIFICATE
    and reject a private CA. Proxies from the environment still apply.
    """
    import requests

    class _Session(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            settings: dict[str, Any] = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = ca_file
            return settings

    session = _Session()
    session.verify = ca_file
    return session


def _log_exporter(s: Settings) -> Any:
    kwargs = _exporter_kwargs(s, s.logs_headers, "/v1/logs", s.logs_protocol, s.logs_compression)
    if s.logs_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(**kwargs)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (
        OTLPLogExporter as HTTPLogExporter,
    )

    return HTTPLogExporter(**kwargs)


def _span_exporter(s: Settings) -> Any:
    kwargs = _exporter_kwargs(
        s, s.traces_headers, "/v1/traces", s.traces_protocol, s.traces_compression
    )
    if s.traces_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(**kwargs)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    return HTTPSpanExporter(**kwargs)


# --- the process-wide pipeline -------------------------------------------------------------

_current: Pipeline | None = None
_current_lock = threading.Lock()
_overrides: dict[str, Any] = {}


def current() -> Pipeline:
    """The process's pipeline, created from the environment on first use."""
    pipeline = _current
    if pipeline is not None:
        return pipeline
    return _create()


def _create(**kwargs: Any) -> Pipeline:
    global _current  # noqa: PLW0603 -- the one pipeline of this process
    from torchelastic_otel.otel import settings

    with _current_lock:
        if _current is None or kwargs:
            _current = Pipeline(settings.from_env().with_overrides(**_overrides), **kwargs)
        return _current


def replace_current(**kwargs: Any) -> Pipeline:
    """Shut the current pipeline down (bounded) and start a new one with ``kwargs``."""
    old = _current
    if old is not None:
        old.shutdown()
    return _create(**kwargs)


def _shutdown_at_exit() -> None:
    pipeline = _current
    if pipeline is not None and pipeline._pid == os.getpid():
        pipeline.shutdown()


_early_hook_registered = False


def _register_early_exit_hook() -> None:
    """Flush before the interpreter's exit shuts thread pools down, not after.

    atexit hooks run after ``threading._shutdown()``, which stops every
    ``ThreadPoolExecutor`` (gRPC uses them) and forbids new threads' exit hooks, so
    a worker still setting up its exporter then could not finish. threading's own
    exit hooks run before that, newest first: registered after
    ``concurrent.futures.thread``'s, ours runs while the pools still work. The plain
    atexit hook below stays as a fallback (shutting down twice is a no-op).
    """
    global _early_hook_registered  # noqa: PLW0603
    if _early_hook_registered:
        return
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        return
    try:
        register(_shutdown_at_exit)
    except RuntimeError:  # already exiting
        return
    _early_hook_registered = True


def _after_fork_in_child() -> None:
    # The parent's queue is the parent's to export; a copy here would export its
    # events twice, and the parent's worker thread and gRPC channels do not exist here.
    global _current, _early_hook_registered  # noqa: PLW0603
    _current = None
    _early_hook_registered = False


atexit.register(_shutdown_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
