"""The trace model of docs/mapping.md ("Traces"), on both export paths.

One run trace (job span, node spans) and one trace per restart cycle (cycle root,
a span per node, a span per worker), with ids every node derives alike; and the
rendezvous' periodic chatter folded into summary records.
"""

import json
from collections import defaultdict
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from tests.support.memory import PATHS, Memory, memory_pipeline, record_otel
from tests.unit.test_mapping import TRACEBACK, agent_event, rdzv_event
from torchelastic_otel import semconv as sc
from torchelastic_otel.events import Event, EventSource, NodeState
from torchelastic_otel.otel import derived_ids as ids

RUN = "job-7"


@pytest.fixture(params=PATHS)
def mem(request: pytest.FixtureRequest) -> Any:
    with memory_pipeline(request.param) as m:
        yield m


def cycle_event(round_: int | None, rank: int = 0, remaining: int = 2, **extra: Any) -> Event:
    """What the torchrun integration records after each rendezvous."""
    md: dict[str, Any] = {
        "run_id": RUN,
        "group_rank": rank,
        "state": sc.STATE_CYCLE,
        "round": round_,
        "max_restarts": 3,
        "remaining_restarts": remaining,
        "nodes": 2,
        "workers": 4,
        "local_world_size": 2,
        "agent_restarts": 3 - remaining,
        **extra,
    }
    return Event(sc.CYCLE_EVENT, EventSource.AGENT, metadata=md)


def joined(round_: int, rank: int) -> Any:
    return rdzv_event(
        message=f"The node 'n1' has joined round {round_} of the rendezvous '{RUN}' as rank "
        f"{rank} in a world of size 2.",
        rank=rank,
    )


def worker(
    state: str, global_rank: int, group_rank: int = 0, exit_code: int | None = None, **extra: Any
) -> Event:
    """A worker's state, as torch's agent records it."""
    return agent_event(
        state,
        worker_id=str(1000 + global_rank),
        global_rank=global_rank,
        group_rank=group_rank,
        metadata=json.dumps({"local_rank": [global_rank % 2], "exit_code": [exit_code]}),
        **extra,
    )


def rendezvous_start() -> Event:
    """What the torchrun integration records when the agent starts a rendezvous."""
    md: dict[str, Any] = {"run_id": RUN, "group_rank": None, "state": sc.STATE_RENDEZVOUS_START}
    return Event(sc.RENDEZVOUS_START_EVENT, EventSource.AGENT, metadata=md)


def step(state: str, group_rank: int | None = 0, **extra: Any) -> Event:
    """An event of the agent itself (a timed step, or its final state)."""
    md = {"run_id": RUN, "group_rank": group_rank, "state": state, **extra}
    return Event(f"torchelastic.worker.status.{state}", EventSource.AGENT, metadata=md)


def _spans(mem: Memory) -> dict[str, list[Any]]:
    mem.pipeline.shutdown(5000)
    out: dict[str, list[Any]] = defaultdict(list)
    for s in mem.finished_spans():
        out[s.name.split(" ")[0]].append(s)
    return out


def _workers(part: Any) -> list[dict[str, Any]]:
    """The workers of a node's part: its span events, by global rank."""
    events = [dict(e.attributes) for e in part.events if e.name == sc.WORKER_EVENT]
    return sorted(events, key=lambda a: a[sc.GLOBAL_RANK])


def test_a_cycle_is_a_trace_with_derived_ids(mem: Memory) -> None:
    record_otel(step("RENDEZVOUS", duration_ms=250.0, group_rank=None))
    record_otel(cycle_event(4, rank=0))
    for r in (0, 1):
        record_otel(worker("START", r))
    for r in (0, 1):
        record_otel(worker("SUCCEEDED", r))
    spans = _spans(mem)
    (root,) = spans[sc.CYCLE_SPAN]
    (node,) = spans[sc.CYCLE_NODE_SPAN]
    assert sc.WORKER_SPAN not in spans  # workers are events of their node's part
    workers = _workers(node)
    trace_id = ids.cycle_trace_id(RUN, 4)
    assert {s.context.trace_id for s in (root, node)} == {trace_id}
    assert root.context.span_id == ids.cycle_span_id(RUN, 4)
    assert root.parent is None
    assert node.context.span_id == ids.cycle_node_span_id(RUN, 4, 0)
    assert (node.context.trace_id, node.context.span_id) == ids.node_part_context(RUN, 4, 0, 2000)
    assert node.parent.span_id == root.context.span_id
    assert [w[sc.GLOBAL_RANK] for w in workers] == [0, 1]
    assert [w[sc.END_REASON] for w in workers] == ["succeeded", "succeeded"]
    first_end = min(e.timestamp for e in node.events)
    # The node's part starts when its rendezvous started.
    assert node.start_time == root.start_time <= first_end - 250_000_000
    assert node.attributes[sc.RENDEZVOUS_DURATION_MS] == 250.0
    assert node.attributes[sc.OUTCOME] == sc.OUTCOME_SUCCEEDED
    assert node.attributes[sc.ROUND] == 4
    assert root.attributes[sc.OUTCOME] == sc.OUTCOME_SUCCEEDED
    assert (root.attributes[sc.REMAINING_RESTARTS], root.attributes[sc.MAX_RESTARTS]) == (2, 3)
    assert (root.attributes[sc.NODES], root.attributes[sc.WORKERS]) == (2, 4)
    # Lean: the event's detail stays on its log records.
    assert set(workers[0]) == {
        sc.GLOBAL_RANK,
        sc.LOCAL_RANK,
        sc.NODE_STATE,
        sc.END_REASON,
        sc.DURATION_MS,
    }
    for span in (root, node):
        for key in (sc.RUN_ID, sc.RANK, sc.NODE_STATE):
            assert key in span.attributes, (span.name, key)


def test_the_run_trace_holds_the_job_and_the_nodes(mem: Memory) -> None:
    record_otel(cycle_event(0))
    record_otel(worker("START", 0))
    record_otel(worker("SUCCEEDED", 0))
    record_otel(step("SUCCEEDED"))
    spans = _spans(mem)
    (job,) = spans[sc.JOB_SPAN]
    (node,) = spans[sc.NODE_SPAN]
    (cycle_node,) = spans[sc.CYCLE_NODE_SPAN]
    assert job.context.trace_id == node.context.trace_id == ids.run_trace_id(RUN)
    assert job.context.span_id == ids.job_span_id(RUN)
    assert node.parent.span_id == job.context.span_id
    assert (node.attributes[sc.NODE_STATE], node.attributes[sc.CYCLES]) == ("SUCCEEDED", 1)
    # Links tie the traces together: the node's part in a cycle -> the node span,
    # the job -> each cycle root it emitted.
    assert [link.context.span_id for link in cycle_node.links] == [node.context.span_id]
    assert [link.context.span_id for link in job.links] == [ids.cycle_span_id(RUN, 0)]


def test_cycle_roots_link_to_the_job_and_the_previous_cycle(mem: Memory) -> None:
    for round_ in (0, 1):
        record_otel(cycle_event(round_, remaining=3 - round_))
        record_otel(worker("START", 0))
        record_otel(worker("FAILED" if round_ == 0 else "SUCCEEDED", 0, raw_error=TRACEBACK))
    roots = sorted(_spans(mem)[sc.CYCLE_SPAN], key=lambda s: s.attributes[sc.ROUND])
    first, second = roots
    assert [link.context.span_id for link in first.links] == [ids.job_span_id(RUN)]
    assert [(link.context.trace_id, link.context.span_id) for link in second.links] == [
        (ids.run_trace_id(RUN), ids.job_span_id(RUN)),
        (ids.cycle_trace_id(RUN, 0), ids.cycle_span_id(RUN, 0)),
    ]
    assert first.status.status_code == StatusCode.ERROR
    assert first.attributes[sc.OUTCOME] == sc.OUTCOME_FAILED
    assert second.attributes[sc.OUTCOME] == sc.OUTCOME_SUCCEEDED


def test_only_the_cycles_rank_0_emits_its_root(mem: Memory) -> None:
    record_otel(cycle_event(0, rank=1))
    record_otel(worker("START", 2, group_rank=1))
    record_otel(worker("SUCCEEDED", 2, group_rank=1))
    spans = _spans(mem)
    assert sc.CYCLE_SPAN not in spans
    assert sc.JOB_SPAN not in spans
    (node,) = spans[sc.CYCLE_NODE_SPAN]
    assert node.parent.span_id == ids.cycle_span_id(RUN, 0)  # rank 0's, elsewhere


def test_joined_round_opens_the_cycle_without_the_integration(mem: Memory) -> None:
    """With rendezvous events on and no cycle event, the round comes from "joined"."""
    record_otel(rdzv_event())  # attempts to join
    record_otel(joined(5, rank=0))
    record_otel(worker("START", 0))
    spans = _spans(mem)
    (node,) = spans[sc.CYCLE_NODE_SPAN]
    assert node.context.trace_id == ids.cycle_trace_id(RUN, 5)
    assert node.attributes[sc.OUTCOME] == sc.OUTCOME_UNFINISHED
    assert node.attributes[sc.UNFINISHED] is True


def test_without_a_round_the_restart_count_keys_the_cycle(mem: Memory) -> None:
    record_otel(worker("START", 0, agent_restarts=2))
    spans = _spans(mem)
    (part,) = spans[sc.CYCLE_NODE_SPAN]
    assert part.context.trace_id == ids.cycle_trace_id(RUN, 2)
    assert part.attributes[sc.ROUND] == 2
    assert [w[sc.END_REASON] for w in _workers(part)] == ["shutdown"]


def test_a_peer_restart_ends_the_cycle_as_restarted(mem: Memory) -> None:
    record_otel(cycle_event(0))
    record_otel(worker("START", 0))
    record_otel(step("RENDEZVOUS", duration_ms=10.0))  # re-rendezvous
    record_otel(cycle_event(1))
    spans = _spans(mem)
    first = next(s for s in spans[sc.CYCLE_NODE_SPAN] if s.attributes[sc.ROUND] == 0)
    (w,) = _workers(first)
    assert first.attributes[sc.OUTCOME] == sc.OUTCOME_RESTARTED
    assert first.status.status_code == StatusCode.UNSET
    assert (w[sc.END_REASON], w[sc.NODE_STATE]) == ("restarted", "TERMINATED")
    second = next(s for s in spans[sc.CYCLE_NODE_SPAN] if s.attributes[sc.ROUND] == 1)
    assert second.start_time <= first.end_time  # the new rendezvous started it


def test_a_worker_failure_fails_its_span_and_its_cycle(mem: Memory) -> None:
    record_otel(cycle_event(0))
    record_otel(worker("START", 0))
    record_otel(worker("START", 1))
    record_otel(worker("FAILED", 0, raw_error=TRACEBACK))
    record_otel(worker("TERMINATED", 1))
    spans = _spans(mem)
    (node,) = spans[sc.CYCLE_NODE_SPAN]
    failed, stopped = _workers(node)
    assert (failed[sc.END_REASON], failed[sc.NODE_STATE]) == ("failed", "FAILED")
    assert failed[sc.EXCEPTION_TYPE].endswith("RendezvousTimeoutError")
    assert sc.EXCEPTION_MESSAGE not in failed  # the error's detail is on the log record
    assert stopped[sc.END_REASON] == "terminated"
    assert node.attributes[sc.OUTCOME] == sc.OUTCOME_FAILED
    assert node.status.status_code == StatusCode.ERROR
    assert node.status.description == "RendezvousTimeoutError: timed out"


def test_the_agents_rendezvous_start_ends_the_cycle_and_starts_the_next(mem: Memory) -> None:
    """The integration's start event: known without the rendezvous' own events."""
    record_otel(rendezvous_start())
    record_otel(cycle_event(0))
    record_otel(worker("START", 0))
    record_otel(rendezvous_start())  # a peer failed: this agent re-rendezvouses
    spans = _spans(mem)
    (part,) = spans[sc.CYCLE_NODE_SPAN]
    (waiting,) = spans[sc.RENDEZVOUS_SPAN]  # still waiting at exit
    assert part.attributes[sc.OUTCOME] == sc.OUTCOME_RESTARTED
    assert part.end_time == waiting.start_time
    assert waiting.attributes[sc.UNFINISHED] is True


def test_a_rendezvous_that_starts_no_cycle_is_a_span_of_the_run(mem: Memory) -> None:
    record_otel(rdzv_event())
    record_otel(rdzv_event(NodeState.FAILED, error_trace=TRACEBACK, message="boom"))
    record_otel(rdzv_event())  # tries again, and is still waiting at exit
    spans = _spans(mem)
    failed, waiting = sorted(spans[sc.RENDEZVOUS_SPAN], key=lambda s: s.start_time)
    assert failed.context.trace_id == ids.run_trace_id(RUN)
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "timed out"
    assert waiting.attributes[sc.UNFINISHED] is True
    assert sc.CYCLE_NODE_SPAN not in spans


def test_a_failed_heartbeat_after_a_finished_job_is_no_span(mem: Memory) -> None:
    """torch's keep-alive can fail at the end of a job that succeeded."""
    record_otel(cycle_event(0))
    record_otel(worker("START", 0))
    record_otel(worker("SUCCEEDED", 0))
    keep_alive_failed = rdzv_event(
        NodeState.FAILED,
        name="dynamic_rendezvous.py:DynamicRendezvousHandler._keep_alive",
        error_trace=TRACEBACK,
    )
    record_otel(keep_alive_failed)
    spans = _spans(mem)
    assert sc.RENDEZVOUS_SPAN not in spans
    assert [r.log_record.severity_text for r in mem.log_records()][-1] == "ERROR"


def test_log_records_name_the_span_they_belong_to(mem: Memory) -> None:
    record_otel(rdzv_event())  # before any cycle: the node span
    record_otel(cycle_event(3))
    record_otel(worker("START", 1))
    logs = mem.log_records()
    spans = _spans(mem)
    (node,) = spans[sc.NODE_SPAN]
    (cycle_node,) = spans[sc.CYCLE_NODE_SPAN]
    # A worker's records join its node's part, of which the worker is an event.
    assert [(r.log_record.trace_id, r.log_record.span_id) for r in logs] == [
        (node.context.trace_id, node.context.span_id),
        (cycle_node.context.trace_id, cycle_node.context.span_id),
        (cycle_node.context.trace_id, cycle_node.context.span_id),
    ]


def test_chatter_is_summarised_and_counted(mem: Memory) -> None:
    record_otel(cycle_event(0))
    keep_alive = rdzv_event(
        name="dynamic_rendezvous.py:DynamicRendezvousHandler._keep_alive",
        message="The node 'n1' has sent a keep-alive heartbeat to the rendezvous 'job-7'.",
    )
    synced = rdzv_event(
        name="dynamic_rendezvous.py:_DistributedRendezvousOpExecutor.run",
        message="The node 'n1' has successfully synced its local changes with other nodes.",
    )
    for _ in range(10):
        record_otel(keep_alive)
        record_otel(synced)
    mem.pipeline.shutdown(5000)
    records = mem.log_records()
    (summary,) = [r for r in records if r.log_record.event_name == sc.HEARTBEAT_SUMMARY]
    a = summary.log_record.attributes
    assert (a[sc.HEARTBEATS], a[sc.SYNCS], a[sc.FOLDED]) == (10, 10, 20)
    assert a[sc.RANK] == 0  # the node's rank, which the heartbeats do not carry
    assert len(records) == 2  # the cycle event and the summary
    # The books count every event a summary stands for.
    assert mem.pipeline.exported_counts()["logs"] == 21 or mem.path == "sdk"
    (cycle_node,) = [s for s in mem.finished_spans() if s.name.startswith(sc.CYCLE_NODE_SPAN)]
    assert summary.log_record.span_id == cycle_node.context.span_id


def test_chatter_summaries_follow_the_events_clock() -> None:
    """One summary per interval of event time, however fast the events come."""
    from torchelastic_otel.otel._chatter import Chatter

    chatter = Chatter(interval_s=300)
    keep_alive = rdzv_event(name="dynamic_rendezvous.py:DynamicRendezvousHandler._keep_alive")
    summaries = []
    for i in range(12 * 60 * 2):  # two hours of a keep-alive every 5 s
        summaries += chatter.due(i * 5_000_000_000)
        assert chatter.fold(keep_alive, i * 5_000_000_000)
    assert len(summaries) == 23  # one per 300 s of event time
    assert {weight for _, weight in summaries} == {60}


def test_a_failed_heartbeat_is_never_folded() -> None:
    from torchelastic_otel.otel._chatter import is_chatter

    name = "dynamic_rendezvous.py:DynamicRendezvousHandler._keep_alive"
    assert is_chatter(rdzv_event(name=name))
    assert not is_chatter(rdzv_event(NodeState.FAILED, name=name))
    assert not is_chatter(joined(1, 0))


def test_the_root_cause_names_the_failed_cycle(mem: Memory) -> None:
    """The agent kills a failed worker's peers: the one with its own error is the cause."""
    record_otel(cycle_event(0))
    record_otel(worker("START", 0))
    record_otel(worker("START", 1))
    record_otel(worker("FAILED", 1, exit_code=-15))  # killed, recorded first
    record_otel(worker("FAILED", 0, raw_error=TRACEBACK))
    (part,) = _spans(mem)[sc.CYCLE_NODE_SPAN]
    assert part.status.description == "RendezvousTimeoutError: timed out"


# --- nodes that vanish, nodes told to stop, shards (issues 18 and 21) -------------------


def lost_cycle_event(round_: int, rank: int, **lost: Any) -> Event:
    """The new round's rank 0 names the nodes that left since the round before."""
    event = cycle_event(round_, rank=rank)
    event.metadata.update({f"lost.{k}": v for k, v in lost.items()})
    return event


def test_a_lost_nodes_part_is_exported_by_the_survivor_in_the_cycle_it_died_in(
    mem: Memory,
) -> None:
    record_otel(cycle_event(0, rank=1))  # this node was rank 1 of 3; rank 2 vanishes
    record_otel(worker("START", 2, group_rank=1))
    record_otel(worker("FAILED", 2, group_rank=1, raw_error=TRACEBACK))  # its collective broke
    record_otel(rendezvous_start())
    record_otel(
        lost_cycle_event(1, 0, nodes=["h3_77_0"], hosts=["h3"], ranks=[2], signals=[""], round=0)
    )
    record_otel(worker("START", 0))
    record_otel(worker("SUCCEEDED", 0))
    logs = mem.log_records()
    spans = _spans(mem)
    lost = next(s for s in spans[sc.CYCLE_NODE_SPAN] if s.attributes.get(sc.INFERRED))
    assert lost.name == f"{sc.CYCLE_NODE_SPAN} h3"
    assert lost.context.trace_id == ids.cycle_trace_id(RUN, 0)  # the cycle it died in
    assert lost.parent.span_id == ids.cycle_span_id(RUN, 0)
    assert lost.attributes[sc.OUTCOME] == sc.OUTCOME_LOST
    assert lost.attributes[sc.RANK] == 2
    assert lost.attributes[sc.LOST_REASON] == sc.LOST_REASON_COLLECTIVE
    assert lost.attributes[sc.REPORTED_BY] == 0
    assert lost.status.status_code == StatusCode.ERROR
    # The next cycle names it, on its root and in a record.
    root = next(s for s in spans[sc.CYCLE_SPAN] if s.attributes[sc.ROUND] == 1)
    assert list(root.attributes[sc.LOST_NODES]) == ["h3_77_0"]
    assert root.attributes[sc.LOST_COUNT] == 1
    (record,) = [r for r in logs if r.log_record.event_name == sc.NODE_LOST_EVENT]
    a = record.log_record.attributes
    assert (a[sc.LOST_NODE], a[sc.LOST_HOST], a[sc.LOST_RANK], a[sc.LOST_ROUND]) == (
        "h3_77_0",
        "h3",
        2,
        0,
    )
    assert record.log_record.severity_text == "WARN"
    assert record.log_record.trace_id == root.context.trace_id
    # ... and the lost node's node span, in the run trace.
    inferred_nodes = [s for s in spans[sc.NODE_SPAN] if s.attributes.get(sc.INFERRED)]
    assert [s.attributes[sc.NODE_STATE] for s in inferred_nodes] == [sc.STATE_LOST]


def test_a_lost_rank_0_gets_its_cycle_root_from_the_survivor(mem: Memory) -> None:
    record_otel(cycle_event(0, rank=1))
    record_otel(worker("START", 2, group_rank=1))
    record_otel(rendezvous_start())  # restarted by the loss: no failure here
    record_otel(lost_cycle_event(1, 0, nodes=["h1_5_0"], hosts=["h1"], ranks=[0], signals=[""]))
    spans = _spans(mem)
    root0 = next(s for s in spans[sc.CYCLE_SPAN] if s.attributes[sc.ROUND] == 0)
    assert root0.context.span_id == ids.cycle_span_id(RUN, 0)
    assert root0.attributes[sc.INFERRED] is True
    lost = next(s for s in spans[sc.CYCLE_NODE_SPAN] if s.attributes.get(sc.INFERRED))
    assert lost.attributes[sc.LOST_REASON] == sc.LOST_REASON_HEARTBEAT


def test_a_preempted_node_ends_its_part_terminated_and_is_named_not_inferred(
    mem: Memory,
) -> None:
    record_otel(cycle_event(0, rank=0))
    record_otel(worker("START", 0))
    leaving = step(sc.STATE_LEAVING, signal="SIGTERM")
    leaving.name = sc.NODE_LEAVING_EVENT
    record_otel(leaving)
    record_otel(step("FAILED", raw_error="Traceback...\nSignalException: Process 9 got signal: 15"))
    spans = _spans(mem)
    (part,) = spans[sc.CYCLE_NODE_SPAN]
    assert part.attributes[sc.OUTCOME] == sc.OUTCOME_TERMINATED
    assert part.attributes[sc.SIGNAL] == "SIGTERM"
    assert part.status.status_code == StatusCode.UNSET
    assert [w[sc.END_REASON] for w in _workers(part)] == ["terminated"]
    (node,) = spans[sc.NODE_SPAN]
    assert (node.attributes[sc.NODE_STATE], node.attributes[sc.SIGNAL]) == ("TERMINATED", "SIGTERM")


def test_a_survivor_names_a_preempted_node_without_inventing_its_part(mem: Memory) -> None:
    record_otel(cycle_event(0, rank=0))
    record_otel(rendezvous_start())
    record_otel(
        lost_cycle_event(1, 0, nodes=["h2_8_0"], hosts=["h2"], ranks=[1], signals=["SIGTERM"])
    )
    logs = mem.log_records()
    spans = _spans(mem)
    assert not [s for s in spans[sc.CYCLE_NODE_SPAN] if s.attributes.get(sc.INFERRED)]
    (record,) = [r for r in logs if r.log_record.event_name == sc.NODE_LOST_EVENT]
    assert record.log_record.attributes[sc.LOST_REASON] == sc.LOST_REASON_PREEMPTED
    assert record.log_record.attributes[sc.SIGNAL] == "SIGTERM"


def test_signal_exception_alone_says_terminated(mem: Memory) -> None:
    """Without the integration's leaving event, torch's SignalException says it."""
    record_otel(cycle_event(0, rank=0))
    record_otel(worker("START", 0))
    record_otel(step("FAILED", raw_error="Traceback...\nSignalException: Process 9 got signal: 2"))
    (part,) = _spans(mem)[sc.CYCLE_NODE_SPAN]
    assert (part.attributes[sc.OUTCOME], part.attributes[sc.SIGNAL]) == ("terminated", "SIGINT")


def test_past_the_shard_size_a_cycle_is_split_in_shard_traces() -> None:
    spans: dict[str, list[Any]] = defaultdict(list)
    for rank in (0, 3):  # two nodes of a 5-node job, 2 nodes a trace
        with memory_pipeline("sdk", trace_shard_nodes=2) as mem:
            record_otel(cycle_event(7, rank=rank, nodes=5))
            record_otel(worker("START", rank * 2, group_rank=rank))
            record_otel(worker("SUCCEEDED", rank * 2, group_rank=rank))
            for name, found in _spans(mem).items():
                spans[name].extend(found)
    root = next(iter(spans[sc.CYCLE_SPAN]))
    shard_roots = {s.attributes[sc.SHARD]: s for s in spans[sc.CYCLE_SHARD_SPAN]}
    assert root.attributes[sc.SHARDS] == 3 and sorted(shard_roots) == [1, 2]
    part3 = next(s for s in spans[sc.CYCLE_NODE_SPAN] if s.attributes[sc.RANK] == 3)
    assert part3.context.trace_id == ids.cycle_trace_id(RUN, 7, 1)
    assert part3.parent.span_id == shard_roots[1].context.span_id
    assert (part3.context.trace_id, part3.context.span_id) == ids.node_part_context(RUN, 7, 3, 2)
    linked = {link.context.span_id for link in root.links}
    assert {s.context.span_id for s in shard_roots.values()} <= linked


def test_repeated_restart_keys_link_each_cycle_to_the_one_before(mem: Memory) -> None:
    """A node restarted by peers sees its restart count repeat: 0, 0.1, 0.2."""
    for _ in range(3):
        record_otel(worker("START", 0, agent_restarts=0))
        record_otel(worker("FAILED", 0, agent_restarts=0, raw_error=TRACEBACK))
    roots = _spans(mem)[sc.CYCLE_SPAN]
    by_trace = {s.context.trace_id: s for s in roots}
    assert len(by_trace) == 3
    second = by_trace[ids.cycle_trace_id(RUN, "0.1")]
    third = by_trace[ids.cycle_trace_id(RUN, "0.2")]
    assert second.links[1].context.trace_id == ids.cycle_trace_id(RUN, 0)
    assert third.links[1].context.trace_id == ids.cycle_trace_id(RUN, "0.1")
    # The roots say their key, as the parts do: the timeline places them by it.
    assert [
        r.attributes.get(sc.CYCLE_KEY)
        for r in (by_trace[ids.cycle_trace_id(RUN, 0)], second, third)
    ] == [None, "0.1", "0.2"]
