"""A mistyped ``--event_log_handler`` fails at once, in one line.

torch looks a destination up only when the agent records its first event: after
the rendezvous, with a ``KeyError`` traceback of some 60 lines, raised twice.
``torch.distributed.launcher.api.launch_agent`` is wrapped: before anything else,
the configured destination is looked up in torch's events module (where every
plug-in has registered its destinations by then), and an unknown one ends
torchrun with one line naming the known ones (exit code 2, as argparse does for a
bad argument).

Needs (gates): ``launch_agent``, and ``LaunchConfig.event_log_handler`` (torch 2.8
and later).
"""

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from torchelastic_otel.integration import _features, _wrapping

MODULE = "torch.distributed.launcher.api"
WHAT = "checking --event_log_handler before the rendezvous"
EXIT_USAGE = 2


def patch(module: ModuleType) -> None:
    """Wrap ``launch_agent`` (gated; idempotent)."""
    if _features.require(module, MODULE, WHAT, "launch_agent"):
        _wrapping.wrap(module, "launch_agent", _launch_agent)


def _launch_agent(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    config = kwargs.get("config", args[0] if args else None)
    destination = getattr(config, "event_log_handler", None)
    if isinstance(destination, str):
        unknown = _unknown(destination)
        if unknown:
            print(unknown, file=sys.stderr, flush=True)
            raise SystemExit(EXIT_USAGE)
    return wrapped(*args, **kwargs)


def _unknown(destination: str) -> str:
    """The one line for an unknown destination ('' when it is known)."""
    try:
        import torch.distributed.elastic.events.handlers as torch_handlers

        known = sorted(torch_handlers._log_handlers)
    except Exception:  # noqa: BLE001 -- cannot tell: let torch decide
        return ""
    if destination in known:
        return ""
    return (
        f"torchrun: error: --event_log_handler {destination!r} is not a known event "
        f"destination; known: {', '.join(known)}"
    )
