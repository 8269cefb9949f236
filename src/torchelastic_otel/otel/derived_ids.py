"""Trace and span ids every process of a job derives alike, without talking.

Pure functions of the run id, the cycle (the rendezvous round) and a rank: every
node of a cycle computes the same cycle trace id, the agent computes its workers'
span ids before the workers start (to hand them ``TRACEPARENT``), and the state
machine builds the spans with exactly those ids. No OpenTelemetry import, so the
torchrun integration can use them in any process.

Example::

    >>> cycle_trace_id("job-7", 2) == cycle_trace_id("job-7", 2)
    True
    >>> f"{worker_span_id('job-7', 2, 13):016x}"  # doctest: +SKIP
    '5d6f...'
"""

import hashlib


def _digest(*parts: object, size: int) -> int:
    text = "torchelastic-otel/" + "/".join(str(p) for p in parts)
    value = int.from_bytes(hashlib.sha256(text.encode(errors="surrogatepass")).digest()[:size])
    return value or 1


def run_trace_id(run_id: str) -> int:
    """The trace of the run's skeleton (job span, node spans)."""
    return _digest("trace", run_id, size=16)


def job_span_id(run_id: str) -> int:
    """The job span, root of the run trace."""
    return _digest("job", run_id, size=8)


def cycle_trace_id(run_id: str, cycle: int | str) -> int:
    """The trace of one restart cycle (``cycle``: the rendezvous round)."""
    return _digest("cycle", run_id, cycle, size=16)


def cycle_span_id(run_id: str, cycle: int | str) -> int:
    """The cycle root, emitted by the cycle's rank 0."""
    return _digest("cycle-root", run_id, cycle, size=8)


def cycle_node_span_id(run_id: str, cycle: int | str, rank: int) -> int:
    """The span of node ``rank`` in the cycle."""
    return _digest("cycle-node", run_id, cycle, rank, size=8)


def worker_span_id(run_id: str, cycle: int | str, global_rank: int) -> int:
    """The span of worker ``global_rank`` in the cycle (what its ``TRACEPARENT`` names)."""
    return _digest("worker", run_id, cycle, global_rank, size=8)


def other_span_id(*parts: object) -> int:
    """A span id for anything else that must be derived (from ``parts``)."""
    return _digest("span", *parts, size=8)
