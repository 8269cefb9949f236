"""The timeline's goodput: working time less stalls over wall time, and what each cycle lost."""

from typing import Any

import pytest

from tests.support.timeline_synth import T0, S, synth_job
from torchelastic_otel import semconv as sc
from torchelastic_otel.otlp_data import LogItem
from torchelastic_otel.timeline import goodput
from torchelastic_otel.timeline.model import build_timelines

NS = goodput.NS


def _record(node: int, t_s: float, name: str, idle_s: float, run_id: str = "synth") -> LogItem:
    return LogItem(
        resource={sc.HOST_NAME: f"node-{node:05d}.test", sc.PROCESS_PID: 1000 + node},
        scope=sc.SCOPE,
        event_name=name,
        body="",
        severity_number=sc.SEVERITY_WARN,
        severity_text="WARN",
        time_unix_nano=T0 + int(t_s * S),
        observed_time_unix_nano=T0 + int(t_s * S),
        trace_id="",
        span_id="",
        attributes={sc.RUN_ID: run_id, sc.PROGRESS_IDLE_S: idle_s},
    )


def test_each_cycle_is_charged_its_wait_and_its_stalls() -> None:
    logs: list[Any] = [
        # Node 0 stalls from 30 s (detected at 90 s) to 100 s; node 1 from 40 s to 95 s:
        # one stall of the job, 30 s .. 100 s.
        _record(0, 90, sc.STALL_EVENT, 60),
        _record(1, 95, sc.STALL_EVENT, 55),
        _record(1, 96, sc.PROGRESS_RESUMED_EVENT, 55),
        _record(0, 101, sc.PROGRESS_RESUMED_EVENT, 70),
        # In cycle 1, node 1 stalls at 250 s and never resumes: to the cycle's end (280 s).
        _record(1, 270, sc.STALL_EVENT, 20),
    ]
    working = [
        (0, T0 + 10 * S, T0 + 150 * S),  # rendezvous and start-up: 10 s
        (1, T0 + 180 * S, T0 + 280 * S),  # failure to restart to workers running: 30 s
    ]
    g = goodput.compute(T0, T0 + 300 * S, working, logs)
    first, second = g.cycles
    assert (first.waiting_s, first.stalled_s, first.working_s, first.stalls) == (10, 70, 140, 2)
    assert (second.waiting_s, second.stalled_s, second.working_s, second.stalls) == (30, 30, 100, 1)
    assert g.tail_s == 20
    assert g.productive_s == 70 + 70
    assert g.ratio == pytest.approx(140 / 300)
    assert g.lost_s == pytest.approx(160)
    line = goodput.describe(g)
    assert line == (
        "goodput 47% (2.3min of 5.0min with workers making progress) · lost: "
        "cycle 0 80.0s (70.0s stalled), cycle 1 60.0s (30.0s stalled), after the last 20.0s"
    )


def test_a_cycle_whose_workers_never_ran_lost_all_of_it() -> None:
    g = goodput.compute(
        T0, T0 + 100 * S, [(0, None, T0 + 40 * S), (1, T0 + 50 * S, T0 + 100 * S)], []
    )
    assert [(c.round, c.waiting_s, c.working_s) for c in g.cycles] == [(0, 40, 0), (1, 10, 50)]
    assert g.ratio == 0.5
    assert goodput.compute(T0, T0, [], []).ratio == 0.0


def test_a_stall_of_another_run_or_a_record_without_idle_is_harmless() -> None:
    logs = [_record(0, 50, sc.STALL_EVENT, 0), _record(0, 49, sc.PROGRESS_RESUMED_EVENT, 5)]
    g = goodput.compute(T0, T0 + 100 * S, [(0, T0, T0 + 100 * S)], logs)
    # The resume before the stall closes nothing; the stall has no known start but its
    # detection and lasts to the cycle's end.
    assert g.cycles[0].stalled_s == 50


def test_the_timeline_of_a_job_has_its_goodput() -> None:
    received = synth_job(nodes=2, workers=2, rounds=2)
    (job,) = build_timelines(received)
    assert job.goodput is not None
    first, last = job.goodput.cycles
    assert [first.round, last.round] == [0, 1]
    assert first.stalled_s == last.stalled_s == 0
    # Each cycle's working time: the last node's workers started to the first part's end.
    for loss, cycle in zip(job.goodput.cycles, job.cycles, strict=True):
        begin = max(p.workers_started_ns or 0 for _, p in cycle.parts)
        end = min(p.end_ns for _, p in cycle.parts)
        assert loss.working_s == pytest.approx((end - begin) / NS)
    assert job.goodput.wall_s == pytest.approx(job.duration_s)
    assert 0 < job.goodput.ratio < 1
    # A stall that never resumed is charged to its own cycle only.
    begin = max(p.workers_started_ns or 0 for _, p in job.cycles[0].parts)
    received.logs.append(_record(0, (begin - T0) / S + 1, sc.STALL_EVENT, 0.0))
    (job,) = build_timelines(received)
    assert job.goodput is not None
    first, last = job.goodput.cycles
    assert first.stalled_s == pytest.approx(first.working_s - 1)
    assert last.stalled_s == 0
