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
ROUND: Final = "torchelastic.round"
END_REASON: Final = "torchelastic.end_reason"
UNFINISHED: Final = "torchelastic.unfinished"

# --- values ---------------------------------------------------------------------------

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
NODE_SPAN: Final = "torchelastic.node"
"""Followed by `` <host>``."""
ROUND_SPAN: Final = "torchelastic.rendezvous"
AGENT_SPAN_PREFIX: Final = "torchelastic.agent."
"""Followed by the agent state the step ended in (``RENDEZVOUS``...)."""
WORKER_SPAN: Final = "torchelastic.worker"
"""Followed by `` <global rank>``."""
EXCEPTION_EVENT: Final = "exception"

# --- instrumentation scope ------------------------------------------------------------------

SCOPE: Final = "torchelastic_otel"


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
