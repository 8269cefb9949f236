"""wrapt wrapping with undo, as OpenTelemetry's contrib instrumentations do it."""

import sys
from collections.abc import Callable
from typing import Any

import wrapt

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

_wrapped: list[tuple[Any, str]] = []


def wrap(owner: Any, name: str, wrapper: Wrapper) -> None:
    """Wrap ``owner.name`` with ``wrapper(wrapped, instance, args, kwargs)``, once."""
    if is_wrapped(owner, name):
        return
    wrapt.wrap_function_wrapper(owner, name, wrapper)
    _wrapped.append((owner, name))


def is_wrapped(owner: Any, name: str) -> bool:
    """Whether ``owner.name`` is a wrapper of ours."""
    return isinstance(owner.__dict__.get(name), wrapt.FunctionWrapper) or any(
        o is owner and n == name for o, n in _wrapped
    )


def unwrap_all() -> None:
    """Put every wrapped function back, newest first."""
    while _wrapped:
        owner, name = _wrapped.pop()
        current = owner.__dict__.get(name)
        if isinstance(current, wrapt.FunctionWrapper):
            setattr(owner, name, current.__wrapped__)


_WRAPT_DIR = wrapt.__file__.rsplit("/", 1)[0]


def caller_frame(depth: int) -> Any:
    """The frame ``depth`` levels above the caller, skipping wrapt's own frames.

    wrapt's C extension adds no Python frame; its pure-Python fallback does. Either
    way the rendezvous' frames are found where torch's ``inspect.stack()`` sees them.
    """
    frame: Any = sys._getframe(1)
    seen = 0
    while frame is not None:
        if not frame.f_code.co_filename.startswith(_WRAPT_DIR):
            if seen == depth:
                return frame
            seen += 1
        frame = frame.f_back
    return None
