"""A job's goodput: the share of its wall time in which its workers made progress.

Computed from what the timeline already knows (docs/mapping.md, "Goodput"):

* **wall time**: from the first to the last thing the job exported;
* a cycle's **working time**: from the moment the last of its nodes had its workers
  started (synchronous training needs every node) to the moment the first of them
  ended its part (a failure there stops everyone's progress);
* its **stalls**: from each ``torchelastic.worker.stalled`` record (its time less its
  ``torchelastic.progress.idle_s``: the stalled workers' last step) to the node's
  next ``torchelastic.worker.progress_resumed`` (the step that ended it), else to the
  end of the working time; stalls of several nodes at once count once;
* **goodput** = the working time less the stalls, over the wall time.

Everything else is time lost, and each cycle is charged what it lost: the time
from the end of the previous cycle's working time (or the job's start) to its own
(the failure's detection, the restart, the rendezvous, the workers' start-up), and
its stalls. What follows the last cycle's working time (the exit, a rendezvous that
never completed) is the job's ``tail_s``.

Example::

    >>> g = compute(0, 100 * NS, [(0, 10 * NS, 50 * NS), (1, 60 * NS, 100 * NS)], [])
    >>> round(g.ratio, 2), [round(c.lost_s) for c in g.cycles], g.tail_s
    (0.8, [10, 10], 0.0)
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torchelastic_otel import semconv as sc
from torchelastic_otel.timeline._text import secs

NS = 1_000_000_000


@dataclass
class CycleLoss:
    """What one cycle lost, in seconds."""

    round: int | str
    """The cycle as the views name it: its round, or a repeated restart count's key
    (``"0.1"``, see cycles.py) when no round was known."""
    waiting_s: float
    """Before its workers ran: the previous cycle's end, restart, rendezvous, start-up."""
    stalled_s: float = 0.0
    working_s: float = 0.0
    stalls: int = 0

    @property
    def lost_s(self) -> float:
        """Waiting and stalled."""
        return self.waiting_s + self.stalled_s


@dataclass
class Goodput:
    """The job's goodput and what each cycle lost."""

    wall_s: float
    cycles: list[CycleLoss] = field(default_factory=list)
    tail_s: float = 0.0

    @property
    def productive_s(self) -> float:
        """Working time less stalls, over all cycles."""
        return sum(max(0.0, c.working_s - c.stalled_s) for c in self.cycles)

    @property
    def ratio(self) -> float:
        """Productive over wall time (0..1)."""
        return min(1.0, self.productive_s / self.wall_s) if self.wall_s > 0 else 0.0

    @property
    def lost_s(self) -> float:
        """Wall time less productive time."""
        return max(0.0, self.wall_s - self.productive_s)


def compute(
    start_ns: int,
    end_ns: int,
    working: Iterable[tuple[int | str, int | None, int]],
    logs: Iterable[Any],
) -> Goodput:
    """Goodput of a job from ``start_ns`` to ``end_ns``.

    Args:
        working: per cycle, in order: its name (round or key), its working time's start (``None``:
            its workers never ran, as far as the data says) and end (the cycle's end
            when they never ran: all of it was lost).
        logs: the job's log records (only stall and resume records are read).
    """
    result = Goodput(wall_s=max(0, end_ns - start_ns) / NS)
    working = list(working)
    # A stall never resumed ends with the working time it started in (its cycle).
    stalls = [
        (s, e if e is not None else next((w for _, _, w in working if w > s), end_ns))
        for s, e in _stalls(logs)
    ]
    previous_end = start_ns
    for round_, work_start, work_end in working:
        end = max(work_end, previous_end)
        if work_start is None or end <= work_start:
            result.cycles.append(CycleLoss(round_, (end - previous_end) / NS))
            previous_end = end
            continue
        begin = max(work_start, previous_end)
        loss = CycleLoss(round_, (begin - previous_end) / NS, working_s=(end - begin) / NS)
        inside = [(max(s, begin), min(e, end)) for s, e in stalls if s < end and e > begin]
        loss.stalls = len(inside)
        loss.stalled_s = _union_s(inside)
        result.cycles.append(loss)
        previous_end = end
    result.tail_s = max(0, end_ns - previous_end) / NS
    return result


def working_times(cycles: Iterable[Any]) -> list[tuple[int | str, int | None, int]]:
    """Each timeline :class:`~.model.Cycle`'s working time: from its last node's workers
    started to its first node's part ended (nodes whose workers are unknown left out)."""
    out: list[tuple[int | str, int | None, int]] = []
    for cycle in cycles:
        name = cycle.key.id_key if cycle.key is not None else cycle.round
        parts = [p for _, p in cycle.parts if p.workers_started_ns is not None]
        if not parts:
            out.append((name, None, cycle.end_ns))
            continue
        begin = max(p.workers_started_ns for p in parts)
        out.append((name, begin, min(p.end_ns for p in parts)))
    return out


def _stalls(logs: Iterable[Any]) -> list[tuple[int, int | None]]:
    """Each node's stalls as ``(start_ns, end_ns or None)``, from its records."""
    by_node: dict[tuple[Any, ...], list[Any]] = {}
    for log in logs:
        if log.get("event_name") in (sc.STALL_EVENT, sc.PROGRESS_RESUMED_EVENT):
            resource = log.get("resource") or {}
            key = (resource.get(sc.HOST_NAME), resource.get(sc.PROCESS_PID))
            by_node.setdefault(key, []).append(log)
    out: list[tuple[int, int | None]] = []
    for records in by_node.values():
        records.sort(key=lambda r: r["time_unix_nano"])
        start: int | None = None
        for record in records:
            idle = record["attributes"].get(sc.PROGRESS_IDLE_S)
            idle_ns = int(idle * NS) if isinstance(idle, int | float) else 0
            if record["event_name"] == sc.STALL_EVENT:
                if start is None:
                    start = record["time_unix_nano"] - idle_ns
            elif start is not None:
                out.append((start, max(start, start + idle_ns)))
                start = None
        if start is not None:
            out.append((start, None))
    return out


def _union_s(intervals: list[tuple[int, int]]) -> float:
    total, reach = 0, None
    for s, e in sorted(intervals):
        if reach is None or s > reach:
            total += max(0, e - s)
            reach = e
        elif e > reach:
            total += e - reach
            reach = e
    return total / NS


def describe(goodput: Goodput, cap: int = 8) -> str:
    """The summary's line: the ratio, and what each cycle lost (the ``cap`` worst first
    when there are more).

    Example::

        >>> g = Goodput(100.0, [CycleLoss(0, 10.0, 5.0, 40.0, 1), CycleLoss(1, 10.0, 0.0, 40.0)])
        >>> describe(g).split(" · ")  # doctest: +NORMALIZE_WHITESPACE
        ['goodput 75% (75.0s of 100.0s with workers making progress)',
         'lost: cycle 0 15.0s (5.0s stalled), cycle 1 10.0s']
    """
    text = (
        f"goodput {goodput.ratio:.0%} ({secs(goodput.productive_s)} of "
        f"{secs(goodput.wall_s)} with workers making progress)"
    )
    cycles = goodput.cycles
    if len(cycles) > cap:
        cycles = sorted(cycles, key=lambda c: -c.lost_s)[:cap]
    lost = [
        f"cycle {c.round} {secs(c.lost_s)}"
        + (f" ({secs(c.stalled_s)} stalled)" if c.stalled_s > 0 else "")
        for c in cycles
    ]
    if len(goodput.cycles) > cap:
        lost.append(f"... {len(goodput.cycles) - cap:,} more cycles")
    if goodput.tail_s >= 0.05:
        lost.append(f"after the last {secs(goodput.tail_s)}")
    return text + (" · lost: " + ", ".join(lost) if lost else "")
