"""The timeline's model of a job: its nodes, restart cycles, workers and failures.

What :func:`~torchelastic_otel.timeline.build.build_timelines` makes of a run's
exported records and spans (docs/mapping.md, "Traces"), and what the views
(terminal, HTML) draw. Plain data with the answers the views ask for (which worker
failed first, which node is closest to its restart limit); no reading of OTLP here.

Example::

    >>> node = Node(key="vm:12", host="vm", pid=12, rank=1)
    >>> node.title
    'rank 1  vm (pid 12)'
"""

import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from torchelastic_otel import semconv as sc
from torchelastic_otel.cycles import CycleKey
from torchelastic_otel.timeline.goodput import Goodput

LATE_JOIN_S = 5.0
"""A node that started its rendezvous this much after the round's median start joined
late: the others waited for it."""
SUMMARY_NODES = 16
"""Jobs with more nodes than this are shown as a summary (lanes on demand)."""
SILENT_S = 60.0
"""A node whose data ends this long before the job's went silent (died, lost its link)."""

_NUMBER = re.compile(r"\d+")
NS = 1_000_000_000


@dataclass
class Worker:
    """One worker process in one cycle (a ``torchelastic.worker`` span, or its records)."""

    global_rank: int
    local_rank: int
    start_ns: int
    end_ns: int
    state: str
    end_reason: str = ""
    signal: str = ""
    error: bool = False
    message: str = ""
    unfinished: bool = False
    span_id: str = ""
    killed: bool = False
    """Failed only because its agent stopped it after another worker failed."""
    from_records: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``worker <global rank>``."""
        return f"worker {self.global_rank if self.global_rank >= 0 else '?'}"

    @property
    def result(self) -> str:
        """``failed``, ``killed``, ``succeeded``, ``restarted``, ``open``."""
        if self.killed:
            return "killed"
        if self.error or self.state == sc.STATE_FAILED:
            return "failed"
        if self.unfinished:
            return "open"
        if self.state == sc.STATE_SUCCEEDED:
            return "succeeded"
        return "restarted"


@dataclass
class NodeCycle:
    """A node's part in one cycle: from the start of its rendezvous to the cycle's end."""

    round: int
    rank: int
    start_ns: int
    end_ns: int
    outcome: str
    rendezvous_ms: float | None = None
    assign_ms: float | None = None
    remaining_restarts: int | None = None
    max_restarts: int | None = None
    nodes: int | None = None
    workers_expected: int | None = None
    error: bool = False
    message: str = ""
    unfinished: bool = False
    trace_id: str = ""
    span_id: str = ""
    has_span: bool = True
    workers: list[Worker] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    key: CycleKey | None = None
    """Which cycle this part is of: ``round`` and, for a restart count this node saw
    before (``torchelastic.cycle.key``), its occurrence."""
    matched: bool = False
    """Keyed by a repeated restart count, placed in the cycle it overlaps in time."""

    def __post_init__(self) -> None:
        if self.key is None:
            self.key = CycleKey(self.round)

    @property
    def cycle_key(self) -> CycleKey:
        """:attr:`key`, set."""
        return self.key if self.key is not None else CycleKey(self.round)

    @property
    def rendezvous_end_ns(self) -> int:
        """When this node's rendezvous completed (as far as known)."""
        if self.rendezvous_ms is not None:
            return min(self.end_ns, self.start_ns + int(self.rendezvous_ms * 1e6))
        starts = [w.start_ns for w in self.workers]
        return min(starts) if starts else self.start_ns

    @property
    def workers_started_ns(self) -> int | None:
        """When its first worker started."""
        return min((w.start_ns for w in self.workers), default=None)


@dataclass
class Attempt:
    """A rendezvous attempt that started no cycle: it failed, or is still waiting."""

    start_ns: int
    end_ns: int
    failed: bool
    waiting: bool
    message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Failure:
    """A worker, rendezvous or agent failure, from its ERROR record (or failed span)."""

    time_ns: int
    node: "Node"
    kind: str  # "worker", "rendezvous", "agent"
    round: int | None
    global_rank: int | None
    exc_type: str
    message: str
    signal: str = ""
    stacktrace: str = ""
    killed: bool = False
    """Stopped by its agent (a signal, no error of its own) because another worker failed."""
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        """``worker N``, ``rendezvous`` or ``agent``."""
        return f"worker {self.global_rank}" if self.global_rank is not None else self.kind

    @property
    def what(self) -> str:
        """The error in one line: ``RuntimeError: ...``."""
        short = self.exc_type.rsplit(".", 1)[-1]
        message = self.message.strip().splitlines()[0] if self.message.strip() else ""
        if not short:
            return message or "FAILED"
        return message if message.startswith(short) else f"{short}: {message}".rstrip(": ")

    @property
    def label(self) -> str:
        """``worker 3: RuntimeError: ...``."""
        return f"{self.subject}: {self.what}"

    @property
    def group(self) -> str:
        """What failures with the same cause share: their kind and error, numbers aside."""
        what = "killed by " + self.signal if self.killed else self.what
        return f"{self.kind}|{_NUMBER.sub('#', what)}"


@dataclass
class Node:
    """One node: one torchrun agent process (resource ``host.name`` + ``process.pid``)."""

    key: str
    host: str
    pid: int
    instance: str = ""
    rank: int = -1
    state: str = sc.UNKNOWN_STATE
    start_ns: int = 0
    end_ns: int = 0
    cycles: list[NodeCycle] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    records: int = 0
    spans: int = 0
    left: str = ""
    """How the node left the job without finishing it, as the data says: ``lost
    (collective_failed)`` (a survivor inferred it) or ``preempted (SIGTERM)``."""

    @property
    def title(self) -> str:
        """``rank N  host (pid P)``."""
        rank = f"rank {self.rank}" if self.rank >= 0 else "rank ?"
        return f"{rank}  {self.host} (pid {self.pid})"

    @property
    def short(self) -> str:
        """``rank N host``, for lists."""
        rank = f"rank {self.rank}" if self.rank >= 0 else "rank ?"
        return f"{rank} {self.host}"

    @property
    def waiting(self) -> Attempt | None:
        """The rendezvous this node was still waiting in when the data ends, if any."""
        last = self.attempts[-1] if self.attempts else None
        if last is None or not last.waiting:
            return None
        if self.cycles and self.cycles[-1].start_ns > last.start_ns:
            return None
        return last

    def cycle(self, round_: int) -> NodeCycle | None:
        """This node's part in round ``round_``."""
        return next((c for c in self.cycles if c.round == round_), None)


@dataclass
class Cycle:
    """One restart cycle (a rendezvous round and the workers it started), job-wide."""

    round: int
    start_ns: int
    end_ns: int
    outcome: str
    outcome_from_root: bool
    parts: list[tuple[Node, NodeCycle]]
    remaining_restarts: int | None = None
    max_restarts: int | None = None
    nodes_expected: int | None = None
    workers_expected: int | None = None
    trace_ids: set[str] = field(default_factory=set)
    late: list[tuple[Node, float]] = field(default_factory=list)
    """Nodes that started their rendezvous ``LATE_JOIN_S`` or more after the median,
    with how late (s), latest first."""
    key: CycleKey | None = None
    """What keys it (``round`` unless a restart count repeated and matched nothing)."""
    shards: int = 1
    """How many traces it is by design (past ``TORCHELASTIC_OTEL_TRACE_SHARD_NODES``
    nodes, its root's ``torchelastic.shards``)."""
    closest: list[Node] = field(default_factory=list)
    """The nodes with the fewest restarts left (``remaining_restarts``), when the nodes
    disagree: the next failure on one of them ends the job."""

    @property
    def label(self) -> str:
        """The cycle's name in the views: its round, or ``0.1`` for a repeated key."""
        return str(self.key) if self.key is not None else str(self.round)

    @property
    def duration_s(self) -> float:
        """From the first node's rendezvous start to the cycle's end."""
        return max(0, self.end_ns - self.start_ns) / NS

    @property
    def workers(self) -> int:
        """Workers seen in this cycle."""
        return sum(len(part.workers) for _, part in self.parts)

    def rendezvous_ms(self) -> list[tuple[float, Node]]:
        """Each node's rendezvous duration (ms), longest first."""
        out = [(p.rendezvous_ms, n) for n, p in self.parts if p.rendezvous_ms is not None]
        return sorted(out, key=lambda x: -x[0])

    @property
    def rendezvous_p50_ms(self) -> float | None:
        """The median node's rendezvous duration."""
        values = [ms for ms, _ in self.rendezvous_ms()]
        return statistics.median(values) if values else None

    @property
    def slowest(self) -> tuple[float, Node] | None:
        """The longest rendezvous and its node."""
        values = self.rendezvous_ms()
        return values[0] if values else None

    @property
    def workers_started_s(self) -> float | None:
        """From the cycle's start until the last node had its workers started."""
        starts = [p.workers_started_ns for _, p in self.parts]
        known = [s for s in starts if s is not None]
        return (max(known) - self.start_ns) / NS if known else None

    @property
    def failed_nodes(self) -> list[Node]:
        """Nodes on which a worker failed in this cycle."""
        return [n for n, p in self.parts if p.outcome == sc.OUTCOME_FAILED]


@dataclass
class Missing:
    """Nodes that took part in ``after`` and not in ``before`` (``None``: the rendezvous
    still waiting at the end of the data)."""

    after: int
    before: int | None
    nodes: list[Node]


@dataclass
class JobTimeline:
    """Everything known about one ``run_id``."""

    run_id: str
    trace_id: str
    start_ns: int
    end_ns: int
    state: str
    nodes: list[Node]
    cycles: list[Cycle]
    failures: list[Failure]
    missing: list[Missing]
    records: int
    spans: int
    notes: list[str] = field(default_factory=list)
    goodput: Goodput | None = None
    """The share of wall time with workers making progress, and each cycle's loss."""

    @property
    def lanes(self) -> list[Node]:
        """The nodes, in rank order (one lane each)."""
        return self.nodes

    @property
    def duration_s(self) -> float:
        """From the first to the last thing seen, in seconds."""
        return max(0, self.end_ns - self.start_ns) / NS

    @property
    def restarts(self) -> int:
        """Cycles after the first."""
        return max(0, len(self.cycles) - 1)

    @property
    def worker_failures(self) -> list[Failure]:
        """Failures of workers (root causes and killed), in order."""
        return [f for f in self.failures if f.kind == "worker"]

    @property
    def root_causes(self) -> list[Failure]:
        """Workers that failed with an error of their own."""
        return [f for f in self.failures if f.kind == "worker" and not f.killed]

    @property
    def workers(self) -> int:
        """Distinct worker ranks seen."""
        return len({w.global_rank for n in self.nodes for c in n.cycles for w in c.workers})

    @property
    def waiting(self) -> list[Node]:
        """Nodes still waiting in a rendezvous when the data ends."""
        return [n for n in self.nodes if n.waiting is not None]

    @property
    def failed_attempts(self) -> list[tuple[Node, Attempt]]:
        """Rendezvous attempts that failed."""
        return [(n, a) for n in self.nodes for a in n.attempts if a.failed]

    @property
    def late(self) -> list[tuple[Cycle, Node, float]]:
        """Every late joiner, by cycle."""
        return [(c, n, s) for c in self.cycles for n, s in c.late]

    @property
    def large(self) -> bool:
        """More nodes than lanes can show: the views summarise."""
        return len(self.nodes) > SUMMARY_NODES

    def node(self, query: str) -> list[Node]:
        """Nodes whose host, ``host:pid`` or rank matches ``query``."""
        q = query.strip()
        if q.isdigit():
            return [n for n in self.nodes if n.rank == int(q)]
        return [n for n in self.nodes if q in n.key or q == n.host]
