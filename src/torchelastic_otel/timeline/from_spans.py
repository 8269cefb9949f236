"""A run's spans read into nodes, their cycle parts, workers and rendezvous attempts.

The cycle roots, each node's ``torchelastic.cycle.node`` parts with their
``torchelastic.worker`` span events (worker spans in older data), rendezvous attempts
that started no cycle, and what survivors exported for nodes that vanished
(docs/mapping.md, "Traces").
"""

from collections import Counter, defaultdict

from torchelastic_otel import semconv as sc
from torchelastic_otel.cycles import CycleKey
from torchelastic_otel.otlp_data import SpanEventItem, SpanItem
from torchelastic_otel.timeline.diagnose import span_kind
from torchelastic_otel.timeline.job import Attempt, Node, NodeCycle, Worker
from torchelastic_otel.timeline.state import BuildState, as_int, as_num


class SpanReader(BuildState):
    """Reads spans into the state (timeline/state.py)."""

    def add_spans(self, spans: list[SpanItem]) -> int:
        """Every span of the run; returns how many were of no known kind."""
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
            r = as_int(s["attributes"].get(sc.ROUND))
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
        return sum(len(v) for v in by_kind.values())

    def add_node_span(self, s: SpanItem) -> None:
        a = s["attributes"]
        if a.get(sc.INFERRED):
            self.inferred.append(s)
            return
        node = self.node_for(s["resource"])
        node.spans += 1
        node.state = str(a.get(sc.NODE_STATE, node.state))
        rank = as_int(a.get(sc.RANK))
        if rank is not None and rank >= 0:
            self.ranks[node.key][rank] += 100  # the node's final word on its rank
        node.start_ns = s["start"]
        node.end_ns = max(s["end"], s["start"])

    def add_part_span(self, s: SpanItem, node: Node) -> None:
        a = s["attributes"]
        node.spans += 1
        round_ = as_int(a.get(sc.ROUND))
        if round_ is None:
            round_ = self.round_of_trace.get(s["trace_id"], -1)
        rank = as_int(a.get(sc.RANK))
        part = NodeCycle(
            round=round_,
            rank=-1 if rank is None else rank,
            start_ns=s["start"],
            end_ns=max(s["end"], s["start"]),
            outcome=str(a.get(sc.OUTCOME, sc.OUTCOME_UNFINISHED)),
            rendezvous_ms=as_num(a.get(sc.RENDEZVOUS_DURATION_MS)),
            assign_ms=as_num(a.get(sc.ASSIGN_DURATION_MS)),
            remaining_restarts=as_int(a.get(sc.REMAINING_RESTARTS)),
            max_restarts=as_int(a.get(sc.MAX_RESTARTS)),
            nodes=as_int(a.get(sc.NODES)),
            workers_expected=as_int(a.get(sc.WORKERS)),
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
        grank = as_int(a.get(sc.GLOBAL_RANK))
        lrank = as_int(a.get(sc.LOCAL_RANK))
        took = as_num(a.get(sc.DURATION_MS)) or 0.0
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
                round_ = as_int(a.get(sc.ROUND))
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

    def add_worker_span(self, s: SpanItem) -> None:
        a = s["attributes"]
        found = self.parts_by_span.get(s["parent_span_id"])
        if found is not None:
            node, part = found
        else:
            node = self.node_for(s["resource"])
            round_ = as_int(a.get(sc.ROUND))
            if round_ is None:
                round_ = self.round_of_trace.get(s["trace_id"], -1)
            part = self.part_for(node, round_, s["start"], s["trace_id"])
            part.start_ns = min(part.start_ns, s["start"])
            part.end_ns = max(part.end_ns, s["end"])
        node.spans += 1
        grank = as_int(a.get(sc.GLOBAL_RANK))
        lrank = as_int(a.get(sc.LOCAL_RANK))
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
