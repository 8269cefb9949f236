"""Our events module on its own: bad input, the registry, and what torch does not do."""

import dataclasses
import json
import logging
import math
import os
import sys
import threading
from enum import IntEnum
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest

from tests.support.process import run_python
from torchelastic_otel import events
from torchelastic_otel.events import (
    Event,
    EventSource,
    NodeState,
    RdzvEvent,
    UnknownDestinationError,
    handlers,
)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# --- serialize never raises -------------------------------------------------------


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _cyclic() -> dict[str, Any]:
    d: dict[str, Any] = {}
    d["self"] = d
    return d


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Path("/tmp/x"), repr(Path("/tmp/x"))),
        (b"bytes", repr(b"bytes")),
        ({1, 2}, repr({1, 2})),
        (_BadRepr(), "<unrepresentable _BadRepr>"),
        ([1, object], [1, repr(object)]),
        ({"inner": Path("p")}, {"inner": repr(Path("p"))}),
    ],
)
def test_serialize_falls_back_to_repr(value: Any, expected: Any) -> None:
    event = Event("e", EventSource.AGENT, metadata={"v": value, "ok": 1})
    decoded = json.loads(event.serialize())
    assert decoded["metadata"] == {"v": expected, "ok": 1}
    assert decoded["name"] == "e"
    assert decoded["source"] == "AGENT"


def test_serialize_lock_and_cycle_and_odd_keys() -> None:
    lock = threading.Lock()
    event = Event("e", EventSource.AGENT, metadata={"lock": lock, "cyc": _cyclic()})  # type: ignore[dict-item]
    decoded = json.loads(event.serialize())
    assert decoded["metadata"]["lock"] == repr(lock)
    # The cycle is cut at a bounded depth instead of recursing forever.
    assert "self" in decoded["metadata"]["cyc"]
    odd = Event("e", EventSource.AGENT, metadata={(1, 2): "tuple key"})  # type: ignore[dict-item]
    assert json.loads(odd.serialize())["metadata"] == {"(1, 2)": "tuple key"}


def test_rdzv_serialize_with_unserializable_field() -> None:
    event = RdzvEvent("n", "r", "m", "h", 1, NodeState.INIT, master_endpoint=Path("x"))  # type: ignore[arg-type]
    assert json.loads(event.serialize())["master_endpoint"] == repr(Path("x"))


class _Str(str):
    def __str__(self) -> str:
        return "not what JSON writes"


class _Port(IntEnum):
    HTTP = 80


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "",
        'quote " backslash \\ newline \n tab \t é ✗ 😀',
        "\ud800 lone surrogate",
        _Str("str subclass"),
        NodeState.FAILED,
        0,
        -1,
        2**80,
        True,
        False,
        None,
        1.5,
        math.nan,
        math.inf,
        _Port.HTTP,
    ],
    ids=repr,
)
@pytest.mark.parametrize("field", ["name", "hostname", "pid", "node_state", "rank", "error_trace"])
def test_rdzv_serialize_is_json_dumps_of_asdict(field: str, value: Any) -> None:
    """torch's serialize() is json.dumps(asdict(self)); ours writes flat events directly."""
    kwargs: dict[str, Any] = {
        "name": "n",
        "run_id": "r",
        "message": "m",
        "hostname": "h",
        "pid": 1,
        "node_state": NodeState.RUNNING,
        "rank": 3,
        field: value,
    }
    event = RdzvEvent(**kwargs)
    assert event.serialize() == json.dumps(dataclasses.asdict(event))


# --- deserialize validates --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"name": 1, "source": "AGENT"}', "name"),
        ('{"name": "n", "source": "NOPE"}', "source"),
        ('{"name": "n", "source": null}', "source"),
        ('{"name": "n", "source": ["AGENT"]}', "source"),
        ('{"name": "n", "source": "AGENT", "timestamp": "0"}', "timestamp"),
        ('{"name": "n", "source": "AGENT", "timestamp": true}', "timestamp"),
        ('{"name": "n", "source": "AGENT", "metadata": []}', "metadata"),
        ('{"source": "AGENT"}', "name"),
        ('{"name": "n"}', "source"),
        ('{"name": "n", "source": "AGENT", "extra": 1}', "extra"),
    ],
)
def test_event_deserialize_names_bad_field(text: str, field: str) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        Event.deserialize(text)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"pid": "1"}, "pid"),
        ({"pid": 1.5}, "pid"),
        ({"pid": None}, "pid"),
        ({"node_state": "DONE"}, "node_state"),
        ({"rank": "0"}, "rank"),
        ({"local_id": 1.0}, "local_id"),
        ({"hostname": None}, "hostname"),
        ({"error_trace": 3}, "error_trace"),
        ({"master_endpoint": False}, "master_endpoint"),
        ({"run_id": []}, "run_id"),
    ],
)
def test_rdzv_deserialize_names_bad_field(change: dict[str, Any], field: str) -> None:
    good = json.loads(RdzvEvent("n", "r", "m", "h", 1, NodeState.INIT).serialize())
    good.update(change)
    with pytest.raises(ValueError, match=f"'{field}'"):
        RdzvEvent.deserialize(json.dumps(good))


def test_rdzv_deserialize_missing_field() -> None:
    good = json.loads(RdzvEvent("n", "r", "m", "h", 1, NodeState.INIT).serialize())
    del good["pid"]
    with pytest.raises(ValueError, match="missing field 'pid'"):
        RdzvEvent.deserialize(json.dumps(good))


@pytest.mark.parametrize("text", ["", "{", "not json", '{"name": "n",}', "[]", "1", "null"])
def test_deserialize_malformed_json(text: str) -> None:
    with pytest.raises(ValueError, match="Event"):
        Event.deserialize(text)
    with pytest.raises(ValueError, match="RdzvEvent"):
        RdzvEvent.deserialize(text)


def test_deserialize_wrong_input_type() -> None:
    with pytest.raises(TypeError, match="JSON str"):
        Event.deserialize(b"{}")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JSON str"):
        RdzvEvent.deserialize({"name": "n"})  # type: ignore[arg-type]


def test_deserialize_accepts_what_torch_writes() -> None:
    event = Event("e", EventSource.WORKER, timestamp=5, metadata={"t": (1, 2), "f": math.inf})  # type: ignore[dict-item]
    back = Event.deserialize(event.serialize())
    assert back.source is EventSource.WORKER
    assert back.metadata == {"t": [1, 2], "f": math.inf}
    rdzv = RdzvEvent("n", "r", "m", "h", 1, NodeState.FAILED, rank=None, local_id=2)
    assert RdzvEvent.deserialize(rdzv.serialize()) == rdzv


# --- record never raises ------------------------------------------------------------


def test_record_unknown_destination_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    event = Event("e", EventSource.AGENT)
    with caplog.at_level(logging.WARNING, logger="torchelastic_otel"):
        events.record(event, "no-such-destination")
        events.record(event, "no-such-destination")
    warnings = [r for r in caplog.records if r.name == "torchelastic_otel"]
    assert len(warnings) == 1
    assert "no-such-destination" in warnings[0].getMessage()
    assert "known destinations: console" in warnings[0].getMessage()


def test_record_unserializable_metadata_reaches_handler() -> None:
    sink = ListHandler()
    handlers.register_handler("sink", sink)
    events.record(Event("e", EventSource.AGENT, metadata={"p": Path("x")}), "sink")  # type: ignore[dict-item]
    assert len(sink.records) == 1
    assert json.loads(sink.records[0].getMessage())["metadata"]["p"] == repr(Path("x"))


def test_record_survives_broken_event(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Event):
        def serialize(self) -> str:
            raise RuntimeError("broken serialize")

    handlers.register_handler("sink", ListHandler())
    with caplog.at_level(logging.WARNING, logger="torchelastic_otel"):
        events.record(Broken("e", EventSource.AGENT), "sink")
    assert "broken serialize" in caplog.text


def test_record_rdzv_event_goes_to_dynamic_rendezvous() -> None:
    sink = ListHandler()
    handlers.register_handler("dynamic_rendezvous", sink, replace=True)
    event = RdzvEvent("n", "r", "m", "h", 1, NodeState.INIT)
    events.record_rdzv_event(event)
    assert [r.getMessage() for r in sink.records] == [event.serialize()]
    assert sink.records[0].name == "torchelastic-events-dynamic_rendezvous"
    assert sink.records[0].levelno == logging.INFO


def test_record_passes_objects_to_event_aware_handlers() -> None:
    class ObjectHandler(ListHandler):
        accepts_events = True

    sink = ObjectHandler()
    handlers.register_handler("objects", sink)
    event = Event("e", EventSource.AGENT)
    events.record(event, "objects")
    assert sink.records[0].msg is event
    # Anything formatting the record still sees torch's JSON text.
    assert sink.records[0].getMessage() == event.serialize()


def test_invalid_loglevel_falls_back_to_info(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LOGLEVEL", "LOUD")
    sink = ListHandler()
    handlers.register_handler("lvl", sink)
    with caplog.at_level(logging.WARNING, logger="torchelastic_otel"):
        events.record(Event("e", EventSource.AGENT), "lvl")
    assert len(sink.records) == 1
    assert "LOGLEVEL='LOUD'" in caplog.text


@pytest.mark.parametrize(("value", "level"), [("debug", logging.DEBUG), ("30", 30)])
def test_loglevel_spellings(monkeypatch: pytest.MonkeyPatch, value: str, level: int) -> None:
    monkeypatch.setenv("LOGLEVEL", value)
    handlers.register_handler(f"lvl-{value}", ListHandler())
    assert events._get_or_create_logger(f"lvl-{value}").level == level


# --- the registry -------------------------------------------------------------------


def test_unknown_destination_error_lists_known() -> None:
    handlers.register_handler("zzz", ListHandler)
    with pytest.raises(UnknownDestinationError) as info:
        events.get_logging_handler("nope")
    assert isinstance(info.value, KeyError)
    assert info.value.destination == "nope"
    assert str(info.value) == (
        "unknown event destination 'nope'; known destinations: "
        "console, dynamic_rendezvous, null, otel, zzz"
    )
    with pytest.raises(UnknownDestinationError):
        events._get_or_create_logger("nope")


def test_factory_runs_lazily_once() -> None:
    calls: list[int] = []

    def factory() -> logging.Handler:
        calls.append(1)
        return ListHandler()

    handlers.register_handler("lazy", factory)
    assert calls == []
    assert "lazy" in events.known_destinations()
    first = events.get_logging_handler("lazy")
    assert events.get_logging_handler("lazy") is first
    assert calls == [1]


def test_factory_created_once_under_threads() -> None:
    calls: list[int] = []
    barrier = threading.Barrier(8)

    def factory() -> logging.Handler:
        calls.append(1)
        return ListHandler()

    handlers.register_handler("racy", factory)
    got: list[logging.Handler] = []

    def use() -> None:
        barrier.wait(timeout=10)
        got.append(events.get_logging_handler("racy"))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(calls) == 1
    assert len(got) == 8
    assert all(h is got[0] for h in got)


def test_register_rejects_duplicates_and_bad_values() -> None:
    with pytest.raises(ValueError, match="already exists"):
        handlers.register_handler("console", ListHandler())
    with pytest.raises(ValueError, match="non-empty"):
        handlers.register_handler("", ListHandler())
    with pytest.raises(TypeError, match="logging.Handler or a callable"):
        handlers.register_handler("x", "not a handler")  # type: ignore[arg-type]
    handlers.register_handler("bad-factory", lambda: "oops")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="not a logging.Handler"):
        events.get_logging_handler("bad-factory")


def test_register_after_logger_exists_rebinds_it() -> None:
    first, second = ListHandler(), ListHandler()
    handlers.register_handler("swap", first)
    events.record(Event("one", EventSource.AGENT), "swap")
    handlers.register_handler("swap", lambda: second, replace=True)
    events.record(Event("two", EventSource.AGENT), "swap")
    assert [json.loads(r.getMessage())["name"] for r in first.records] == ["one"]
    assert [json.loads(r.getMessage())["name"] for r in second.records] == ["two"]
    logger = logging.getLogger("torchelastic-events-swap")
    assert first not in logger.handlers
    assert logger.handlers.count(second) == 1


def test_register_after_other_loggers_exist() -> None:
    events.record(Event("e", EventSource.AGENT), "null")
    sink = ListHandler()
    handlers.register_handler("late", sink)
    events.record(Event("e", EventSource.AGENT), "late")
    assert len(sink.records) == 1


def test_shared_logger_gets_handler_once() -> None:
    """Two modules creating the same-named logger with one handler: handled once."""
    sink = ListHandler()
    handlers.register_handler("shared", sink)
    logger = events._get_or_create_logger("shared")
    events._events_loggers.pop("shared")  # as if another module created it
    assert events._get_or_create_logger("shared") is logger
    assert logger.handlers.count(sink) == 1


# --- construct_and_record_rdzv_event --------------------------------------------------


def _record_from_depth(depth: int, **kwargs: Any) -> None:
    if depth > 0:
        _record_from_depth(depth - 1, **kwargs)
        return
    events.construct_and_record_rdzv_event(**kwargs)


def test_construct_does_not_use_inspect_stack() -> None:
    sink = ListHandler()
    handlers.register_handler("dynamic_rendezvous", sink, replace=True)
    with patch("inspect.stack", side_effect=AssertionError("inspect.stack called")):
        _record_from_depth(40, run_id="r", message="m", node_state=NodeState.RUNNING)
    event = RdzvEvent.deserialize(sink.records[0].getMessage())
    assert event.name == "test_events.py:_record_from_depth"


def test_fqdn_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = ListHandler()
    handlers.register_handler("dynamic_rendezvous", sink, replace=True)
    monkeypatch.setattr(events, "_fqdn", None)
    with patch("torchelastic_otel.events.socket.getfqdn", return_value="node.example") as fqdn:
        for _ in range(3):
            events.construct_and_record_rdzv_event("r", "m", NodeState.RUNNING)
        events.construct_and_record_rdzv_event("r", "m", NodeState.RUNNING, hostname="given")
    assert fqdn.call_count == 1
    hosts = [RdzvEvent.deserialize(r.getMessage()).hostname for r in sink.records]
    assert hosts == ["node.example"] * 3 + ["given"]


def test_construct_does_nothing_with_null_handler() -> None:
    with (
        patch("torchelastic_otel.events.socket.getfqdn") as fqdn,
        patch.object(events, "record_rdzv_event") as rec,
    ):
        events.construct_and_record_rdzv_event("r", "m", NodeState.FAILED)
    fqdn.assert_not_called()
    rec.assert_not_called()


def test_construct_failed_carries_trace() -> None:
    sink = ListHandler()
    handlers.register_handler("dynamic_rendezvous", sink, replace=True)
    try:
        raise ValueError("bad store")
    except ValueError:
        events.construct_and_record_rdzv_event("r", "m", NodeState.FAILED, pid=9, rank=1)
    event = RdzvEvent.deserialize(sink.records[0].getMessage())
    assert event.error_trace.endswith("ValueError: bad store\n")
    assert event.pid == 9
    assert event.rank == 1
    assert event.name == "test_events.py:test_construct_failed_carries_trace"


def test_construct_at_module_level_names_module() -> None:
    code = (
        "import logging\n"
        "from torchelastic_otel import events\n"
        "events.handlers.register_handler('dynamic_rendezvous', logging.StreamHandler(), "
        "replace=True)\n"
        "events.construct_and_record_rdzv_event('r', 'm', events.NodeState.INIT, hostname='h')\n"
    )
    out = run_python(code, check=True)
    assert json.loads(out.stderr)["name"] == "<string>:<module>"


# --- import cost -------------------------------------------------------------------------


def test_import_pulls_neither_torch_nor_opentelemetry() -> None:
    code = (
        "import sys, torchelastic_otel.events\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'opentelemetry'))\n"
        "print(bad)\n"
    )
    out = run_python(code, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"
