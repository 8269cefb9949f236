"""The otel destination's pipeline: bad input, bad settings, a dead collector."""

import json
import logging
import os
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.memory import PATHS, Memory, memory_pipeline, record_otel
from tests.support.otlp import free_port
from tests.support.process import run_python
from tests.support.waiting import wait_until
from torchelastic_otel import otel
from torchelastic_otel.events import Event, EventSource, NodeState, RdzvEvent
from torchelastic_otel.otel import settings
from torchelastic_otel.otel.handler import OtelHandler


@pytest.fixture(params=PATHS)
def mem(request: pytest.FixtureRequest) -> Any:
    with memory_pipeline(request.param) as m:
        yield m


def _torch_style_logger(name: str) -> logging.Logger:
    """A logger set up as torch's _get_or_create_logger does, with our handler."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.handlers[:] = [OtelHandler()]
    return logger


def _event(i: int = 0) -> Event:
    return Event("e", EventSource.AGENT, metadata={"run_id": "r", "state": "X", "i": i})


def test_record_to_otel_reaches_exporter(mem: Memory) -> None:
    record_otel(_event())
    (record,) = mem.log_records()
    assert record.log_record.attributes["torchelastic.i"] == 0
    assert otel.drop_counts() == dict.fromkeys(otel.DROP_REASONS, 0)


def test_torch_json_strings_are_accepted(mem: Memory) -> None:
    """torch's record() logs event.serialize(): the handler parses it."""
    logger = _torch_style_logger("test-torch-style")
    rdzv = RdzvEvent("n", "r", "m", "h", 1, NodeState.INIT, rank=2)
    logger.info(_event(7).serialize())
    logger.info(rdzv.serialize())
    records = mem.log_records()
    assert [r.log_record.attributes["torchelastic.event.kind"] for r in records] == [
        "agent",
        "rendezvous",
    ]
    assert records[1].log_record.attributes["rank"] == 2


def test_torch_event_objects_are_accepted(mem: Memory) -> None:
    torch_events = pytest.importorskip("torch.distributed.elastic.events")
    logger = _torch_style_logger("test-torch-objects")
    logger.info(torch_events.Event("t", torch_events.EventSource.WORKER, metadata={"a": 1}))
    (record,) = mem.log_records()
    assert record.log_record.attributes["torchelastic.source"] == "WORKER"


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        '{"name": 1, "source": "AGENT"}',
        "[1, 2]",
        42,
        None,
        object(),
    ],
)
def test_bad_messages_are_counted_not_raised(
    mem: Memory, bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    logger = _torch_style_logger("test-bad")
    with caplog.at_level(logging.WARNING, logger="torchelastic_otel"):
        logger.info(bad)
        logger.info(bad)
        record_otel(_event())  # the next good one still goes through
        records = mem.log_records()
    assert len(records) == 1
    assert otel.drop_counts()["invalid"] == 2
    warnings = [r for r in caplog.records if "could not be mapped" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    "event",
    [
        Event(None, None, None, None),  # type: ignore[arg-type]
        Event("e", "NOT-A-SOURCE", -1, {"run_id": 5, "group_rank": True}),  # type: ignore[arg-type]
        Event("e", EventSource.AGENT, float("inf")),  # type: ignore[arg-type]
        Event("e", EventSource.AGENT, 2**80),
        Event("e" * 1_000_000, EventSource.AGENT, metadata={"big": "x" * 1_000_000}),
        Event("e", EventSource.AGENT, metadata={"\udcff": "surrogate \udcff", "nan": float("nan")}),
        RdzvEvent(None, None, None, None, None, None),  # type: ignore[arg-type]
        RdzvEvent("n", "r", "m", "h", "pid", "STATE", rank="x", local_id=[1]),  # type: ignore[arg-type]
    ],
)
def test_wrong_typed_or_huge_fields_never_raise(mem: Memory, event: Event | RdzvEvent) -> None:
    record_otel(event)
    mem.flush()
    counts = otel.drop_counts()
    exported = len(mem.log_records())
    assert exported + counts["invalid"] == 1
    assert exported == 1, counts  # all of these are mappable


class _Blocking(dict[str, Any]):
    """Event metadata whose first read holds the export worker until released."""

    def __init__(self, release: threading.Event, **items: Any) -> None:
        super().__init__(items)
        self.release = release

    def get(self, key: str, default: Any = None) -> Any:
        self.release.wait(10)
        return super().get(key, default)


@pytest.mark.parametrize("path", PATHS)
def test_queue_full_drops_are_counted(path: str) -> None:
    release = threading.Event()
    with memory_pipeline(path, max_queue_size=10) as m:
        record_otel(Event("held", EventSource.AGENT, metadata=_Blocking(release, run_id="r")))
        # The worker took it (and blocks on it), so the queue is empty again.
        wait_until(lambda: len(m.pipeline._queue), lambda n: n == 0, 10, "an empty queue")
        for i in range(25):
            record_otel(_event(i))
        assert otel.drop_counts()["queue_full"] == 15
        release.set()
        assert len(m.log_records()) == 11
        assert otel.drop_counts()["queue_full"] == 15


def test_sdk_disabled_is_a_silent_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    p = otel.Pipeline(settings.from_env())
    p.submit(_event(), time.time_ns())
    assert p._thread is None
    assert p.drop_counts() == dict.fromkeys(otel.DROP_REASONS, 0)


# --- settings ---------------------------------------------------------------------------


def test_malformed_protocol_warns_once_and_uses_grpc(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="torchelastic_otel"):
        s = settings.from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})
    assert (s.logs_protocol, s.traces_protocol) == ("grpc", "grpc")
    assert len(caplog.records) == 1
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='carrier-pigeon' is not supported" in caplog.text
    assert "grpc, http/protobuf" in caplog.text


def test_protocol_per_signal() -> None:
    s = settings.from_env(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        }
    )
    assert (s.logs_protocol, s.traces_protocol) == ("http/protobuf", "grpc")


def test_malformed_headers_warn_without_the_value(caplog: pytest.LogCaptureFixture) -> None:
    secret = "Bearer s3cr3t-token"
    with caplog.at_level(logging.WARNING):
        s = settings.from_env({"OTEL_EXPORTER_OTLP_HEADERS": f"ok=1,{secret}"})
    assert s.logs_headers == {"ok": "1"}
    assert "OTEL_EXPORTER_OTLP_HEADERS: entry 2 is not of the form name=value" in caplog.text
    assert "s3cr3t" not in caplog.text


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_exporters_never_log_header_values(protocol: str) -> None:
    """The SDK's exporters parse header variables too; their warning must not leak."""
    code = textwrap.dedent(
        """
        import logging
        logging.basicConfig(level=logging.DEBUG)
        from torchelastic_otel import events, otel
        events.record(events.Event("e", events.EventSource.AGENT), "otel")
        otel.shutdown(200)
        """
    )
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-ok=1,authorization Bearer s3cr3t",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "Bearer s3cr3t-logs",
    }
    proc = run_python(code, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OTEL_EXPORTER_OTLP_HEADERS: entry 2 is not of the form" in proc.stderr
    assert "OTEL_EXPORTER_OTLP_LOGS_HEADERS: entry 1 is not of the form" in proc.stderr
    assert "s3cr3t" not in proc.stderr + proc.stdout


def test_headers_parsed_and_per_signal() -> None:
    s = settings.from_env(
        {
            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20abc, x-tenant = ml ",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-only=traces",
        }
    )
    assert s.logs_headers == {"authorization": "Bearer abc", "x-tenant": "ml"}
    assert s.traces_headers == {"x-only": "traces"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "0"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "soon"),
        ("TORCHELASTIC_OTEL_SHUTDOWN_TIMEOUT_MS", "-5"),
    ],
)
def test_bad_numbers_fall_back(name: str, value: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="torchelastic_otel"):
        s = settings.from_env({name: value})
    assert s == settings.Settings()
    assert name in caplog.text


def test_configure_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="grpc, http/protobuf"):
        otel.configure(protocol="http/json")
    with pytest.raises(ValueError, match="max_queue_size must be positive"):
        otel.configure(max_queue_size=0)


# --- a collector that is not there ------------------------------------------------------------

_DEAD_COLLECTOR = textwrap.dedent(
    """
    import logging, sys, time
    logging.basicConfig(level=logging.WARNING)
    from torchelastic_otel import events, otel
    start = time.monotonic()
    worst = 0.0
    for i in range(2000):
        t0 = time.perf_counter()
        events.record(events.Event("e", events.EventSource.AGENT,
                                   metadata={"run_id": "r", "i": i}), "otel")
        worst = max(worst, time.perf_counter() - t0)
        if i % 500 == 0:
            time.sleep(0.3)   # let the worker try to export
    print("RECORD_S", time.monotonic() - start, "WORST_CALL_S", worst, flush=True)
    print("EXIT_START", time.monotonic(), flush=True)
    """
)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_unreachable_collector_bounded_exit(protocol: str) -> None:
    port = free_port()  # nothing listens there
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "TORCHELASTIC_OTEL_SHUTDOWN_TIMEOUT_MS": "1000",
    }
    t0 = time.monotonic()
    proc = run_python(_DEAD_COLLECTOR, env=env)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    fields = proc.stdout.split()
    record_s = float(fields[fields.index("RECORD_S") + 1])
    # The job's own work (recording, with 1.2 s of sleeps) plus interpreter start
    # and the 1 s flush bound; generous against a loaded CI machine, yet far below
    # the SDK's own 30 s exit with a dead collector.
    assert wall < record_s + 6.0, (wall, record_s)
    # One warning about lost events at exit, not one per failed export.
    lost = [line for line in proc.stderr.splitlines() if "lost so far" in line]
    assert 1 <= len(lost) <= 3, proc.stderr[-3000:]
    assert "shutdown_logs=" in lost[-1] or "export_failed_logs=" in lost[-1]


def test_global_providers_are_used() -> None:
    code = textwrap.dedent(
        """
        from opentelemetry import _logs, trace
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import (
            InMemoryLogRecordExporter, SimpleLogRecordProcessor)
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.resources import Resource
        logs, spans = InMemoryLogRecordExporter(), InMemorySpanExporter()
        lp = LoggerProvider(resource=Resource({"service.name": "app"}))
        lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
        _logs.set_logger_provider(lp)
        tp = TracerProvider(resource=Resource({"service.name": "app"}))
        tp.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(tp)
        from torchelastic_otel import events, otel
        events.record(events.Event("e", events.EventSource.AGENT,
                      metadata={"run_id": "r", "group_rank": 0, "state": "RENDEZVOUS",
                                "duration_ms": 5.0}), "otel")
        otel.shutdown()
        (rec,) = logs.get_finished_logs()
        print(rec.resource.attributes["service.name"], rec.log_record.attributes["run_id"])
        print(sorted(s.name.split(" ")[0] for s in spans.get_finished_spans()))
        print(otel.exported_counts())
        """
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "app r"
    # A rendezvous that started no cycle (it was still waiting at exit), its node
    # and the job: through the application's tracer, with the ids we chose.
    assert json.loads(lines[1].replace("'", '"')) == [
        "torchelastic.job",
        "torchelastic.node",
        "torchelastic.rendezvous",
    ]
    # The application's processors exported them, not ours.
    assert lines[2] == "{'logs': 0, 'spans': 0, 'metrics': 0}"


def test_fork_child_does_not_reexport_parent_events() -> None:
    code = textwrap.dedent(
        """
        import os, sys
        sys.path.insert(0, os.getcwd())
        from tests.support.memory import memory_pipeline, record_otel
        from torchelastic_otel import events, otel
        from torchelastic_otel.otel import _pipeline
        with memory_pipeline(schedule_delay_ms=60_000) as m:
            p = m.pipeline
            record_otel(events.Event("parent", events.EventSource.AGENT))
            pid = os.fork()
            if pid == 0:
                child = _pipeline.current()
                fresh = child is not p and child._thread is None and not child._queue
                os._exit(0 if fresh else 3)
            _, status = os.waitpid(pid, 0)
            print("child", os.waitstatus_to_exitcode(status), "parent", len(m.log_records()))
        """
    )
    proc = run_python(code, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "child 0 parent 1"
