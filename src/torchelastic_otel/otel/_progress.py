"""Stalled progress: the agent watches its workers' steps and says when they stop.

Each worker reports its steps into a small shared file (:mod:`torchelastic_otel.progress`);
the torchrun integration creates one per worker before the agent starts them and
queues a :class:`ProgressWatch` naming them. On the export worker's thread (never in
the training process: a hung worker may hold its GIL in native code),
:meth:`ProgressWatcher.poll` reads them about once a second (the export schedule) and
returns the records to write:

* one ``torchelastic.worker.stalled`` (WARN) when a node's workers made no step for
  the stall timeout: the run, the node, the stalled global ranks, their last step
  and for how long;
* one ``torchelastic.worker.progress_resumed`` (INFO) when all of them stepped again.

A worker is watched from its first step on (start-up, checkpoint loading and a loop
that reports nothing are not stalls), until it exits or its group is replaced (a
restart: the new cycle's :class:`ProgressWatch`). Workers that stall while their node
is already stalled join that stall (no second record; the gauges count them).

Reading never blocks: a read is a copy out of shared memory, taken twice until two
copies agree (a step written half-way is not read). :meth:`ProgressWatcher.snapshot`
is what the metric callbacks read, from any thread.
"""

import mmap
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from torchelastic_otel import progress
from torchelastic_otel import semconv as sc
from torchelastic_otel.otel.mapping import AttrValue, MappedEvent


@dataclass(frozen=True)
class WatchedWorker:
    """One worker's progress file, as the integration created it."""

    local_rank: int
    global_rank: int
    path: str


@dataclass(frozen=True)
class ProgressWatch:
    """Queued by the integration when a node (re)starts its workers: watch these now."""

    run_id: str
    node_rank: int
    workers: tuple[WatchedWorker, ...]


@dataclass(frozen=True)
class WorkerProgress:
    """A watched worker as the last poll saw it (what the gauges report)."""

    run_id: str
    local_rank: int
    global_rank: int
    step: int
    idle_s: float
    stalled: bool


@dataclass(frozen=True)
class Snapshot:
    """What the last poll saw: workers that stepped, and stalled counts per run."""

    workers: tuple[WorkerProgress, ...] = ()
    stalled: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Stall:
    """A node's stall, for goodput: from its workers' last step to their next (or to the
    end of their cycle), in wall-clock seconds."""

    run_id: str
    start_s: float
    end_s: float


class _File:
    """A worker's progress file, mapped read-only on first use."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._map: mmap.mmap | None = None

    def read(self) -> tuple[int, float, bool] | None:
        mapped = self._map
        if mapped is None:
            mapped = self._map = _map(self.path)
            if mapped is None:
                return None
        for _ in range(3):
            first, second = mapped[: progress.SIZE], mapped[: progress.SIZE]
            if first == second:
                return progress.read(first)
        return None

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


def _map(path: str) -> mmap.mmap | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size < progress.SIZE:
            return None
        return mmap.mmap(fd, progress.SIZE, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


@dataclass
class _Worker:
    spec: WatchedWorker
    file: _File
    step: int = 0
    at: float = 0.0  # monotonic time of the last step
    finished: bool = False
    stalled: bool = False


@dataclass
class _Node:
    """One run's watched workers on this node, and its open stall."""

    run_id: str
    node_rank: int
    workers: list[_Worker]
    stall_ranks: list[int] = field(default_factory=list)  # global ranks in the open stall
    stall_since: float = 0.0  # the earliest last step of the stall's workers
    resumed_at: float = 0.0  # the latest step that ended a worker's stall in it


class ProgressWatcher:
    """Reads the watched workers' steps and decides on stall and resume records.

    Args:
        timeout_s: seconds without a step that make a stall (``0``: watch nothing).
        clock: ``time.monotonic`` (the clock the workers write).
        wall_ns: ``time.time_ns`` (the records' time).
        on_stall: told every stall's interval when it ends (for goodput).
    """

    def __init__(
        self,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
        on_stall: Callable[[Stall], None] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._wall_ns = wall_ns
        self._on_stall = on_stall
        self._nodes: dict[str, _Node] = {}
        self.snapshot = Snapshot()

    @property
    def enabled(self) -> bool:
        """A timeout is set."""
        return self.timeout_s > 0

    def watch(self, item: ProgressWatch) -> None:
        """Watch ``item``'s workers from now on, instead of the run's previous ones."""
        if not self.enabled:
            return
        old = self._nodes.pop(item.run_id, None)
        if old is not None:
            self._end(old, self._clock())
        workers = [_Worker(w, _File(w.path)) for w in item.workers]
        self._nodes[item.run_id] = _Node(item.run_id, item.node_rank, workers)

    def unwatch(self, run_id: str) -> None:
        """The run's workers are gone (its cycle ended): stop watching them."""
        node = self._nodes.pop(run_id, None)
        if node is not None:
            self._end(node, self._clock())
            self._publish()

    def poll(self) -> list[MappedEvent]:
        """Read every watched file; the stall and resume records due now."""
        if not self._nodes:
            return []
        now = self._clock()
        records = []
        for node in list(self._nodes.values()):
            records.extend(self._poll_node(node, now))
        self._publish(now)
        return records

    def stalls_open(self) -> list[Stall]:
        """The stalls still open, as if they ended now (for goodput)."""
        end = self._wall_s(self._clock())
        return [
            Stall(n.run_id, self._wall_s(n.stall_since), end)
            for n in self._nodes.values()
            if n.stall_ranks
        ]

    def close(self) -> None:
        """Unmap every file."""
        for node in self._nodes.values():
            for worker in node.workers:
                worker.file.close()

    # --- the decisions ---

    def _poll_node(self, node: _Node, now: float) -> list[MappedEvent]:
        for worker in node.workers:
            seen = worker.file.read()
            if seen is None:
                continue
            step, at, finished = seen
            if step != worker.step:
                if worker.stalled:  # the step that ended its stall: when it was written
                    node.resumed_at = max(node.resumed_at, min(at, now))
                worker.step, worker.at, worker.stalled = step, at, False
            if finished and not worker.finished:
                worker.finished, worker.stalled = True, False
        watched = [w for w in node.workers if w.step > 0 and not w.finished]
        newly = [w for w in watched if not w.stalled and now - w.at >= self.timeout_s]
        for worker in newly:
            worker.stalled = True
        records = []
        if newly and not node.stall_ranks:
            node.stall_since = min(w.at for w in newly)
            node.stall_ranks = sorted(w.spec.global_rank for w in newly)
            records.append(self._stall_record(node, newly, now))
        elif newly:
            node.stall_ranks = sorted({*node.stall_ranks, *(w.spec.global_rank for w in newly)})
        if node.stall_ranks and not any(w.stalled for w in node.workers):
            # Over: its workers stepped again (a record), or exited (none: nothing resumed).
            end = node.resumed_at or now
            if node.resumed_at:
                records.append(self._resumed_record(node, end))
            self._stall_ended(node, end)
        return records

    def _end(self, node: _Node, now: float) -> None:
        if node.stall_ranks:
            self._stall_ended(node, now)
        for worker in node.workers:
            worker.file.close()

    def _stall_ended(self, node: _Node, end: float) -> None:
        if self._on_stall is not None:
            self._on_stall(Stall(node.run_id, self._wall_s(node.stall_since), self._wall_s(end)))
        node.stall_ranks = []
        node.resumed_at = 0.0

    def _wall_s(self, monotonic_s: float) -> float:
        """A monotonic time (the workers' clock) on the wall clock (the records')."""
        return self._wall_ns() / 1e9 - (self._clock() - monotonic_s)

    def _publish(self, now: float | None = None) -> None:
        t = self._clock() if now is None else now
        workers = tuple(
            WorkerProgress(
                node.run_id,
                w.spec.local_rank,
                w.spec.global_rank,
                w.step,
                max(0.0, t - w.at),
                w.stalled,
            )
            for node in self._nodes.values()
            for w in node.workers
            if w.step > 0 and not w.finished
        )
        stalled = {
            node.run_id: sum(w.stalled for w in node.workers) for node in self._nodes.values()
        }
        self.snapshot = Snapshot(workers, stalled)  # one assignment: readers see old or new

    # --- the records ---

    def _stall_record(self, node: _Node, stalled: list[_Worker], now: float) -> MappedEvent:
        longest = min(stalled, key=lambda w: w.at)
        idle = now - longest.at
        ranks = sorted(w.spec.global_rank for w in stalled)
        who = _ranks(ranks)
        steps = sorted({w.step for w in stalled})
        at_step = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"
        body = (
            f"{who} of node {node.node_rank} made no progress for {idle:.0f} s "
            f"(last at {at_step}; stall timeout {self.timeout_s:g} s)"
        )
        attributes: dict[str, AttrValue] = {
            sc.STALLED_RANKS: ranks,
            sc.PROGRESS_STEP: longest.step,
            sc.PROGRESS_IDLE_S: round(idle, 3),
            sc.STALL_TIMEOUT_S: self.timeout_s,
        }
        return self._record(
            node, sc.STALL_EVENT, sc.SEVERITY_WARN, sc.STATE_STALLED, body, attributes
        )

    def _resumed_record(self, node: _Node, end: float) -> MappedEvent:
        stalled_for = max(0.0, end - node.stall_since)
        ranks = node.stall_ranks
        # Exited workers too: one may step again and exit between two polls.
        steps = [w.step for w in node.workers if w.spec.global_rank in ranks]
        step = min(steps) if steps else 0
        body = (
            f"{_ranks(ranks)} of node {node.node_rank} made progress again "
            f"(step {step}) after {stalled_for:.0f} s without"
        )
        attributes: dict[str, AttrValue] = {
            sc.STALLED_RANKS: list(ranks),
            sc.PROGRESS_STEP: step,
            sc.PROGRESS_IDLE_S: round(stalled_for, 3),
            sc.STALL_TIMEOUT_S: self.timeout_s,
        }
        return self._record(
            node,
            sc.PROGRESS_RESUMED_EVENT,
            sc.SEVERITY_INFO,
            sc.STATE_PROGRESSING,
            body,
            attributes,
        )

    def _record(
        self,
        node: _Node,
        name: str,
        severity: int,
        state: str,
        body: str,
        attributes: dict[str, AttrValue],
    ) -> MappedEvent:
        return MappedEvent(
            kind=sc.KIND_AGENT,
            event_name=name,
            body=body,
            severity=severity,
            attributes={
                sc.RUN_ID: node.run_id,
                sc.RANK: node.node_rank,
                sc.NODE_STATE: state,
                sc.EVENT_KIND: sc.KIND_AGENT,
                **attributes,
            },
            timestamp_ns=self._wall_ns(),
        )


def _ranks(ranks: list[int]) -> str:
    """``rank 3`` / ``ranks 0, 1``."""
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))
