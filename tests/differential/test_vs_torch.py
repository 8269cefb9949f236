"""Differential tests: the same calls against torch 2.13.0's events module and ours.

Every test compares results computed by both in the same run; none compares
against a hard-coded copy of torch's output.
"""

import dataclasses
import functools
import inspect
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import typing
from collections.abc import Callable
from types import ModuleType
from typing import Any
from unittest.mock import MagicMock, patch

import pytest

from torchelastic_otel import events as ours

# Names torch's module gets from the standard library, not part of its API.
_STDLIB_NAMES = {"inspect", "logging", "os", "socket", "traceback", "Optional", "api", "handlers"}


def _torch_defined_names(torch_events: ModuleType) -> list[str]:
    return sorted(
        n for n in vars(torch_events) if not n.startswith("__") and n not in _STDLIB_NAMES
    )


def test_every_public_name_exists(torch_events: ModuleType) -> None:
    names = _torch_defined_names(torch_events)
    # Guard against the filter above hiding the whole API.
    assert {"Event", "RdzvEvent", "record", "construct_and_record_rdzv_event"} <= set(names)
    missing = [n for n in names if not hasattr(ours, n)]
    assert missing == []
    assert set(torch_events.handlers._log_handlers) <= set(ours.handlers._log_handlers)
    for dest, handler in torch_events.handlers._log_handlers.items():
        assert type(ours.handlers._log_handlers[dest]) is type(handler)


def test_api_module_all(torch_events: ModuleType) -> None:
    assert ours.api.__all__ == torch_events.api.__all__


@pytest.mark.parametrize(
    "name",
    [
        "get_logging_handler",
        "_get_or_create_logger",
        "record",
        "record_rdzv_event",
        "construct_and_record_rdzv_event",
    ],
)
def test_function_signatures_match(torch_events: ModuleType, name: str) -> None:
    theirs_fn = getattr(torch_events, name)
    ours_fn = getattr(ours, name)
    t_sig, o_sig = inspect.signature(theirs_fn), inspect.signature(ours_fn)
    assert [(p.name, p.kind, p.default) for p in o_sig.parameters.values()] == [
        (p.name, p.kind, p.default) for p in t_sig.parameters.values()
    ]
    t_hints = typing.get_type_hints(theirs_fn, vars(torch_events))
    o_hints = typing.get_type_hints(ours_fn, vars(ours))
    assert {k: _hint_key(v) for k, v in o_hints.items()} == {
        k: _hint_key(v) for k, v in t_hints.items()
    }


def _hint_key(hint: Any) -> Any:
    """The events classes differ by identity between the modules; compare by name."""
    if isinstance(hint, type) and hint.__module__.endswith("events.api"):
        return hint.__name__
    return hint


@pytest.mark.parametrize("cls_name", ["Event", "RdzvEvent"])
def test_dataclass_fields_match(torch_events: ModuleType, cls_name: str) -> None:
    t_cls, o_cls = getattr(torch_events, cls_name), getattr(ours, cls_name)

    def describe(cls: type, module: ModuleType) -> list[tuple[str, Any, Any]]:
        hints = typing.get_type_hints(cls, vars(module.api))
        out = []
        for f in dataclasses.fields(cls):
            factory = f.default_factory
            default = factory() if factory is not dataclasses.MISSING else f.default
            out.append((f.name, default, _hint_key(hints[f.name])))
        return out

    assert describe(o_cls, ours) == describe(t_cls, torch_events)
    assert inspect.signature(o_cls.deserialize).parameters.keys() == (
        inspect.signature(t_cls.deserialize).parameters.keys()
    )


def test_event_metadata_value_alias(torch_events: ModuleType) -> None:
    assert ours.EventMetadataValue == torch_events.EventMetadataValue


@pytest.mark.parametrize("enum_name", ["EventSource", "NodeState"])
def test_enums_match(torch_events: ModuleType, enum_name: str) -> None:
    t_enum, o_enum = getattr(torch_events, enum_name), getattr(ours, enum_name)
    assert [(m.name, m.value) for m in o_enum] == [(m.name, m.value) for m in t_enum]
    assert issubclass(o_enum, str)
    for o_member, t_member in zip(o_enum, t_enum, strict=True):
        assert json.dumps(o_member) == json.dumps(t_member)
        assert o_member == t_member  # str enums compare by value


# --- events built the same way on both sides ------------------------------------

_EVENT_KWARGS: list[dict[str, Any]] = [
    {"name": "test_event", "source": "AGENT"},
    {"name": "test_event", "source": "WORKER", "timestamp": 123, "metadata": {"k": "v"}},
    {
        "name": "torchelastic.worker.status.SUCCEEDED",
        "source": "WORKER",
        "metadata": {
            "run_id": "job-1",
            "global_rank": 3,
            "group_rank": 1,
            "worker_id": "4242",
            "role": "default",
            "hostname": "node-1.example",
            "state": "SUCCEEDED",
            "total_run_time": 12,
            "rdzv_backend": "c10d",
            "raw_error": None,
            "metadata": json.dumps({"group_world_size": 2, "local_rank": [1]}),
            "agent_restarts": 0,
            "duration_ms": 1.5,
        },
    },
    {
        "name": "ünïcödé ✓ \u2028",
        "source": "AGENT",
        "metadata": {"f": 1e300, "neg": -0.0, "b": True, "n": None, "nan": math.nan},
    },
    {"name": "nested", "source": "AGENT", "metadata": {"t": (1, 2), "l": [1, [2, {"x": 3}]]}},
    {"name": "inf", "source": "AGENT", "metadata": {"inf": math.inf, "big": 2**70}},
    {"name": 'quote"back\\slash\n', "source": "WORKER", "metadata": {"": "", "\x00": "\x7f"}},
]

_RDZV_KWARGS: list[dict[str, Any]] = [
    {
        "name": "test_name",
        "run_id": "test_run_id",
        "message": "test_message",
        "hostname": "test_hostname",
        "pid": 1,
        "node_state": "RUNNING",
        "master_endpoint": "test_master_endpoint",
        "rank": 3,
        "local_id": 4,
        "error_trace": "test_error_trace",
    },
    {"name": "n", "run_id": "", "message": "", "hostname": "h", "pid": 0, "node_state": "INIT"},
    {
        "name": "dynamic_rendezvous.py:_record",
        "run_id": "r" * 1000,
        "message": "FAILED ✗",
        "hostname": "h",
        "pid": 2**31,
        "node_state": "FAILED",
        "error_trace": "Traceback (most recent call last):\n  ...\nRuntimeError: x\n",
    },
]


def _make(module: ModuleType, cls_name: str, kwargs: dict[str, Any]) -> Any:
    kw = dict(kwargs)
    if "source" in kw:
        kw["source"] = module.EventSource[kw["source"]]
    if "node_state" in kw:
        kw["node_state"] = module.NodeState[kw["node_state"]]
    return getattr(module, cls_name)(**kw)


_CASES = [("Event", kw) for kw in _EVENT_KWARGS] + [("RdzvEvent", kw) for kw in _RDZV_KWARGS]


@pytest.mark.parametrize(("cls_name", "kwargs"), _CASES)
def test_serialize_and_str_identical(
    torch_events: ModuleType, cls_name: str, kwargs: dict[str, Any]
) -> None:
    t_event = _make(torch_events, cls_name, kwargs)
    o_event = _make(ours, cls_name, kwargs)
    assert o_event.serialize() == t_event.serialize()
    assert str(o_event) == str(t_event)
    assert repr(o_event).replace("torchelastic_otel.events.api", "X") == repr(t_event).replace(
        "torch.distributed.elastic.events.api", "X"
    )


def _fields_as_json(event: Any) -> str:
    # NaN != NaN, so compare the fields through their JSON spelling.
    return json.dumps({f.name: getattr(event, f.name) for f in dataclasses.fields(event)})


@pytest.mark.parametrize(("cls_name", "kwargs"), _CASES)
def test_cross_deserialize(torch_events: ModuleType, cls_name: str, kwargs: dict[str, Any]) -> None:
    t_event = _make(torch_events, cls_name, kwargs)
    o_event = _make(ours, cls_name, kwargs)
    t_cls, o_cls = getattr(torch_events, cls_name), getattr(ours, cls_name)

    from_torch_json = o_cls.deserialize(t_event.serialize())
    from_our_json = t_cls.deserialize(o_event.serialize())
    assert _fields_as_json(from_torch_json) == _fields_as_json(t_event)
    assert _fields_as_json(from_our_json) == _fields_as_json(o_event)
    assert _fields_as_json(o_cls.deserialize(o_event.serialize())) == _fields_as_json(
        t_cls.deserialize(t_event.serialize())
    )
    assert o_cls.deserialize(o_event) is o_event
    assert t_cls.deserialize(t_event) is t_event


# --- console output, byte for byte ----------------------------------------------

_CONSOLE_SCRIPT = textwrap.dedent(
    """
    import json, sys, importlib
    mod = importlib.import_module(sys.argv[1])
    cases = json.loads(sys.argv[2])
    for cls_name, kw in cases:
        if "source" in kw:
            kw["source"] = mod.EventSource[kw["source"]]
        if "node_state" in kw:
            kw["node_state"] = mod.NodeState[kw["node_state"]]
        event = getattr(mod, cls_name)(**kw)
        mod.record(event, "console")
        mod.record(event, "null")
        mod.get_logging_handler("console").handle(
            __import__("logging").makeLogRecord({"msg": event})
        )
    mod.record_rdzv_event(mod.RdzvEvent("n", "r", "m", "h", 1, mod.NodeState.INIT))
    """
)


def _run_console(module_name: str, loglevel: str | None) -> subprocess.CompletedProcess[bytes]:
    cases = [(c, {k: v for k, v in kw.items()}) for c, kw in _CASES]
    env = {k: v for k, v in os.environ.items() if k != "LOGLEVEL"}
    if loglevel is not None:
        env["LOGLEVEL"] = loglevel
    return subprocess.run(
        # -W ignore: importing torch warns on stderr when NumPy is absent.
        [sys.executable, "-W", "ignore", "-c", _CONSOLE_SCRIPT, module_name, json.dumps(cases)],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("loglevel", [None, "INFO", "WARNING", "DEBUG"])
def test_console_output_byte_identical(torch_events: ModuleType, loglevel: str | None) -> None:
    theirs = _run_console("torch.distributed.elastic.events", loglevel)
    mine = _run_console("torchelastic_otel.events", loglevel)
    assert theirs.returncode == 0, theirs.stderr.decode()[-2000:]
    assert mine.returncode == 0, mine.stderr.decode()[-2000:]
    assert mine.stdout == theirs.stdout == b""
    assert mine.stderr == theirs.stderr
    if loglevel != "WARNING":
        # The check above must not pass vacuously.
        assert mine.stderr.count(b"\n") >= 2 * len(_CASES)


# --- loggers --------------------------------------------------------------------


def test_loggers_per_destination_match(torch_events: ModuleType) -> None:
    for dest in ("null", "console", "dynamic_rendezvous"):
        t_logger = torch_events._get_or_create_logger(dest)
        o_logger = ours._get_or_create_logger(dest)
        # Same name, so the very same logging.Logger object.
        assert o_logger is t_logger
        assert o_logger.name == f"torchelastic-events-{dest}"
        assert o_logger.propagate is False
        assert ours._events_loggers[dest] is torch_events._events_loggers[dest]
        assert ours.get_logging_handler(dest) in o_logger.handlers


def test_unknown_destination_is_key_error_on_both(torch_events: ModuleType) -> None:
    with pytest.raises(KeyError):
        torch_events.get_logging_handler("no-such-destination")
    with pytest.raises(
        KeyError, match="known destinations: console, dynamic_rendezvous, null, otel"
    ):
        ours.get_logging_handler("no-such-destination")


# --- construct_and_record_rdzv_event --------------------------------------------


def _capture(module: ModuleType, call: Callable[[], None], handler: logging.Handler) -> Any:
    with (
        patch.object(module, "record_rdzv_event") as record_mock,
        patch.object(module, "get_logging_handler", return_value=handler),
    ):
        call()
    if not record_mock.called:
        return None
    (event,), _ = record_mock.call_args
    return event


def _same_call_site(
    torch_events: ModuleType, kwargs: dict[str, Any], handler: logging.Handler
) -> tuple[Any, Any]:
    """Call both functions from this one function, so that file and caller agree."""
    events = []
    for module in (torch_events, ours):
        kw = dict(kwargs)
        kw["node_state"] = module.NodeState[kw["node_state"]]
        fn = module.construct_and_record_rdzv_event
        events.append(_capture(module, functools.partial(fn, **kw), handler))
    return events[0], events[1]


_RDZV_CALLS: list[dict[str, Any]] = [
    {"run_id": "test_run_id", "message": "test_message", "node_state": "RUNNING"},
    {"run_id": "r", "message": "m", "node_state": "INIT", "name": "Handler.next_rendezvous"},
    {
        "run_id": "r",
        "message": "m",
        "node_state": "SUCCEEDED",
        "hostname": "given-host",
        "pid": 77,
        "master_endpoint": "127.0.0.1:29500",
        "local_id": 3,
        "rank": 5,
    },
    {"run_id": "r", "message": "m", "node_state": "RUNNING", "pid": 0},
    {"run_id": "r", "message": "m", "node_state": "FAILED"},
]


@pytest.mark.parametrize("kwargs", _RDZV_CALLS)
def test_construct_and_record_same_event(torch_events: ModuleType, kwargs: dict[str, Any]) -> None:
    t_event, o_event = _same_call_site(torch_events, kwargs, logging.StreamHandler())
    assert t_event is not None
    assert o_event is not None
    assert type(o_event).__name__ == type(t_event).__name__ == "RdzvEvent"
    assert o_event.serialize() == t_event.serialize()
    assert o_event.name == t_event.name
    assert o_event.hostname == t_event.hostname
    assert o_event.pid == t_event.pid
    assert o_event.error_trace == t_event.error_trace


def test_construct_and_record_failed_inside_except(torch_events: ModuleType) -> None:
    kwargs = {"run_id": "r", "message": "boom", "node_state": "FAILED"}
    try:
        raise RuntimeError("rendezvous broke")
    except RuntimeError:
        t_event, o_event = _same_call_site(torch_events, kwargs, logging.StreamHandler())
    assert "RuntimeError: rendezvous broke" in t_event.error_trace
    assert o_event.error_trace == t_event.error_trace
    assert o_event.serialize() == t_event.serialize()


def test_construct_and_record_name_from_direct_caller(torch_events: ModuleType) -> None:
    """Called straight from a test function: the name is '<this file>:<this function>'."""
    events = []
    for module in (torch_events, ours):
        with (
            patch.object(module, "record_rdzv_event") as record_mock,
            patch.object(module, "get_logging_handler", return_value=logging.StreamHandler()),
        ):
            module.construct_and_record_rdzv_event(
                run_id="r", message="m", node_state=module.NodeState.RUNNING
            )
        events.append(record_mock.call_args.args[0])
    assert events[0].name == "test_vs_torch.py:test_construct_and_record_name_from_direct_caller"
    assert events[1].serialize() == events[0].serialize()


def test_construct_and_record_skipped_with_null_handler(torch_events: ModuleType) -> None:
    kwargs = {"run_id": "r", "message": "m", "node_state": "RUNNING"}
    t_event, o_event = _same_call_site(torch_events, kwargs, logging.NullHandler())
    assert t_event is None
    assert o_event is None


def test_construct_and_record_default_handlers(torch_events: ModuleType) -> None:
    """Unpatched, both modules' dynamic_rendezvous handler is a NullHandler: no work."""
    for module in (torch_events, ours):
        with patch.object(module, "record_rdzv_event") as record_mock:
            module.construct_and_record_rdzv_event("r", "m", module.NodeState.RUNNING)
        record_mock.assert_not_called()


# --- torch's own lib_test, with only the import path changed ---------------------


@pytest.mark.parametrize(
    "module_name", ["torch.distributed.elastic.events", "torchelastic_otel.events"]
)
def test_torch_style_patching(torch_events: ModuleType, module_name: str) -> None:
    module = sys.modules[module_name]
    with patch(f"{module_name}.get_logging_handler") as get_mock:
        get_mock.return_value = logging.NullHandler()
        logger = module._get_or_create_logger("test_destination_" + module_name)
        assert len(logger.handlers) == 1
        assert isinstance(logger.handlers[0], logging.NullHandler)
    with (
        patch(f"{module_name}.record_rdzv_event") as record_mock,
        patch(f"{module_name}.get_logging_handler") as get_mock,
    ):
        get_mock.return_value = logging.StreamHandler()
        module.construct_and_record_rdzv_event(
            run_id="test_run_id", message="test_message", node_state=module.NodeState.RUNNING
        )
        record_mock.assert_called_once()
    with (
        patch(f"{module_name}.record_rdzv_event") as record_mock,
        patch(f"{module_name}.get_logging_handler") as get_mock,
    ):
        get_mock.return_value = logging.NullHandler()
        module.construct_and_record_rdzv_event(
            run_id="test_run_id", message="test_message", node_state=module.NodeState.RUNNING
        )
        record_mock.assert_not_called()


def test_record_goes_through_patched_logger(torch_events: ModuleType) -> None:
    """Both record() implementations log event.serialize() at INFO to the destination."""
    calls = []
    for module in (torch_events, ours):
        logger = MagicMock()
        logger.isEnabledFor.return_value = True
        with patch.object(module, "_get_or_create_logger", return_value=logger):
            event = module.Event("e", module.EventSource.AGENT, metadata={"a": 1})
            module.record(event, "console")
        calls.append(logger.info.call_args)
    assert calls[0] == calls[1]
