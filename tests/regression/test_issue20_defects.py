"""The defects of issue 20 that live on the export path and in the receiver.

Each test failed against the code before its fix (the commit that adds it says so).
Faults that no real input triggers today (a bug inside the export thread) are
injected with ``monkeypatch`` at the seam where an upstream change would put them.
"""

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.memory import MemoryMetricExporter, record_otel
from torchelastic_otel import otel
from torchelastic_otel.events import Event, EventSource
from torchelastic_otel.otel import settings
from torchelastic_otel.otel.sinks import Batches
from torchelastic_otel.otel.sinks._metrics import MetricsSink


def _event(i: int) -> Event:
    return Event("e", EventSource.AGENT, metadata={"run_id": "r", "state": "X", "i": i})


@pytest.fixture
def plugged() -> Iterator[tuple[otel.Pipeline, InMemoryLogRecordExporter]]:
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    pipeline = otel.Pipeline(
        settings.Settings(schedule_delay_ms=10, use_global_providers=False),
        log_exporter=logs,
        span_exporter=InMemorySpanExporter(),
        metric_exporter=MemoryMetricExporter(),
    )
    with otel.use(pipeline):
        yield pipeline, logs


def _indices(logs: InMemoryLogRecordExporter) -> list[int]:
    """The ``i`` of every event exported, sorted."""
    return sorted(
        int(str(dict(r.log_record.attributes or {})["torchelastic.i"]))
        for r in logs.get_finished_logs()
    )


def _raise_once(
    monkeypatch: pytest.MonkeyPatch,
    cls: type,
    name: str,
    when: Callable[[Any], bool] = lambda self: True,
) -> list[int]:
    """Make ``cls.name`` raise on its first call where ``when(self)``; returns the calls."""
    original = getattr(cls, name)
    calls: list[int] = []

    def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not calls and when(self):
            calls.append(1)
            raise RuntimeError("injected fault")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, broken)
    return calls


def test_defect2_a_failed_metric_collection_does_not_kill_the_export_thread(
    plugged: tuple[otel.Pipeline, InMemoryLogRecordExporter],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Defect 2: one exception in tick() ended the only export thread.

    Before the fix force_flush() returned False, nothing after the fault was
    exported and later events were counted as ``queue_full``.
    """
    pipeline, logs = plugged
    calls = _raise_once(monkeypatch, MetricsSink, "collect")
    with caplog.at_level(logging.WARNING, logger="torchelastic_otel"):
        record_otel(_event(0))
        assert pipeline.force_flush(10), f"first flush; drops {pipeline.drop_counts()}"
        assert calls, "the fault was never reached"
        for i in range(1, 4):
            record_otel(_event(i))
        assert pipeline.force_flush(10), f"after the fault; drops {pipeline.drop_counts()}"
    got = _indices(logs)
    assert got == [0, 1, 2, 3]
    drops = {k: v for k, v in pipeline.drop_counts().items() if v}
    assert drops == {"internal_error_metrics": 1}
    warnings = [r.getMessage() for r in caplog.records if "export thread" in r.getMessage()]
    assert len(warnings) == 1 and "collecting metrics" in warnings[0], warnings


def test_defect2_a_batch_that_breaks_the_export_is_counted_and_the_rest_go_on(
    plugged: tuple[otel.Pipeline, InMemoryLogRecordExporter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect 2, the export step: the failing batch is lost and counted, not the thread."""
    pipeline, logs = plugged
    calls = _raise_once(monkeypatch, Batches, "export", lambda b: b.signal == "logs" and len(b) > 0)
    record_otel(_event(0))
    pipeline.force_flush(10)  # the first export of a log raises; that batch is the loss
    assert calls, "the fault was never reached"
    for i in range(1, 4):
        record_otel(_event(i))
    assert pipeline.force_flush(10), f"after the fault; drops {pipeline.drop_counts()}"
    got = _indices(logs)
    drops = {k: v for k, v in pipeline.drop_counts().items() if v}
    assert drops == {"internal_error_logs": 1}, (drops, got)
    assert got == [1, 2, 3]
    assert pipeline.exported_counts()["logs"] == 3
