"""Goodput on one node: the share of its time in a run that its workers made progress.

Per run, on each agent (docs/mapping.md, "Goodput"):

* **wall time**: from the run's first event on this node (its first rendezvous)
  until now;
* **productive time**: the time its workers ran, from their start in a cycle to the
  end of that cycle, minus the node's stalls (from the stalled workers' last step to
  their next one, or to the end of the cycle);
* **goodput** = productive / wall. Everything else was lost: rendezvous, worker
  start-up, restarts, stalls.

A stall is counted once it is known (after the stall timeout), from its start:
until then the time counts as productive, and the gauge drops when it is declared.

Example::

    >>> clock = GoodputClock()
    >>> clock.begin("job", 0.0); clock.working("job", 10.0); clock.stopped("job", 90.0)
    >>> clock.stalled("job", 50.0, 70.0)
    >>> clock.goodput(100.0)
    {'job': 0.6}
"""

from dataclasses import dataclass


@dataclass
class _Run:
    start_s: float
    working_since: float | None = None  # the current cycle's workers started
    worked_s: float = 0.0  # closed working intervals
    stalled_s: float = 0.0  # closed stalls


class GoodputClock:
    """Accumulates each run's working and stalled time (all times in wall seconds)."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}

    def begin(self, run_id: str, t_s: float) -> None:
        """The run was first seen on this node."""
        self._runs.setdefault(run_id, _Run(t_s))

    def working(self, run_id: str, t_s: float) -> None:
        """The node's workers started (a cycle's productive part begins)."""
        run = self._runs.setdefault(run_id, _Run(t_s))
        if run.working_since is None:
            run.working_since = t_s

    def stopped(self, run_id: str, t_s: float) -> None:
        """The node's cycle ended (its workers stopped, failed or finished)."""
        run = self._runs.get(run_id)
        if run is not None and run.working_since is not None:
            run.worked_s += max(0.0, t_s - run.working_since)
            run.working_since = None

    def stalled(self, run_id: str, start_s: float, end_s: float) -> None:
        """A stall of the node's workers ended."""
        run = self._runs.get(run_id)
        if run is not None:
            run.stalled_s += max(0.0, end_s - start_s)

    def goodput(
        self, now_s: float, open_stalls: dict[str, float] | None = None
    ) -> dict[str, float]:
        """Per run, productive / wall time until ``now_s`` (``open_stalls``: run id ->
        seconds of a stall still going on)."""
        out = {}
        for run_id, run in self._runs.items():
            wall = now_s - run.start_s
            if wall <= 0:
                continue
            worked = run.worked_s
            if run.working_since is not None:
                worked += max(0.0, now_s - run.working_since)
            lost_to_stalls = run.stalled_s + (open_stalls or {}).get(run_id, 0.0)
            out[run_id] = min(1.0, max(0.0, (worked - lost_to_stalls) / wall))
        return out
