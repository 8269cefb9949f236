"""Every row of docs/mapping.md, checked on both export paths (the SDK's objects and ours)."""

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.docs import documented_attribute_keys, undocumented
from tests.support.memory import PATHS, Memory, memory_pipeline, record_otel
from torchelastic_otel import progress, semconv
from torchelastic_otel.events import Event, EventSource, NodeState, RdzvEvent
from torchelastic_otel.otel._progress import ProgressWatch, ProgressWatcher, WatchedWorker
from torchelastic_otel.otel.mapping import MappedEvent

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "x.py", line 1, in <module>\n'
    "torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError: timed out\n"
)


def agent_event(state: str, **extra: Any) -> Event:
    """An event as torch 2.13's agent builds it (`SimpleElasticAgent._construct_event`)."""
    md: dict[str, Any] = {
        "run_id": "job-7",
        "global_rank": 3,
        "group_rank": 1,
        "worker_id": "4242",
        "role": "default",
        "hostname": "node-1.example",
        "state": state,
        "total_run_time": 12,
        "rdzv_backend": "c10d",
        "raw_error": None,
        "metadata": json.dumps(
            {
                "group_world_size": 2,
                "entry_point": "python",
                "local_rank": [1],
                "role_rank": [3],
                "role_world_size": [4],
                "exit_code": [None],
                "worker_pid": [None],
            }
        ),
        "agent_restarts": 0,
        "duration_ms": None,
    }
    md.update(extra)
    return Event(f"torchelastic.worker.status.{state}", EventSource.WORKER, metadata=md)


def rdzv_event(state: NodeState = NodeState.RUNNING, **extra: Any) -> RdzvEvent:
    kw: dict[str, Any] = {
        "name": "dynamic_rendezvous.py:DynamicRendezvousHandler.next_rendezvous",
        "run_id": "job-7",
        "message": "The node 'n1' attempts to join the next round of the rendezvous 'job-7'.",
        "hostname": "node-1.example",
        "pid": 321,
        "node_state": state,
        "master_endpoint": "127.0.0.1:29400",
        "rank": None,
        "local_id": 0,
    }
    kw.update(extra)
    return RdzvEvent(**kw)


@pytest.fixture(params=PATHS)
def mem(request: pytest.FixtureRequest) -> Any:
    with memory_pipeline(request.param) as m:
        yield m


def records_of(m: Memory, event: Event | RdzvEvent) -> Any:
    m.clear()
    record_otel(event)
    (record,) = m.log_records()
    return record


# --- the three keys ---------------------------------------------------------------------


def test_three_keys_on_rdzv_record(mem: Memory) -> None:
    attrs = records_of(mem, rdzv_event(rank=None)).log_record.attributes
    assert (attrs["run_id"], attrs["rank"], attrs["node_state"]) == ("job-7", -1, "RUNNING")
    attrs = records_of(mem, rdzv_event(rank=2)).log_record.attributes
    assert attrs["rank"] == 2


@pytest.mark.parametrize(
    ("md", "rank"),
    [
        ({"group_rank": 1, "global_rank": 3}, 1),  # group_rank wins
        ({"group_rank": None, "global_rank": 3}, 3),
        ({"group_rank": None, "global_rank": None}, -1),
        ({"group_rank": "1", "global_rank": None}, -1),  # wrong type: unknown, not a crash
    ],
)
def test_rank_on_agent_record(mem: Memory, md: dict[str, Any], rank: int) -> None:
    attrs = records_of(mem, agent_event("START", **md)).log_record.attributes
    assert attrs["rank"] == rank
    assert attrs["run_id"] == "job-7"
    assert attrs["node_state"] == "START"


def test_missing_keys_get_documented_defaults(mem: Memory) -> None:
    attrs = records_of(mem, Event("bare", EventSource.AGENT)).log_record.attributes
    assert (attrs["run_id"], attrs["rank"], attrs["node_state"]) == ("unknown", -1, "UNKNOWN")
    attrs = records_of(mem, rdzv_event(run_id="")).log_record.attributes
    assert attrs["run_id"] == "unknown"


# --- log record fields --------------------------------------------------------------------


def test_rdzv_record_fields(mem: Memory) -> None:
    before = time.time_ns()
    rw = records_of(mem, rdzv_event(rank=1))
    after = time.time_ns()
    r = rw.log_record
    assert r.event_name == "dynamic_rendezvous.py:DynamicRendezvousHandler.next_rendezvous"
    assert r.body.startswith("The node 'n1' attempts")
    assert (r.severity_number.value, r.severity_text) == (9, "INFO")
    assert before <= r.timestamp <= after
    assert r.observed_timestamp == r.timestamp
    assert r.attributes["host.name"] == "node-1.example"
    assert r.attributes["process.pid"] == 321
    assert r.attributes["torchelastic.name"] == r.event_name
    assert r.attributes["torchelastic.message"] == r.body
    assert r.attributes["torchelastic.master_endpoint"] == "127.0.0.1:29400"
    assert r.attributes["torchelastic.local_id"] == 0
    assert r.attributes["torchelastic.event.kind"] == "rendezvous"
    assert not any(k.startswith("exception.") for k in r.attributes)


def test_rdzv_shutdown_failure_is_a_warning(mem: Memory) -> None:
    """Torch logs it as a warning; with c10d it ends most successful jobs on every node
    but the store's host."""
    event = rdzv_event(
        NodeState.FAILED,
        name="dynamic_rendezvous.py:DynamicRendezvousHandler.shutdown",
        message="The node 'n1' has failed to shutdown the rendezvous 'job-7' due to an "
        "error of type RendezvousConnectionError.",
    )
    r = records_of(mem, event).log_record
    assert (r.severity_number.value, r.severity_text) == (13, "WARN")
    assert r.attributes["node_state"] == "FAILED"  # torch's state, kept


def test_rdzv_failed_record(mem: Memory) -> None:
    r = records_of(mem, rdzv_event(NodeState.FAILED, error_trace=TRACEBACK)).log_record
    assert (r.severity_number.value, r.severity_text) == (17, "ERROR")
    assert r.attributes["exception.stacktrace"] == TRACEBACK
    assert (
        r.attributes["exception.type"]
        == "torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError"
    )
    assert r.attributes["exception.message"] == "timed out"


def test_rdzv_failed_without_trace(mem: Memory) -> None:
    r = records_of(mem, rdzv_event(NodeState.FAILED, message="RendezvousClosedError: ")).log_record
    assert r.attributes["exception.type"] == "torchelastic.RendezvousFailure"
    assert r.attributes["exception.message"] == "RendezvousClosedError: "
    assert "exception.stacktrace" not in r.attributes


def test_agent_record_fields(mem: Memory) -> None:
    r = records_of(mem, agent_event("SUCCEEDED", duration_ms=None)).log_record
    assert r.event_name == "torchelastic.worker.status.SUCCEEDED"
    assert r.body == "torchelastic.worker.status.SUCCEEDED"
    assert (r.severity_number.value, r.severity_text) == (9, "INFO")
    a = r.attributes
    assert a["torchelastic.source"] == "WORKER"
    assert a["torchelastic.global_rank"] == 3
    assert a["torchelastic.group_rank"] == 1
    assert a["host.name"] == "node-1.example"
    assert a["torchelastic.worker_id"] == "4242"
    assert a["torchelastic.role"] == "default"
    assert a["torchelastic.total_run_time"] == 12
    assert a["torchelastic.rdzv_backend"] == "c10d"
    assert a["torchelastic.agent_restarts"] == 0
    assert a["torchelastic.metadata.group_world_size"] == 2
    assert a["torchelastic.metadata.entry_point"] == "python"
    assert a["torchelastic.metadata.local_rank"] == 1  # (1,) unwrapped
    assert "torchelastic.metadata.exit_code" not in a  # (None,) -> None -> omitted
    assert "torchelastic.raw_error" not in a
    assert "torchelastic.duration_ms" not in a  # None is omitted
    assert "torchelastic.timestamp" not in a


@pytest.mark.parametrize(
    ("state", "severity"),
    [("START", 9), ("RENDEZVOUS", 9), ("UNHEALTHY", 13), ("TERMINATED", 13), ("FAILED", 17)],
)
def test_agent_severity_by_state(mem: Memory, state: str, severity: int) -> None:
    r = records_of(mem, agent_event(state)).log_record
    assert r.severity_number.value == severity
    assert r.severity_text == semconv.SEVERITY_TEXT[severity]


def test_agent_timestamp_used_when_set(mem: Memory) -> None:
    r = records_of(mem, Event("e", EventSource.AGENT, timestamp=1_700_000_000_123)).log_record
    assert r.timestamp == 1_700_000_000_123_000_000
    assert r.observed_timestamp != r.timestamp
    assert r.attributes["torchelastic.timestamp"] == 1_700_000_000_123


def test_worker_failure_error_file(mem: Memory) -> None:
    error_file = {
        "message": {
            "message": "RuntimeError: loss is NaN",
            "extraInfo": {"py_callstack": TRACEBACK, "timestamp": "1700000000"},
        }
    }
    raw = json.dumps(error_file)
    r = records_of(mem, agent_event("FAILED", raw_error=raw)).log_record
    assert r.severity_text == "ERROR"
    assert r.attributes["exception.message"] == "RuntimeError: loss is NaN"
    assert r.attributes["exception.stacktrace"] == TRACEBACK
    assert (
        r.attributes["exception.type"]
        == "torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError"
    )


def test_worker_failure_without_error_file(mem: Memory) -> None:
    r = records_of(mem, agent_event("FAILED", raw_error=json.dumps("<NONE>"))).log_record
    assert r.attributes["exception.type"] == "torchelastic.WorkerFailure"
    assert r.attributes["exception.stacktrace"] == '"<NONE>"'


def test_agent_failure_traceback(mem: Memory) -> None:
    r = records_of(mem, agent_event("FAILED", raw_error=TRACEBACK, group_rank=0)).log_record
    assert r.attributes["exception.message"] == "timed out"


def test_attribute_value_types(mem: Memory) -> None:
    md: dict[str, Any] = {
        "run_id": "r",
        "s": "x",
        "i": 1,
        "f": 1.5,
        "b": True,
        "n": None,
        "li": [1, 2],
        "ls": ["a", "b"],
        "mixed": [1, "a"],
        "obj": {"k": [1, {"z": None}]},
        "empty": [],
    }
    a = records_of(mem, Event("e", EventSource.AGENT, metadata=md)).log_record.attributes
    assert a["torchelastic.s"] == "x"
    assert a["torchelastic.i"] == 1
    assert a["torchelastic.f"] == 1.5
    assert a["torchelastic.b"] is True
    assert "torchelastic.n" not in a
    assert list(a["torchelastic.li"]) == [1, 2]
    assert list(a["torchelastic.ls"]) == ["a", "b"]
    assert a["torchelastic.mixed"] == '[1,"a"]'
    assert json.loads(a["torchelastic.obj"]) == {"k": [1, {"z": None}]}
    assert list(a["torchelastic.empty"]) == []


# --- resource and scope -------------------------------------------------------------------


def test_resource_and_scope(mem: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    rw = records_of(mem, rdzv_event())
    res = rw.resource.attributes
    assert res["service.name"] == "torchelastic"
    assert re.fullmatch(r"[0-9a-f-]{36}", res["service.instance.id"])
    assert isinstance(res["host.name"], str)
    assert res["process.pid"] > 0
    assert res["telemetry.sdk.language"] == "python"
    assert rw.instrumentation_scope.name == "torchelastic_otel"


@pytest.mark.parametrize("path", PATHS)
def test_resource_from_env(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=ml")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "trainer")
    with memory_pipeline(path) as m:
        res = records_of(m, rdzv_event()).resource.attributes
    assert res["service.name"] == "trainer"
    assert res["deployment.environment"] == "test"
    assert res["team"] == "ml"


# --- docs/mapping.md lists exactly what is emitted ------------------------------------------


def _stall_records(tmp_path: Path) -> list[MappedEvent]:
    """A stall and its resumption, as an agent's progress watcher writes them."""
    now = [100.0]
    path = str(tmp_path / "progress")
    progress.create(path)
    reporter = progress.Reporter(path, clock=lambda: now[0])
    watcher = ProgressWatcher(10, clock=lambda: now[0])
    watcher.watch(ProgressWatch("r", 0, (WatchedWorker(0, 0, path),)))
    reporter.step()
    now[0] += 11
    stalled = watcher.poll()
    reporter.step()
    return stalled + watcher.poll()


def test_every_emitted_attribute_is_documented_and_vice_versa(mem: Memory, tmp_path: Path) -> None:
    exact, _ = documented_attribute_keys()
    assert {"run_id", "rank", "node_state", "host.name", "exception.type"} <= exact
    emitted: set[str] = set()
    samples: list[Event | RdzvEvent] = [
        rdzv_event(NodeState.FAILED, error_trace=TRACEBACK, rank=1),
        rdzv_event(),
        agent_event("FAILED", raw_error=TRACEBACK, duration_ms=2.5),
        agent_event("FAILED", metadata=json.dumps({"exit_code": [-9]})),
        Event("t", EventSource.AGENT, timestamp=5, metadata={"run_id": "r", "state": "X"}),
    ]
    for event in samples:
        emitted |= set(records_of(mem, event).log_record.attributes)
    records = _stall_records(tmp_path)
    assert [r.event_name for r in records] == [semconv.STALL_EVENT, semconv.PROGRESS_RESUMED_EVENT]
    for record in records:
        emitted |= set(record.attributes)
    assert undocumented(emitted) == []
    missing = sorted(exact - emitted)
    assert missing == []


@pytest.mark.parametrize(
    ("exit_code", "message"),
    [(-15, "exited with code -15 (killed by SIGTERM)"), (3, "exited with code 3")],
)
def test_worker_failure_without_error_file_uses_exit_code(
    mem: Memory, exit_code: int, message: str
) -> None:
    nested = json.dumps({"exit_code": [exit_code], "local_rank": [0]})
    r = records_of(
        mem, agent_event("FAILED", raw_error=json.dumps({"message": "<NONE>"}), metadata=nested)
    ).log_record
    assert r.attributes["exception.type"] == "torchelastic.WorkerFailure"
    assert r.attributes["exception.message"] == message
    # The signal as an attribute of its own: the viewer never parses the message.
    assert r.attributes.get("torchelastic.signal") == ("SIGTERM" if exit_code < 0 else None)


def test_ints_beyond_64_bits_become_strings(mem: Memory) -> None:
    """OTLP ints are 64-bit; one bigger int must not fail the batch it is in."""
    md: dict[str, Any] = {"run_id": "r", "big": 2**70, "neg": -(2**63), "arr": [1, 2**64]}
    a = records_of(mem, Event("e", EventSource.AGENT, metadata=md)).log_record.attributes
    assert a["torchelastic.big"] == str(2**70)
    assert a["torchelastic.neg"] == -(2**63)
    assert a["torchelastic.arr"] == "[1,18446744073709551616]"  # mixed: JSON text
