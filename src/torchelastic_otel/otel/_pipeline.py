"""The process's export pipeline: one :class:`Pipeline`, made from the settings.

``record(event, "otel")`` sends to :func:`current`, created from the environment
(and ``configure()``'s overrides) on first use. :func:`replace` swaps it for a
new one (the old one is flushed within its bound); :func:`use` installs a given
pipeline for a ``with`` block (the front door for tests and embedding). At exit
the current pipeline is flushed from threading's exit hooks; a forked child
starts with none (the parent's queue is the parent's to export).
"""

import atexit
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torchelastic_otel.otel import settings as _settings
from torchelastic_otel.otel._worker import ExportWorker
from torchelastic_otel.otel.settings import Settings


class Pipeline(ExportWorker):
    """An ``otel`` destination's export path: a worker feeding the chosen sinks.

    Args:
        settings: what to export where (default: from the environment).
        log_exporter: an SDK ``LogRecordExporter`` to use instead of OTLP (a
            plug-in: the SDK's in-memory or console exporter, or your own).
        span_exporter: likewise, a ``SpanExporter``.

    Example::

        >>> from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
        >>> memory = InMemoryLogRecordExporter()
        >>> with use(Pipeline(log_exporter=memory)) as p:  # doctest: +SKIP
        ...     events.record(event, "otel")
        ...     p.force_flush()
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        log_exporter: Any = None,
        span_exporter: Any = None,
    ) -> None:
        # Imported here, not at module level: the sinks import OpenTelemetry, and
        # `import torchelastic_otel.otel` must stay cheap for every agent.
        from torchelastic_otel.otel._stage import EventStage
        from torchelastic_otel.otel.sinks import PlugIns

        s = settings if settings is not None else _settings.from_env()
        plugins = PlugIns(log_exporter=log_exporter, span_exporter=span_exporter)
        super().__init__(s, setup=lambda ledger: EventStage(s, plugins, ledger))
        self.pid = os.getpid()
        register_exit_hook()


_current: Pipeline | None = None
_current_lock = threading.Lock()
_overrides: dict[str, Any] = {}


def current() -> Pipeline:
    """The process's pipeline, created from the environment on first use."""
    global _current  # noqa: PLW0603 -- the one pipeline of this process
    pipeline = _current
    if pipeline is not None:
        return pipeline
    with _current_lock:
        if _current is None:
            _current = Pipeline(_settings.from_env().with_overrides(**_overrides))
        return _current


def set_overrides(overrides: dict[str, Any]) -> None:
    """What ``configure()`` set, applied over the environment from now on."""
    _overrides.clear()
    _overrides.update({k: v for k, v in overrides.items() if v is not None})


def replace(pipeline: Pipeline | None = None) -> Pipeline:
    """Make ``pipeline`` (default: a new one from the settings) current; flush the old one.

    The new pipeline is installed before the old one shuts down, so an event
    recorded meanwhile goes to the new one, never into a closed one.
    """
    global _current
    new = pipeline or Pipeline(_settings.from_env().with_overrides(**_overrides))
    with _current_lock:
        old, _current = _current, new
    if old is not None and old is not new:
        old.shutdown()
    return new


@contextmanager
def use(pipeline: Pipeline, timeout_ms: int = 5000) -> Iterator[Pipeline]:
    """Make ``pipeline`` the process's for a ``with`` block; shut it down after.

    Args:
        pipeline: the pipeline ``record(event, "otel")`` sends to inside the block.
        timeout_ms: the bound on its shutdown when the block ends.
    """
    global _current  # noqa: PLW0603
    with _current_lock:
        previous, _current = _current, pipeline
    try:
        yield pipeline
    finally:
        pipeline.shutdown(timeout_ms)
        with _current_lock:
            _current = previous


def _shutdown_at_exit() -> None:
    pipeline = _current
    if pipeline is not None and pipeline.pid == os.getpid():
        pipeline.shutdown()


_early_hook_registered = False


def register_exit_hook() -> None:
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
    # concurrent.futures.thread (imported by gRPC) registers with threading's exit
    # hooks, which refuses once the interpreter is exiting: imported here, on the
    # first event, its hook is registered before ours.
    import concurrent.futures.thread  # noqa: F401

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
