"""What building a run's timeline keeps while it reads spans and records.

Shared by timeline/from_spans.py and timeline/from_records.py (the two ways a node's
parts and workers are known), and timeline/build.py, which puts them together.
"""

from collections import Counter, defaultdict
from typing import Any

from torchelastic_otel import semconv as sc
from torchelastic_otel.cycles import CycleKey
from torchelastic_otel.otlp_data import LogItem, SpanItem
from torchelastic_otel.timeline.job import Node, NodeCycle, Worker


def as_int(value: Any) -> int | None:
    """``value`` if it is an int (not a bool), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_num(value: Any) -> float | None:
    """``value`` as a float if it is a number (not a bool), else ``None``."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class BuildState:
    """One run's nodes, cycle roots and the indexes that tie records to spans."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.nodes: dict[tuple[str, int, str], Node] = {}
        self.ranks: dict[str, Counter[int]] = defaultdict(Counter)
        self.roots: dict[CycleKey, SpanItem] = {}
        self.job: SpanItem | None = None
        self.worker_spans: dict[str, tuple[Node, NodeCycle, Worker]] = {}
        self.from_spans: set[str] = set()  # span ids of the worker spans that arrived
        self.parts_by_span: dict[str, tuple[Node, NodeCycle]] = {}
        self.round_of_trace: dict[str, int] = {}
        self.times: list[int] = []
        self.unfinished = 0
        # Nodes that could not leave the rendezvous at exit, by error type.
        self.exit_warnings: Counter[str] = Counter()
        # What survivors exported for nodes that vanished: placed once every node's
        # own spans and records are in (the lost node is matched to its own).
        self.inferred: list[SpanItem] = []
        self.lost_records: list[LogItem] = []

    def node_for(self, resource: dict[str, Any]) -> Node:
        host = str(resource.get(sc.HOST_NAME, "?"))
        pid = as_int(resource.get(sc.PROCESS_PID))
        instance = str(resource.get(sc.SERVICE_INSTANCE_ID, ""))
        key = (host, -1 if pid is None else pid, instance)
        node = self.nodes.get(key)
        if node is None:
            text = f"{host}:{key[1]}"
            node = self.nodes[key] = Node(key=text, host=host, pid=key[1], instance=instance)
        return node

    def part_for(self, node: Node, round_: int, t_ns: int, trace_id: str) -> NodeCycle:
        """The node's part in ``round_`` (its trace's, first), made up (from records) when
        its span is missing.

        The same number in another trace of this node is a restart count seen before (no
        round known): a cycle of its own, keyed as the exporter keys it (``0.1``).
        """
        part = next((c for c in node.cycles if trace_id and c.trace_id == trace_id), None)
        if part is None:
            part = node.cycle(round_)
            if part is not None and trace_id and part.trace_id and part.trace_id != trace_id:
                part = None
        if part is None:
            part = NodeCycle(
                round=round_,
                rank=-1,
                start_ns=t_ns,
                end_ns=t_ns,
                outcome=sc.OUTCOME_UNFINISHED,
                unfinished=True,
                trace_id=trace_id,
                has_span=False,
                key=CycleKey.on_node(round_, (c.round for c in node.cycles)),
            )
            node.cycles.append(part)
        return part
