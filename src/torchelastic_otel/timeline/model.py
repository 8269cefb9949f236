"""A job's restart cycles, nodes and workers, from its exported records and spans.

The public face of the timeline's model, split by job into small modules:

* timeline/job.py: the model itself (:class:`JobTimeline`, :class:`Cycle`,
  :class:`Node`, :class:`NodeCycle`, :class:`Worker`, :class:`Failure`...);
* timeline/build.py: :func:`build_timelines`, which reads spans (from_spans.py) and
  records (from_records.py) into a run's state (state.py) and makes the job of them;
* timeline/diagnose.py: what to tell a reader (root causes, missing nodes, the node
  closest to its restart limit, notes on gaps in the data);
* timeline/watch.py: :class:`RendezvousWatch`, the live ``--listen`` watch;
* timeline/files.py: :func:`load`, OTLP JSON files.

Example::

    >>> from torchelastic_otel.otlp_data import read_otlp_json
    >>> jobs = build_timelines(read_otlp_json(Path("otlp.json")))  # doctest: +SKIP
    >>> [(j.run_id, j.state, len(j.nodes), len(j.cycles)) for j in jobs]  # doctest: +SKIP
    [('demo-1', 'SUCCEEDED', 2, 2)]
"""

from torchelastic_otel.timeline.build import build_timelines
from torchelastic_otel.timeline.files import load
from torchelastic_otel.timeline.job import (
    LATE_JOIN_S,
    SILENT_S,
    SUMMARY_NODES,
    Attempt,
    Cycle,
    Failure,
    JobTimeline,
    Missing,
    Node,
    NodeCycle,
    Worker,
)
from torchelastic_otel.timeline.watch import RendezvousWatch

__all__ = [
    "LATE_JOIN_S",
    "SILENT_S",
    "SUMMARY_NODES",
    "Attempt",
    "Cycle",
    "Failure",
    "JobTimeline",
    "Missing",
    "Node",
    "NodeCycle",
    "RendezvousWatch",
    "Worker",
    "build_timelines",
    "load",
]
