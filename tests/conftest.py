"""Shared fixtures.

``TORCHELASTIC_OTEL_BLOCK_TORCH=1`` makes ``import torch`` fail for the whole run,
so that ``make test`` can prove the suite passes on a machine without torch.
"""

import importlib.abc
import importlib.machinery
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.collector import RealCollector


class _BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "torch" or fullname.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked)", name=fullname)
        return None


if os.environ.get("TORCHELASTIC_OTEL_BLOCK_TORCH") == "1":
    sys.meta_path.insert(0, _BlockTorch())


def _own_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The logger's handlers, less the capture handlers pytest attaches per phase."""
    return [h for h in logger.handlers if not type(h).__module__.startswith("_pytest")]


@pytest.fixture(autouse=True)
def clean_events_state() -> Iterator[None]:
    """Undo what a test did to our events module's registry and loggers."""
    from torchelastic_otel import events
    from torchelastic_otel.events import handlers

    loggers = dict(events._events_loggers)
    log_handlers = dict(handlers._log_handlers)
    factories = dict(handlers._handler_factories)
    attached = {
        name: _own_handlers(logging.getLogger(name))
        for name in logging.Logger.manager.loggerDict
        if name.startswith("torchelastic-events-")
    }
    warned = set(events._warned)
    yield
    events._events_loggers.clear()
    events._events_loggers.update(loggers)
    handlers._log_handlers.clear()
    handlers._log_handlers.update(log_handlers)
    handlers._handler_factories.clear()
    handlers._handler_factories.update(factories)
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("torchelastic-events-"):
            logger = logging.getLogger(name)
            logger.handlers[:] = [
                h for h in logger.handlers if h not in _own_handlers(logger)
            ] + attached.get(name, [])
    events._warned.clear()
    events._warned.update(warned)


@pytest.fixture(autouse=True)
def fresh_settings_warnings() -> Iterator[None]:
    """Each test sees the settings' once-per-process warnings afresh."""
    from torchelastic_otel.otel import settings

    settings._warned.clear()
    yield
    settings._warned.clear()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator["RealCollector"]:
    """Our collector build with ``config.yaml``, in front of local backends (one per module).

    Imported here, not at the top: the no-torch unit run never starts it.
    """
    from tests.support.collector import real_collector

    with real_collector(Path(tmp_path_factory.mktemp("otelcol"))) as running:
        yield running
