"""The dynamic rendezvous' events: routed to ``otel`` and made cheap.

torch's ``dynamic_rendezvous`` records an event at every step (joining, keep-alive
heartbeats, closing) through ``construct_and_record_rdzv_event`` and
``get_method_name``, which both call ``inspect.stack()``: ~0.3-1 ms per event,
growing with the stack depth. With rendezvous events on, both are wrapped to look
frames up directly and give the same names (``_record``'s caller, the file and
function), so an event costs the rendezvous about 10 µs.

Needs (gates): the module's ``construct_and_record_rdzv_event`` with torch's
parameters, and ``get_method_name``.
"""

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from torchelastic_otel.integration import _features, _wrapping

MODULE = "torch.distributed.elastic.rendezvous.dynamic_rendezvous"
WHAT = "fast rendezvous events"

_PARAMETERS = (
    "run_id",
    "message",
    "node_state",
    "name",
    "hostname",
    "pid",
    "master_endpoint",
    "local_id",
    "rank",
)


def patch(dynamic_rendezvous: ModuleType) -> None:
    """Wrap the module's two stack-walking functions (gated; idempotent)."""
    if not _features.require(
        dynamic_rendezvous, MODULE, WHAT, "construct_and_record_rdzv_event", "get_method_name"
    ):
        return
    found = tuple(inspect.signature(dynamic_rendezvous.construct_and_record_rdzv_event).parameters)
    if found != _PARAMETERS:
        _features.switched_off(WHAT, f"construct_and_record_rdzv_event{found} changed")
        return
    _wrapping.wrap(dynamic_rendezvous, "construct_and_record_rdzv_event", _construct_and_record)
    _wrapping.wrap(dynamic_rendezvous, "get_method_name", _get_method_name)


def _construct_and_record(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    from torchelastic_otel import events

    frame = _wrapping.caller_frame(1)  # this wrapper's caller: the rendezvous' _record
    events._construct_and_record(frame.f_code if frame is not None else None, *args, **kwargs)


def _get_method_name(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str:
    depth = int(args[0]) if args else int(kwargs.get("depth", 2))
    return get_method_name(depth, _skip=1)


def get_method_name(depth: int = 2, _skip: int = 0) -> str:
    """torch's ``dynamic_rendezvous.get_method_name``, by frame lookup.

    ``inspect.stack()[depth].function`` there counts its own frame as 0; this counts
    its own frame (or, through the wrapper, the wrapper's) as 0 the same way,
    without reading source files.
    """
    frame = _wrapping.caller_frame(depth + _skip)
    return frame.f_code.co_name if frame is not None else "no_method_name"
