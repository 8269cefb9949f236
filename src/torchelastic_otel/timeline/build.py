"""Builds a job's timeline (timeline/job.py) from its exported records and spans.

Reads the traces of docs/mapping.md ("Traces"): per run a run trace (the job span,
one ``torchelastic.node`` span per agent process, ``torchelastic.rendezvous`` spans
for rendezvous attempts that started no cycle) and a trace per restart cycle (the
``torchelastic.cycle`` root from the round's rank 0, a ``torchelastic.cycle.node``
span per node, whose ``torchelastic.worker`` span events are its workers; older data
has worker spans). Log records add the errors (``exception.*``), the rendezvous'
progress (who is still waiting) and stand in for spans that never arrived (a node
killed before it exported them, a cycle still running when the data was taken).

It tolerates what real data brings: missing parents (rank 0 died), unfinished
spans, nodes with records only, several jobs in one file, clocks that disagree.
Spans are read by timeline/from_spans.py and records by timeline/from_records.py
into the state of timeline/state.py; here they become the job and its cycles. What
the data means for a reader (root causes, missing nodes, notes) is
timeline/diagnose.py's.

Example::

    >>> from torchelastic_otel.otlp_data import read_otlp_json
    >>> jobs = build_timelines(read_otlp_json(Path("otlp.json")))  # doctest: +SKIP
    >>> [(j.run_id, j.state, len(j.nodes), len(j.cycles)) for j in jobs]  # doctest: +SKIP
    [('demo-1', 'SUCCEEDED', 2, 2)]
"""

import gc
import statistics
from collections import Counter, defaultdict
from typing import Any

from torchelastic_otel import semconv as sc
from torchelastic_otel.cycles import CycleKey
from torchelastic_otel.otlp_data import LogItem, Received, SpanItem
from torchelastic_otel.timeline import diagnose
from torchelastic_otel.timeline.diagnose import span_kind
from torchelastic_otel.timeline.from_records import RecordReader
from torchelastic_otel.timeline.from_spans import SpanReader
from torchelastic_otel.timeline.goodput import compute as compute_goodput
from torchelastic_otel.timeline.goodput import working_times
from torchelastic_otel.timeline.job import LATE_JOIN_S, NS, Cycle, JobTimeline, Node, NodeCycle
from torchelastic_otel.timeline.state import as_int


def build_timelines(received: Received, run_id: str | None = None) -> list[JobTimeline]:
    """One timeline per ``run_id`` in ``received`` (or only ``run_id``), oldest first."""
    logs: dict[str, list[LogItem]] = defaultdict(list)
    spans: dict[str, list[SpanItem]] = defaultdict(list)
    for log in received.logs:
        logs[str(log["attributes"].get(sc.RUN_ID, sc.UNKNOWN_RUN_ID))].append(log)
    for span in received.spans:
        spans[str(span["attributes"].get(sc.RUN_ID, sc.UNKNOWN_RUN_ID))].append(span)
    run_ids = sorted(set(logs) | set(spans))
    if run_id is not None:
        run_ids = [r for r in run_ids if r == run_id]
    # Building makes no garbage worth collecting; the collector's passes over the
    # heap of received items would cost as much as the building itself.
    collecting = gc.isenabled()
    gc.disable()
    try:
        jobs = [_Builder(r).build(logs[r], spans[r]) for r in run_ids]
    finally:
        if collecting:
            gc.enable()
    return sorted(jobs, key=lambda j: j.start_ns)


class _Builder(SpanReader, RecordReader):
    """Sorts one run's spans and records into nodes, cycles and failures."""

    def build(self, logs: list[LogItem], spans: list[SpanItem]) -> JobTimeline:
        other = self.add_spans(spans)
        self.add_logs(logs)
        # Parts made up from records alone may have a repeated key too.
        self.match_repeated_keys()
        self.add_lost()
        return self.finish(logs, spans, other)

    def finish(self, logs: list[LogItem], spans: list[SpanItem], other: int) -> JobTimeline:
        nodes = list(self.nodes.values())
        for node in nodes:
            counts = self.ranks.get(node.key)
            if counts:
                node.rank = counts.most_common(1)[0][0]
            node.cycles.sort(key=lambda c: (c.start_ns, c.round))
            node.attempts.sort(key=lambda a: a.start_ns)
            for part in node.cycles:
                part.workers.sort(key=lambda w: (w.global_rank, w.start_ns))
                if part.rank < 0:
                    part.rank = node.rank
        diagnose.failures_from_spans(nodes)
        nodes.sort(key=lambda n: (n.rank < 0, n.rank, n.start_ns, n.key))
        end_ns = max(self.times, default=0)
        for node in nodes:
            diagnose.end_waits(node, end_ns)
        cycles = self.cycles(nodes)
        trace_ids = {s["trace_id"] for s in spans} | {log["trace_id"] for log in logs}
        trace_ids.discard("")
        state = str(self.job["attributes"].get(sc.NODE_STATE, "")) if self.job else ""
        if not state:
            states = {n.state for n in nodes}
            if sc.STATE_FAILED in states:
                state = sc.STATE_FAILED
            elif states == {sc.STATE_SUCCEEDED}:
                state = sc.STATE_SUCCEEDED
            else:
                state = sc.UNKNOWN_STATE
        if state == sc.STATE_SUCCEEDED:
            diagnose.rendezvous_errors_after_success(nodes, self.exit_warnings)
        failures = diagnose.order_failures([f for n in nodes for f in n.failures])
        run_trace = self.job["trace_id"] if self.job else ""
        if not run_trace:
            node_traces = Counter(
                s["trace_id"] for s in spans if span_kind(s["name"]) == sc.NODE_SPAN
            )
            run_trace = node_traces.most_common(1)[0][0] if node_traces else ""
        start_ns = min(self.times, default=0)
        return JobTimeline(
            run_id=self.run_id,
            trace_id=run_trace,
            start_ns=start_ns,
            end_ns=end_ns,
            state=state,
            nodes=nodes,
            cycles=cycles,
            failures=failures,
            missing=diagnose.missing(cycles, nodes),
            records=len(logs),
            spans=len(spans),
            notes=diagnose.notes(nodes, cycles, spans, other, self.unfinished, self.exit_warnings),
            goodput=compute_goodput(start_ns, end_ns, working_times(cycles), logs),
        )

    def cycles(self, nodes: list[Node]) -> list[Cycle]:
        parts: dict[CycleKey, list[tuple[Node, NodeCycle]]] = defaultdict(list)
        for node in nodes:
            for part in node.cycles:
                parts[part.cycle_key].append((node, part))
        out = []
        for key in sorted(set(parts) | set(self.roots)):
            members = parts.get(key, [])
            root = self.roots.get(key)
            starts = [p.start_ns for _, p in members]
            ends = [p.end_ns for _, p in members]
            if root is not None:
                starts.append(root["start"])
                ends.append(root["end"])
            settings = root["attributes"] if root is not None else {}

            def setting(
                key: str,
                attr: str,
                settings: dict[str, Any] = settings,
                members: list[tuple[Node, NodeCycle]] = members,
            ) -> int | None:
                value = as_int(settings.get(key))
                if value is not None:
                    return value
                known = [getattr(p, attr) for _, p in members if getattr(p, attr) is not None]
                if not known:
                    return None
                return int(Counter(known).most_common(1)[0][0])

            outcome = str(settings.get(sc.OUTCOME, "")) or _outcome([p for _, p in members])
            remaining, closest = diagnose.budget(members)
            cycle = Cycle(
                round=key.number,
                key=key,
                start_ns=min(starts),
                end_ns=max(ends),
                outcome=outcome,
                outcome_from_root=root is not None,
                parts=members,
                remaining_restarts=(
                    remaining
                    if remaining is not None
                    else setting(sc.REMAINING_RESTARTS, "remaining_restarts")
                ),
                closest=closest,
                shards=max(1, as_int(settings.get(sc.SHARDS)) or 1),
                max_restarts=setting(sc.MAX_RESTARTS, "max_restarts"),
                nodes_expected=setting(sc.NODES, "nodes"),
                workers_expected=setting(sc.WORKERS, "workers_expected"),
                trace_ids={p.trace_id for _, p in members if p.trace_id}
                | ({root["trace_id"]} if root is not None else set()),
            )
            if len(members) >= 2:
                median = statistics.median(starts[: len(members)])
                late = [
                    (node, (p.start_ns - median) / NS)
                    for node, p in members
                    if p.start_ns - median >= LATE_JOIN_S * NS
                ]
                cycle.late = sorted(late, key=lambda x: -x[1])
            out.append(cycle)
        return out


def _outcome(parts: list[NodeCycle]) -> str:
    outcomes = {p.outcome for p in parts}
    for outcome in (sc.OUTCOME_FAILED, sc.OUTCOME_UNFINISHED, sc.OUTCOME_RESTARTED):
        if outcome in outcomes:
            return outcome
    return sc.OUTCOME_SUCCEEDED if outcomes else sc.OUTCOME_UNFINISHED
