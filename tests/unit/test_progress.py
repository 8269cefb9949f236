"""Stalled progress: the workers' reports, the agent's watcher, goodput, the bootstrap.

The watcher reads real progress files written by the workers' own writer
(:class:`torchelastic_otel.progress.Reporter`), with fake clocks on both sides: no
test waits for time to pass.
"""

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.process import run_python
from tests.support.waiting import wait_until
from torchelastic_otel import progress
from torchelastic_otel import semconv as sc
from torchelastic_otel.integration import progress as integration
from torchelastic_otel.otel import settings
from torchelastic_otel.otel._goodput import GoodputClock
from torchelastic_otel.otel._progress import (
    ProgressWatch,
    ProgressWatcher,
    Stall,
    WatchedWorker,
)
from torchelastic_otel.otel.mapping import MappedEvent


class Clock:
    """A monotonic clock that moves when told (the workers and the agent share it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall_ns(self) -> int:
        return int((self.now + 1_700_000_000) * 1e9)


class Job:
    """A node's workers (global ranks ``ranks``), their files, and the agent's watcher."""

    def __init__(self, tmp: Path, ranks: list[int], timeout_s: float = 60.0) -> None:
        self.clock = Clock()
        self.stalls: list[Stall] = []
        self.watcher = ProgressWatcher(
            timeout_s, clock=self.clock, wall_ns=self.clock.wall_ns, on_stall=self.stalls.append
        )
        self.workers: dict[int, progress.Reporter] = {}
        watched = []
        for local, rank in enumerate(ranks):
            path = str(tmp / f"w{rank}.progress")
            progress.create(path)
            self.workers[rank] = progress.Reporter(path, clock=self.clock)
            watched.append(WatchedWorker(local, rank, path))
        self.watcher.watch(ProgressWatch("job-1", 1, tuple(watched)))

    def step(self, *ranks: int) -> None:
        for rank in ranks or list(self.workers):
            self.workers[rank].step()

    def run(self, seconds: float, stepping: tuple[int, ...] = (), poll_s: float = 1.0) -> list[Any]:
        """Poll once a second for ``seconds``; the ``stepping`` ranks step before each."""
        records = []
        for _ in range(round(seconds / poll_s)):
            self.clock.now += poll_s
            if stepping:
                self.step(*stepping)
            records += self.watcher.poll()
        return records


def _names(records: list[MappedEvent]) -> list[str]:
    return [r.event_name for r in records]


def test_a_stall_is_one_warn_record_after_the_timeout(tmp_path: Path) -> None:
    job = Job(tmp_path, [4, 5])
    assert job.run(30, stepping=(4, 5)) == []
    assert job.run(59) == []  # 59 s without a step: not yet
    (stall,) = job.run(1)
    assert stall.event_name == sc.STALL_EVENT
    assert stall.severity == sc.SEVERITY_WARN
    attrs = stall.attributes
    assert attrs[sc.RUN_ID] == "job-1"
    assert attrs[sc.RANK] == 1
    assert attrs[sc.NODE_STATE] == sc.STATE_STALLED
    assert attrs[sc.STALLED_RANKS] == [4, 5]
    assert attrs[sc.PROGRESS_STEP] == 30
    assert attrs[sc.PROGRESS_IDLE_S] == 60.0
    assert attrs[sc.STALL_TIMEOUT_S] == 60.0
    assert stall.body == (
        "ranks 4, 5 of node 1 made no progress for 60 s (last at step 30; stall timeout 60 s)"
    )
    assert stall.timestamp_ns == job.clock.wall_ns()
    # One record, however long it lasts; the gauges say who and since when.
    assert job.run(600) == []
    snapshot = job.watcher.snapshot
    assert snapshot.stalled == {"job-1": 2}
    assert [(w.global_rank, w.step, w.idle_s, w.stalled) for w in snapshot.workers] == [
        (4, 30, 660.0, True),
        (5, 30, 660.0, True),
    ]


def test_progress_resumed_is_said_once(tmp_path: Path) -> None:
    job = Job(tmp_path, [0, 1])
    job.run(10, stepping=(0, 1))
    assert _names(job.run(90)) == [sc.STALL_EVENT]
    job.clock.now += 0.5
    job.step(0)  # written half a second before the poll sees it
    assert job.run(1) == []  # rank 1 is still stalled: the node is
    job.clock.now += 0.25
    job.step(1)
    (resumed,) = job.run(1)
    assert resumed.event_name == sc.PROGRESS_RESUMED_EVENT
    assert resumed.severity == sc.SEVERITY_INFO
    assert resumed.attributes[sc.STALLED_RANKS] == [0, 1]
    assert resumed.attributes[sc.PROGRESS_STEP] == 11
    # From the last step before (t=10) to the step that ended it (t=100 + 1.75).
    assert resumed.attributes[sc.PROGRESS_IDLE_S] == 91.75
    assert "made progress again (step 11) after 92 s without" in resumed.body
    assert job.run(30, stepping=(0, 1)) == []
    assert job.watcher.snapshot.stalled == {"job-1": 0}
    (stall,) = job.stalls
    assert stall.end_s - stall.start_s == pytest.approx(91.75)
    # A second stall is a second episode: one record again.
    assert _names(job.run(61)) == [sc.STALL_EVENT]


def test_no_record_while_workers_step_even_slowly(tmp_path: Path) -> None:
    job = Job(tmp_path, [0, 1])
    # A step every 50 s, under the 60 s timeout, for an hour.
    records = []
    for _ in range(72):
        records += job.run(50)
        job.step()
    assert records == []
    assert job.watcher.snapshot.stalled == {"job-1": 0}


def test_a_worker_that_stalls_during_a_stall_joins_it(tmp_path: Path) -> None:
    job = Job(tmp_path, [0, 1])
    job.step(0, 1)
    job.run(20, stepping=(1,))  # rank 0 stops at t=0, rank 1 at t=20
    (stall,) = job.run(40)
    assert stall.attributes[sc.STALLED_RANKS] == [0]
    assert job.run(20) == []  # rank 1 crosses too: no second record
    assert job.watcher.snapshot.stalled == {"job-1": 2}
    job.step(0, 1)
    (resumed,) = job.run(1)
    assert resumed.attributes[sc.STALLED_RANKS] == [0, 1]


def test_a_worker_that_never_stepped_is_not_watched(tmp_path: Path) -> None:
    job = Job(tmp_path, [0, 1])
    assert job.run(3600) == []  # start-up, or a loop that reports nothing
    assert not job.watcher.snapshot.workers
    assert job.watcher.snapshot.stalled == {"job-1": 0}
    job.step(1)
    assert job.watcher.poll() == []
    assert [w.global_rank for w in job.watcher.snapshot.workers] == [1]
    assert _names(job.run(60)) == [sc.STALL_EVENT]


def test_a_worker_that_resumes_and_exits_between_two_polls_resumed(tmp_path: Path) -> None:
    job = Job(tmp_path, [0])
    job.run(10, stepping=(0,))
    assert _names(job.run(60)) == [sc.STALL_EVENT]
    for _ in range(20):
        job.step(0)
    job.workers[0].finish()
    (resumed,) = job.run(1)
    assert resumed.event_name == sc.PROGRESS_RESUMED_EVENT
    assert resumed.attributes[sc.PROGRESS_STEP] == 30


def test_a_worker_that_exits_stalled_ends_its_stall_without_a_record(tmp_path: Path) -> None:
    job = Job(tmp_path, [0])
    job.run(10, stepping=(0,))
    assert _names(job.run(60)) == [sc.STALL_EVENT]
    job.workers[0].finish()
    assert job.run(1) == []  # nothing resumed
    assert len(job.stalls) == 1
    assert job.watcher.snapshot.stalled == {"job-1": 0}


def test_a_worker_that_exited_is_not_stalled(tmp_path: Path) -> None:
    job = Job(tmp_path, [0, 1])
    job.run(10, stepping=(0, 1))
    job.workers[0].finish()  # its interpreter exited normally; rank 1 goes on
    assert job.run(120, stepping=(1,)) == []
    assert [w.global_rank for w in job.watcher.snapshot.workers] == [1]


def test_timeout_zero_turns_watching_off(tmp_path: Path) -> None:
    job = Job(tmp_path, [0], timeout_s=0)
    job.step()
    assert not job.watcher.enabled
    assert job.run(3600) == []
    assert not job.watcher.snapshot.workers


def test_a_new_cycle_replaces_the_watched_workers_and_ends_their_stall(tmp_path: Path) -> None:
    job = Job(tmp_path, [0])
    job.step()
    assert _names(job.run(60)) == [sc.STALL_EVENT]
    path = str(tmp_path / "next.progress")
    progress.create(path)
    job.watcher.watch(ProgressWatch("job-1", 1, (WatchedWorker(0, 2, path),)))
    (stall,) = job.stalls  # the restart ended it (no resumed record: nothing resumed)
    assert stall.end_s - stall.start_s == pytest.approx(60.0)
    assert job.run(120) == []  # the new worker has not stepped yet


def test_a_missing_or_foreign_file_is_skipped(tmp_path: Path) -> None:
    job = Job(tmp_path, [0])
    (tmp_path / "w0.progress").write_bytes(b"not a progress file, but long enough to map")
    job.watcher.watch(
        ProgressWatch(
            "job-1",
            1,
            (
                WatchedWorker(0, 0, str(tmp_path / "w0.progress")),
                WatchedWorker(1, 1, "/nonexistent"),
            ),
        )
    )
    assert job.run(120) == []


# --- the worker's side -------------------------------------------------------------------


def test_reporting_never_raises(tmp_path: Path) -> None:
    for path in ("/nonexistent/dir/file", str(tmp_path)):  # missing; a directory
        reporter = progress.Reporter(path)
        reporter.step()
        reporter.on_optimizer_step(object(), (), {})
        reporter.finish()
    short = tmp_path / "short"
    short.write_bytes(b"TEOP")
    progress.Reporter(str(short)).step()
    good = tmp_path / "good"
    progress.create(str(good))
    reporter = progress.Reporter(str(good), clock=lambda: 1 / 0)  # a clock that raises
    reporter.step()
    reporter = progress.Reporter(str(good))
    reporter.step()
    assert reporter._map is not None
    reporter._map.close()  # unmapped under it
    reporter.step()
    reporter.step("not a number")  # type: ignore[arg-type]
    reporter.finish()
    progress.Reporter(None).step()
    progress.step()  # outside a worker: nothing


def test_reporter_writes_what_the_agent_reads(tmp_path: Path) -> None:
    path = str(tmp_path / "p")
    progress.create(path)
    assert progress.read(Path(path).read_bytes()) == (0, 0.0, False)
    reporter = progress.Reporter(path, clock=lambda: 12.5)
    reporter.step()
    reporter.step()
    reporter.step(40)
    assert progress.read(Path(path).read_bytes()) == (40, 12.5, False)
    reporter.finish()
    assert progress.read(Path(path).read_bytes()) == (40, 12.5, True)
    assert progress.read(b"x" * progress.SIZE) is None


def _site(tmp_path: Path, body: str) -> Path:
    other = tmp_path / "other-site"
    other.mkdir()
    (other / "sitecustomize.py").write_text(textwrap.dedent(body))
    return other


def test_the_bootstrap_chains_to_the_sitecustomize_it_shadows(tmp_path: Path) -> None:
    other = _site(tmp_path, "MARK = 'theirs ran'\n")
    pythonpath = integration.with_bootstrap(os.pathsep.join([str(other), *_src()]))
    code = (
        "import sys; print(sys.modules['sitecustomize'].MARK, "
        "any(type(f).__name__ == '_AfterImport' for f in sys.meta_path))"
    )
    for env, ours in (({}, False), ({progress.PROGRESS_FILE: str(tmp_path / "p")}, True)):
        proc = run_python(code, env={**os.environ, **env, "PYTHONPATH": pythonpath})
        assert proc.stdout.split() == ["theirs", "ran", str(ours)], proc.stderr


def _fake_torch(root: Path) -> None:
    """A ``torch`` with just torch's global optimizer step post-hooks (imports in ms)."""
    optim = root / "torch" / "optim"
    optim.mkdir(parents=True)
    (root / "torch" / "__init__.py").write_text("")
    (optim / "__init__.py").write_text("from torch.optim.optimizer import Optimizer\n")
    (optim / "optimizer.py").write_text(
        textwrap.dedent(
            """
            _hooks = []
            def register_optimizer_step_post_hook(hook):
                _hooks.append(hook)
            class Optimizer:
                def step(self):
                    for hook in _hooks:
                        hook(self, (), {})
            """
        )
    )


def test_the_bootstrap_counts_optimizer_steps_lazily(tmp_path: Path) -> None:
    """With a stand-in torch; the real one is counted end to end (tests/e2e/test_stall.py)."""
    _fake_torch(tmp_path / "site")
    path = str(tmp_path / "p")
    progress.create(path)
    pythonpath = integration.with_bootstrap(os.pathsep.join([*_src(), str(tmp_path / "site")]))
    code = textwrap.dedent(
        """
        import sys
        assert "torch" not in sys.modules  # not imported because of us
        assert "torchelastic_otel.progress" not in sys.modules  # nor are we, yet
        import torch.optim
        optimizer = torch.optim.Optimizer()
        for _ in range(3):
            optimizer.step()
        print("stepped")
        """
    )
    env = {**os.environ, progress.PROGRESS_FILE: path, "PYTHONPATH": pythonpath}
    proc = run_python(code, env=env, timeout=60)
    assert "stepped" in proc.stdout, proc.stderr
    step, _, finished = progress.read(Path(path).read_bytes()) or (0, 0.0, False)
    assert (step, finished) == (3, True)


def test_the_optimizer_hook_never_raises_into_the_step(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch.optim.optimizer import register_optimizer_step_post_hook

    path = str(tmp_path / "p")
    progress.create(path)
    reporter = progress.Reporter(path, clock=lambda: 1 / 0)  # its write raises
    handle = register_optimizer_step_post_hook(reporter.on_optimizer_step)
    try:
        model = torch.nn.Linear(2, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        opt.zero_grad()
        model(torch.ones(2)).sum().backward()
        opt.step()
        assert reporter.count == 1
    finally:
        handle.remove()


def _src() -> list[str]:
    import torchelastic_otel

    return [str(Path(torchelastic_otel.__file__).parent.parent)]


# --- goodput and settings ----------------------------------------------------------------


def test_goodput_is_working_time_less_stalls_over_wall_time() -> None:
    clock = GoodputClock()
    clock.begin("job", 0.0)
    assert clock.goodput(10.0) == {"job": 0.0}  # in rendezvous: nothing yet
    clock.working("job", 10.0)
    assert clock.goodput(60.0) == {"job": 50 / 60}
    assert clock.goodput(60.0, {"job": 30.0}) == {"job": 20 / 60}  # a stall going on
    clock.stalled("job", 40.0, 70.0)
    clock.stopped("job", 100.0)  # a failure: 90 s worked, 30 s of it stalled
    clock.working("job", 120.0)  # the restart's rendezvous and start-up: 20 s
    assert clock.goodput(200.0) == {"job": (60 + 80) / 200}
    assert clock.goodput(-1.0) == {}


def test_stall_timeout_setting(caplog: pytest.LogCaptureFixture) -> None:
    name = "TORCHELASTIC_OTEL_STALL_TIMEOUT_S"
    assert settings.from_env({}).stall_timeout_s == 300.0
    assert settings.from_env({name: "0"}).stall_timeout_s == 0.0
    assert settings.from_env({name: " 2.5 "}).stall_timeout_s == 2.5
    for bad in ("-1", "soon", "inf", "nan"):
        assert settings.from_env({name: bad}).stall_timeout_s == 300.0
        assert f"ignoring {name}={bad!r}" in caplog.text


# --- on the export worker ----------------------------------------------------------------


def test_the_export_worker_writes_the_records_and_the_gauges(tmp_path: Path) -> None:
    """Through a real pipeline: each flush is a tick that reads the files."""
    import time

    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests.support.memory import MemoryMetricExporter
    from torchelastic_otel import otel

    logs, metrics = InMemoryLogRecordExporter(), MemoryMetricExporter()  # type: ignore[no-untyped-call]
    pipeline = otel.Pipeline(
        settings.Settings(
            schedule_delay_ms=10,
            metric_export_interval_ms=10,
            use_global_providers=False,
            stall_timeout_s=60,
        ),
        log_exporter=logs,
        span_exporter=InMemorySpanExporter(),
        metric_exporter=metrics,
    )
    path = str(tmp_path / "p")
    progress.create(path)
    # A step 100 s ago (monotonic clocks are the same in every process of a host).
    progress.Reporter(path, clock=lambda: time.monotonic() - 100).step(7)

    def names() -> list[Any]:
        return [r.log_record.event_name for r in logs.get_finished_logs()]

    def gauge(name: str) -> list[Any]:
        return [(p.value, p.attributes) for p in metrics.points().get(name, [])]

    with otel.use(pipeline):
        pipeline.submit(ProgressWatch("job-9", 2, (WatchedWorker(1, 5, path),)), time.time_ns())
        # The worker's own ticks (every 10 ms here) read the files: wait, bounded.
        wait_until(names, lambda got: got == [sc.STALL_EVENT], 30, "stall record", 0.02)
        (stall,) = [r.log_record for r in logs.get_finished_logs()]
        assert stall.attributes is not None
        assert stall.attributes[sc.STALLED_RANKS] == (5,)
        assert stall.attributes[sc.RANK] == 2
        attrs = {sc.RUN_ID: "job-9", sc.LOCAL_RANK: 1}
        wait_until(
            lambda: gauge(sc.METRIC_WORKERS_STALLED),
            lambda got: got == [(1, {sc.RUN_ID: "job-9"})],
            30,
            "stalled gauge",
            0.02,
        )
        assert gauge(sc.METRIC_PROGRESS_STEP) == [(7, attrs)]
        assert gauge(sc.METRIC_PROGRESS_IDLE)[0][0] >= 100
        progress.Reporter(path).step(8)  # now
        wait_until(
            names,
            lambda got: got == [sc.STALL_EVENT, sc.PROGRESS_RESUMED_EVENT],
            30,
            "resumed record",
            0.02,
        )
        wait_until(
            lambda: gauge(sc.METRIC_WORKERS_STALLED),
            lambda got: got == [(0, {sc.RUN_ID: "job-9"})],
            30,
            "stalled gauge at 0",
            0.02,
        )
        assert gauge(sc.METRIC_PROGRESS_STEP) == [(8, attrs)]
        # Records that stand for no event: the books count events only.
        assert otel.exported_counts()["logs"] == 0
        assert not any(otel.drop_counts().values())
