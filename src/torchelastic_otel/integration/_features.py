"""Feature gates: each patch of torch internals checks the features it needs.

torch's elastic internals change between releases; a patch asks for what it uses
(a method, an attribute, a signature), not for a version string. When a gate
fails, the patch is switched off with one warning that names the torch version
and what is off, and everything else keeps working.
"""

import logging
import threading

_log = logging.getLogger("torchelastic_otel")
_warned: set[str] = set()
_lock = threading.Lock()


def torch_version() -> str:
    """The installed torch's version, or ``unknown``."""
    try:
        from importlib.metadata import version

        return version("torch")
    except Exception:  # noqa: BLE001 -- only used in a message
        return "unknown"


def missing(owner: object, *names: str) -> list[str]:
    """The names among ``names`` that ``owner`` does not have (callables or attributes)."""
    return [name for name in names if not hasattr(owner, name)]


def require(owner: object, label: str, what: str, *names: str) -> bool:
    """Whether ``owner`` has every one of ``names``; if not, switch ``what`` off.

    ``label`` names ``owner`` in the warning: ``"<label> has no <names>"``.

    Example::

        if require(module, "torch.distributed.launcher.api", WHAT, "launch_agent"):
            _wrapping.wrap(module, "launch_agent", _launch_agent)
    """
    absent = missing(owner, *names)
    if absent:
        switched_off(what, f"{label} has no {', '.join(absent)}")
    return not absent


def switched_off(what: str, why: str) -> None:
    """Warn once: ``what`` is off on this torch, because ``why``."""
    with _lock:
        if what in _warned:
            return
        _warned.add(what)
    _log.warning(
        "torchelastic-otel: %s is switched off on torch %s: %s; everything else works",
        what,
        torch_version(),
        why,
    )
