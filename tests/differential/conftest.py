"""The differential suite runs each call against torch 2.13.0 and against ours."""

from types import ModuleType
from typing import cast

import pytest


@pytest.fixture(scope="session")
def torch_events() -> ModuleType:
    """torch's own events module, or a visible skip when torch is not installed."""
    return cast(
        ModuleType,
        pytest.importorskip(
            "torch.distributed.elastic.events",
            reason="torch is not installed: differential tests against torch 2.13.0 skipped",
        ),
    )
