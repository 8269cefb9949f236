"""What the torchrun integration gives workers and users: TRACEPARENT, resource
attributes, a one-line error for a mistyped destination, the instrumentor's
behaviour in a worker, and the endpoint's scheme."""

import logging
import os
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.process import run_python
from torchelastic_otel import progress as worker_progress
from torchelastic_otel.integration import _shared, launcher, workers
from torchelastic_otel.integration import progress as integration_progress
from torchelastic_otel.otel import _pipeline, derived_ids, settings
from torchelastic_otel.otel._progress import ProgressWatch, WatchedWorker


class _Pipeline:
    """Stands in for the process's pipeline: its settings, and what was submitted."""

    def __init__(self, stall_timeout_s: float) -> None:
        self.settings = settings.Settings(stall_timeout_s=stall_timeout_s)
        self.items: list[object] = []

    def submit(self, item: object, t_ns: int) -> None:
        self.items.append(item)


@pytest.fixture(autouse=True)
def pipeline(monkeypatch: pytest.MonkeyPatch) -> _Pipeline:
    """No progress files unless a test asks (``stall_timeout_s=0``); nothing exported."""
    fake = _Pipeline(0.0)
    monkeypatch.setattr(_pipeline, "current", lambda: fake)
    return fake


def _agent(destination: str = "otel", round_: int | None = 3) -> Any:
    state = SimpleNamespace(round=round_)
    handler = SimpleNamespace(
        _state_holder=SimpleNamespace(state=state), get_run_id=lambda: "job,7"
    )
    group = SimpleNamespace(
        spec=SimpleNamespace(event_log_handler=destination, rdzv_handler=handler, max_restarts=3),
        group_rank=1,
        workers=[
            SimpleNamespace(local_rank=0, global_rank=2),
            SimpleNamespace(local_rank=1, global_rank=3),
        ],
    )
    return SimpleNamespace(_worker_group=group, _remaining_restarts=1)


def test_each_worker_gets_its_nodes_part_as_traceparent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=ml,torchelastic.round=99")
    envs: dict[int, dict[str, str]] = {0: {"RANK": "2"}, 1: {"RANK": "3"}}
    workers.add_worker_context(_agent(), envs)
    for local, global_rank in ((0, 2), (1, 3)):
        # Node rank 1's part in round 3: the span its workers are events of.
        trace_id = derived_ids.cycle_trace_id("job,7", 3)
        span_id = derived_ids.cycle_node_span_id("job,7", 3, 1)
        assert envs[local]["TRACEPARENT"] == f"00-{trace_id:032x}-{span_id:016x}-01"
        attributes = dict(
            kv.split("=", 1) for kv in envs[local]["OTEL_RESOURCE_ATTRIBUTES"].split(",")
        )
        assert attributes == {
            "team": "ml",
            "torchelastic.round": "99",  # the user's value stays
            "torchelastic.run_id": "job%2C7",
            "torchelastic.node_rank": "1",
            "torchelastic.local_rank": str(local),
            "torchelastic.global_rank": str(global_rank),
            "torchelastic.restart_count": "2",
        }


def test_the_traceparent_parses_with_the_sdks_propagator() -> None:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    envs: dict[int, dict[str, str]] = {0: {}}
    workers.add_worker_context(_agent(), envs)
    context = TraceContextTextMapPropagator().extract({"traceparent": envs[0]["TRACEPARENT"]})
    parent = trace.get_current_span(context).get_span_context()
    assert parent.trace_id == derived_ids.cycle_trace_id("job,7", 3)
    assert parent.span_id == derived_ids.cycle_node_span_id("job,7", 3, 1)
    assert parent.trace_flags.sampled


@pytest.mark.parametrize(("destination", "round_"), [("null", 3), ("otel", None)])
def test_no_context_when_not_exporting_or_no_round(destination: str, round_: int | None) -> None:
    envs: dict[int, dict[str, str]] = {0: {}}
    workers.add_worker_context(_agent(destination, round_), envs)
    assert envs == {0: {}}
    assert "null" not in _shared.capture_for


@pytest.mark.parametrize("round_", [3, None])  # progress needs no round
def test_each_worker_gets_a_progress_file_and_the_bootstrap(
    pipeline: _Pipeline, monkeypatch: pytest.MonkeyPatch, round_: int | None
) -> None:
    pipeline.settings = settings.Settings(stall_timeout_s=60.0)
    monkeypatch.setenv("PYTHONPATH", "/from/agent")
    envs: dict[int, dict[str, str]] = {0: {}, 1: {"PYTHONPATH": "/mine"}}
    workers.add_worker_context(_agent(round_=round_), envs)
    first = [envs[i][worker_progress.PROGRESS_FILE] for i in (0, 1)]
    boot = integration_progress.BOOTSTRAP_DIR
    assert [envs[i]["PYTHONPATH"] for i in (0, 1)] == [f"{boot}:/from/agent", f"{boot}:/mine"]
    assert all(worker_progress.read(Path(p).read_bytes()) == (0, 0.0, False) for p in first)
    (watch,) = pipeline.items
    assert watch == ProgressWatch(
        "job,7", 1, (WatchedWorker(0, 2, first[0]), WatchedWorker(1, 3, first[1]))
    )
    # The next cycle: fresh files, the old ones gone (their workers were stopped).
    workers.add_worker_context(_agent(round_=round_), envs)
    second = [envs[i][worker_progress.PROGRESS_FILE] for i in (0, 1)]
    assert set(second).isdisjoint(first)
    assert not any(os.path.exists(p) for p in first)
    assert envs[1]["PYTHONPATH"] == f"{boot}:/mine"  # once, however many cycles
    assert len(pipeline.items) == 2


def test_a_mistyped_destination_is_one_line() -> None:
    pytest.importorskip("torch.distributed.elastic.events")
    line = launcher._unknown("otle")
    assert line.startswith("torchrun: error: --event_log_handler 'otle' is not a known")
    assert "console, dynamic_rendezvous, null" in line
    assert "\n" not in line
    assert launcher._unknown("console") == ""


def test_the_instrumentor_does_nothing_in_a_worker() -> None:
    """A worker under opentelemetry-instrument: no torch import, no patch, no pipeline."""
    code = textwrap.dedent(
        """
        import sys
        from torchelastic_otel.integration.instrumentor import TorchElasticInstrumentor
        TorchElasticInstrumentor()._instrument()
        from torchelastic_otel.otel import _pipeline
        print("TORCH", "torch" in sys.modules, "PIPELINE", _pipeline._current is not None)
        """
    )
    env = {**os.environ, "TORCHELASTIC_RUN_ID": "r", "TORCHELASTIC_RESTART_COUNT": "0"}
    proc = run_python(code, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["TORCH", "False", "PIPELINE", "False"]


def test_an_endpoint_without_a_scheme_gets_a_hint(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="torchelastic_otel"):
        s = settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"})
    assert s.endpoint == "http://collector:4317"
    assert "has no scheme: using http://collector:4317" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="torchelastic_otel"):
        assert settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4317"}).endpoint is None
    assert caplog.text == ""


def test_a_records_host_and_its_resources_agree() -> None:
    from torchelastic_otel import events
    from torchelastic_otel.otel import _resource

    resource = _resource.create(settings.Settings())
    assert resource.attributes["host.name"] == events._hostname()


def test_past_the_shard_size_the_traceparent_names_the_shard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TORCHELASTIC_OTEL_TRACE_SHARD_NODES", "1")
    envs: dict[int, dict[str, str]] = {0: {}}
    workers.add_worker_context(_agent(), envs)  # node rank 1: shard 1
    trace_id, span_id = derived_ids.node_part_context("job,7", 3, 1, 1)
    assert (
        trace_id
        == derived_ids.cycle_trace_id("job,7", 3, 1)
        != derived_ids.cycle_trace_id("job,7", 3)
    )
    assert envs[0]["TRACEPARENT"] == f"00-{trace_id:032x}-{span_id:016x}-01"
