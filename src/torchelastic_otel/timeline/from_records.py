"""A run's log records read into nodes, parts and workers, where no span says it.

Records add what spans cannot: the errors (``exception.*``), the rendezvous' progress
(who is still waiting) and how a node left; and they stand in for spans that never
arrived (a node killed before it exported them, a cycle still running when the data
was taken).
"""

from torchelastic_otel import semconv as sc
from torchelastic_otel.otlp_data import LogItem
from torchelastic_otel.timeline import diagnose
from torchelastic_otel.timeline.job import NS, Attempt, Failure, Node, NodeCycle, Worker
from torchelastic_otel.timeline.state import BuildState, as_int
from torchelastic_otel.torch_messages import is_closed, is_join_attempt, is_shutdown, joined_round


class RecordReader(BuildState):
    """Reads records into the state (timeline/state.py)."""

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
            rank = as_int(a.get(sc.RANK))
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
        round_ = as_int(a.get(sc.ROUND))
        if round_ is None:
            return None
        self.round_of_trace.setdefault(log["trace_id"], round_)
        part = self.part_for(node, round_, log["time_unix_nano"], log["trace_id"])
        if not part.has_span:
            part.rank = rank if rank is not None else part.rank
            part.remaining_restarts = as_int(a.get(sc.REMAINING_RESTARTS))
            part.max_restarts = as_int(a.get(sc.MAX_RESTARTS))
            part.nodes = as_int(a.get(sc.NODES))
            part.workers_expected = as_int(a.get(sc.WORKERS))
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
        trace = log["trace_id"]
        round_ = self.round_of_trace.get(trace)
        part = current
        if round_ is not None and (part is None or part.round != round_):
            part = self.part_for(node, round_, t, trace)
        if part is not None and trace and part.trace_id and part.trace_id != trace:
            part = None  # the record names another cycle (its part's trace)
        if part is None:
            restarts = as_int(a.get(sc.AGENT_RESTARTS))
            part = self.part_for(node, restarts or 0, t, log["trace_id"])
        if current is not None and part is not current:
            _close_record_part(current, t, open_workers)
        state = str(a.get(sc.NODE_STATE, ""))
        wid = str(a.get(sc.WORKER_ID))
        worker = open_workers.get(wid)
        if worker is None:
            grank = as_int(a.get(sc.GLOBAL_RANK))
            lrank = as_int(a.get(sc.LOCAL_RANK_IN_METADATA))
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
                f"{log['span_id']}/{as_int(a.get(sc.GLOBAL_RANK))}"
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
                global_rank=as_int(a.get(sc.GLOBAL_RANK)) if kind == "worker" else None,
                exc_type=str(a.get(sc.EXCEPTION_TYPE, default_type)),
                message=str(message),
                signal=str(a.get(sc.SIGNAL, "")),
                stacktrace=str(a.get(sc.EXCEPTION_STACKTRACE, "")),
                attributes=a,
            )
        )


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
