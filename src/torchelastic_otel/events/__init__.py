"""
Events of elastic training jobs, integrated with the standard python logging.

A drop-in reimplementation of ``torch.distributed.elastic.events`` (torch 2.13):
same names, signatures, dataclasses, JSON and logger per destination, and the same
module globals to patch in tests. It imports neither torch nor OpenTelemetry.

Example of usage:

::

  from torchelastic_otel import events

  event = events.Event(
      name="test_event", source=events.EventSource.WORKER, metadata={...}
  )
  events.record(event, destination="console")

Where it differs from torch, it is on purpose and only where torch fails or is slow:

* ``record`` and ``record_rdzv_event`` never raise into the caller: a failure is
  logged once (logger ``torchelastic_otel``) and the event dropped. Metadata JSON
  cannot encode is written as its ``repr()`` (see :mod:`.api`).
* ``construct_and_record_rdzv_event`` reads its caller's frame directly instead of
  ``inspect.stack()``, so its cost does not grow with the stack depth, and looks the
  FQDN up once per process.
* An unknown destination raises :class:`UnknownDestinationError` (a ``KeyError``)
  that lists the known ones; ``register_handler`` adds destinations.
"""

import logging
import os
import sys
import threading
from types import CodeType, ModuleType
from typing import Optional

from torchelastic_otel.events.handlers import (
    UnknownDestinationError,
    get_logging_handler,
    known_destinations,
    register_handler,
)

from .api import (
    Event,
    EventMetadataValue,
    EventSource,
    NodeState,
    RdzvEvent,
)

__all__ = [
    "Event",
    "EventMetadataValue",
    "EventSource",
    "NodeState",
    "RdzvEvent",
    "UnknownDestinationError",
    "construct_and_record_rdzv_event",
    "get_logging_handler",
    "known_destinations",
    "record",
    "record_rdzv_event",
    "register_handler",
]

_events_loggers: dict[str, logging.Logger] = {}

_log = logging.getLogger("torchelastic_otel")
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _get_or_create_logger(destination: str = "null") -> logging.Logger:
    """
    Construct python logger based on the destination type or extends if provided.

    The logger is ``torchelastic-events-<destination>``, at the level named by
    ``LOGLEVEL`` (default ``INFO``), with the destination's handler, and does not
    propagate to upper level loggers, e.g. the root logger, so that a single event
    is processed once.

    Args:
        destination: The string representation of the event handler.
            Available handlers found in ``handlers`` module

    Raises:
        UnknownDestinationError: ``destination`` is not known.
    """
    if destination not in _events_loggers:
        logging_handler = get_logging_handler(destination)
        _events_logger = logging.getLogger(f"torchelastic-events-{destination}")
        _events_logger.setLevel(_loglevel())
        # Do not propagate message to the root logger
        _events_logger.propagate = False
        # A no-op when torch's module already attached this same handler: the two
        # modules share logger names, and an event must be handled once.
        _events_logger.addHandler(logging_handler)
        _events_loggers[destination] = _events_logger

    return _events_loggers[destination]


def _loglevel() -> int | str:
    level = os.environ.get("LOGLEVEL", "INFO")
    if level.isdigit():
        return int(level)
    if isinstance(logging.getLevelName(level.upper()), int):
        return level.upper()
    # torch raises ValueError here, which would take the agent down.
    _warn_once("loglevel", "ignoring invalid LOGLEVEL=%r; using INFO", level)
    return "INFO"


def record(event: Event, destination: str = "null") -> None:
    """Record ``event`` to ``destination``; never raises.

    Built-in destinations receive ``event.serialize()``, as with torch; handlers
    that declare ``accepts_events = True`` (the ``otel`` one) receive the event
    object itself and skip the JSON round trip.

    Args:
        event: the event (an ``Event``, or any object with ``serialize()``).
        destination: ``null`` (default), ``console``, ``dynamic_rendezvous``,
            ``otel`` or any registered destination.

    Example::

        >>> record(Event("my_event", EventSource.AGENT), "console")  # doctest: +SKIP
        {"name": "my_event", "source": "AGENT", "timestamp": 0, "metadata": {}}
    """
    _record(event, destination)


def record_rdzv_event(event: RdzvEvent) -> None:
    """Record a rendezvous event to the ``dynamic_rendezvous`` destination; never raises."""
    _record(event, "dynamic_rendezvous")


def _record(event: Event | RdzvEvent, destination: str) -> None:
    try:
        logger = _get_or_create_logger(destination)
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = get_logging_handler(destination)
        if getattr(type(handler), "accepts_events", False) is True:
            logger.info(event)
        else:
            logger.info(event.serialize())
    except Exception as e:  # noqa: BLE001 -- the job must outlive any observability failure
        _warn_once(
            f"record:{destination}:{type(e).__name__}",
            "dropping event for destination %r: %s: %s",
            destination,
            type(e).__name__,
            e,
        )


def _warn_once(key: str, msg: str, *args: object) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    _log.warning(msg, *args)


_fqdn: str | None = None


def __getattr__(name: str) -> ModuleType:
    # torch's module has `socket` and `traceback` as attributes, and tests patch
    # through them; importing them only when needed saves ~5 ms of this import.
    if name in ("socket", "traceback"):
        import importlib

        return importlib.import_module(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _hostname() -> str:
    # socket.getfqdn() can block for seconds where reverse DNS is broken
    # (pytorch#150532), so pay for it at most once per process.
    global _fqdn  # noqa: PLW0603 -- a per-process cache
    if _fqdn is None:
        import socket

        _fqdn = socket.getfqdn()
    return _fqdn


def _file_and_function(code: CodeType | None) -> tuple[str, str]:
    """The basename of ``code``'s file and its function name.

    Gives what ``inspect.stack()[n]`` gives for that frame (``inspect`` maps a
    ``.pyc`` file to its ``.py`` source) without building the whole stack or
    touching source files, so the cost is constant in the stack depth.
    """
    if code is None:
        return "no_file", ""
    filename = code.co_filename
    if filename.endswith(".pyc") and os.path.exists(filename[:-1]):
        filename = filename[:-1]
    return os.path.basename(filename), code.co_name


def _caller_code(frame_depth: int) -> CodeType | None:
    """The code of the frame ``frame_depth`` above the caller of this function."""
    try:
        return sys._getframe(frame_depth + 1).f_code
    except ValueError:
        return None


def construct_and_record_rdzv_event(
    run_id: str,
    message: str,
    node_state: NodeState,
    name: str = "",
    hostname: str = "",
    pid: Optional[int] = None,
    master_endpoint: str = "",
    local_id: Optional[int] = None,
    rank: Optional[int] = None,
) -> None:
    """
    Initialize rendezvous event object and record its operations.

    Does nothing at all when the ``dynamic_rendezvous`` handler is a
    ``logging.NullHandler`` (the default).

    Args:
        run_id (str): The run id of the rendezvous.
        message (str): The message describing the event.
        node_state (NodeState): The state of the node (INIT, RUNNING, SUCCEEDED, FAILED).
        name (str): Event name. (E.g. Current action being performed). Defaults to
            the calling function's name; the event's name is
            ``"<caller's file basename>:<name>"``.
        hostname (str): Hostname of the node. Defaults to the FQDN.
        pid (Optional[int]): The process id of the node. Defaults to ``os.getpid()``.
        master_endpoint (str): The master endpoint for the rendezvous store, if known.
        local_id (Optional[int]):  The local_id of the node, if defined in dynamic_rendezvous.py
        rank (Optional[int]): The rank of the node, if known.
    Returns:
        None
    Example:
        >>> # See DynamicRendezvousHandler class
        >>> def _record(
        ...     self,
        ...     message: str,
        ...     node_state: NodeState = NodeState.RUNNING,
        ...     rank: Optional[int] = None,
        ... ) -> None:
        ...     construct_and_record_rdzv_event(
        ...         name=f"{self.__class__.__name__}.{get_method_name()}",
        ...         run_id=self._settings.run_id,
        ...         message=message,
        ...         node_state=node_state,
        ...         hostname=self._this_node.addr,
        ...         pid=self._this_node.pid,
        ...         local_id=self._this_node.local_id,
        ...         rank=rank,
        ...     )
    """
    # We don't want to perform an extra computation if not needed.
    if isinstance(get_logging_handler("dynamic_rendezvous"), logging.NullHandler):
        return
    _construct_and_record(
        _caller_code(1),
        run_id,
        message,
        node_state,
        name,
        hostname,
        pid,
        master_endpoint,
        local_id,
        rank,
    )


def _construct_and_record(
    caller: CodeType | None,
    run_id: str,
    message: str,
    node_state: NodeState,
    name: str = "",
    hostname: str = "",
    pid: Optional[int] = None,
    master_endpoint: str = "",
    local_id: Optional[int] = None,
    rank: Optional[int] = None,
) -> None:
    """:func:`construct_and_record_rdzv_event` for a known caller (its code object).

    Also what the torchrun integration calls in place of torch's function, naming
    the rendezvous' frame itself, wherever its wrapper sits in the stack.
    """
    if not hostname:
        hostname = _hostname()
    if not pid:
        pid = os.getpid()

    filename, function = _file_and_function(caller)
    if not name:
        name = function

    error_trace = ""
    if node_state == NodeState.FAILED:
        import traceback

        error_trace = traceback.format_exc()

    event = RdzvEvent(
        name=f"{filename}:{name}",
        run_id=run_id,
        message=message,
        hostname=hostname,
        pid=pid,
        node_state=node_state,
        master_endpoint=master_endpoint,
        rank=rank,
        local_id=local_id,
        error_trace=error_trace,
    )

    # Looked up as a module global so that tests can patch it, as with torch.
    record_rdzv_event(event)
