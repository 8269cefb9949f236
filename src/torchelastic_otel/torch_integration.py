"""Plugging the ``otel`` destination into torchrun, with no change to user code.

**The hook.** torch 2.13 loads every entry point of the group ``torchrun.handlers``
when ``torch.distributed.elastic.rendezvous`` is imported, which every torchrun
agent does before it records any event; it calls the loaded object and registers
the result as a rendezvous backend under the entry point's name. This package's
entry point ``torchelastic_otel`` points at :func:`torchrun_hook`, which calls
:func:`install` and returns a backend factory that only explains itself (this is
an event destination, not a rendezvous backend). torch catches and logs anything
a plug-in raises, so a broken hook cannot stop torchrun.

:func:`install` does four things, each undone by :func:`uninstall`:

1. Registers the destination ``otel`` in torch's own events module (the same
   handler object as ours, so an event recorded through either module is exported
   once), so ``torchrun --event_log_handler otel`` works.
2. Wraps ``LocalElasticAgent._monitor_workers``: when a worker group failed and the
   agent is about to restart it, records the workers' states (``FAILED`` for the
   failed ones, ``TERMINATED`` for the ones the restart stops) to the agent's
   destination, using torch's own ``_record_worker_events``. torch 2.13 records
   worker states only at the end of the run, so without this a failure that was
   followed by a successful restart never shows. Only for the ``otel``
   destination: installed but unused, the package changes nothing.
3. With ``TORCHELASTIC_OTEL_RDZV_EVENTS=1``: routes torch's ``dynamic_rendezvous``
   destination to ``otel`` too, and replaces the rendezvous' per-event
   ``inspect.stack()`` calls (``construct_and_record_rdzv_event`` and
   ``get_method_name`` in ``dynamic_rendezvous``) by frame lookups that give the same
   names, so enabling it costs the rendezvous about 10 µs per event, not ~0.3-1 ms.
4. Under ``opentelemetry-instrument`` (``redirect_null``): torch's ``null``
   destination, the default of ``--event_log_handler``, goes to ``otel`` as well.
"""

import contextlib
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from torchelastic_otel.otel import environment_variables as ev

_log = logging.getLogger("torchelastic_otel")

# Destinations whose agents get the restart-failure events.
_CAPTURE_FOR = {"otel"}

_saved: dict[str, Any] = {}


def torch_available() -> bool:
    """Whether torch's elastic events module can be imported here."""
    try:
        import torch.distributed.elastic.events  # noqa: F401
    except ImportError:
        return False
    return True


def rdzv_events_requested() -> bool:
    """``TORCHELASTIC_OTEL_RDZV_EVENTS`` is ``1``/``true``/``yes``."""
    value = os.environ.get(ev.TORCHELASTIC_OTEL_RDZV_EVENTS, "")
    return value.strip().lower() in ("1", "true", "yes")


def install(*, rdzv_events: bool | None = None, redirect_null: bool = False) -> bool:
    """Make torch's events module and agent send to ``otel``; idempotent.

    Args:
        rdzv_events: also export the dynamic rendezvous' events (default: the
            ``TORCHELASTIC_OTEL_RDZV_EVENTS`` variable).
        redirect_null: also send torch's ``null`` destination to ``otel``.

    Returns:
        ``False`` when torch is not installed (nothing done), else ``True``.
    """
    if not torch_available():
        return False
    import torch.distributed.elastic.events.handlers as torch_handlers

    from torchelastic_otel import events as ours

    otel_handler = ours.get_logging_handler("otel")
    _set_torch_handler(torch_handlers, "otel", otel_handler)
    # torch runs our entry point while it imports its rendezvous package, which can
    # happen half-way through importing the agent: patch each module once it is
    # fully imported, never import it from here.
    when_imported(_AGENT_MODULE, _wrap_monitor_workers)
    if rdzv_events if rdzv_events is not None else rdzv_events_requested():
        _set_torch_handler(torch_handlers, "dynamic_rendezvous", otel_handler)
        _route_our_rendezvous(otel_handler)
        when_imported(_RDZV_MODULE, _patch_rendezvous)
    if redirect_null:
        _CAPTURE_FOR.add("null")
        _set_torch_handler(torch_handlers, "null", otel_handler)
    return True


def uninstall() -> None:
    """Undo :func:`install`: torch's handlers, the agent and the rendezvous as before."""
    for finder in [f for f in sys.meta_path if isinstance(f, _AfterImport)]:
        _remove_finder(finder)
    if not _saved:
        return
    import torch.distributed.elastic.events.handlers as torch_handlers

    for key, value in list(_saved.items()):
        kind, _, name = key.partition(":")
        if kind == "handler":
            _restore_torch_handler(torch_handlers, name, value)
        elif kind == "monitor":
            from torch.distributed.elastic.agent.server.local_elastic_agent import (
                LocalElasticAgent,
            )

            LocalElasticAgent._monitor_workers = value
        elif kind == "rdzv":
            from torch.distributed.elastic.rendezvous import dynamic_rendezvous

            setattr(dynamic_rendezvous, name, value)
        elif kind == "ours":
            from torchelastic_otel.events import handlers as our_handlers

            our_handlers.register_handler(name, value, replace=True)
    _saved.clear()
    _CAPTURE_FOR.intersection_update({"otel"})


def torchrun_hook() -> Callable[[Any], Any]:
    """The ``torchrun.handlers`` entry point: install, then return a backend factory.

    torch registers the returned callable as a rendezvous backend named after the
    entry point; it is not one, and says so if someone selects it.
    """
    try:
        install()
    except Exception as e:  # noqa: BLE001 -- never stop torchrun
        _log.warning("torchelastic-otel: not installed into torch: %s: %s", type(e).__name__, e)
    return _not_a_rendezvous_backend


def _not_a_rendezvous_backend(params: Any) -> Any:
    raise ValueError(
        "torchelastic_otel is an event destination, not a rendezvous backend: "
        "use --event_log_handler otel with a rendezvous backend such as c10d"
    )


def _set_torch_handler(torch_handlers: Any, name: str, handler: logging.Handler) -> None:
    current = torch_handlers._log_handlers.get(name)
    if current is handler:
        return
    _saved.setdefault(f"handler:{name}", current)
    torch_handlers._log_handlers[name] = handler
    # A logger torch already created for this destination keeps its handler
    # otherwise (torch caches loggers): point it at ours.
    logger = logging.Logger.manager.loggerDict.get(f"torchelastic-events-{name}")
    if isinstance(logger, logging.Logger):
        if current is not None and current in logger.handlers:
            logger.removeHandler(current)
        logger.addHandler(handler)


def _restore_torch_handler(torch_handlers: Any, name: str, previous: Any) -> None:
    ours = torch_handlers._log_handlers.get(name)
    if previous is None:
        torch_handlers._log_handlers.pop(name, None)
    else:
        torch_handlers._log_handlers[name] = previous
    logger = logging.Logger.manager.loggerDict.get(f"torchelastic-events-{name}")
    if isinstance(logger, logging.Logger) and ours is not None and name != "otel":
        logger.removeHandler(ours)
        if previous is not None:
            logger.addHandler(previous)


_AGENT_MODULE = "torch.distributed.elastic.agent.server.local_elastic_agent"
_RDZV_MODULE = "torch.distributed.elastic.rendezvous.dynamic_rendezvous"


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a callback right after one module's code has run (a post-import hook)."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        _remove_finder(self)
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module
        callback = self.callback

        def exec_then_patch(module: ModuleType) -> None:
            exec_module(module)
            _safely(callback, module)

        loader.exec_module = exec_then_patch  # type: ignore[method-assign]
        return spec


def _remove_finder(finder: importlib.abc.MetaPathFinder) -> None:
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(finder)


def _safely(callback: Callable[[ModuleType], None], module: ModuleType) -> None:
    try:
        callback(module)
    except Exception as e:  # noqa: BLE001 -- never break torch's import
        _log.warning("torchelastic-otel: could not patch %s: %s", module.__name__, e)


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` now if ``name`` is fully imported, else right after."""
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    initializing = getattr(spec, "_initializing", False)
    if module is not None and not initializing:
        _safely(callback, module)
        return
    if any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        return  # an earlier call's hook will run it
    if module is None:
        sys.meta_path.insert(0, _AfterImport(name, callback))
        return
    # Half-imported (we run inside its import): no finder is asked again. The agent
    # records its first event (worker START) before it first monitors its workers,
    # so patching on the first event is early enough.
    from torchelastic_otel.otel.handler import call_on_first_event

    call_on_first_event(lambda: _safely(callback, sys.modules[name]))


def _wrap_monitor_workers(module: ModuleType) -> None:
    LocalElasticAgent = module.LocalElasticAgent  # noqa: N806 -- torch's class name
    original = LocalElasticAgent._monitor_workers
    if getattr(original, "__torchelastic_otel__", False):
        return
    _saved["monitor:"] = original

    @functools.wraps(original)
    def _monitor_workers(self: Any, worker_group: Any) -> Any:
        result = original(self, worker_group)
        try:
            _record_failure_before_restart(self, worker_group, result)
        except Exception as e:  # noqa: BLE001 -- the agent must go on
            _log.debug("torchelastic-otel: restart capture failed: %s", e)
        return result

    _monitor_workers.__torchelastic_otel__ = True  # type: ignore[attr-defined]
    LocalElasticAgent._monitor_workers = _monitor_workers


def _record_failure_before_restart(agent: Any, worker_group: Any, result: Any) -> None:
    from torch.distributed.elastic.agent.server.api import WorkerState

    if result.state not in (WorkerState.UNHEALTHY, WorkerState.FAILED):
        return
    # With no restart left, torch records these states itself at the end of run().
    if agent._remaining_restarts <= 0:
        return
    if worker_group.spec.event_log_handler not in _CAPTURE_FOR:
        return
    agent._record_worker_events(result)


def _route_our_rendezvous(otel_handler: logging.Handler) -> None:
    from torchelastic_otel.events import handlers as our_handlers

    current = our_handlers.get_logging_handler("dynamic_rendezvous")
    if current is not otel_handler:
        _saved.setdefault("ours:dynamic_rendezvous", current)
        our_handlers.register_handler("dynamic_rendezvous", otel_handler, replace=True)


def _patch_rendezvous(dynamic_rendezvous: ModuleType) -> None:
    from torchelastic_otel import events as ours

    for name, fast in (
        ("construct_and_record_rdzv_event", ours.construct_and_record_rdzv_event),
        ("get_method_name", get_method_name),
    ):
        current = getattr(dynamic_rendezvous, name, None)
        if current is not fast and current is not None:
            _saved.setdefault(f"rdzv:{name}", current)
            setattr(dynamic_rendezvous, name, fast)


def get_method_name(depth: int = 2) -> str:
    """torch's ``dynamic_rendezvous.get_method_name``, by frame lookup.

    ``inspect.stack()[depth].function`` there counts this function's own frame as
    0; ``sys._getframe(depth)`` here does the same, without reading source files.
    """
    try:
        return sys._getframe(depth).f_code.co_name
    except ValueError:
        return "no_method_name"
