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

NODE_ID: Final = "torchelastic.node.id"
"""A node as torch's rendezvous names it: ``<host>_<agent pid>_<local id>`` (unique per
agent process even when several agents share a host)."""
CYCLE_KEY: Final = "torchelastic.cycle.key"
"""On a cycle part whose round (restart count) this node saw before: the key its ids
derive from (``"0.1"``), so that two such cycles are never merged."""
SHARD: Final = "torchelastic.shard"
"""Which shard of a cycle's (or the run's) nodes a trace holds: nodes of rank ``r`` are
in shard ``r // TORCHELASTIC_OTEL_TRACE_SHARD_NODES`` (docs/mapping.md, "Shards")."""
SHARDS: Final = "torchelastic.shards"
"""On a cycle root and the job span: how many shard traces the cycle (run) has."""
INFERRED: Final = "torchelastic.inferred"
"""``true`` on a span a survivor exported for a node that could not (it was lost)."""
REPORTED_BY: Final = "torchelastic.reported_by"
"""On an inferred span: the rank (in the next cycle) of the node that exported it."""
LOST_NODES: Final = "torchelastic.lost.nodes"
"""On a cycle root and its lost-node record: the node ids that left since the cycle
before (string array)."""
LOST_COUNT: Final = "torchelastic.lost.count"
LOST_NODE: Final = "torchelastic.lost.node"
"""On a ``torchelastic.node.lost`` record: the node id that left."""
LOST_HOST: Final = "torchelastic.lost.host"
LOST_HOSTS: Final = "torchelastic.lost.hosts"
"""On the ``torchelastic.cycle.start`` record of the next cycle's rank 0: the lost nodes'
hosts, in the order of ``torchelastic.lost.nodes`` (as are the next two)."""
LOST_RANKS: Final = "torchelastic.lost.ranks"
LOST_SIGNALS: Final = "torchelastic.lost.signals"
"""The signal each node said it left on (``""``: it said nothing: it vanished)."""
LOST_RANK: Final = "torchelastic.lost.rank"
"""The lost node's rank in the cycle it was last part of."""
LOST_ROUND: Final = "torchelastic.lost.round"
"""The cycle (round) the lost node was last part of: the cycle it died in."""
LOST_REASON: Final = "torchelastic.lost.reason"
"""How the survivors learned a node left (see the ``LOST_REASON_*`` values); also the
attribute of the ``torchelastic.nodes.lost`` metric."""
PROGRESS_STEP: Final = "torchelastic.progress.step"
"""A worker's last reported training step (its optimizer steps, or its own count)."""
PROGRESS_IDLE_S: Final = "torchelastic.progress.idle_s"
"""Seconds since a worker last reported progress."""
STALLED_RANKS: Final = "torchelastic.stalled.ranks"
"""The global ranks of a node's stalled workers (int array)."""
GOODPUT: Final = "torchelastic.goodput"
"""Share (0..1) of wall time in which the workers made progress."""
TIME_LOST_S: Final = "torchelastic.time_lost_s"
"""Seconds a cycle lost: its rendezvous, its restart and its stalls."""
STALL_TIMEOUT_S: Final = "torchelastic.stall.timeout_s"
"""On stall records: the stall timeout in force (``TORCHELASTIC_OTEL_STALL_TIMEOUT_S``)."""

# --- values ---------------------------------------------------------------------------

OUTCOME_SUCCEEDED: Final = "succeeded"
OUTCOME_FAILED: Final = "failed"
"""A worker of this node failed."""
OUTCOME_RESTARTED: Final = "restarted"
"""The cycle ended with no failure here: a peer failed, or the membership changed."""
OUTCOME_UNFINISHED: Final = "unfinished"
"""Still running when the node shut down."""
OUTCOME_TERMINATED: Final = "terminated"
"""The node's agent was stopped by a signal (a preemption notice: SIGTERM); the signal is
in ``torchelastic.signal``."""
OUTCOME_LOST: Final = "lost"
"""The node vanished without saying goodbye; written by a survivor (``torchelastic.inferred``)."""

LOST_REASON_PREEMPTED: Final = "preempted"
"""The node said, as it left, that a signal stopped it (a preemption notice)."""
LOST_REASON_COLLECTIVE: Final = "collective_failed"
"""The survivor's own workers failed in the cycle the node left (a collective broke)."""
LOST_REASON_HEARTBEAT: Final = "heartbeat_expired"
"""The node stopped its rendezvous heartbeats and did not rejoin the next round."""
STATE_LOST: Final = "LOST"
"""The ``node_state`` of an inferred span or record about a lost node."""

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
END_TERMINATED: Final = "terminated"
"""A worker span ended because its agent was stopped by a signal (a preemption)."""
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

CYCLE_SHARD_SPAN: Final = "torchelastic.cycle.shard"
"""The root of a cycle's shard trace beyond the first; followed by `` <round>/<shard>``."""
NODES_SHARD_SPAN: Final = "torchelastic.job.shard"
"""The root of the run's shard trace beyond the first; followed by `` <shard>``."""
WORKER_EVENT: Final = "torchelastic.worker"
"""A span event on a node's cycle part: one worker's end (its global rank, reason, exit)."""

NODE_LOST_EVENT: Final = "torchelastic.node.lost"
"""A record (WARN) a survivor writes per node that left since the cycle before."""
NODE_LEAVING_EVENT: Final = "torchelastic.node.leaving"
"""This package's own agent event: the agent was told to stop by a signal (SIGTERM...)."""
STATE_LEAVING: Final = "LEAVING"
STALL_EVENT: Final = "torchelastic.worker.stalled"
"""A record (WARN): workers of a node made no progress for the stall timeout."""
PROGRESS_RESUMED_EVENT: Final = "torchelastic.worker.progress_resumed"
"""A record (INFO): stalled workers made progress again."""
STATE_STALLED: Final = "STALLED"
"""The ``node_state`` of a :data:`STALL_EVENT` record."""
STATE_PROGRESSING: Final = "PROGRESSING"
"""The ``node_state`` of a :data:`PROGRESS_RESUMED_EVENT` record."""

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
METRIC_NODES_LOST: Final = "torchelastic.nodes.lost"
"""Nodes that left a run, counted once (by the next cycle's rank 0), by
``torchelastic.lost.reason``."""
METRIC_PROGRESS_STEP: Final = "torchelastic.worker.progress.step"
"""Gauge: each worker's last step (attribute ``torchelastic.local_rank``)."""
METRIC_PROGRESS_IDLE: Final = "torchelastic.worker.progress.idle"
"""Gauge, seconds: since each worker's last step (attribute ``torchelastic.local_rank``)."""
METRIC_WORKERS_STALLED: Final = "torchelastic.workers.stalled"
"""Gauge: this node's workers stalled now (no step for the stall timeout)."""
METRIC_GOODPUT: Final = "torchelastic.goodput"
"""Gauge, ratio: the share of this node's wall time in the run with workers making progress."""
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
