"""The span state machine: a run's events as one trace per restart cycle.

docs/mapping.md ("Traces") is the specification; in short:

* **The run trace** (id from the run id) holds the run's skeleton: the job span
  (emitted by the node of rank 0) and one lean node span per agent process, plus
  a ``torchelastic.rendezvous`` span for each rendezvous attempt that did not
  start a cycle (it failed, or was still waiting at exit).
* **A cycle trace** per restart cycle (id from the run id and the rendezvous
  round, which every node of the round agrees on) holds the cycle root (emitted
  by the round's rank 0) and one ``torchelastic.cycle.node`` span per node (from
  the start of its rendezvous to the end of the cycle, with its outcome); each
  worker process is a span event of its node's part. Cycle roots link to the job
  span and to the previous cycle.
* **Shards**: past ``shard_nodes`` nodes, node ``r``'s spans go to shard
  ``r // shard_nodes``: a trace of its own (ids derived from the shard too) under a
  shard root that rank 0 emits, so that no trace outgrows a backend's limits.
* **Nodes that vanish**: the next cycle's rank 0 learns from the torchrun
  integration which nodes left since the cycle before (``torchelastic.lost.*`` on
  its cycle event) and exports, for each node that did not say goodbye, its part in
  the cycle it died in (``torchelastic.inferred``), a record naming it, and a fact
  for the metrics. A node whose agent got a signal ends its part ``terminated``.

Every id in a cycle trace is derived from (run id, round, rank), so nodes agree on
them without talking, an agent can tell its workers their part's id before they
start, and a survivor can export a lost node's part. Spans are built when they end,
from what the state machine kept: nothing is held open in the tracer, and the log
record of every event names the span it belongs to.

Driven by one thread (the export worker), so it needs no locks.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from torchelastic_otel import semconv as sc
from torchelastic_otel.cycles import CycleKey
from torchelastic_otel.otel.derived_ids import (
    cycle_node_span_id,
    cycle_parent_span_id,
    cycle_span_id,
    cycle_trace_id,
    job_parent_span_id,
    job_span_id,
    other_span_id,
    run_trace_id,
    shard_count,
    shard_of,
)
from torchelastic_otel.otel.mapping import AttrValue, MappedEvent, is_int64
from torchelastic_otel.otel.sinks import SpanSink
from torchelastic_otel.semconv import (
    AGENT_RESTARTS,
    ASSIGN_DURATION_MS,
    CYCLE_EVENT,
    CYCLE_NODE_SPAN,
    CYCLE_SPAN,
    CYCLES,
    DURATION_MS,
    END_REASON,
    END_RESTARTED,
    END_SHUTDOWN,
    EXCEPTION_MESSAGE,
    EXCEPTION_TYPE,
    EXIT_CODE,
    FINAL_WORKER_STATES,
    GLOBAL_RANK,
    GROUP_RANK,
    HOST_NAME,
    JOB_SPAN,
    KIND_RENDEZVOUS,
    LOCAL_RANK,
    LOCAL_RANK_IN_METADATA,
    MAX_RESTARTS,
    NAME,
    NODE_SPAN,
    NODE_STATE,
    NODES,
    OUTCOME,
    OUTCOME_FAILED,
    OUTCOME_RESTARTED,
    OUTCOME_SUCCEEDED,
    OUTCOME_UNFINISHED,
    RANK,
    REMAINING_RESTARTS,
    RENDEZVOUS_DURATION_MS,
    RENDEZVOUS_SPAN,
    RENDEZVOUS_START_EVENT,
    ROUND,
    RUN_ID,
    SIGNAL,
    SOURCE,
    SOURCE_WORKER,
    STATE_ASSIGN_WORKER_RANKS,
    STATE_FAILED,
    STATE_RENDEZVOUS,
    STATE_START,
    STATE_SUCCEEDED,
    STATE_TERMINATED,
    UNFINISHED,
    UNKNOWN_RANK,
    UNKNOWN_STATE,
    WORKER_ID,
    WORKERS,
)
from torchelastic_otel.torch_messages import (
    got_signal,
    is_next_rendezvous,
    joined_round,
    signal_name,
)

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
# A span's status message is for the eye; the whole error stays on its log record.
_MAX_STATUS = 256
_OUTCOME_STATE = {
    OUTCOME_SUCCEEDED: STATE_SUCCEEDED,
    OUTCOME_FAILED: STATE_FAILED,
    OUTCOME_RESTARTED: STATE_TERMINATED,
    OUTCOME_UNFINISHED: UNKNOWN_STATE,
    sc.OUTCOME_TERMINATED: STATE_TERMINATED,
    sc.OUTCOME_LOST: sc.STATE_LOST,
}
DEFAULT_SHARD_NODES = 1000


@dataclass
class Fact:
    """Something the state machine concluded, for the metrics (``kind`` says what)."""

    kind: str  # "cycle", "worker_failure", "rendezvous_failure", "workers_started", ...
    run_id: str
    t_ns: int
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    value: float = 0.0


@dataclass
class _Pending:
    """A span known by its ids, built when it ends."""

    name: str
    trace_id: int
    span_id: int
    parent_span_id: int  # 0: a root
    start_ns: int
    attributes: dict[str, AttrValue]
    links: list[tuple[int, int]] = field(default_factory=list)
    events: list[tuple[str, int, dict[str, AttrValue]]] = field(default_factory=list)


@dataclass
class _Worker:
    start_ns: int
    global_rank: int
    worker_id: str


@dataclass
class _Cycle:
    key: int
    from_round: bool  # the key is the rendezvous round (else the restart count)
    id_key: int | str  # what its ids derive from: the key, made unique on this node
    opened_ns: int
    node: _Pending
    rank: int
    workers: dict[str, _Worker] = field(default_factory=dict)
    outcome: str = OUTCOME_UNFINISHED
    error: str = ""
    error_is_own: bool = False
    started_workers: bool = False
    root_attributes: dict[str, AttrValue] = field(default_factory=dict)  # for rank 0's root


@dataclass
class _Ended:
    """What this node keeps of the cycle before the open one (for lost nodes' parts)."""

    key: int
    id_key: int | str
    start_ns: int
    end_ns: int
    outcome: str
    rank: int
    nodes: int


@dataclass
class _Run:
    run_id: str
    node: _Pending
    rank: int = UNKNOWN_RANK
    shard: int | None = None  # the node span's shard of the run trace, once fixed
    agent_state: str = UNKNOWN_STATE
    cycle: _Cycle | None = None
    cycles: list[tuple[int, bool]] = field(default_factory=list)  # keys seen, in order
    rdzv_start_ns: int | None = None  # a rendezvous attempt in progress
    steps_ms: dict[str, float] = field(default_factory=dict)  # durations for the next cycle
    settings: dict[str, AttrValue] = field(default_factory=dict)  # restarts and sizes
    roots: list[tuple[int, int]] = field(default_factory=list)  # cycle roots emitted here
    previous: _Ended | None = None  # the cycle before the open one, as this node saw it
    max_nodes: int = 0  # the most nodes of any cycle: how many run-trace shards there are
    signal: str = ""  # the signal that stopped this node's agent (a preemption), if any


class SpanStateMachine:
    """Builds the traces of docs/mapping.md from a stream of mapped events.

    Args:
        sink: the tracer spans are built on, and its id generator (which must let
            the state machine choose ids; without one, spans keep the tracer's ids
            and only the log records' links are derived).
        host_name: this node's name, for the node span.
        on_fact: called with what the machine concludes (for the metrics).
        on_record: called with a record the machine writes itself (a lost node), its
            time and the context it belongs to.
        shard_nodes: nodes per trace before a cycle (and the run) is split in shards
            (``TORCHELASTIC_OTEL_TRACE_SHARD_NODES``; ``0``: never).
    """

    def __init__(
        self,
        sink: SpanSink,
        host_name: str,
        on_fact: Callable[[Fact], None] | None = None,
        on_record: Callable[[MappedEvent, int, Context], None] | None = None,
        shard_nodes: int = DEFAULT_SHARD_NODES,
    ) -> None:
        self._tracer = sink.tracer
        self._ids = sink.ids
        self._host = host_name
        self._on_fact = on_fact or (lambda fact: None)
        self._on_record = on_record or (lambda m, t_ns, context: None)
        self._shard_nodes = shard_nodes
        self._runs: dict[str, _Run] = {}
        self._shut = False

    # --- the events ---

    def on_event(self, m: MappedEvent, t_ns: int) -> Context:
        """Advance the state machine; return the context the event's log record joins."""
        run = self._run_for(m.run_id, t_ns - _duration_ns(m))
        if m.rank not in (UNKNOWN_RANK, run.rank) and m.kind != KIND_RENDEZVOUS:
            run.rank = m.rank
        if m.kind == KIND_RENDEZVOUS:
            ids = self._on_rdzv(run, m, t_ns)
        else:
            ids = self._on_agent(run, m, t_ns)
        return trace.set_span_in_context(NonRecordingSpan(_context(*ids)))

    def waiting(self) -> dict[str, int]:
        """Per run: 1 if this node waits in a rendezvous now, else 0 (a gauge's reading)."""
        return {
            run_id: int(run.rdzv_start_ns is not None and run.cycle is None)
            for run_id, run in list(self._runs.items())
        }

    def budget(self) -> dict[str, tuple[int, int]]:
        """Per run: (restarts left, restarts allowed), as the last cycle said."""
        out = {}
        for run_id, run in list(self._runs.items()):
            remaining = run.settings.get(REMAINING_RESTARTS)
            limit = run.settings.get(MAX_RESTARTS)
            if is_int64(remaining) and is_int64(limit):
                out[run_id] = (remaining, limit)
        return out

    def rank_of(self, run_id: str) -> int:
        """The node's rank in ``run_id`` as far as known (``-1`` before)."""
        run = self._runs.get(run_id)
        return run.rank if run is not None else UNKNOWN_RANK

    def context_of(self, run_id: str) -> Context:
        """Where a record about ``run_id`` that is no event (a summary) belongs now."""
        run = self._runs.get(run_id)
        if run is None:
            return Context()
        return trace.set_span_in_context(NonRecordingSpan(_context(*self._here(run))))

    def shutdown(self, t_ns: int) -> None:
        """End everything still open (marked unfinished); rank 0 emits the job span."""
        if self._shut:
            return
        self._shut = True
        for run in self._runs.values():
            if run.cycle is not None:
                if run.signal:
                    self._close_cycle(run, t_ns, sc.OUTCOME_TERMINATED)
                else:
                    self._close_cycle(run, t_ns, OUTCOME_UNFINISHED, unfinished=True)
            if run.rdzv_start_ns is not None:
                self._rendezvous_span(run, t_ns, "", unfinished=True)
            node = run.node
            self._fix_shard(run)
            node.attributes.update({RANK: run.rank, CYCLES: len(run.cycles)})
            if run.signal:
                # A preemption notice is no failure of the job: the node says why it left.
                node.attributes.update({NODE_STATE: STATE_TERMINATED, SIGNAL: run.signal})
                self._emit(node, t_ns, _status(False, ""))
            else:
                node.attributes[NODE_STATE] = run.agent_state
                self._emit(node, t_ns, _status(run.agent_state == STATE_FAILED, "agent FAILED"))
            if run.rank == 0:
                self._emit_job_span(run, t_ns)
        # The runs stay: the metrics' last collection reads their gauges after this.

    # --- the rendezvous ---

    def _on_rdzv(self, run: _Run, m: MappedEvent, t_ns: int) -> tuple[int, int]:
        name = str(m.attributes.get(NAME, m.event_name))
        joining = is_next_rendezvous(name)
        if m.node_state == STATE_FAILED:
            if run.rdzv_start_ns is not None and run.cycle is None:
                error = m.exception.get(EXCEPTION_MESSAGE) or m.body
                self._rendezvous_span(run, t_ns, error)
                self._fact("rendezvous_failure", run, t_ns, _error_type(m))
            return self._here(run)
        if not joining:
            return self._here(run)
        round_ = joined_round(m.body)
        if round_ is not None and is_int64(round_) and m.rank != UNKNOWN_RANK:
            # "has joined round N ... as rank R": the cycle N starts here.
            self._open_cycle(run, round_, True, m.rank, t_ns)
        elif run.rdzv_start_ns is None and (run.cycle is None or run.cycle.started_workers):
            # A new attempt to join: the cycle this node was in is over.
            if run.cycle is not None:
                self._close_cycle(run, t_ns, self._outcome_now(run.cycle))
            run.rdzv_start_ns = t_ns
        return self._here(run)

    # --- the agent ---

    def _on_agent(self, run: _Run, m: MappedEvent, t_ns: int) -> tuple[int, int]:
        state = m.node_state
        worker_id = m.attributes.get(WORKER_ID)
        duration_ms = m.attributes.get(DURATION_MS)
        if m.event_name == CYCLE_EVENT:
            return self._on_cycle_event(run, m, t_ns)
        if m.event_name == sc.NODE_LEAVING_EVENT:
            run.signal = str(m.attributes.get(SIGNAL) or "SIGTERM")
            return self._here(run)
        if m.event_name == RENDEZVOUS_START_EVENT:
            # The agent starts a rendezvous: the cycle this node was in is over.
            if run.cycle is not None:
                self._close_cycle(run, t_ns, self._outcome_now(run.cycle))
            if run.rdzv_start_ns is None:
                run.rdzv_start_ns = t_ns
            return self._here(run)
        if isinstance(duration_ms, (int, float)) and not isinstance(duration_ms, bool):
            self._on_step(run, m, t_ns, state, float(duration_ms))
        elif m.attributes.get(SOURCE) == SOURCE_WORKER and worker_id:
            return self._on_worker(run, m, t_ns, str(worker_id))
        elif state in (STATE_SUCCEEDED, STATE_FAILED):
            signal = run.signal or (_signal_of(m) if state == STATE_FAILED else "")
            if signal:
                # torch's SignalException: the agent was told to stop (a preemption).
                run.signal = signal
                if run.cycle is not None:
                    self._close_cycle(run, t_ns, sc.OUTCOME_TERMINATED)
            elif run.cycle is not None:
                outcome = OUTCOME_SUCCEEDED if state == STATE_SUCCEEDED else OUTCOME_FAILED
                self._close_cycle(run, t_ns, outcome, error=_error_text(m))
        run.agent_state = state
        return self._here(run)

    def _on_step(
        self, run: _Run, m: MappedEvent, t_ns: int, state: str, duration_ms: float
    ) -> None:
        """One of the agent's timed steps: RENDEZVOUS, ASSIGN_WORKER_RANKS."""
        if state == STATE_RENDEZVOUS:
            start = t_ns - _duration_ns(m)
            cycle = run.cycle
            if cycle is not None and cycle.opened_ns < start:
                self._close_cycle(run, start, self._outcome_now(cycle))
            if run.cycle is None:
                run.rdzv_start_ns = min(run.rdzv_start_ns or start, start)
                run.steps_ms[RENDEZVOUS_DURATION_MS] = duration_ms
            else:  # the cycle was opened by this rendezvous' own "joined" event
                run.cycle.node.attributes[RENDEZVOUS_DURATION_MS] = duration_ms
                run.cycle.node.start_ns = min(run.cycle.node.start_ns, start)
            self._fact("rendezvous", run, t_ns, {}, duration_ms / 1000)
        elif state == STATE_ASSIGN_WORKER_RANKS:
            target = run.cycle.node.attributes if run.cycle is not None else run.steps_ms
            target[ASSIGN_DURATION_MS] = duration_ms

    def _on_cycle_event(self, run: _Run, m: MappedEvent, t_ns: int) -> tuple[int, int]:
        a = m.attributes
        round_ = a.get(ROUND)
        rank = a.get(GROUP_RANK, m.rank)
        rank = rank if is_int64(rank) else m.rank
        if is_int64(round_):
            key, from_round = round_, True
        else:
            key, from_round = _restarts(m), False
        run.settings = {}
        for setting in (REMAINING_RESTARTS, MAX_RESTARTS, NODES, WORKERS):
            value = a.get(setting)
            if is_int64(value):
                run.settings[setting] = value
        cycle = self._open_cycle(run, key, from_round, int(rank), t_ns)
        cycle.node.attributes.update(run.settings)
        run.rank = cycle.rank
        nodes = run.settings.get(NODES)
        if is_int64(nodes):
            run.max_nodes = max(run.max_nodes, nodes)
        if cycle.rank == 0:
            # The node that would count lost nodes: its counter exists from now on.
            self._fact("counts_lost_nodes", run, t_ns, {})
        lost = a.get(sc.LOST_NODES)
        if isinstance(lost, (list, tuple)) and lost:
            self._on_lost(run, cycle, m, t_ns)
        return cycle.node.trace_id, cycle.node.span_id

    # --- nodes that left ---

    def _on_lost(self, run: _Run, cycle: _Cycle, m: MappedEvent, t_ns: int) -> None:
        """The nodes that left since the cycle before: name them, export what they could not."""
        a = m.attributes
        nodes = [str(n) for n in _list(a.get(sc.LOST_NODES))]
        hosts = [str(h) for h in _list(a.get(sc.LOST_HOSTS))]
        ranks = [r if is_int64(r) else UNKNOWN_RANK for r in _list(a.get(sc.LOST_RANKS))]
        signals = [str(x) for x in _list(a.get(sc.LOST_SIGNALS))]
        before = run.previous
        lost_round = a.get(sc.LOST_ROUND)
        if before is None or (is_int64(lost_round) and lost_round != before.key):
            # This node was not in that cycle (or saw another): its ids from the round.
            key = lost_round if is_int64(lost_round) else cycle.key - 1
            before = _Ended(key, key, cycle.node.start_ns, t_ns, OUTCOME_RESTARTED, -1, 0)
        reasons: list[str] = []
        for i, node_id in enumerate(nodes):
            host = hosts[i] if i < len(hosts) else node_id.rsplit("_", 2)[0]
            rank = ranks[i] if i < len(ranks) else UNKNOWN_RANK
            signal = signals[i] if i < len(signals) else ""
            if signal:
                reason = sc.LOST_REASON_PREEMPTED
            elif before.outcome == OUTCOME_FAILED:
                reason = sc.LOST_REASON_COLLECTIVE
            else:
                reason = sc.LOST_REASON_HEARTBEAT
            reasons.append(reason)
            about: dict[str, AttrValue] = {
                sc.LOST_NODE: node_id,
                sc.LOST_HOST: host,
                sc.LOST_RANK: rank,
                sc.LOST_ROUND: before.key,
                sc.LOST_REASON: reason,
            }
            if not signal and rank >= 0:
                # It said nothing as it went: its part never left its memory.
                self._emit_lost_part(run, cycle, before, rank, node_id, host, reason)
            self._record_lost(run, cycle, t_ns, about, signal)
            self._fact("node_lost", run, t_ns, {sc.LOST_REASON: reason})
        cycle.root_attributes.update(
            {
                sc.LOST_NODES: nodes,
                sc.LOST_COUNT: len(nodes),
                sc.LOST_REASON: ",".join(sorted(set(reasons))),
            }
        )

    def _emit_lost_part(
        self,
        run: _Run,
        cycle: _Cycle,
        before: _Ended,
        rank: int,
        node_id: str,
        host: str,
        reason: str,
    ) -> None:
        shard = shard_of(rank, self._shard_nodes)
        attrs: dict[str, AttrValue] = {
            RUN_ID: run.run_id,
            RANK: rank,
            NODE_STATE: sc.STATE_LOST,
            ROUND: before.key,
            OUTCOME: sc.OUTCOME_LOST,
            sc.NODE_ID: node_id,
            HOST_NAME: host,
            sc.LOST_REASON: reason,
            sc.INFERRED: True,
            sc.REPORTED_BY: cycle.rank,
        }
        message = f"node {node_id} was lost ({reason}); exported by rank {cycle.rank}"
        part = _Pending(
            f"{CYCLE_NODE_SPAN} {host}",
            cycle_trace_id(run.run_id, before.id_key, shard),
            other_span_id("lost-part", run.run_id, before.id_key, rank),
            cycle_parent_span_id(run.run_id, before.id_key, shard),
            before.start_ns,
            attrs,
        )
        self._emit(part, max(before.end_ns, before.start_ns), _status(True, message))
        if rank == 0:
            # The cycle's root was the lost node's to emit: its shards' parts need it.
            root = {k: v for k, v in attrs.items() if k not in (HOST_NAME, sc.NODE_ID)}
            self._emit_roots(run, before.key, before.id_key, before.nodes, root, before, True)
        node = _Pending(
            f"{NODE_SPAN} {host}",
            run_trace_id(run.run_id, shard),
            self._random_id(run, node_id),
            job_parent_span_id(run.run_id, shard),
            before.start_ns,
            {**attrs, ROUND: before.key},
        )
        self._emit(node, max(before.end_ns, before.start_ns), _status(True, message))

    def _record_lost(
        self, run: _Run, cycle: _Cycle, t_ns: int, about: dict[str, AttrValue], signal: str
    ) -> None:
        how = f"said it got {signal}" if signal else str(about[sc.LOST_REASON])
        body = (
            f"node {about[sc.LOST_NODE]} (host {about[sc.LOST_HOST]}, rank "
            f"{about[sc.LOST_RANK]} in round {about[sc.LOST_ROUND]}) left the job: {how}"
        )
        record = MappedEvent(
            kind=sc.KIND_AGENT,
            event_name=sc.NODE_LOST_EVENT,
            body=body,
            severity=sc.SEVERITY_WARN,
            attributes={
                RUN_ID: run.run_id,
                RANK: cycle.rank,
                NODE_STATE: sc.STATE_LOST,
                sc.EVENT_KIND: sc.KIND_AGENT,
                NAME: sc.NODE_LOST_EVENT,
                ROUND: cycle.key,
                **about,
                **({SIGNAL: signal} if signal else {}),
            },
            timestamp_ns=None,
        )
        context = trace.set_span_in_context(
            NonRecordingSpan(_context(cycle.node.trace_id, cycle.node.span_id))
        )
        self._on_record(record, t_ns, context)

    # --- the workers ---

    def _on_worker(self, run: _Run, m: MappedEvent, t_ns: int, worker_id: str) -> tuple[int, int]:
        state = m.node_state
        cycle = run.cycle
        if cycle is None or (state == STATE_START and worker_id in cycle.workers):
            # Workers without a known cycle (no cycle event, no rendezvous events):
            # the restart count stands in for the round.
            if cycle is not None:
                self._close_cycle(run, t_ns, self._outcome_now(cycle))
            cycle = self._open_cycle(run, _restarts(m), False, run.rank, t_ns)
        worker = cycle.workers.get(worker_id)
        if worker is None:
            global_rank = m.attributes.get(GLOBAL_RANK)
            rank_value = global_rank if is_int64(global_rank) else -1
            worker = cycle.workers[worker_id] = _Worker(t_ns, rank_value, worker_id)
            if state == STATE_START and not cycle.started_workers:
                cycle.started_workers = True
                self._fact("workers_started", run, t_ns, {}, (t_ns - cycle.opened_ns) / 1e9)
        if state in FINAL_WORKER_STATES:
            self._end_worker(run, cycle, worker_id, m, t_ns)
        return cycle.node.trace_id, cycle.node.span_id

    def _end_worker(
        self, run: _Run, cycle: _Cycle, worker_id: str, m: MappedEvent, t_ns: int
    ) -> None:
        worker = cycle.workers.pop(worker_id)
        state = m.node_state
        extra: dict[str, AttrValue] = {
            key: m.attributes[key] for key in (SIGNAL, EXIT_CODE) if key in m.attributes
        }
        local_rank = m.attributes.get(LOCAL_RANK_IN_METADATA)
        if is_int64(local_rank):
            extra[LOCAL_RANK] = local_rank
        failed = state == STATE_FAILED
        if failed:
            cycle.outcome = OUTCOME_FAILED
            # The root cause names the cycle: a worker with an error of its own, not
            # one the agent killed (a signal and no error file) because of it.
            own_error = SIGNAL not in m.attributes
            if not cycle.error or (own_error and not cycle.error_is_own):
                cycle.error = _error_text(m)
                cycle.error_is_own = own_error
            if own_error:
                extra[EXCEPTION_TYPE] = m.exception.get(EXCEPTION_TYPE, sc.WORKER_FAILURE)
            self._fact("worker_failure", run, t_ns, _error_type(m))
        elif state == STATE_SUCCEEDED and cycle.outcome == OUTCOME_UNFINISHED:
            cycle.outcome = OUTCOME_SUCCEEDED
        self._worker_event(cycle, worker, t_ns, state.lower(), state, extra)
        if not cycle.workers and cycle.started_workers:
            # The whole group ended: by failing (a restart or the end follows), by
            # succeeding, or stopped by the agent.
            outcome = OUTCOME_RESTARTED if cycle.outcome == OUTCOME_UNFINISHED else cycle.outcome
            self._close_cycle(run, t_ns, outcome)

    @staticmethod
    def _worker_event(
        cycle: _Cycle,
        worker: _Worker,
        t_ns: int,
        reason: str,
        state: str,
        extra: dict[str, AttrValue] | None = None,
    ) -> None:
        """A worker's life as a span event of its node's part (at its end)."""
        attrs: dict[str, AttrValue] = {
            GLOBAL_RANK: worker.global_rank,
            END_REASON: reason,
            NODE_STATE: state,
            DURATION_MS: round((t_ns - worker.start_ns) / 1e6, 3),
        }
        if worker.global_rank < 0:
            attrs[WORKER_ID] = worker.worker_id
        if extra:
            attrs.update(extra)
        cycle.node.events.append((sc.WORKER_EVENT, t_ns, attrs))

    # --- cycles ---

    def _open_cycle(self, run: _Run, key: int, from_round: bool, rank: int, t_ns: int) -> _Cycle:
        cycle = run.cycle
        if cycle is not None:
            if cycle.key == key:
                if from_round and not cycle.from_round:
                    cycle.from_round = True
                if rank not in (UNKNOWN_RANK, cycle.rank):
                    cycle.rank = rank
                    self._place_part(run, cycle)
                cycle.node.attributes[RANK] = cycle.rank
                return cycle
            self._close_cycle(run, t_ns, self._outcome_now(cycle))
        start = min(run.rdzv_start_ns or t_ns, t_ns)
        run.rdzv_start_ns = None
        # A restart count can repeat on a node (a peer's restart does not count
        # here): ids must not, so a key seen before gets its occurrence appended.
        cycle_key = CycleKey.on_node(key, (k for k, _ in run.cycles))
        id_key = cycle_key.id_key
        attrs: dict[str, AttrValue] = {
            RUN_ID: run.run_id,
            RANK: rank,
            NODE_STATE: STATE_START,
            ROUND: key,
            **run.steps_ms,
            **run.settings,
        }
        if cycle_key.repeated:
            attrs[sc.CYCLE_KEY] = str(cycle_key)
        run.steps_ms = {}
        if rank != UNKNOWN_RANK:
            run.rank = rank
        self._fix_shard(run)
        node = _Pending(
            f"{CYCLE_NODE_SPAN} {self._host}",
            0,
            0,
            0,
            start,
            attrs,
            links=[(run.node.trace_id, run.node.span_id)],
        )
        cycle = run.cycle = _Cycle(key, from_round, id_key, t_ns, node, rank)
        self._place_part(run, cycle)
        run.cycles.append((key, from_round))
        # The value: cycles before this one on this node (a restart when > 0).
        self._fact("cycle_opened", run, t_ns, {}, float(len(run.cycles) - 1))
        return cycle

    def _place_part(self, run: _Run, cycle: _Cycle) -> None:
        """The part's ids: its shard's trace, under the cycle root or the shard's root."""
        shard = shard_of(cycle.rank, self._shard_nodes)
        cycle.node.trace_id = cycle_trace_id(run.run_id, cycle.id_key, shard)
        cycle.node.span_id = cycle_node_span_id(run.run_id, cycle.id_key, cycle.rank)
        cycle.node.parent_span_id = cycle_parent_span_id(run.run_id, cycle.id_key, shard)

    @staticmethod
    def _outcome_now(cycle: _Cycle) -> str:
        """A cycle ended by a new rendezvous: failed here, or restarted by a peer."""
        return OUTCOME_FAILED if cycle.outcome == OUTCOME_FAILED else OUTCOME_RESTARTED

    def _close_cycle(
        self, run: _Run, t_ns: int, outcome: str, error: str = "", unfinished: bool = False
    ) -> None:
        cycle = run.cycle
        if cycle is None:
            return
        run.cycle = None
        reason = (
            END_SHUTDOWN
            if unfinished
            else sc.END_TERMINATED
            if outcome == sc.OUTCOME_TERMINATED
            else END_RESTARTED
        )
        for worker_id in list(cycle.workers):
            worker = cycle.workers.pop(worker_id)
            extra: dict[str, AttrValue] = {UNFINISHED: True} if unfinished else {}
            self._worker_event(cycle, worker, t_ns, reason, STATE_TERMINATED, extra)
        error = error or cycle.error
        node = cycle.node
        node.attributes.update(
            {OUTCOME: outcome, NODE_STATE: _OUTCOME_STATE[outcome], RANK: cycle.rank}
        )
        if outcome == sc.OUTCOME_TERMINATED and run.signal:
            node.attributes[SIGNAL] = run.signal
        if unfinished:
            node.attributes[UNFINISHED] = True
        failed = outcome == OUTCOME_FAILED
        self._emit(node, t_ns, _status(failed, error or "a worker failed"))
        self._fact(
            "cycle",
            run,
            t_ns,
            {OUTCOME: outcome},
            (t_ns - node.start_ns) / 1e9,
        )
        nodes = node.attributes.get(NODES)
        run.previous = _Ended(
            cycle.key,
            cycle.id_key,
            node.start_ns,
            t_ns,
            outcome,
            cycle.rank,
            nodes if is_int64(nodes) else 0,
        )
        if cycle.rank == 0:
            self._emit_cycle_root(run, cycle, t_ns, outcome)

    def _emit_cycle_root(self, run: _Run, cycle: _Cycle, t_ns: int, outcome: str) -> None:
        attrs: dict[str, AttrValue] = {
            RUN_ID: run.run_id,
            RANK: 0,
            NODE_STATE: _OUTCOME_STATE[outcome],
            ROUND: cycle.key,
            OUTCOME: outcome,
            **{k: v for k, v in cycle.node.attributes.items() if k in _CYCLE_SETTINGS},
            **cycle.root_attributes,
        }
        nodes = attrs.get(NODES)
        ended = run.previous
        assert ended is not None  # set by _close_cycle just before
        self._emit_roots(
            run, cycle.key, cycle.id_key, nodes if is_int64(nodes) else 0, attrs, ended, False
        )

    def _emit_roots(
        self,
        run: _Run,
        key: int,
        id_key: int | str,
        nodes: int,
        attrs: dict[str, AttrValue],
        ended: _Ended,
        inferred: bool,
    ) -> None:
        """A cycle's root, and one root per further shard of its nodes."""
        links = [(run_trace_id(run.run_id), job_span_id(run.run_id))]
        previous = self._previous_id_key(run, id_key)
        if previous is not None:
            links.append(
                (cycle_trace_id(run.run_id, previous), cycle_span_id(run.run_id, previous))
            )
        shards = shard_count(nodes, self._shard_nodes)
        root_attrs = dict(attrs)
        if inferred:
            root_attrs[sc.INFERRED] = True
        if shards > 1:
            root_attrs[sc.SHARDS] = shards
            links.extend(
                (cycle_trace_id(run.run_id, id_key, k), cycle_parent_span_id(run.run_id, id_key, k))
                for k in range(1, shards)
            )
        failed = attrs.get(OUTCOME) in (OUTCOME_FAILED, sc.OUTCOME_LOST)
        status = _status(failed, "the cycle failed")
        root = _Pending(
            f"{CYCLE_SPAN} {key}",
            cycle_trace_id(run.run_id, id_key),
            cycle_span_id(run.run_id, id_key),
            0,
            ended.start_ns,
            root_attrs,
            links,
        )
        if not inferred:
            run.roots.append((root.trace_id, root.span_id))
        end_ns = max(ended.end_ns, ended.start_ns)
        self._emit(root, end_ns, status)
        for k in range(1, shards):
            shard_root = _Pending(
                f"{sc.CYCLE_SHARD_SPAN} {key}/{k}",
                cycle_trace_id(run.run_id, id_key, k),
                cycle_parent_span_id(run.run_id, id_key, k),
                0,
                ended.start_ns,
                {**root_attrs, sc.SHARD: k},
                [(root.trace_id, root.span_id)],
            )
            self._emit(shard_root, end_ns, status)

    def _previous_id_key(self, run: _Run, id_key: int | str) -> int | str | None:
        """The id key of the cycle before ``id_key`` on this node (for the root's link)."""
        numbers = [key for key, _ in run.cycles]
        keys = [CycleKey.on_node(n, numbers[:i]).id_key for i, n in enumerate(numbers)]
        if id_key in keys:
            i = keys.index(id_key)
            return keys[i - 1] if i > 0 else None
        return keys[-1] if keys else None

    # --- the run trace ---

    def _run_for(self, run_id: str, t_ns: int) -> _Run:
        run = self._runs.get(run_id)
        if run is not None:
            return run
        node = _Pending(
            f"{NODE_SPAN} {self._host}",
            run_trace_id(run_id),
            self._ids.generate_span_id()
            if self._ids is not None
            else other_span_id("node", run_id, self._host, t_ns),
            job_span_id(run_id),
            t_ns,
            {RUN_ID: run_id, RANK: UNKNOWN_RANK, NODE_STATE: STATE_START, HOST_NAME: self._host},
        )
        run = self._runs[run_id] = _Run(run_id=run_id, node=node)
        self._fact("run_seen", run, t_ns, {})
        return run

    def _fix_shard(self, run: _Run) -> None:
        """Place the node span in its shard of the run trace, once (its first known rank)."""
        if run.shard is not None or (run.rank == UNKNOWN_RANK and not self._shut):
            return
        run.shard = shard_of(run.rank, self._shard_nodes)
        run.node.trace_id = run_trace_id(run.run_id, run.shard)
        run.node.parent_span_id = job_parent_span_id(run.run_id, run.shard)

    def _random_id(self, run: _Run, *parts: object) -> int:
        if self._ids is not None:
            return self._ids.generate_span_id()
        return other_span_id("random", run.run_id, *parts)

    def _rendezvous_span(self, run: _Run, t_ns: int, error: str, unfinished: bool = False) -> None:
        """A rendezvous attempt that started no cycle: failed, or still waiting at exit."""
        start = run.rdzv_start_ns if run.rdzv_start_ns is not None else t_ns
        run.rdzv_start_ns = None
        attrs: dict[str, AttrValue] = {
            RUN_ID: run.run_id,
            RANK: run.rank,
            NODE_STATE: STATE_FAILED if error else UNKNOWN_STATE,
        }
        if unfinished:
            attrs.update({UNFINISHED: True, END_REASON: END_SHUTDOWN})
        self._fix_shard(run)
        if run.shard is None:
            # Its node's place in the run trace is not known yet: the rank decides it.
            run.shard = 0
        span_id = self._ids.generate_span_id() if self._ids is not None else 0
        span = _Pending(RENDEZVOUS_SPAN, run.node.trace_id, span_id, run.node.span_id, start, attrs)
        self._emit(span, t_ns, _status(bool(error), error))

    def _emit_job_span(self, run: _Run, t_ns: int) -> None:
        shards = shard_count(run.max_nodes, self._shard_nodes)
        attrs: dict[str, AttrValue] = {
            RUN_ID: run.run_id,
            RANK: 0,
            NODE_STATE: run.agent_state,
            CYCLES: len(run.cycles),
        }
        links = list(run.roots)
        if shards > 1:
            attrs[sc.SHARDS] = shards
            links.extend(
                (run_trace_id(run.run_id, k), job_parent_span_id(run.run_id, k))
                for k in range(1, shards)
            )
        job = _Pending(
            JOB_SPAN,
            run_trace_id(run.run_id),
            job_span_id(run.run_id),
            0,
            run.node.start_ns,
            attrs,
            links,
        )
        status = _status(run.agent_state == STATE_FAILED and not run.signal, "job FAILED")
        self._emit(job, t_ns, status)
        for k in range(1, shards):
            shard_root = _Pending(
                f"{sc.NODES_SHARD_SPAN} {k}",
                run_trace_id(run.run_id, k),
                job_parent_span_id(run.run_id, k),
                0,
                run.node.start_ns,
                {**attrs, sc.SHARD: k},
                [(job.trace_id, job.span_id)],
            )
            self._emit(shard_root, t_ns, status)

    # --- building spans ---

    def _here(self, run: _Run) -> tuple[int, int]:
        span = run.cycle.node if run.cycle is not None else run.node
        return span.trace_id, span.span_id

    def _emit(self, p: _Pending, end_ns: int, status: Status) -> None:
        parent = (
            trace.set_span_in_context(NonRecordingSpan(_context(p.trace_id, p.parent_span_id)))
            if p.parent_span_id
            else Context()
        )
        if self._ids is not None:
            if p.parent_span_id:
                self._ids.force_next_span_id(p.span_id)
            else:
                self._ids.force_next(p.trace_id, p.span_id)
        span = self._tracer.start_span(
            p.name,
            context=parent,
            start_time=min(p.start_ns, end_ns),
            attributes=p.attributes,
            links=[Link(_context(t, s)) for t, s in p.links],
        )
        for name, t_ns, attributes in p.events:
            span.add_event(name, attributes, timestamp=t_ns)
        if status.status_code is not StatusCode.UNSET:
            span.set_status(status)
        span.end(end_time=end_ns)

    def _fact(
        self, kind: str, run: _Run, t_ns: int, attributes: dict[str, AttrValue], value: float = 0.0
    ) -> None:
        self._on_fact(Fact(kind, run.run_id, t_ns, attributes, value))


# What the cycle root copies from rank 0's part (its key, so that the timeline
# places a root of a repeated restart count with its parts).
_CYCLE_SETTINGS = frozenset({REMAINING_RESTARTS, MAX_RESTARTS, NODES, WORKERS, sc.CYCLE_KEY})


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=_SAMPLED)


def _list(value: AttrValue | None) -> list[AttrValue]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _signal_of(m: MappedEvent) -> str:
    """The signal of torch's ``SignalException`` in an agent's FAILED event, else ``""``."""
    typed = m.exception.get(EXCEPTION_TYPE, "").endswith("SignalException")
    text = m.exception.get(EXCEPTION_MESSAGE, "") or m.exception.get(sc.EXCEPTION_STACKTRACE, "")
    number = got_signal(text, typed)
    if number is None:
        return "SIGTERM" if typed else ""
    return signal_name(number)


def _duration_ns(m: MappedEvent) -> int:
    value = m.attributes.get(DURATION_MS)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e12:
        return int(value * 1_000_000)
    return 0


def _restarts(m: MappedEvent) -> int:
    value = m.attributes.get(AGENT_RESTARTS)
    return value if is_int64(value) and value >= 0 else 0


def _status(error: bool, message: str) -> Status:
    if not error:
        return Status(StatusCode.UNSET)
    return Status(StatusCode.ERROR, message[:_MAX_STATUS])


def _error_text(m: MappedEvent) -> str:
    exc_type = m.exception.get(EXCEPTION_TYPE, "")
    message = m.exception.get(EXCEPTION_MESSAGE) or m.body
    short = exc_type.rsplit(".", 1)[-1]
    text = message if not short or message.startswith(short) else f"{short}: {message}"
    return text[:_MAX_STATUS]


def _error_type(m: MappedEvent) -> dict[str, AttrValue]:
    """A low-cardinality failure class: the signal, else the exception type."""
    signal = m.attributes.get(SIGNAL)
    if isinstance(signal, str) and signal:
        return {"error.type": signal}
    exc_type = m.exception.get(EXCEPTION_TYPE, "")
    return {"error.type": exc_type.rsplit(".", 1)[-1] or "unknown"}
