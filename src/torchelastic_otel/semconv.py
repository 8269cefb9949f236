"""The vocabulary: every name the ``otel`` destination writes and the timeline reads.

One module, imported by both sides (as OpenTelemetry's semantic-conventions
packages are), so that a key, a span name or a state is spelled in one place. It
imports nothing: the events mirror, the exporter and the viewer can all use it.
docs/mapping.md is the prose version of this file; a test checks the two agree.

Example::

    >>> from torchelastic_otel import semconv
    >>> semconv.RUN_ID, semconv.WORKER_SPAN
    ('run_id', 'torchelastic.worker')
"""

from typing import Final

# --- the three keys on every record and span -----------------------------------------

RUN_ID: Final = "run_id"
"""The job's rendezvous id (``--rdzv-id``)."""
RANK: Final = "rank"
"""The node's rank in the rendezvous (``-1`` while unknown)."""
NODE_STATE: Final = "node_state"
"""The state an event reports (agent, worker or rendezvous state)."""

# --- standard OpenTelemetry keys we write --------------------------------------------

HOST_NAME: Final = "host.name"
PROCESS_PID: Final = "process.pid"
SERVICE_NAME: Final = "service.name"
SERVICE_INSTANCE_ID: Final = "service.instance.id"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"
EXCEPTION_PREFIX: Final = "exception."
ERROR_TYPE: Final = "error.type"
"""A low-cardinality failure class on metrics (exception type, signal, exit code)."""

# --- our own keys -----------------------------------------------------------------------

PREFIX: Final = "torchelastic."
"""Every other event field ``k`` becomes ``torchelastic.<k>``."""
EVENT_KIND: Final = "torchelastic.event.kind"
NAME: Final = "torchelastic.name"
MESSAGE: Final = "torchelastic.message"
SOURCE: Final = "torchelastic.source"
TIMESTAMP: Final = "torchelastic.timestamp"
MASTER_ENDPOINT: Final = "torchelastic.master_endpoint"
LOCAL_ID: Final = "torchelastic.local_id"
GLOBAL_RANK: Final = "torchelastic.global_rank"
GROUP_RANK: Final = "torchelastic.group_rank"
WORKER_ID: Final = "torchelastic.worker_id"
ROLE: Final = "torchelastic.role"
DURATION_MS: Final = "torchelastic.duration_ms"
METADATA: Final = "torchelastic.metadata"
"""The agent's ``metadata`` JSON; its keys become ``torchelastic.metadata.<key>``."""
EXIT_CODE: Final = "torchelastic.metadata.exit_code"
SIGNAL: Final = "torchelastic.signal"
"""The signal that ended a worker (``SIGKILL``...), when its exit code says so."""
AGENT_RESTARTS: Final = "torchelastic.agent_restarts"
"""The agent's restarts so far (torch's ``agent_restarts``): the cycle key when no
round is known."""
ROUND: Final = "torchelastic.round"
"""The restart cycle: the rendezvous round every node of it agrees on (else the restart
count, when no round is known)."""
END_REASON: Final = "torchelastic.end_reason"
UNFINISHED: Final = "torchelastic.unfinished"
LOCAL_RANK: Final = "torchelastic.local_rank"
"""A worker's local rank, on its span."""
LOCAL_RANK_IN_METADATA: Final = "torchelastic.metadata.local_rank"
OUTCOME: Final = "torchelastic.cycle.outcome"
"""How a cycle ended, as the node that writes it saw it (see the ``OUTCOME_*`` values)."""
CYCLES: Final = "torchelastic.cycles"
"""Cycles a node (on its node span) or the job (on the job span) went through."""
MAX_RESTARTS: Final = "torchelastic.max_restarts"
REMAINING_RESTARTS: Final = "torchelastic.remaining_restarts"
NODES: Final = "torchelastic.nodes"
"""Nodes in the cycle's rendezvous (its world size in nodes)."""
WORKERS: Final = "torchelastic.workers"
"""Workers in the cycle (its world size in workers)."""
LOCAL_WORLD_SIZE: Final = "torchelastic.local_world_size"
RENDEZVOUS_DURATION_MS: Final = "torchelastic.rendezvous.duration_ms"
"""How long this node's rendezvous for the cycle took (torch's RENDEZVOUS step)."""
ASSIGN_DURATION_MS: Final = "torchelastic.assign_worker_ranks.duration_ms"
HEARTBEATS: Final = "torchelastic.rendezvous.heartbeats"
"""Keep-alive heartbeats the node sent during a summary's interval."""
SYNCS: Final = "torchelastic.rendezvous.syncs"
"""Rendezvous state syncs during a summary's interval."""
STALE_SYNCS: Final = "torchelastic.rendezvous.stale_syncs"
"""Syncs that lost a compare-and-set to another node and were retried."""
FOLDED: Final = "torchelastic.folded_events"
"""Rendezvous events a summary record stands for."""
INTERVAL_S: Final = "torchelastic.interval_s"

# --- values ---------------------------------------------------------------------------

OUTCOME_SUCCEEDED: Final = "succeeded"
OUTCOME_FAILED: Final = "failed"
"""A worker of this node failed."""
OUTCOME_RESTARTED: Final = "restarted"
"""The cycle ended with no failure here: a peer failed, or the membership changed."""
OUTCOME_UNFINISHED: Final = "unfinished"
"""Still running when the node shut down."""

KIND_AGENT: Final = "agent"
KIND_RENDEZVOUS: Final = "rendezvous"

UNKNOWN_RUN_ID: Final = "unknown"
UNKNOWN_RANK: Final = -1
UNKNOWN_STATE: Final = "UNKNOWN"

SOURCE_WORKER: Final = "WORKER"

# States the agent and workers report (torch's WorkerState names), and the
# rendezvous' NodeState names.
STATE_INIT: Final = "INIT"
STATE_START: Final = "START"
STATE_RENDEZVOUS: Final = "RENDEZVOUS"
STATE_ASSIGN_WORKER_RANKS: Final = "ASSIGN_WORKER_RANKS"
STATE_SUCCEEDED: Final = "SUCCEEDED"
STATE_FAILED: Final = "FAILED"
STATE_TERMINATED: Final = "TERMINATED"
STATE_UNHEALTHY: Final = "UNHEALTHY"
WARN_STATES: Final = frozenset({STATE_UNHEALTHY, STATE_TERMINATED})
FINAL_WORKER_STATES: Final = frozenset(
    {STATE_SUCCEEDED, STATE_FAILED, STATE_TERMINATED, STATE_UNHEALTHY}
)

CYCLE_EVENT: Final = "torchelastic.cycle.start"
"""This package's own agent event, recorded by the torchrun integration right after
every completed rendezvous: the restart cycle that starts, and its settings."""
STATE_CYCLE: Final = "RENDEZVOUS_COMPLETE"
"""The ``node_state`` of a :data:`CYCLE_EVENT`."""

END_RESTARTED: Final = "restarted"
"""A worker span ended because its group was stopped for a new rendezvous round."""
END_SHUTDOWN: Final = "shutdown"
"""A span still open when its process shut down."""

# Exception types for failures that carry no exception of their own.
WORKER_FAILURE: Final = "torchelastic.WorkerFailure"
RENDEZVOUS_FAILURE: Final = "torchelastic.RendezvousFailure"

# SeverityNumber values from the OpenTelemetry logs data model.
SEVERITY_INFO: Final = 9
SEVERITY_WARN: Final = 13
SEVERITY_ERROR: Final = 17
SEVERITY_TEXT: Final = {SEVERITY_INFO: "INFO", SEVERITY_WARN: "WARN", SEVERITY_ERROR: "ERROR"}

# Span status codes as OTLP writes them.
STATUS_UNSET: Final = 0
STATUS_OK: Final = 1
STATUS_ERROR: Final = 2

# --- span names ---------------------------------------------------------------------------

JOB_SPAN: Final = "torchelastic.job"
"""The root of the run trace."""
NODE_SPAN: Final = "torchelastic.node"
"""An agent process's life, in the run trace; followed by `` <host>``."""
RENDEZVOUS_SPAN: Final = "torchelastic.rendezvous"
"""A rendezvous attempt that started no cycle (failed, or waiting at exit), in the run trace."""
CYCLE_SPAN: Final = "torchelastic.cycle"
"""The root of a cycle trace; followed by `` <round>``."""
CYCLE_NODE_SPAN: Final = "torchelastic.cycle.node"
"""A node's part in a cycle, from its rendezvous on; followed by `` <host>``."""
WORKER_SPAN: Final = "torchelastic.worker"
"""A worker process, in its cycle; followed by `` <global rank>``."""
EXCEPTION_EVENT: Final = "exception"

HEARTBEAT_SUMMARY: Final = "torchelastic.rendezvous.keepalive"
"""The event name of a summary of the rendezvous' periodic chatter."""

RENDEZVOUS_START_EVENT: Final = "torchelastic.rendezvous.start"
"""This package's own agent event, recorded by the torchrun integration when the agent
starts a rendezvous (so that a node waiting in one is known without the rendezvous'
own events)."""
STATE_RENDEZVOUS_START: Final = "RENDEZVOUS_STARTED"

# --- metrics: OpenTelemetry names (Prometheus: dots to underscores, unit suffixes,
# ``_total`` on counters), see docs/mapping.md ("Metrics") ---------------------------

METRIC_RENDEZVOUS_DURATION: Final = "torchelastic.rendezvous.duration"
METRIC_RENDEZVOUS_ROUNDS: Final = "torchelastic.rendezvous.rounds"
METRIC_RENDEZVOUS_FAILURES: Final = "torchelastic.rendezvous.failures"
METRIC_RENDEZVOUS_ACTIVE: Final = "torchelastic.rendezvous.active"
METRIC_RENDEZVOUS_HEARTBEATS: Final = "torchelastic.rendezvous.heartbeats"
METRIC_AGENT_RESTARTS: Final = "torchelastic.agent.restarts"
METRIC_RESTART_REMAINING: Final = "torchelastic.agent.restart.remaining"
METRIC_RESTART_LIMIT: Final = "torchelastic.agent.restart.limit"
METRIC_WORKER_FAILURES: Final = "torchelastic.worker.failures"
METRIC_WORKER_STARTUP: Final = "torchelastic.worker.startup.duration"
TORCH_METRICS_SCOPE: Final = "torch.distributed.elastic.metrics"
"""The scope of torch's own elastic metrics, bridged as they are named there."""

# --- instrumentation scope ------------------------------------------------------------------

SCOPE: Final = "torchelastic_otel"


# --- what a worker process is told (OTEL_RESOURCE_ATTRIBUTES, next to TRACEPARENT) ------

WORKER_RUN_ID: Final = "torchelastic.run_id"
WORKER_NODE_RANK: Final = "torchelastic.node_rank"
WORKER_LOCAL_RANK: Final = "torchelastic.local_rank"
WORKER_GLOBAL_RANK: Final = "torchelastic.global_rank"
WORKER_RESTART_COUNT: Final = "torchelastic.restart_count"
WORKER_ROUND: Final = "torchelastic.round"

# --- what torch's dynamic rendezvous says, as both sides recognise it -------------------

RDZV_NEXT_RENDEZVOUS: Final = "next_rendezvous"
"""The end of the name of ``DynamicRendezvousHandler.next_rendezvous``'s events."""
RDZV_JOIN_ATTEMPT: Final = "attempts to join"
"""In the message of a node starting to join the next round."""
RDZV_JOINED_PATTERN: Final = r"\bhas joined round (\d+)\b"
"""The message of a node that joined round N (the group: N)."""
RDZV_CLOSED: Final = "has closed the rendezvous"
"""In the message of a node that closed the rendezvous (the job ended)."""
RDZV_SHUTDOWN: Final = "DynamicRendezvousHandler.shutdown"
"""The end of the name of the event of a node that could not leave the rendezvous at
exit: torch logs it as a warning, and with c10d it follows most successful jobs on
every node but the store's host, which left first."""


def describe_exit(code: int) -> tuple[str, str | None]:
    """A worker's exit code as words, and the signal that ended it (if any).

    Example::

        >>> describe_exit(-9)
        ('exited with code -9 (killed by SIGKILL)', 'SIGKILL')
        >>> describe_exit(1)
        ('exited with code 1', None)
    """
    if code >= 0:
        return f"exited with code {code}", None
    import signal

    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"exited with code {code} (killed by {name})", name
