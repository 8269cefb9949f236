"""Run a patch once a torch module is fully imported, however far its import is.

torch runs our entry point while it imports its rendezvous package, which can
happen half-way through importing the agent's module: the class to patch is not
defined yet. :func:`when_imported` calls back now if the module is there, right
after its import if it is not imported yet (a post-import hook), and on the
destination's first event if it is half-imported (a one-shot filter on torch's
event logger, which the agent passes through before it first monitors its
workers: the OTel handler's own path is not touched).
"""

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

_log = logging.getLogger("torchelastic_otel")

Patch = Callable[[ModuleType], None]

_first_event_hooks: list["_OnFirstEvent"] = []


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a callback right after one module's code has run (a post-import hook)."""

    def __init__(self, name: str, callback: Patch) -> None:
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
        remove_hooks(self.name)
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module
        callback = self.callback

        def exec_then_patch(module: ModuleType) -> None:
            exec_module(module)
            safely(callback, module)

        loader.exec_module = exec_then_patch  # type: ignore[method-assign]
        return spec


class _OnFirstEvent(logging.Filter):
    """Runs its callbacks on the first record through a logger, then leaves it."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._logger = logger
        self.callbacks: list[Callable[[], None]] = []

    def remove(self) -> None:
        """Leave the logger without running the callbacks."""
        self._logger.removeFilter(self)
        self.callbacks = []

    def filter(self, record: logging.LogRecord) -> bool:
        self._logger.removeFilter(self)
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()
        return True


def safely(callback: Patch, module: ModuleType) -> None:
    """Run a patch; a failure is one warning, never an exception in torch's import."""
    try:
        callback(module)
    except Exception as e:  # noqa: BLE001 -- never break torch's import
        _log.warning("torchelastic-otel: could not patch %s: %s", module.__name__, e)


def remove_hooks(name: str | None = None) -> None:
    """Remove pending post-import hooks (of module ``name``; all, and first-event ones,
    when ``name`` is None)."""
    for finder in [f for f in sys.meta_path if isinstance(f, _AfterImport)]:
        if name is None or finder.name == name:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(finder)
    if name is None:
        while _first_event_hooks:
            hook = _first_event_hooks.pop()
            hook.remove()


def when_imported(name: str, callback: Patch, first_event_loggers: Sequence[str] = ()) -> None:
    """Call ``callback(module)`` now if ``name`` is fully imported, else once it is.

    Args:
        name: the module.
        callback: the patch.
        first_event_loggers: loggers whose first record runs the patch when the
            module is half-imported now (we run inside its import).
    """
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    initializing = getattr(spec, "_initializing", False)
    if module is not None and not initializing:
        safely(callback, module)
        return
    if any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        return  # an earlier call's hook will run it
    if module is None:
        sys.meta_path.insert(0, _AfterImport(name, callback))
        return
    for logger_name in first_event_loggers:
        logger = logging.getLogger(logger_name)
        hook = next((f for f in logger.filters if isinstance(f, _OnFirstEvent)), None)
        if hook is None:
            hook = _OnFirstEvent(logger)
            logger.addFilter(hook)
            _first_event_hooks.append(hook)
        hook.callbacks.append(lambda: safely(callback, sys.modules[name]))
