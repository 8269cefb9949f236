"""Trace and span ids every process of a job derives alike, without talking.

Pure functions of the run id, the cycle (the rendezvous round) and a rank: every
node of a cycle computes the same cycle trace id, the agent computes its workers'
span ids before the workers start (to hand them ``TRACEPARENT``), and the state
machine builds the spans with exactly those ids. No OpenTelemetry import, so the
torchrun integration can use them in any process.

Example::

    >>> cycle_trace_id("job-7", 2) == cycle_trace_id("job-7", 2)
    True
    >>> f"{cycle_node_span_id('job-7', 2, 13):016x}"  # doctest: +SKIP
    '5d6f...'
"""

import hashlib


def _digest(*parts: object, size: int) -> int:
    text = "torchelastic-otel/" + "/".join(str(p) for p in parts)
    value = int.from_bytes(hashlib.sha256(text.encode(errors="surrogatepass")).digest()[:size])
    return value or 1


def shard_of(rank: int, shard_nodes: int) -> int:
    """The shard of node ``rank``: which of a cycle's (or the run's) traces holds its span.

    Example::

        >>> shard_of(1999, 2000), shard_of(2000, 2000), shard_of(-1, 2000)
        (0, 1, 0)
    """
    return rank // shard_nodes if rank > 0 and shard_nodes > 0 else 0


def shard_count(nodes: int, shard_nodes: int) -> int:
    """How many shard traces ``nodes`` nodes fill (at least one).

    Example::

        >>> shard_count(10_000, 2000), shard_count(3, 2000), shard_count(0, 2000)
        (5, 1, 1)
    """
    if shard_nodes <= 0 or nodes <= shard_nodes:
        return 1
    return -(-nodes // shard_nodes)


def run_trace_id(run_id: str, shard: int = 0) -> int:
    """The trace of the run's skeleton (job span, node spans); ``shard`` > 0: its shards."""
    if shard:
        return _digest("trace-shard", run_id, shard, size=16)
    return _digest("trace", run_id, size=16)


def job_parent_span_id(run_id: str, shard: int = 0) -> int:
    """The parent of the node spans of ``shard``: the job span, or the shard's root."""
    if shard:
        return _digest("job-shard", run_id, shard, size=8)
    return job_span_id(run_id)


def job_span_id(run_id: str) -> int:
    """The job span, root of the run trace."""
    return _digest("job", run_id, size=8)


def cycle_trace_id(run_id: str, cycle: int | str, shard: int = 0) -> int:
    """The trace of one restart cycle (``cycle``: the rendezvous round); ``shard`` > 0: the
    trace of that shard of its nodes."""
    if shard:
        return _digest("cycle-shard", run_id, cycle, shard, size=16)
    return _digest("cycle", run_id, cycle, size=16)


def cycle_parent_span_id(run_id: str, cycle: int | str, shard: int = 0) -> int:
    """The parent of the node parts of ``shard``: the cycle root, or the shard's root."""
    if shard:
        return _digest("cycle-shard-root", run_id, cycle, shard, size=8)
    return cycle_span_id(run_id, cycle)


def cycle_span_id(run_id: str, cycle: int | str) -> int:
    """The cycle root, emitted by the cycle's rank 0."""
    return _digest("cycle-root", run_id, cycle, size=8)


def cycle_node_span_id(run_id: str, cycle: int | str, rank: int) -> int:
    """The span of node ``rank`` in the cycle."""
    return _digest("cycle-node", run_id, cycle, rank, size=8)


def node_part_context(
    run_id: str, cycle: int | str, rank: int, shard_nodes: int
) -> tuple[int, int]:
    """(trace id, span id) of node ``rank``'s part in the cycle: what its workers'
    ``TRACEPARENT`` names (workers are span events of that part, not spans).

    Example::

        >>> node_part_context("job-7", 2, 5, 2000) == (
        ...     cycle_trace_id("job-7", 2), cycle_node_span_id("job-7", 2, 5))
        True
    """
    shard = shard_of(rank, shard_nodes)
    return cycle_trace_id(run_id, cycle, shard), cycle_node_span_id(run_id, cycle, rank)


def other_span_id(*parts: object) -> int:
    """A span id for anything else that must be derived (from ``parts``)."""
    return _digest("span", *parts, size=8)
