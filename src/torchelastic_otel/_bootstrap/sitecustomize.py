"""A worker's bootstrap: count ``optimizer.step()`` as progress, then chain.

The torchrun agent puts this directory first on each worker's ``PYTHONPATH`` (as
``opentelemetry-instrument`` does with its own bootstrap), so Python runs this file
at start-up. It

1. installs torch's global optimizer step hook (see
   :func:`torchelastic_otel.progress.install_optimizer_hook`) lazily: when
   ``torch.optim.optimizer`` is imported, so a worker that never uses torch never
   imports it because of us;
2. then runs the ``sitecustomize`` this one shadows, if there is one further on
   the path (``opentelemetry-instrument``'s, a site's own), as Python would have.

Nothing here may fail the worker: every error is swallowed (the worker then just
reports no progress, and the agent sees no stall for it).
"""

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_TARGET = "torch.optim.optimizer"
_HERE = os.path.dirname(os.path.abspath(__file__))


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs the hook's installation right after ``torch.optim.optimizer`` executed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET:
            return None
        try:
            sys.meta_path.remove(self)  # once; and not asked again by the search below
            spec = importlib.util.find_spec(fullname)
        except Exception:  # noqa: BLE001 -- let the normal import report it
            return None
        loader = getattr(spec, "loader", None)
        exec_module = getattr(loader, "exec_module", None)
        if spec is None or exec_module is None:
            return spec

        def exec_then_install(module: ModuleType) -> None:
            exec_module(module)
            _install()

        try:
            loader.exec_module = exec_then_install  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 -- a loader we cannot wrap: no hook
            return spec
        return spec


def _install() -> None:
    try:
        from torchelastic_otel import progress

        progress.install_optimizer_hook()
    except Exception:  # noqa: BLE001, S110 -- the worker runs on without progress reports
        pass


def _start() -> None:
    if not os.environ.get("TORCHELASTIC_OTEL_PROGRESS_FILE"):
        return  # not a worker of an agent exporting to otel
    if _TARGET in sys.modules:
        _install()
    else:
        sys.meta_path.insert(0, _AfterImport())


def _chain() -> None:
    """Run the next ``sitecustomize`` on the path, which this file shadows."""
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    mine: Any = sys.modules.get("sitecustomize")
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        # Python reports a failing sitecustomize and goes on; so do we.
        if mine is not None:
            sys.modules["sitecustomize"] = mine
        raise


with contextlib.suppress(Exception):  # never fail the worker's start-up
    _start()
_chain()
