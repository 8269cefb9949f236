"""Point torch's event destinations (and ours) at the ``otel`` handler, and back.

torch's ``events/handlers.py`` keeps its destinations in one dict,
``_log_handlers``; torch caches one logger per destination, so a logger it already
created is switched over too. Every swap is remembered and undone in reverse.
"""

import logging
from dataclasses import dataclass
from types import ModuleType


@dataclass
class _Swap:
    registry: str  # "torch" or "ours"
    name: str
    previous: logging.Handler | None


_swaps: list[_Swap] = []


def route_torch(torch_handlers: ModuleType, name: str, handler: logging.Handler) -> None:
    """Make torch's destination ``name`` use ``handler`` (a no-op if it already does)."""
    registry: dict[str, logging.Handler] = torch_handlers._log_handlers
    current = registry.get(name)
    if current is handler:
        return
    _swaps.append(_Swap("torch", name, current))
    registry[name] = handler
    _rebind(name, current, handler)


def route_ours(name: str, handler: logging.Handler) -> None:
    """Make our events module's destination ``name`` use ``handler``."""
    from torchelastic_otel.events import handlers as our_handlers

    current = our_handlers.get_logging_handler(name)
    if current is not handler:
        _swaps.append(_Swap("ours", name, current))
        our_handlers.register_handler(name, handler, replace=True)


def restore_all() -> None:
    """Undo every swap, newest first."""
    while _swaps:
        swap = _swaps.pop()
        if swap.registry == "ours":
            from torchelastic_otel.events import handlers as our_handlers

            if swap.previous is not None:
                our_handlers.register_handler(swap.name, swap.previous, replace=True)
            continue
        import torch.distributed.elastic.events.handlers as torch_handlers

        registry: dict[str, logging.Handler] = torch_handlers._log_handlers
        ours = registry.get(swap.name)
        if swap.previous is None:
            registry.pop(swap.name, None)
        else:
            registry[swap.name] = swap.previous
        # The `otel` logger is shared with our own events module, which keeps using it.
        if swap.name != "otel" and ours is not None:
            _rebind(swap.name, ours, swap.previous)


def routed() -> set[str]:
    """The torch destinations currently routed to ``otel``."""
    return {s.name for s in _swaps if s.registry == "torch"}


def _rebind(name: str, old: logging.Handler | None, new: logging.Handler | None) -> None:
    logger = logging.Logger.manager.loggerDict.get(f"torchelastic-events-{name}")
    if not isinstance(logger, logging.Logger):
        return
    if old is not None and old in logger.handlers:
        logger.removeHandler(old)
    if new is not None:
        logger.addHandler(new)
