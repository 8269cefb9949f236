"""A job's OTLP data as the ``otel`` destination exports it, made up, for the timeline's tests.

The real fixture (tests/data/demo-job.otlp.jsonl) has 2 nodes; what shows only with
more (a node missing from the next round, a node that joins late, a rendezvous that
stalls, 1,024 nodes) is built here, span by span and record by record, following
docs/mapping.md ("Traces"). Deterministic: ids come from a seeded generator.

Example::

    >>> received = synth_job(nodes=8, missing={2: [5]})  # doctest: +SKIP
"""

import random
from dataclasses import dataclass, field
from typing import Any

from torchelastic_otel import semconv as sc
from torchelastic_otel.otlp_data import LogItem, Received, SpanItem

T0 = 1_800_000_000 * 10**9
S = 10**9
CYCLE_S = 30
"""How long a cycle that fails runs."""
LAST_S = 60
"""How long the last cycle runs."""
_WORKER_FAILED = "torchelastic.worker.status." + sc.STATE_FAILED


@dataclass
class _Job:
    run_id: str
    rng: random.Random
    logs: list[LogItem] = field(default_factory=list)
    spans: list[SpanItem] = field(default_factory=list)

    def id(self, n: int) -> str:
        return f"{self.rng.getrandbits(n * 8):0{n * 2}x}"

    def span(
        self,
        resource: dict[str, Any],
        name: str,
        trace: str,
        parent: str,
        start: int,
        end: int,
        attrs: dict[str, Any],
        error: str = "",
    ) -> str:
        span_id = self.id(8)
        self.spans.append(
            SpanItem(
                resource=resource,
                name=name,
                trace_id=trace,
                span_id=span_id,
                parent_span_id=parent,
                start=start,
                end=end,
                status_code=sc.STATUS_ERROR if error else sc.STATUS_UNSET,
                status_message=error,
                attributes={sc.RUN_ID: self.run_id, **attrs},
                events=[],
                links=[],
            )
        )
        return span_id

    def log(
        self,
        resource: dict[str, Any],
        t: int,
        name: str,
        body: str,
        attrs: dict[str, Any],
        trace: str = "",
        span: str = "",
        error: bool = False,
    ) -> None:
        self.logs.append(
            LogItem(
                resource=resource,
                scope=sc.SCOPE,
                event_name=name,
                body=body,
                severity_number=sc.SEVERITY_ERROR if error else sc.SEVERITY_INFO,
                severity_text="ERROR" if error else "INFO",
                time_unix_nano=t,
                observed_time_unix_nano=t,
                trace_id=trace,
                span_id=span,
                attributes={sc.RUN_ID: self.run_id, **attrs},
            )
        )


def synth_job(  # noqa: PLR0912 -- one job, told in order
    nodes: int = 4,
    workers: int = 2,
    rounds: int = 3,
    run_id: str = "synth",
    failing_node: int = 0,
    missing: dict[int, list[int]] | None = None,
    late: dict[int, dict[int, float]] | None = None,
    stall: bool = False,
    records: bool = True,
) -> Received:
    """A job of ``nodes`` x ``workers``: ``failing_node``'s local worker 1 fails in every
    round but the last (its peers on that node are killed with SIGTERM), the job
    succeeds in round ``rounds - 1``.

    Args:
        missing: ``{round: [node, ...]}``: these nodes are gone from that round on.
        late: ``{round: {node: seconds}}``: these nodes start that round's rendezvous late.
        stall: after the last round fails, the nodes still there wait in a rendezvous
            that never completes (the missing ones never come), and the data ends.
        records: also the log records (else spans only).
    """
    job = _Job(run_id, random.Random(f"{run_id}/{nodes}/{workers}/{rounds}"))
    missing = missing or {}
    late = late or {}
    gone: set[int] = set()
    resources = [
        {
            sc.HOST_NAME: f"node-{i:05d}.test",
            sc.PROCESS_PID: 1000 + i,
            sc.SERVICE_INSTANCE_ID: f"instance-{i}",
            sc.SERVICE_NAME: "synth",
        }
        for i in range(nodes)
    ]
    run_trace = job.id(16)
    job_span = job.id(8)
    node_spans = {i: job.id(8) for i in range(nodes)}
    t = T0
    last_end: dict[int, int] = {}
    last_rank: dict[int, int] = {}
    final_round = rounds - 1
    for r in range(rounds):
        gone |= set(missing.get(r, []))
        members = [i for i in range(nodes) if i not in gone]
        trace = job.id(16)
        root = job.id(8)
        starts = {i: t + int(late.get(r, {}).get(i, 0.0) * S) for i in members}
        joined = max(starts.values()) + S
        failing = r < final_round or stall
        end = t + (CYCLE_S if failing else LAST_S) * S
        for rank, i in enumerate(members):
            res = resources[i]
            rdzv_ms = (joined - starts[i]) / 1e6
            outcome = (
                (sc.OUTCOME_FAILED if i == failing_node else sc.OUTCOME_RESTARTED)
                if failing
                else sc.OUTCOME_SUCCEEDED
            )
            common = {sc.RANK: rank, sc.ROUND: r}
            part = job.span(
                res,
                f"{sc.CYCLE_NODE_SPAN} {res[sc.HOST_NAME]}",
                trace,
                root,
                starts[i],
                end,
                {
                    **common,
                    sc.NODE_STATE: sc.STATE_FAILED
                    if outcome == sc.OUTCOME_FAILED
                    else sc.STATE_TERMINATED,
                    sc.OUTCOME: outcome,
                    sc.RENDEZVOUS_DURATION_MS: rdzv_ms,
                    sc.ASSIGN_DURATION_MS: 2.0,
                    sc.REMAINING_RESTARTS: rounds - 1 - r,
                    sc.MAX_RESTARTS: rounds - 1,
                    sc.NODES: len(members),
                    sc.WORKERS: len(members) * workers,
                },
                error="RuntimeError: boom" if outcome == sc.OUTCOME_FAILED else "",
            )
            if records:
                job.log(
                    res,
                    starts[i],
                    "dynamic_rendezvous.py:DynamicRendezvousHandler.next_rendezvous",
                    f"The node 'n{i}' attempts to join the next round of the rendezvous.",
                    {sc.RANK: -1, sc.NODE_STATE: "RUNNING", sc.EVENT_KIND: sc.KIND_RENDEZVOUS},
                    run_trace,
                    node_spans[i],
                )
                job.log(
                    res,
                    joined,
                    sc.CYCLE_EVENT,
                    sc.CYCLE_EVENT,
                    {**common, sc.NODE_STATE: sc.STATE_CYCLE, sc.EVENT_KIND: sc.KIND_AGENT},
                    trace,
                    part,
                )
            for local in range(workers):
                grank = rank * workers + local
                w_start = joined + S // 2
                attrs = {
                    **common,
                    sc.GLOBAL_RANK: grank,
                    sc.LOCAL_RANK: local,
                }
                if failing and i == failing_node:
                    own = local == 1
                    message = "RuntimeError: boom" if own else "WorkerFailure: exited with code -15"
                    signal = {} if own else {sc.SIGNAL: "SIGTERM"}
                    w_end = end - S // 10
                    span = job.span(
                        res,
                        f"{sc.WORKER_SPAN} {grank}",
                        trace,
                        part,
                        w_start,
                        w_end,
                        {
                            **attrs,
                            **signal,
                            sc.NODE_STATE: sc.STATE_FAILED,
                            sc.END_REASON: "failed",
                        },
                        error=message,
                    )
                    if records:
                        exc = (
                            {
                                sc.EXCEPTION_TYPE: "RuntimeError",
                                sc.EXCEPTION_MESSAGE: f"rank {grank}: boom",
                            }
                            if own
                            else {
                                sc.EXCEPTION_TYPE: sc.WORKER_FAILURE,
                                sc.EXCEPTION_MESSAGE: "exited with code -15 (killed by SIGTERM)",
                                sc.SIGNAL: "SIGTERM",
                            }
                        )
                        job.log(
                            res,
                            w_end,
                            _WORKER_FAILED,
                            _WORKER_FAILED,
                            {
                                sc.RANK: rank,
                                sc.NODE_STATE: sc.STATE_FAILED,
                                sc.EVENT_KIND: sc.KIND_AGENT,
                                sc.SOURCE: sc.SOURCE_WORKER,
                                sc.WORKER_ID: str(5000 + grank),
                                sc.GLOBAL_RANK: grank,
                                **exc,
                            },
                            trace,
                            span,
                            error=True,
                        )
                else:
                    state = sc.STATE_TERMINATED if failing else sc.STATE_SUCCEEDED
                    reason = sc.END_RESTARTED if failing else "succeeded"
                    job.span(
                        res,
                        f"{sc.WORKER_SPAN} {grank}",
                        trace,
                        part,
                        w_start,
                        end,
                        {**attrs, sc.NODE_STATE: state, sc.END_REASON: reason},
                    )
            last_end[i] = end
            last_rank[i] = rank
        if members:
            outcome = sc.OUTCOME_FAILED if failing else sc.OUTCOME_SUCCEEDED
            job.spans.append(
                SpanItem(
                    resource=resources[members[0]],
                    name=f"{sc.CYCLE_SPAN} {r}",
                    trace_id=trace,
                    span_id=root,
                    parent_span_id="",
                    start=min(starts.values()),
                    end=end,
                    status_code=sc.STATUS_ERROR if failing else sc.STATUS_UNSET,
                    status_message="the cycle failed" if failing else "",
                    attributes={
                        sc.RUN_ID: run_id,
                        sc.RANK: 0,
                        sc.ROUND: r,
                        sc.OUTCOME: outcome,
                        sc.REMAINING_RESTARTS: rounds - 1 - r,
                        sc.MAX_RESTARTS: rounds - 1,
                        sc.NODES: len(members),
                        sc.WORKERS: len(members) * workers,
                    },
                    events=[],
                    links=[],
                )
            )
        t = end
    job_end = t + 2 * S
    if stall:
        # The nodes still there try the next round; it never completes.
        gone |= set(missing.get(rounds, []))
        for i in range(nodes):
            if i in gone:
                continue
            res = resources[i]
            job.span(
                res,
                sc.RENDEZVOUS_SPAN,
                run_trace,
                node_spans[i],
                t,
                job_end,
                {sc.RANK: -1, sc.NODE_STATE: sc.UNKNOWN_STATE, sc.UNFINISHED: True},
            )
            if records:
                job.log(
                    res,
                    t,
                    "dynamic_rendezvous.py:DynamicRendezvousHandler.next_rendezvous",
                    f"The node 'n{i}' attempts to join the next round of the rendezvous.",
                    {sc.RANK: -1, sc.NODE_STATE: "RUNNING", sc.EVENT_KIND: sc.KIND_RENDEZVOUS},
                    run_trace,
                    node_spans[i],
                )
            last_end[i] = job_end
    state = sc.UNKNOWN_STATE if stall else sc.STATE_SUCCEEDED
    for i in range(nodes):
        end = last_end.get(i, T0 + S)
        job.spans.append(
            SpanItem(
                resource=resources[i],
                name=f"{sc.NODE_SPAN} {resources[i][sc.HOST_NAME]}",
                trace_id=run_trace,
                span_id=node_spans[i],
                parent_span_id=job_span,
                start=T0,
                end=end,
                status_code=sc.STATUS_UNSET,
                status_message="",
                attributes={
                    sc.RUN_ID: run_id,
                    sc.RANK: last_rank.get(i, i),
                    sc.NODE_STATE: state if i not in gone else sc.UNKNOWN_STATE,
                    sc.HOST_NAME: resources[i][sc.HOST_NAME],
                },
                events=[],
                links=[],
            )
        )
    if not stall:
        job.spans.append(
            SpanItem(
                resource=resources[0],
                name=sc.JOB_SPAN,
                trace_id=run_trace,
                span_id=job_span,
                parent_span_id="",
                start=T0,
                end=job_end,
                status_code=sc.STATUS_UNSET,
                status_message="",
                attributes={sc.RUN_ID: run_id, sc.RANK: 0, sc.NODE_STATE: state},
                events=[],
                links=[],
            )
        )
    return Received(logs=job.logs, spans=job.spans)
