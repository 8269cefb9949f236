"""Event destinations: one ``logging.Handler`` per destination name.

Mirrors ``torch.distributed.elastic.events.handlers``: ``_log_handlers`` is the
same dict with the same three built-in destinations, created the same way, so
``console`` writes to the ``sys.stderr`` of import time exactly as torch does.

On top of torch's fixed dict this module adds a registry: ``register_handler``
takes a handler or a zero-argument factory. A factory runs on the first
``get_logging_handler(destination)`` call, so registering a destination whose
handler is expensive to build costs nothing until it is used. (The package root
registers ``otel`` this way; this package itself knows nothing of OpenTelemetry.)

Example::

    >>> import logging
    >>> from torchelastic_otel.events import handlers
    >>> handlers.register_handler("mine", lambda: logging.NullHandler())
    >>> isinstance(handlers.get_logging_handler("mine"), logging.NullHandler)
    True
"""

import logging
import threading
from collections.abc import Callable

__all__ = [
    "UnknownDestinationError",
    "get_logging_handler",
    "known_destinations",
    "register_handler",
]

_log_handlers: dict[str, logging.Handler] = {
    "console": logging.StreamHandler(),
    "dynamic_rendezvous": logging.NullHandler(),
    "null": logging.NullHandler(),
}

HandlerFactory = Callable[[], logging.Handler]

# Destinations registered with a factory and not created yet.
_handler_factories: dict[str, HandlerFactory] = {}
_create_lock = threading.Lock()


class UnknownDestinationError(KeyError):
    """Raised for a destination that is neither built in nor registered.

    A ``KeyError`` subclass, because torch raises ``KeyError`` there and callers
    written for torch catch that.
    """

    def __init__(self, destination: str, known: list[str]) -> None:
        super().__init__(destination)
        self.destination = destination
        self.known = known

    def __str__(self) -> str:
        return (
            f"unknown event destination {self.destination!r}; "
            f"known destinations: {', '.join(self.known)}"
        )


def known_destinations() -> list[str]:
    """Return the names of all destinations, created or registered, sorted."""
    return sorted({*_log_handlers, *_handler_factories})


def get_logging_handler(destination: str = "null") -> logging.Handler:
    """Return the handler of ``destination``, creating a registered one on first use.

    Args:
        destination: ``null``, ``console``, ``dynamic_rendezvous`` or a name given
            to :func:`register_handler`.

    Raises:
        UnknownDestinationError: no such destination (a ``KeyError``).
    """
    try:
        return _log_handlers[destination]
    except KeyError:
        return _create_registered(destination)


def _create_registered(destination: str) -> logging.Handler:
    with _create_lock:
        if destination in _log_handlers:  # another thread created it meanwhile
            return _log_handlers[destination]
        factory = _handler_factories.get(destination)
        if factory is None:
            raise UnknownDestinationError(destination, known_destinations())
        handler = factory()
        if not isinstance(handler, logging.Handler):
            raise TypeError(
                f"factory for event destination {destination!r} returned "
                f"{type(handler).__name__}, not a logging.Handler"
            )
        _log_handlers[destination] = handler
        del _handler_factories[destination]
        return handler


def register_handler(
    destination: str,
    handler: logging.Handler | HandlerFactory,
    *,
    replace: bool = False,
) -> None:
    """Add the event destination ``destination``.

    Args:
        destination: the name passed to ``record(event, destination)`` and to
            torchrun's ``--event_log_handler``.
        handler: a ``logging.Handler``, or a zero-argument callable returning one;
            a callable is called on the destination's first use.
        replace: allow replacing an existing destination. Its logger, if already
            created (by this module or by torch's, which share logger names), is
            switched over to the new handler.

    Raises:
        ValueError: ``destination`` exists and ``replace`` is false, or is empty.
        TypeError: ``handler`` is neither a handler nor callable.
    """
    if not isinstance(destination, str) or not destination:
        raise ValueError(f"destination must be a non-empty str, got {destination!r}")
    if not isinstance(handler, logging.Handler) and not callable(handler):
        raise TypeError(
            f"handler must be a logging.Handler or a callable, got {type(handler).__name__}"
        )
    with _create_lock:
        exists = destination in _log_handlers or destination in _handler_factories
        if exists and not replace:
            raise ValueError(f"event destination {destination!r} already exists; pass replace=True")
        old = _log_handlers.pop(destination, None)
        _handler_factories.pop(destination, None)
        if isinstance(handler, logging.Handler):
            _log_handlers[destination] = handler
        else:
            _handler_factories[destination] = handler
    if old is not None:
        _rebind_logger(destination, old)


def _rebind_logger(destination: str, old: logging.Handler) -> None:
    """Point an existing ``torchelastic-events-<destination>`` logger at the new handler."""
    name = f"torchelastic-events-{destination}"
    if name not in logging.Logger.manager.loggerDict:
        return
    logger = logging.getLogger(name)
    if old in logger.handlers:
        logger.removeHandler(old)
        logger.addHandler(get_logging_handler(destination))
