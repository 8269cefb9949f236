"""A stalled rank, through the real collector: reported within the timeout, and its end.

Two torchrun agents (c10d on 127.0.0.1), one worker each, train a plain loop (gloo
``all_reduce`` + ``optimizer.step()``, with no progress code: the bootstrap counts the
steps). The test drives it by files: once both ranks step, it tells rank 1 to stop
(rank 0 then waits in its ``all_reduce``) and, once the stall was reported, to
resume. Every wait is bounded and says what it saw.
"""

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.collector import RealCollector
from tests.support.waiting import wait_until
from torchelastic_otel import semconv as sc
from torchelastic_otel.demo.job import JobResult, run_job
from torchelastic_otel.timeline.goodput import describe
from torchelastic_otel.timeline.model import build_timelines

pytest.importorskip("torch.distributed.run", reason="torch is not installed: e2e tests skipped")

WORKERS = Path(__file__).parent / "workers"
STALL_TIMEOUT_S = 4.0
STALLING_RANK = 1
T = TypeVar("T")


def _records(collector: RealCollector, run_id: str, name: str) -> list[Any]:
    with collector.received.lock:
        return [
            r
            for r in collector.received.logs
            if r["attributes"].get(sc.RUN_ID) == run_id and r["event_name"] == name
        ]


def _points(collector: RealCollector, run_id: str, name: str) -> list[Any]:
    with collector.received.lock:
        return [
            p
            for p in collector.received.metrics
            if p["name"] == name and p["attributes"].get(sc.RUN_ID) == run_id
        ]


def test_a_stalled_rank_is_reported_once_and_so_is_its_resumption(
    collector: RealCollector, tmp_path: Path
) -> None:
    run_id = f"e2e-stall-{uuid.uuid4().hex[:8]}"
    control = tmp_path / "control"
    control.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCHELASTIC_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.grpc_endpoint,
        TORCHELASTIC_OTEL_STALL_TIMEOUT_S=str(STALL_TIMEOUT_S),
        OTEL_METRIC_EXPORT_INTERVAL="1000",
    )
    jobs: list[JobResult] = []
    thread = threading.Thread(
        target=lambda: jobs.append(
            run_job(
                run_id,
                nproc_per_node=1,
                max_restarts=0,
                env=env,
                timeout_s=150,
                work_dir=tmp_path,
                command=[str(WORKERS / "stall_train.py"), str(control), str(STALLING_RANK)],
            )
        ),
        daemon=True,
    )
    thread.start()

    def job_state() -> Any:
        return jobs[0].outputs if jobs else sorted(p.name for p in control.iterdir())

    try:
        wait_until(
            lambda: all((control / f"stepping-{r}").exists() for r in (0, 1)),
            bool,
            90,
            "steps on both ranks",
            0.1,
            seen=job_state,
        )
        # Normal progress is watched: each worker's step reaches the metrics.
        wait_until(
            lambda: (
                len(
                    {
                        p["resource"]["process.pid"]
                        for p in _points(collector, run_id, sc.METRIC_PROGRESS_STEP)
                    }
                )
                == 2
            ),
            bool,
            30,
            "progress metric of both workers",
            0.1,
            seen=job_state,
        )
        (control / "stop").touch()
        wait_until((control / "stopped").exists, bool, 30, "rank 1 stopping", 0.1, seen=job_state)
        stopped_at = float((control / "stopped").read_text())

        def stall_of_rank_1() -> list[Any]:
            return [
                r
                for r in _records(collector, run_id, sc.STALL_EVENT)
                if STALLING_RANK in r["attributes"][sc.STALLED_RANKS]
            ]

        (stall,) = wait_until(
            stall_of_rank_1,
            bool,
            STALL_TIMEOUT_S + 30,
            "stall record naming rank 1",
            0.1,
            seen=job_state,
        )
        assert stall["time_unix_nano"] / 1e9 - stopped_at <= STALL_TIMEOUT_S + 30
        assert stall["severity_text"] == "WARN"
        attrs = stall["attributes"]
        assert attrs[sc.RANK] == 1  # the node of rank 1 (one worker per node)
        assert attrs[sc.NODE_STATE] == sc.STATE_STALLED
        assert attrs[sc.PROGRESS_STEP] >= 5
        assert attrs[sc.PROGRESS_IDLE_S] >= STALL_TIMEOUT_S
        assert f"rank {STALLING_RANK} of node 1 made no progress for" in stall["body"]
        # The metric: this node's stalled workers, while it lasts.
        wait_until(
            lambda: [
                p
                for p in _points(collector, run_id, sc.METRIC_WORKERS_STALLED)
                if p["value"] == 1 and p["time_unix_nano"] / 1e9 > stopped_at
            ],
            bool,
            15,
            "workers.stalled = 1 from the stalled node",
            0.1,
            seen=lambda: _points(collector, run_id, sc.METRIC_WORKERS_STALLED)[-4:],
        )
        # Rank 0 waits in all_reduce: its node stalls too (each agent polls on its own
        # schedule, so its record may come a second later).
        wait_until(
            lambda: (
                {r["attributes"][sc.RANK] for r in _records(collector, run_id, sc.STALL_EVENT)}
                == {0, 1}
            ),
            bool,
            STALL_TIMEOUT_S + 30,
            "a stall record from each node",
            0.1,
            seen=lambda: _records(collector, run_id, sc.STALL_EVENT),
        )
        idle = [
            p
            for p in _points(collector, run_id, sc.METRIC_PROGRESS_IDLE)
            if p["value"] >= STALL_TIMEOUT_S
        ]
        assert idle, _points(collector, run_id, sc.METRIC_PROGRESS_IDLE)[-4:]
        assert {p["attributes"][sc.LOCAL_RANK] for p in idle} == {0}
    finally:
        (control / "resume").touch()  # whatever happened: let the job end

    def resumed_of_rank_1() -> list[Any]:
        return [
            r
            for r in _records(collector, run_id, sc.PROGRESS_RESUMED_EVENT)
            if STALLING_RANK in r["attributes"][sc.STALLED_RANKS]
        ]

    (resumed,) = wait_until(
        resumed_of_rank_1, bool, 30, "progress resumed record", 0.1, seen=job_state
    )
    assert resumed["severity_text"] == "INFO"
    assert resumed["attributes"][sc.PROGRESS_IDLE_S] >= STALL_TIMEOUT_S
    thread.join(timeout=150)
    assert jobs, "the job did not end"
    job = jobs[0]
    assert job.returncodes == [0, 0], "\n".join(o[-3000:] for o in job.outputs)
    # One stall per node, none before rank 1 stopped: normal progress is never a stall.
    stalls = _records(collector, run_id, sc.STALL_EVENT)
    assert sorted(r["attributes"][sc.RANK] for r in stalls) == [0, 1], stalls
    assert all(r["time_unix_nano"] / 1e9 >= stopped_at + STALL_TIMEOUT_S - 1 for r in stalls)
    goodput = _points(collector, run_id, sc.METRIC_GOODPUT)
    assert goodput
    assert all(0 <= p["value"] <= 1 for p in goodput)
    # The timeline charges the stall to the cycle (rank 0's job span comes last).
    wait_until(
        lambda: any(
            s["name"] == sc.JOB_SPAN and s["attributes"].get(sc.RUN_ID) == run_id
            for s in list(collector.received.spans)
        ),
        bool,
        20,
        "the job span",
        0.1,
        seen=lambda: len(collector.received.spans),
    )
    time.sleep(1.0)  # the other node's last batch
    with collector.received.lock:
        (timeline,) = build_timelines(collector.received, run_id)
    assert timeline.goodput is not None
    (cycle,) = timeline.goodput.cycles
    assert cycle.stalls >= 1
    assert STALL_TIMEOUT_S <= cycle.stalled_s <= cycle.working_s
    assert "stalled" in describe(timeline.goodput)
