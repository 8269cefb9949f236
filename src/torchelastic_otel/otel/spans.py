"""The span state machine of docs/mapping.md ("Traces").

Driven by one thread (the export pipeline's worker), so it needs no locks. It
turns mapped events into spans and tells the caller which span each event's log
record belongs to.
"""

import re
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, Status, StatusCode, TraceFlags

from torchelastic_otel.otel.mapping import (
    AttrValue,
    MappedEvent,
    is_int64,
    job_span_id_for_run,
    trace_id_for_run,
)
from torchelastic_otel.otel.sinks import SpanSink
from torchelastic_otel.semconv import (
    AGENT_SPAN_PREFIX,
    DURATION_MS,
    END_REASON,
    END_RESTARTED,
    END_SHUTDOWN,
    EXCEPTION_EVENT,
    EXCEPTION_MESSAGE,
    EXCEPTION_PREFIX,
    FINAL_WORKER_STATES,
    GLOBAL_RANK,
    HOST_NAME,
    JOB_SPAN,
    KIND_RENDEZVOUS,
    MESSAGE,
    NAME,
    NODE_SPAN,
    NODE_STATE,
    RANK,
    ROUND,
    ROUND_SPAN,
    RUN_ID,
    SOURCE,
    SOURCE_WORKER,
    STATE_FAILED,
    STATE_INIT,
    STATE_RENDEZVOUS,
    STATE_START,
    STATE_SUCCEEDED,
    STATE_TERMINATED,
    UNFINISHED,
    UNKNOWN_RANK,
    UNKNOWN_STATE,
    WORKER_ID,
    WORKER_SPAN,
)

_ROUND_IN_MESSAGE = re.compile(r"\bround (\d+)\b")
_NEXT_RENDEZVOUS = "next_rendezvous"


@dataclass
class _Run:
    run_id: str
    job_context: Context
    node: Span
    node_start_ns: int
    rank: int = UNKNOWN_RANK
    agent_state: str = UNKNOWN_STATE
    round: Span | None = None
    workers: dict[str, Span] = field(default_factory=dict)


class SpanStateMachine:
    """Builds the span tree of docs/mapping.md from a stream of mapped events.

    Args:
        sink: the tracer spans start on, and its id generator when the job
            span's deterministic ids can be forced (without one, no job span).
        host_name: this node's name, for the node span.
    """

    def __init__(self, sink: SpanSink, host_name: str) -> None:
        self._tracer = sink.tracer
        self._ids = sink.ids
        self._host = host_name
        self._runs: dict[str, _Run] = {}

    def on_event(self, m: MappedEvent, t_ns: int) -> Context:
        """Advance the state machine; return the context the event's log record joins."""
        duration_ns = _duration_ns(m)
        run = self._run_for(m.run_id, t_ns - duration_ns)
        if m.rank not in (UNKNOWN_RANK, run.rank):
            run.rank = m.rank
            run.node.set_attribute(RANK, m.rank)
        if m.kind == KIND_RENDEZVOUS:
            return self._on_rdzv(run, m, t_ns)
        return self._on_agent(run, m, t_ns, duration_ns)

    def shutdown(self, t_ns: int) -> None:
        """End every open span (marked unfinished) and emit the job span if rank 0."""
        for run in self._runs.values():
            for span in [*run.workers.values(), run.round]:
                if span is not None:
                    span.set_attributes({UNFINISHED: True, END_REASON: END_SHUTDOWN})
                    span.end(end_time=t_ns)
            run.workers.clear()
            run.round = None
            run.node.set_attribute(NODE_STATE, run.agent_state)
            if run.agent_state == STATE_FAILED:
                run.node.set_status(Status(StatusCode.ERROR, "agent FAILED"))
            run.node.end(end_time=t_ns)
            if run.rank == 0:
                self._emit_job_span(run, t_ns)
        self._runs.clear()

    # --- per kind -------------------------------------------------------------------

    def _on_rdzv(self, run: _Run, m: MappedEvent, t_ns: int) -> Context:
        name = str(m.attributes.get(NAME, m.event_name))
        is_next = name.endswith(_NEXT_RENDEZVOUS)
        failed = m.node_state == STATE_FAILED
        if run.round is None and is_next and not failed:
            run.round = self._start(ROUND_SPAN, run, t_ns, m.node_state)
        span = run.round
        if span is None:
            return trace.set_span_in_context(run.node)
        ctx = trace.set_span_in_context(span)
        event_attrs: dict[str, AttrValue] = {
            MESSAGE: m.body,
            NODE_STATE: m.node_state,
            RANK: m.rank,
        }
        span.add_event(name, attributes=event_attrs, timestamp=t_ns)
        if failed:
            _fail(span, m, t_ns)
            run.round = None
        elif is_next and m.rank != UNKNOWN_RANK:
            attrs: dict[str, str | int] = {RANK: m.rank, NODE_STATE: STATE_SUCCEEDED}
            found = _ROUND_IN_MESSAGE.search(m.body)
            if found and is_int64(int(found.group(1))):
                attrs[ROUND] = int(found.group(1))
            span.set_attributes(attrs)
            span.end(end_time=t_ns)
            run.round = None
        return ctx

    def _on_agent(self, run: _Run, m: MappedEvent, t_ns: int, duration_ns: int) -> Context:
        state = m.node_state
        worker_id = m.attributes.get(WORKER_ID)
        is_worker = m.attributes.get(SOURCE) == SOURCE_WORKER and worker_id
        if not is_worker:
            run.agent_state = state
            run.node.set_attribute(NODE_STATE, state)
        if duration_ns or DURATION_MS in m.attributes:
            start = t_ns - duration_ns
            if state == STATE_RENDEZVOUS:
                self._end_workers(run, start, END_RESTARTED)
            span = self._start(AGENT_SPAN_PREFIX + state, run, start, state)
            span.set_attributes(_span_copy(m, run))
            if state == STATE_FAILED:
                _fail(span, m, t_ns)
            else:
                span.end(end_time=t_ns)
            return trace.set_span_in_context(span)
        if is_worker:
            return self._on_worker(run, m, t_ns, str(worker_id))
        return trace.set_span_in_context(run.node)

    def _on_worker(self, run: _Run, m: MappedEvent, t_ns: int, worker_id: str) -> Context:
        state = m.node_state
        span = run.workers.get(worker_id)
        if state == STATE_START or span is None:
            if span is not None:  # a second START for one process: close the first
                span.set_attribute(END_REASON, END_RESTARTED)
                span.end(end_time=t_ns)
            global_rank = m.attributes.get(GLOBAL_RANK, "?")
            span = self._start(f"{WORKER_SPAN} {global_rank}", run, t_ns, state)
            span.set_attributes(_span_copy(m, run))
            run.workers[worker_id] = span
        ctx = trace.set_span_in_context(span)
        if state in FINAL_WORKER_STATES:
            span.set_attributes(_span_copy(m, run))
            span.set_attribute(END_REASON, state.lower())
            if state == STATE_FAILED:
                _fail(span, m, t_ns)
            else:
                span.end(end_time=t_ns)
            del run.workers[worker_id]
        return ctx

    # --- helpers ------------------------------------------------------------------------

    def _run_for(self, run_id: str, t_ns: int) -> _Run:
        run = self._runs.get(run_id)
        if run is not None:
            return run
        parent = SpanContext(
            trace_id=trace_id_for_run(run_id),
            span_id=job_span_id_for_run(run_id),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        job_context = trace.set_span_in_context(NonRecordingSpan(parent))
        node = self._tracer.start_span(
            f"{NODE_SPAN} {self._host}",
            context=job_context,
            start_time=t_ns,
            attributes={
                RUN_ID: run_id,
                RANK: UNKNOWN_RANK,
                NODE_STATE: STATE_INIT,
                HOST_NAME: self._host,
            },
        )
        run = _Run(run_id=run_id, job_context=job_context, node=node, node_start_ns=t_ns)
        self._runs[run_id] = run
        return run

    def _start(self, name: str, run: _Run, t_ns: int, state: str) -> Span:
        return self._tracer.start_span(
            name,
            context=trace.set_span_in_context(run.node),
            start_time=t_ns,
            attributes={
                RUN_ID: run.run_id,
                RANK: run.rank,
                NODE_STATE: state,
                HOST_NAME: self._host,
            },
        )

    def _end_workers(self, run: _Run, t_ns: int, reason: str) -> None:
        for span in run.workers.values():
            # Stopped by the agent for the new round, as torch calls it elsewhere.
            span.set_attributes({END_REASON: reason, NODE_STATE: STATE_TERMINATED})
            span.end(end_time=t_ns)
        run.workers.clear()

    def _emit_job_span(self, run: _Run, t_ns: int) -> None:
        if self._ids is None:
            return  # a tracer whose ids we cannot choose: better no root than a wrong one
        parent = run.job_context
        span_context = trace.get_current_span(parent).get_span_context()
        self._ids.force_next(span_context.trace_id, span_context.span_id)
        job = self._tracer.start_span(
            JOB_SPAN,
            context=Context(),
            start_time=run.node_start_ns,
            attributes={RUN_ID: run.run_id, RANK: run.rank, NODE_STATE: run.agent_state},
        )
        if run.agent_state == STATE_FAILED:
            job.set_status(Status(StatusCode.ERROR, "job FAILED"))
        job.end(end_time=t_ns)


def _duration_ns(m: MappedEvent) -> int:
    value = m.attributes.get(DURATION_MS)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(value * 1_000_000)
    return 0


def _span_copy(m: MappedEvent, run: _Run) -> dict[str, AttrValue]:
    """The event's attributes worth repeating on its span (not the exception text).

    An event that does not know its node's rank (torch's agent records the first
    RENDEZVOUS before it learns it) keeps the rank the node already has.
    """
    copy = {k: v for k, v in m.attributes.items() if not k.startswith(EXCEPTION_PREFIX)}
    if m.rank == UNKNOWN_RANK:
        copy[RANK] = run.rank
    return copy


def _fail(span: Span, m: MappedEvent, t_ns: int) -> None:
    message = m.exception.get(EXCEPTION_MESSAGE) or m.body
    span.set_status(Status(StatusCode.ERROR, message))
    span.set_attribute(NODE_STATE, STATE_FAILED)
    if m.exception:
        span.add_event(EXCEPTION_EVENT, attributes=dict(m.exception), timestamp=t_ns)
    span.end(end_time=t_ns)
