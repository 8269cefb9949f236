"""What a reader should be told about a job: its failures, root causes first, the
nodes missing from a round or still waiting, the nodes closest to their restart
limit, and the notes on gaps in the data, in words.

Functions of the nodes and cycles the builder made (timeline/build.py); the next
failure kind is taught here once. Example::

    >>> _count(1, "node"), _count(3, "node")
    ('1 node', '3 nodes')
"""

import itertools
from collections import Counter, defaultdict
from typing import Any

from torchelastic_otel import semconv as sc
from torchelastic_otel.otlp_data import LogItem, SpanItem
from torchelastic_otel.timeline.job import (
    NS,
    SILENT_S,
    Cycle,
    Failure,
    JobTimeline,
    Missing,
    Node,
    NodeCycle,
)
from torchelastic_otel.torch_messages import got_signal, signal_name


def span_kind(name: str) -> str:
    """A span's kind: its name up to the first space (``torchelastic.cycle.node``)."""
    return name.split(" ", 1)[0]


def failures_from_spans(nodes: list[Node]) -> None:
    """Failed worker spans and rendezvous attempts whose ERROR record did not arrive."""
    with_record = {(id(f.node), f.round, f.global_rank) for n in nodes for f in n.failures}
    for node in nodes:
        for part in node.cycles:
            for w in part.workers:
                if not w.error or (id(node), part.round, w.global_rank) in with_record:
                    continue
                exc_type, _, message = w.message.partition(": ")
                if not message:
                    exc_type, message = sc.WORKER_FAILURE, w.message
                node.failures.append(
                    Failure(
                        time_ns=w.end_ns,
                        node=node,
                        kind="worker",
                        round=part.round,
                        global_rank=w.global_rank,
                        exc_type=exc_type,
                        message=message,
                        signal=w.signal,
                        attributes=w.attributes,
                    )
                )
        rdzv = [f.time_ns for f in node.failures if f.kind == "rendezvous"]
        for attempt in node.attempts:
            if attempt.failed and not any(abs(t - attempt.end_ns) < 50_000_000 for t in rdzv):
                node.failures.append(
                    Failure(
                        time_ns=attempt.end_ns,
                        node=node,
                        kind="rendezvous",
                        round=None,
                        global_rank=None,
                        exc_type=sc.RENDEZVOUS_FAILURE,
                        message=attempt.message,
                        attributes=attempt.attributes,
                    )
                )
    mark_killed([f for n in nodes for f in n.failures])
    for node in nodes:
        killed = {(f.round, f.global_rank) for f in node.failures if f.killed}
        for part in node.cycles:
            for w in part.workers:
                w.killed = (part.round, w.global_rank) in killed


def rendezvous_errors_after_success(nodes: list[Node], exit_warnings: Counter[str]) -> None:
    """Rendezvous errors once the first node finished the job's last cycle: exit notes.

    With c10d the store lives in one agent; when it exits, the others' keep-alive
    or their last look at the rendezvous can fail before they leave themselves.
    The job had succeeded by then, so these are counted with the exit warnings,
    not listed as the job's failures.
    """
    finished = [n.cycles[-1].end_ns for n in nodes if n.cycles and n.cycles[-1].end_ns]
    if not finished:
        return
    first_done = min(finished)
    for node in nodes:
        kept = []
        for f in node.failures:
            if f.kind == "rendezvous" and f.time_ns >= first_done:
                exit_warning(exit_warnings, f.exc_type)
            else:
                kept.append(f)
        node.failures = kept


def exit_warning(exit_warnings: Counter[str], error_type: object) -> None:
    """Count a node that could not leave the rendezvous, by its error's class name."""
    exit_warnings[str(error_type).rsplit(".", 1)[-1]] += 1


def notes(
    nodes: list[Node],
    cycles: list[Cycle],
    spans: list[SpanItem],
    other: int,
    unfinished: int,
    exit_warnings: Counter[str],
) -> list[str]:
    """What a reader should know about gaps in the data."""
    notes = []
    no_spans = [n for n in nodes if not n.spans]
    if no_spans:
        notes.append(
            f"{_count(len(no_spans), 'node')} with log records only, no spans "
            f"(killed before exporting them?): {_some(n.short for n in no_spans)}"
        )
    span_ids = {s["span_id"] for s in spans}
    orphans = Counter(
        span_kind(s["name"])
        for s in spans
        if s["parent_span_id"] and s["parent_span_id"] not in span_ids
    )
    if orphans:
        what = ", ".join(f"{n} {k}" for k, n in orphans.most_common())
        notes.append(
            f"{sum(orphans.values())} span(s) name a parent that was not exported ({what}); "
            "the agent that emits it may have died or still be running"
        )
    if unfinished:
        notes.append(f"{unfinished} span(s) were still open when their node shut down")
    if exit_warnings:
        errors = ", ".join(f"{n} {e}" for e, n in exit_warnings.most_common())
        notes.append(
            f"{_count(sum(exit_warnings.values()), 'node')} could not leave the "
            f"rendezvous at exit ({errors}): with c10d the store's host had left "
            "first; not a failure of the job"
        )
    for cycle in cycles:
        if any(p.matched for _, p in cycle.parts):
            notes.append(
                f"round {cycle.label}: no rendezvous round known; the parts of nodes "
                "restarted by a peer (their restart count repeated) were matched to it "
                "by time"
            )
        # Past TORCHELASTIC_OTEL_TRACE_SHARD_NODES a cycle is several shard traces by
        # design (its root says how many): more than that, and the nodes disagree.
        elif len(cycle.trace_ids) > cycle.shards:
            notes.append(
                f"round {cycle.round}: {len(cycle.trace_ids)} trace ids "
                "(nodes disagree on the cycle: rendezvous events or cycle events missing?)"
            )
        if not cycle.outcome_from_root:
            notes.append(
                f"round {cycle.round}: no cycle root span (rank 0's agent died, or the "
                "cycle was still running); its outcome is the nodes' own"
            )
    if other:
        notes.append(f"{other} span(s) of other names ignored")
    return notes


def end_waits(node: Node, end_ns: int) -> None:
    """A wait known from records lasts until the data ends, unless the node went quiet."""
    silent = end_ns - node.end_ns > SILENT_S * NS
    for attempt in node.attempts:
        if attempt.waiting and not attempt.attributes:
            if silent:
                # It went quiet in a rendezvous while the others went on: not waiting at
                # the end (missing, most likely).
                attempt.waiting = False
                attempt.message = "went silent while waiting in a rendezvous"
            else:
                attempt.end_ns = max(attempt.end_ns, end_ns)


def budget(members: list[tuple[Node, NodeCycle]]) -> tuple[int | None, list[Node]]:
    """The job's restarts left in a cycle: the lowest of its nodes' own, and the nodes
    that have that few when the others have more.

    A node spends its budget only on its own workers' failures (a node restarted by a
    peer spends none), and the job ends when any node's budget is spent: the cycle
    root's value is rank 0's alone.
    """
    known = [(p.remaining_restarts, n) for n, p in members if p.remaining_restarts is not None]
    if not known:
        return None, []
    lowest = min(r for r, _ in known)
    if all(r == lowest for r, _ in known):
        return lowest, []
    return lowest, sorted({id(n): n for r, n in known if r == lowest}.values(), key=by_rank)


def restart_budget(job: JobTimeline, cap: int = 5) -> str:
    """The job's restarts left after its last cycle, in words: its nodes' lowest, and
    which node has that few when the others have more (``""``: not known).

    ``restarts left: 0 of 1 in round 1, on rank 1 vm: closest to its limit (...)``
    """
    cycle = next((c for c in reversed(job.cycles) if c.remaining_restarts is not None), None)
    if cycle is None:
        return ""
    allowed = f" of {cycle.max_restarts}" if cycle.max_restarts is not None else ""
    text = f"restarts left: {cycle.remaining_restarts}{allowed} in round {cycle.label}"
    if cycle.closest:
        text += (
            f", on {_some((n.short for n in cycle.closest), cap)}: closest to its limit "
            "(the others have more: a node restarted by a peer spends none of its own)"
        )
    return text


def by_rank(node: Node) -> tuple[bool, int, str]:
    """Rank order (unknown ranks last)."""
    return (node.rank < 0, node.rank, node.key)


_NO_ERROR_OF_ITS_OWN = ("", sc.WORKER_FAILURE.rsplit(".", 1)[-1])


def _own_error(f: Failure) -> bool:
    return not f.signal or f.exc_type.rsplit(".", 1)[-1] not in _NO_ERROR_OF_ITS_OWN


def mark_killed(failures: list[Failure]) -> None:
    """Workers killed by a signal, with no error of their own, while another failed."""
    by_round: dict[int | None, list[Failure]] = defaultdict(list)
    for f in failures:
        if f.kind == "worker":
            by_round[f.round].append(f)
    for group in by_round.values():
        signalled = [f for f in group if not _own_error(f)]
        if len(signalled) < len(group):
            killed = signalled  # someone else had an error of their own
        else:
            # Only signals: the agent stops workers with SIGTERM; another signal
            # (SIGKILL by the OOM killer, SIGSEGV) is the cause.
            others = [f for f in group if f.signal != "SIGTERM"]
            killed = [f for f in group if f.signal == "SIGTERM"] if others else []
        for f in killed:
            f.killed = True


def order_failures(failures: list[Failure]) -> list[Failure]:
    """By cycle in time order; in a cycle the root causes first, then the killed."""
    first: dict[int | None, int] = {}
    for f in failures:
        if f.kind == "worker":
            first[f.round] = min(first.get(f.round, f.time_ns), f.time_ns)

    def key(f: Failure) -> tuple[int, bool, int, int]:
        group = first[f.round] if f.kind == "worker" else f.time_ns
        return (group, f.killed, f.time_ns, f.node.rank)

    return sorted(failures, key=key)


def signal_exception(log: LogItem) -> str:
    """The signal of an agent stopped by torch's ``SignalException``, else ``""``."""
    a = log["attributes"]
    text = f"{a.get(sc.EXCEPTION_TYPE, '')}: {a.get(sc.EXCEPTION_MESSAGE, '')}"
    number = got_signal(text)
    if number is None:
        number = got_signal(str(a.get(sc.EXCEPTION_STACKTRACE, "")))
    if number is None:
        return ""
    return signal_name(number)


def missing(cycles: list[Cycle], nodes: list[Node]) -> list[Missing]:
    out = []
    for before, after in itertools.pairwise(cycles):
        there = {id(n) for n, _ in after.parts}
        gone = [n for n, _ in before.parts if id(n) not in there]
        if gone:
            out.append(Missing(before.round, after.round, gone))
    waiting = [n for n in nodes if n.waiting is not None]
    if waiting and cycles:
        last = cycles[-1]
        pending = {id(n) for n in waiting}
        gone = [n for n, _ in last.parts if id(n) not in pending and n.state != sc.STATE_SUCCEEDED]
        if gone:
            out.append(Missing(last.round, None, gone))
    return out


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _some(items: Any, limit: int = 3) -> str:
    items = list(items)
    text = ", ".join(str(i) for i in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")
