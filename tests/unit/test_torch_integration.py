"""The torch integration in one process: hook, exactly-once, restart capture, rdzv patch,
feature gates."""

import inspect
import logging
import sys
import textwrap
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import pytest

from tests.support.memory import Memory, memory_pipeline
from tests.support.process import run_python
from torchelastic_otel import events as ours
from torchelastic_otel import integration
from torchelastic_otel.integration import _features, _imports, _wrapping, agent, hook, rendezvous

torch_events: ModuleType = pytest.importorskip(
    "torch.distributed.elastic.events",
    reason="torch is not installed: torch integration tests skipped",
)


@pytest.fixture
def installed() -> Iterator[None]:
    assert integration.install()
    yield
    integration.uninstall()


@pytest.fixture
def mem() -> Iterator[Memory]:
    with memory_pipeline() as m:
        yield m


def test_entry_point_registers_otel_in_torch() -> None:
    """A fresh interpreter: importing torch's rendezvous package runs our hook."""
    code = textwrap.dedent(
        """
        import warnings; warnings.filterwarnings("ignore")
        import torch.distributed.elastic.rendezvous
        import torch.distributed.elastic.events.handlers as h
        from torchelastic_otel import events
        print(type(h._log_handlers["otel"]).__name__,
              h._log_handlers["otel"] is events.get_logging_handler("otel"),
              type(h._log_handlers["null"]).__name__,
              type(h._log_handlers["dynamic_rendezvous"]).__name__)
        """
    )
    out = run_python(code, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["OtelHandler", "True", "NullHandler", "NullHandler"]


def test_hook_returns_a_backend_that_explains_itself(installed: None) -> None:
    factory = hook.torchrun_hook()
    with pytest.raises(ValueError, match="--event_log_handler otel"):
        factory(object())


def test_event_through_either_module_is_exported_once(installed: None, mem: Memory) -> None:
    torch_events.record(
        torch_events.Event("from-torch", torch_events.EventSource.AGENT, metadata={"run_id": "x"}),
        "otel",
    )
    ours.record(ours.Event("from-ours", ours.EventSource.AGENT, metadata={"run_id": "x"}), "otel")
    torch_events.record(torch_events.Event("again", torch_events.EventSource.AGENT), "otel")
    names = [r.log_record.event_name for r in mem.log_records()]
    assert names == ["from-torch", "from-ours", "again"]
    logger = logging.getLogger("torchelastic-events-otel")
    handlers = [h for h in logger.handlers if type(h).__name__ == "OtelHandler"]
    assert len(handlers) == 1


def test_install_is_idempotent_and_uninstall_restores(mem: Memory) -> None:
    import torch.distributed.elastic.events.handlers as torch_handlers
    from torch.distributed.elastic.agent.server.local_elastic_agent import LocalElasticAgent

    integration.uninstall()  # whatever the entry point did at import
    before = dict(torch_handlers._log_handlers)
    monitor = LocalElasticAgent.__dict__["_monitor_workers"]
    assert integration.install(rdzv_events=True)
    assert integration.install(rdzv_events=True)
    assert _wrapping.is_wrapped(LocalElasticAgent, "_monitor_workers")
    assert LocalElasticAgent.__dict__["_monitor_workers"].__wrapped__ is monitor  # wrapped once
    assert torch_handlers._log_handlers["dynamic_rendezvous"] is ours.get_logging_handler("otel")
    integration.uninstall()
    assert torch_handlers._log_handlers == before
    assert LocalElasticAgent.__dict__["_monitor_workers"] is monitor
    assert isinstance(ours.get_logging_handler("dynamic_rendezvous"), logging.NullHandler)


def test_unused_install_changes_no_torch_destination(installed: None) -> None:
    import torch.distributed.elastic.events.handlers as torch_handlers

    assert isinstance(torch_handlers._log_handlers["null"], logging.NullHandler)
    assert isinstance(torch_handlers._log_handlers["dynamic_rendezvous"], logging.NullHandler)
    assert isinstance(torch_handlers._log_handlers["console"], logging.StreamHandler)


def _fake_agent(destination: str, remaining: int) -> Any:
    return SimpleNamespace(
        _remaining_restarts=remaining,
        _record_worker_events=MagicMock(),
        _worker_group=SimpleNamespace(spec=SimpleNamespace(event_log_handler=destination)),
    )


@pytest.mark.parametrize(
    ("destination", "state", "remaining", "recorded"),
    [
        ("otel", "FAILED", 1, True),
        ("otel", "UNHEALTHY", 2, True),
        ("otel", "FAILED", 0, False),  # torch records the final states itself
        ("otel", "HEALTHY", 1, False),
        ("otel", "SUCCEEDED", 1, False),
        ("null", "FAILED", 1, False),  # installed but unused: nothing changes
        ("console", "FAILED", 1, False),
    ],
)
def test_restart_capture(destination: str, state: str, remaining: int, recorded: bool) -> None:
    from torch.distributed.elastic.agent.server.api import RunResult, WorkerState

    fake = _fake_agent(destination, remaining)
    result = RunResult(state=WorkerState[state])
    assert agent.record_failure_before_restart(fake, fake._worker_group, result)
    assert fake._record_worker_events.called is recorded
    if recorded:
        fake._record_worker_events.assert_called_once_with(result)


@pytest.mark.parametrize(("value", "bridged"), [(None, True), ("false", False), ("0", False)])
def test_torch_metrics_bridge_follows_its_switch(
    installed: None, mem: Memory, monkeypatch: pytest.MonkeyPatch, value: str | None, bridged: bool
) -> None:
    from torch.distributed.elastic.events import Event, EventSource

    from torchelastic_otel.integration import metrics

    if value is None:
        monkeypatch.delenv("TORCHELASTIC_OTEL_TORCH_METRICS", raising=False)
    else:
        monkeypatch.setenv("TORCHELASTIC_OTEL_TORCH_METRICS", value)
    bridge = MagicMock()
    monkeypatch.setattr(metrics, "bridge", bridge)
    fake = _fake_agent("otel", 1)
    fake._construct_event = lambda state, source: Event(
        "x", EventSource.AGENT, metadata={"run_id": "r", "state": state}
    )
    agent.record_rendezvous_start(fake, fake._worker_group)
    assert bridge.called is bridged
    assert mem.log_records()  # the rendezvous start is recorded either way


def test_get_method_name_matches_torch() -> None:
    from torch.distributed.elastic.rendezvous import dynamic_rendezvous

    torch_fn = inspect.getattr_static(dynamic_rendezvous, "get_method_name")
    torch_fn = getattr(torch_fn, "__wrapped__", torch_fn)  # torch's own, if ours is on

    def _record(fn: Any) -> str:
        return str(fn())

    def next_rendezvous(fn: Any) -> str:
        return _record(fn)

    for depth in (1, 2, 3):
        assert rendezvous.get_method_name(depth) == torch_fn(depth)
    assert next_rendezvous(rendezvous.get_method_name) == "next_rendezvous"
    assert next_rendezvous(torch_fn) == "next_rendezvous"
    assert rendezvous.get_method_name(10_000) == torch_fn(10_000) == "no_method_name"


def test_rdzv_events_patch_the_rendezvous_module(mem: Memory) -> None:
    from torch.distributed.elastic.rendezvous import dynamic_rendezvous

    integration.uninstall()
    original = dynamic_rendezvous.construct_and_record_rdzv_event
    torch_get_method_name = dynamic_rendezvous.get_method_name
    assert integration.install(rdzv_events=True)
    try:
        assert _wrapping.is_wrapped(dynamic_rendezvous, "construct_and_record_rdzv_event")

        class DynamicRendezvousHandler:  # the shape of torch's caller: _record in a method
            def next_rendezvous(self) -> None:
                self._record("m")

            def _record(self, message: str) -> None:
                dynamic_rendezvous.construct_and_record_rdzv_event(
                    name=f"{type(self).__name__}.{dynamic_rendezvous.get_method_name()}",
                    run_id="r",
                    message=message,
                    node_state=dynamic_rendezvous.NodeState.RUNNING,
                    rank=0,
                )

        DynamicRendezvousHandler().next_rendezvous()
        (record,) = mem.log_records()
        # The same name torch's inspect.stack() gives: file of _record, method calling it.
        assert record.log_record.event_name == (
            "test_torch_integration.py:DynamicRendezvousHandler.next_rendezvous"
        )
    finally:
        integration.uninstall()
    assert dynamic_rendezvous.construct_and_record_rdzv_event is original
    assert dynamic_rendezvous.get_method_name is torch_get_method_name


def test_a_failed_gate_switches_one_patch_off_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A torch without what a patch needs: one warning naming the version; nothing raised."""
    old_torch_module = ModuleType("dynamic_rendezvous")  # no get_method_name
    old_torch_module.construct_and_record_rdzv_event = lambda *a, **k: None  # type: ignore[attr-defined]
    _features._warned.discard(rendezvous.WHAT)
    with caplog.at_level(logging.WARNING, logger="torchelastic_otel"):
        rendezvous.patch(old_torch_module)
        rendezvous.patch(old_torch_module)
    (warning,) = [r.getMessage() for r in caplog.records]
    version = _features.torch_version()
    assert warning.startswith(
        f"torchelastic-otel: fast rendezvous events is switched off on torch {version}"
    )
    assert "get_method_name" in warning
    assert not _wrapping.is_wrapped(old_torch_module, "construct_and_record_rdzv_event")

    agent_module = ModuleType("local_elastic_agent")
    agent_module.LocalElasticAgent = type("LocalElasticAgent", (), {})  # type: ignore[attr-defined]
    _features._warned.discard(agent.WHAT)
    with caplog.at_level(logging.WARNING, logger="torchelastic_otel"):
        caplog.clear()
        agent.patch(agent_module)
    assert "_monitor_workers, _record_worker_events" in caplog.text


def test_a_half_imported_module_is_patched_on_the_first_event() -> None:
    """The entry point runs inside the agent module's import: patch on the first event."""
    name = "tests_fake_half_imported"
    module = ModuleType(name)
    module.__spec__ = SimpleNamespace(_initializing=True)  # type: ignore[assignment]
    sys.modules[name] = module
    seen: list[str] = []
    try:
        _imports.when_imported(name, lambda m: seen.append(m.__name__), ["tests-first-event"])
        logger = logging.getLogger("tests-first-event")
        assert seen == []
        logger.warning("first")
        logger.warning("second")
        assert seen == [name]
        assert not logger.filters  # gone after the first event
    finally:
        del sys.modules[name]


def test_when_imported_runs_after_a_later_import(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    name = "json.tool"
    monkeypatch.delitem(sys.modules, name, raising=False)
    _imports.when_imported(name, lambda m: seen.append(m.__name__))
    assert seen == []
    import json.tool  # noqa: F401

    assert seen == ["json.tool"]
    _imports.when_imported(name, lambda m: seen.append("now"))
    assert seen == ["json.tool", "now"]
