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
What the data means for a reader (root causes, missing nodes, notes) is
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
from torchelastic_otel.otlp_data import LogItem, Received, SpanEventItem, SpanItem
from torchelastic_otel.timeline import diagnose
from torchelastic_otel.timeline.diagnose import span_kind
from torchelastic_otel.timeline.goodput import compute as compute_goodput
from torchelastic_otel.timeline.goodput import working_times
from torchelastic_otel.timeline.job import (
    LATE_JOIN_S,
    NS,
    Attempt,
    Cycle,
    Failure,
    JobTimeline,
    Node,
    NodeCycle,
    Worker,
)
from torchelastic_otel.torch_messages import is_closed, is_join_attempt, is_shutdown, joined_round


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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


class _Builder:
    """Sorts one run's spans and records into nodes, cycles and failures."""

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
        pid = _int(resource.get(sc.PROCESS_PID))
        instance = str(resource.get(sc.SERVICE_INSTANCE_ID, ""))
        key = (host, -1 if pid is None else pid, instance)
        node = self.nodes.get(key)
        if node is None:
            text = f"{host}:{key[1]}"
            node = self.nodes[key] = Node(key=text, host=host, pid=key[1], instance=instance)
        return node

    # --- spans ---

    def build(self, logs: list[LogItem], spans: list[SpanItem]) -> JobTimeline:
        by_kind: dict[str, list[SpanItem]] = defaultdict(list)
        for s in spans:
            by_kind[span_kind(s["name"])].append(s)
            self.times.append(s["start"])
            self.times.append(s["end"])
            if s["attributes"].get(sc.UNFINISHED):
                self.unfinished += 1
        for s in by_kind.pop(sc.JOB_SPAN, []):
            self.job = s
        for s in by_kind.pop(sc.NODE_SPAN, []):
            self.add_node_span(s)
        for s in by_kind.pop(sc.CYCLE_SPAN, []):
            r = _int(s["attributes"].get(sc.ROUND))
            inferred = bool(s["attributes"].get(sc.INFERRED))
            key = CycleKey.parse(s["attributes"].get(sc.CYCLE_KEY))
            key = key or (CycleKey(r) if r is not None else None)
            if key is not None and not (inferred and key in self.roots):
                self.roots[key] = s
                self.round_of_trace[s["trace_id"]] = key.number
        for s in by_kind.pop(sc.CYCLE_NODE_SPAN, []):
            if s["attributes"].get(sc.INFERRED):
                self.inferred.append(s)
            else:
                self.add_part_span(s, self.node_for(s["resource"]))
        # Traces of torchelastic-otel before workers became events of their part.
        for s in by_kind.pop(sc.WORKER_SPAN, []):
            self.add_worker_span(s)
        for s in by_kind.pop(sc.RENDEZVOUS_SPAN, []):
            self.add_attempt_span(s)
        self.match_repeated_keys()
        # Shard roots are structure only: the cycle root speaks for the cycle.
        by_kind.pop(sc.CYCLE_SHARD_SPAN, None)
        by_kind.pop(sc.NODES_SHARD_SPAN, None)
        other = sum(len(v) for v in by_kind.values())
        self.add_logs(logs)
        self.add_lost()
        return self.finish(logs, spans, other)

    def add_node_span(self, s: SpanItem) -> None:
        a = s["attributes"]
        if a.get(sc.INFERRED):
            self.inferred.append(s)
            return
        node = self.node_for(s["resource"])
        node.spans += 1
        node.state = str(a.get(sc.NODE_STATE, node.state))
        rank = _int(a.get(sc.RANK))
        if rank is not None and rank >= 0:
            self.ranks[node.key][rank] += 100  # the node's final word on its rank
        node.start_ns = s["start"]
        node.end_ns = max(s["end"], s["start"])

    def add_part_span(self, s: SpanItem, node: Node) -> None:
        a = s["attributes"]
        node.spans += 1
        round_ = _int(a.get(sc.ROUND))
        if round_ is None:
            round_ = self.round_of_trace.get(s["trace_id"], -1)
        rank = _int(a.get(sc.RANK))
        part = NodeCycle(
            round=round_,
            rank=-1 if rank is None else rank,
            start_ns=s["start"],
            end_ns=max(s["end"], s["start"]),
            outcome=str(a.get(sc.OUTCOME, sc.OUTCOME_UNFINISHED)),
            rendezvous_ms=_num(a.get(sc.RENDEZVOUS_DURATION_MS)),
            assign_ms=_num(a.get(sc.ASSIGN_DURATION_MS)),
            remaining_restarts=_int(a.get(sc.REMAINING_RESTARTS)),
            max_restarts=_int(a.get(sc.MAX_RESTARTS)),
            nodes=_int(a.get(sc.NODES)),
            workers_expected=_int(a.get(sc.WORKERS)),
            error=s["status_code"] == sc.STATUS_ERROR,
            message=s["status_message"],
            unfinished=bool(a.get(sc.UNFINISHED, False)),
            trace_id=s["trace_id"],
            span_id=s["span_id"],
            attributes=a,
            key=CycleKey.parse(a.get(sc.CYCLE_KEY)),
        )
        if part.rank >= 0:
            self.ranks[node.key][part.rank] += 1
        node.cycles.append(part)
        self.parts_by_span[s["span_id"]] = (node, part)
        self.round_of_trace.setdefault(s["trace_id"], round_)
        for event in s.get("events") or ():
            if event["name"] == sc.WORKER_EVENT:
                self.add_worker_event(node, part, s["span_id"], event)

    def add_worker_event(
        self, node: Node, part: NodeCycle, span_id: str, event: SpanEventItem
    ) -> None:
        """A worker as its node's part says it ended (a span event of the part)."""
        a = event["attributes"]
        grank = _int(a.get(sc.GLOBAL_RANK))
        lrank = _int(a.get(sc.LOCAL_RANK))
        took = _num(a.get(sc.DURATION_MS)) or 0.0
        end = event["time"]
        reason = str(a.get(sc.END_REASON, ""))
        worker = Worker(
            global_rank=-1 if grank is None else grank,
            local_rank=-1 if lrank is None else lrank,
            start_ns=max(part.start_ns, end - int(took * 1e6)),
            end_ns=end,
            state=str(a.get(sc.NODE_STATE, "")),
            end_reason=reason,
            signal=str(a.get(sc.SIGNAL, "")),
            error=reason == "failed",
            message=str(a.get(sc.EXCEPTION_TYPE, "")).rsplit(".", 1)[-1],
            unfinished=bool(a.get(sc.UNFINISHED, False)),
            span_id=span_id,
            attributes=a,
        )
        part.workers.append(worker)
        # A worker's records name its node's part: the part and its rank find it.
        self.worker_spans[f"{span_id}/{worker.global_rank}"] = (node, part, worker)
        self.from_spans.add(span_id)

    def match_repeated_keys(self) -> None:
        """Parts keyed by a restart count their node saw before (``0.1``: no round was
        known, a peer restarted the node) join the cycle whose other nodes' parts they
        overlap most in time: restart counts differ from node to node, time does not.
        Parts that overlap nothing stay cycles of their own, never merged by number."""
        parts = [(n, p) for n in self.nodes.values() for p in n.cycles]
        firm = [(n, p) for n, p in parts if not p.cycle_key.repeated]
        moved: dict[str, CycleKey] = {}
        for node, part in parts:
            if not part.cycle_key.repeated:
                continue
            overlap: Counter[CycleKey] = Counter()
            for other, q in firm:
                both = min(part.end_ns, q.end_ns) - max(part.start_ns, q.start_ns)
                if other is not node and both > 0:
                    overlap[q.cycle_key] += both
            if not overlap:
                continue
            key = overlap.most_common(1)[0][0]
            part.key, part.round, part.matched = key, key.number, True
            moved[part.trace_id] = key
            self.round_of_trace[part.trace_id] = key.number
        for key, root in list(self.roots.items()):
            if key.repeated and root["trace_id"] in moved:
                del self.roots[key]
                self.roots.setdefault(moved[root["trace_id"]], root)

    def lost_node(self, node_id: str, host: str) -> Node:
        """The node torch's rendezvous calls ``node_id`` (``<host>_<pid>_<n>``): the one
        whose own records arrived if any (same pid, same short host name), else a new one."""
        parts = node_id.rsplit("_", 2)
        pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else -1
        same_pid = [n for n in self.nodes.values() if n.pid == pid and pid >= 0]
        short = host.split(".", 1)[0]
        exact = [n for n in same_pid if n.host.split(".", 1)[0] == short]
        if exact or len(same_pid) == 1:
            return (exact or same_pid)[0]
        key = (host, pid, "")
        node = self.nodes.get(key)
        if node is None:
            node = self.nodes[key] = Node(key=f"{host}:{pid}", host=host, pid=pid)
        return node

    def add_lost(self) -> None:
        """What the survivors said of the nodes that left: their parts, and how they left."""
        for s in self.inferred:
            a = s["attributes"]
            node = self.lost_node(str(a.get(sc.NODE_ID, "")), str(a.get(sc.HOST_NAME, "?")))
            reason = str(a.get(sc.LOST_REASON, ""))
            if not node.left:
                node.left = f"lost ({reason})" if reason else "lost"
            if span_kind(s["name"]) == sc.CYCLE_NODE_SPAN:
                round_ = _int(a.get(sc.ROUND))
                own = node.cycle(round_) if round_ is not None else None
                if own is None or not own.has_span:
                    # Its own records (up to its death) made a part without a span:
                    # the survivor's span says how it ended; the records keep the workers.
                    if own is not None:
                        node.cycles.remove(own)
                    self.add_part_span(s, node)
                    if own is not None and round_ is not None:
                        part = node.cycle(round_)
                        assert part is not None
                        part.workers.extend(own.workers)
                        part.start_ns = min(part.start_ns, own.start_ns)
            elif node.state == sc.UNKNOWN_STATE:
                node.state = sc.STATE_LOST
                node.end_ns = max(node.end_ns, s["end"])
        for log in self.lost_records:
            a = log["attributes"]
            node = self.lost_node(str(a.get(sc.LOST_NODE, "")), str(a.get(sc.LOST_HOST, "?")))
            reason = str(a.get(sc.LOST_REASON, ""))
            signal = str(a.get(sc.SIGNAL, ""))
            node.left = f"preempted ({signal})" if signal else f"lost ({reason})"

    def part_for(self, node: Node, round_: int, t_ns: int, trace_id: str) -> NodeCycle:
        """The node's part in ``round_``, made up (from records) when its span is missing."""
        part = next((c for c in node.cycles if trace_id and c.trace_id == trace_id), None)
        part = part or node.cycle(round_)
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
            )
            node.cycles.append(part)
        return part

    def add_worker_span(self, s: SpanItem) -> None:
        a = s["attributes"]
        found = self.parts_by_span.get(s["parent_span_id"])
        if found is not None:
            node, part = found
        else:
            node = self.node_for(s["resource"])
            round_ = _int(a.get(sc.ROUND))
            if round_ is None:
                round_ = self.round_of_trace.get(s["trace_id"], -1)
            part = self.part_for(node, round_, s["start"], s["trace_id"])
            part.start_ns = min(part.start_ns, s["start"])
            part.end_ns = max(part.end_ns, s["end"])
        node.spans += 1
        grank = _int(a.get(sc.GLOBAL_RANK))
        lrank = _int(a.get(sc.LOCAL_RANK))
        worker = Worker(
            global_rank=-1 if grank is None else grank,
            local_rank=-1 if lrank is None else lrank,
            start_ns=s["start"],
            end_ns=max(s["end"], s["start"]),
            state=str(a.get(sc.NODE_STATE, "")),
            end_reason=str(a.get(sc.END_REASON, "")),
            signal=str(a.get(sc.SIGNAL, "")),
            error=s["status_code"] == sc.STATUS_ERROR,
            message=s["status_message"],
            unfinished=bool(a.get(sc.UNFINISHED, False)),
            span_id=s["span_id"],
            attributes=a,
        )
        part.workers.append(worker)
        self.worker_spans[s["span_id"]] = (node, part, worker)
        self.from_spans.add(s["span_id"])

    def add_attempt_span(self, s: SpanItem) -> None:
        a = s["attributes"]
        node = self.node_for(s["resource"])
        node.spans += 1
        unfinished = bool(a.get(sc.UNFINISHED, False))
        failed = s["status_code"] == sc.STATUS_ERROR
        node.attempts.append(
            Attempt(
                start_ns=s["start"],
                end_ns=max(s["end"], s["start"]),
                failed=failed,
                waiting=unfinished and not failed,
                message=s["status_message"],
                attributes=a,
            )
        )

    # --- records ---

    def add_logs(self, logs: list[LogItem]) -> None:
        per_node: dict[int, tuple[Node, list[LogItem]]] = {}
        resources: dict[int, Node] = {}
        for log in logs:
            resource = log["resource"]
            node = resources.get(id(resource))
            if node is None:
                node = resources[id(resource)] = self.node_for(resource)
            entry = per_node.get(id(node))
            if entry is None:
                entry = per_node[id(node)] = (node, [])
            entry[1].append(log)
        for node, items in per_node.values():
            items.sort(key=lambda log: log["time_unix_nano"])
            self.add_node_logs(node, items)

    def add_node_logs(self, node: Node, logs: list[LogItem]) -> None:
        node.records += len(logs)
        self.times.append(logs[0]["time_unix_nano"])
        self.times.append(logs[-1]["time_unix_nano"])
        if not node.start_ns:
            node.start_ns = logs[0]["time_unix_nano"]
        node.end_ns = max(node.end_ns, logs[-1]["time_unix_nano"])
        ranks = self.ranks[node.key]
        waiting_since: int | None = None
        open_workers: dict[str, Worker] = {}
        current: NodeCycle | None = None
        for log in logs:
            a = log["attributes"]
            name = log["event_name"]
            state = a.get(sc.NODE_STATE)
            if a.get(sc.EVENT_KIND) == sc.KIND_RENDEZVOUS:
                waiting_since = self.rendezvous_record(node, log, waiting_since)
                continue
            rank = _int(a.get(sc.RANK))
            if rank is not None and rank >= 0:
                ranks[rank] += 1
            if self.how_it_left(node, log):
                continue
            if name == sc.CYCLE_EVENT:
                waiting_since = None
                part = self.cycle_record(node, log, rank)
                if current is not None and part is not None and part is not current:
                    _close_record_part(current, log["time_unix_nano"], open_workers)
                current = part or current
                continue
            if a.get(sc.SOURCE) == sc.SOURCE_WORKER and a.get(sc.WORKER_ID):
                waiting_since = None
                current = self.worker_record(node, log, current, open_workers)
            elif state in (sc.STATE_SUCCEEDED, sc.STATE_FAILED):
                waiting_since = None  # the agent's final state
                if not node.spans:
                    node.state = str(state)
            elif state == sc.STATE_RENDEZVOUS:
                waiting_since = None  # recorded when the rendezvous completed
            if log["severity_number"] >= sc.SEVERITY_ERROR or state == sc.STATE_FAILED:
                kind = "worker" if a.get(sc.WORKER_ID) else "agent"
                self.add_failure(node, log, kind)
        self.end_of_records(node, waiting_since, open_workers)

    def how_it_left(self, node: Node, log: LogItem) -> bool:
        """A record about a node leaving the job: a survivor's word on a lost node, or
        this node's own notice that a signal stopped it (no failure of the job)."""
        a = log["attributes"]
        if log["event_name"] == sc.NODE_LOST_EVENT:
            self.lost_records.append(log)
            return True
        if log["event_name"] == sc.NODE_LEAVING_EVENT:
            node.left = f"preempted ({a.get(sc.SIGNAL, 'a signal')})"
            return True
        signal = diagnose.signal_exception(log) if a.get(sc.NODE_STATE) == sc.STATE_FAILED else ""
        if signal:
            node.left = node.left or f"preempted ({signal})"
        return bool(signal)

    def end_of_records(
        self, node: Node, waiting_since: int | None, open_workers: dict[str, Worker]
    ) -> None:
        """What is still open when a node's records end."""
        for worker in open_workers.values():
            worker.unfinished = True
        if waiting_since is not None and not any(
            a.waiting and a.start_ns <= waiting_since <= a.end_ns + NS for a in node.attempts
        ):
            # Still waiting when the data ends (or the agent died waiting): no span says so.
            node.attempts.append(
                Attempt(
                    start_ns=waiting_since,
                    end_ns=max(node.end_ns, waiting_since),
                    failed=False,
                    waiting=True,
                    message="no cycle started",
                )
            )

    def cycle_record(self, node: Node, log: LogItem, rank: int | None) -> NodeCycle | None:
        """A cycle event: the node's part in the round, from it when no span came."""
        a = log["attributes"]
        round_ = _int(a.get(sc.ROUND))
        if round_ is None:
            return None
        self.round_of_trace.setdefault(log["trace_id"], round_)
        part = self.part_for(node, round_, log["time_unix_nano"], log["trace_id"])
        if not part.has_span:
            part.rank = rank if rank is not None else part.rank
            part.remaining_restarts = _int(a.get(sc.REMAINING_RESTARTS))
            part.max_restarts = _int(a.get(sc.MAX_RESTARTS))
            part.nodes = _int(a.get(sc.NODES))
            part.workers_expected = _int(a.get(sc.WORKERS))
        return part

    def rendezvous_record(self, node: Node, log: LogItem, waiting_since: int | None) -> int | None:
        """A rendezvous event: is the node waiting in a rendezvous after it?"""
        body = str(log["body"] or "")
        if log["attributes"].get(sc.NODE_STATE) == sc.STATE_FAILED:
            if is_shutdown(log["event_name"]):
                # Not a failure of the job: with c10d it follows most successful
                # runs (the store's host left first). A note says how many.
                diagnose.exit_warning(
                    self.exit_warnings,
                    log["attributes"].get(sc.EXCEPTION_TYPE, sc.RENDEZVOUS_FAILURE),
                )
            else:
                self.add_failure(node, log, "rendezvous")
            return None
        if is_join_attempt(log["event_name"], body):
            return log["time_unix_nano"] if waiting_since is None else waiting_since
        if joined_round(body) is not None or is_closed(body):
            return None
        return waiting_since

    def worker_record(
        self,
        node: Node,
        log: LogItem,
        current: NodeCycle | None,
        open_workers: dict[str, Worker],
    ) -> NodeCycle | None:
        """A worker event: nothing to do when its span arrived, else it stands in for it."""
        if log["span_id"] in self.from_spans:
            return current
        a = log["attributes"]
        t = log["time_unix_nano"]
        round_ = self.round_of_trace.get(log["trace_id"])
        part = current
        if round_ is not None and (part is None or part.round != round_):
            part = self.part_for(node, round_, t, log["trace_id"])
        if part is None:
            restarts = _int(a.get(sc.AGENT_RESTARTS))
            part = self.part_for(node, restarts or 0, t, log["trace_id"])
        if current is not None and part is not current:
            _close_record_part(current, t, open_workers)
        state = str(a.get(sc.NODE_STATE, ""))
        wid = str(a.get(sc.WORKER_ID))
        worker = open_workers.get(wid)
        if worker is None:
            grank = _int(a.get(sc.GLOBAL_RANK))
            lrank = _int(a.get(sc.LOCAL_RANK_IN_METADATA))
            worker = Worker(
                global_rank=-1 if grank is None else grank,
                local_rank=-1 if lrank is None else lrank,
                start_ns=t,
                end_ns=t,
                state=state,
                span_id=log["span_id"],
                from_records=True,
                unfinished=True,
                attributes=a,
            )
            part.workers.append(worker)
            open_workers[wid] = worker
            if log["span_id"]:
                self.worker_spans.setdefault(log["span_id"], (node, part, worker))
        worker.end_ns = max(worker.end_ns, t)
        part.end_ns = max(part.end_ns, t)
        if state in sc.FINAL_WORKER_STATES:
            open_workers.pop(wid, None)
            worker.state = state
            worker.unfinished = False
            worker.end_reason = state.lower()
            worker.signal = str(a.get(sc.SIGNAL, ""))
            worker.error = state == sc.STATE_FAILED
            if worker.error:
                part.outcome = sc.OUTCOME_FAILED
            elif state == sc.STATE_SUCCEEDED and part.outcome == sc.OUTCOME_UNFINISHED:
                part.outcome = sc.OUTCOME_SUCCEEDED
        return part

    def add_failure(self, node: Node, log: LogItem, kind: str) -> None:
        a = log["attributes"]
        found = None
        if kind == "worker":
            found = self.worker_spans.get(log["span_id"]) or self.worker_spans.get(
                f"{log['span_id']}/{_int(a.get(sc.GLOBAL_RANK))}"
            )
        round_ = found[1].round if found is not None else self.round_of_trace.get(log["trace_id"])
        default_type = sc.WORKER_FAILURE if kind == "worker" else sc.RENDEZVOUS_FAILURE
        if kind == "agent":
            default_type = ""
        message = a.get(sc.EXCEPTION_MESSAGE) or a.get(sc.MESSAGE) or log["body"] or ""
        if kind == "agent" and not a.get(sc.EXCEPTION_MESSAGE):
            message = f"agent {a.get(sc.NODE_STATE, sc.STATE_FAILED)}"
        node.failures.append(
            Failure(
                time_ns=log["time_unix_nano"],
                node=node,
                kind=kind,
                round=round_,
                global_rank=_int(a.get(sc.GLOBAL_RANK)) if kind == "worker" else None,
                exc_type=str(a.get(sc.EXCEPTION_TYPE, default_type)),
                message=str(message),
                signal=str(a.get(sc.SIGNAL, "")),
                stacktrace=str(a.get(sc.EXCEPTION_STACKTRACE, "")),
                attributes=a,
            )
        )

    # --- the whole job ---

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
                value = _int(settings.get(key))
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


def _close_record_part(part: NodeCycle, t_ns: int, open_workers: dict[str, Worker]) -> None:
    """A part known from records only ends when the node's next cycle starts."""
    if part.has_span:
        return
    for wid, worker in list(open_workers.items()):
        if any(worker is w for w in part.workers):
            del open_workers[wid]
            worker.end_ns = max(worker.end_ns, t_ns)
            worker.unfinished = False
            worker.end_reason = sc.END_RESTARTED
            worker.state = sc.STATE_TERMINATED
    part.end_ns = max(part.end_ns, t_ns)
    part.unfinished = False
    if part.outcome == sc.OUTCOME_UNFINISHED:
        part.outcome = sc.OUTCOME_RESTARTED


def _outcome(parts: list[NodeCycle]) -> str:
    outcomes = {p.outcome for p in parts}
    for outcome in (sc.OUTCOME_FAILED, sc.OUTCOME_UNFINISHED, sc.OUTCOME_RESTARTED):
        if outcome in outcomes:
            return outcome
    return sc.OUTCOME_SUCCEEDED if outcomes else sc.OUTCOME_UNFINISHED
