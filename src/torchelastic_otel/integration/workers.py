"""Each worker process starts with its place in the job's trace: ``TRACEPARENT``.

OpenTelemetry specifies environment variables as a context carrier (``TRACEPARENT``,
``TRACESTATE``). Before the agent starts its workers, every worker's environment
gets ``TRACEPARENT`` naming its node's part in the cycle's trace (the ids are
derived from the run id, the rendezvous round and the node's rank, so the span
exported later is exactly that one; the worker itself is a span event of that
part), and ``OTEL_RESOURCE_ATTRIBUTES`` gains the run id, node rank, local and
global rank, restart count and round (merged with what is already there: a key set
by the user is never overwritten). Any OpenTelemetry-instrumented training code
can then join the job's trace under its node's part, with no code change in the launcher::

    # in the training script (the plain OpenTelemetry SDK)
    import os
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract({"traceparent": os.environ["TRACEPARENT"]})
    with trace.get_tracer("train").start_as_current_span("epoch", context=parent):
        ...

Each worker also gets a progress file (``TORCHELASTIC_OTEL_PROGRESS_FILE``) and the
package's bootstrap first on its ``PYTHONPATH`` (:mod:`.progress`): its
``optimizer.step()`` calls are counted there and the agent watches them for stalls.

``LocalElasticAgent._setup_local_watchdog(envs=...)`` is wrapped: torch calls it
with every worker's environment, just before it starts them. Needs (gates): that
method; the dynamic rendezvous' round (other backends: no ``TRACEPARENT``, since no
round is known to derive ids from; progress is watched with any backend). Only for
agents exporting to ``otel``.
"""

import os
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import quote, unquote

from torchelastic_otel import semconv as sc
from torchelastic_otel.integration import _features, _shared, _wrapping, progress

WHAT = "worker trace context (TRACEPARENT)"
TRACEPARENT = "TRACEPARENT"
TRACESTATE = "TRACESTATE"
RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"


def patch(agent_class: type[Any]) -> None:
    """Wrap ``_setup_local_watchdog`` (gated; idempotent)."""
    if _features.require(agent_class, "LocalElasticAgent", WHAT, "_setup_local_watchdog"):
        _wrapping.wrap(agent_class, "_setup_local_watchdog", _setup_local_watchdog)


def _setup_local_watchdog(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    envs = kwargs.get("envs", args[0] if args else None)
    if isinstance(envs, dict):
        try:
            add_worker_context(instance, envs)
        except Exception as e:  # noqa: BLE001 -- the workers must start anyway
            _features.switched_off(WHAT, f"{type(e).__name__}: {e}")
    return wrapped(*args, **kwargs)


def add_worker_context(agent: Any, envs: Mapping[int, MutableMapping[str, str]]) -> None:
    """Put each worker's ``TRACEPARENT`` and resource attributes into its environment."""
    from torchelastic_otel.otel import derived_ids

    group = agent._worker_group
    spec = group.spec
    if spec.event_log_handler not in _shared.capture_for:
        return
    try:
        progress.add_progress_files(agent, envs)
    except Exception as e:  # noqa: BLE001 -- the trace context must not be lost for it
        _features.switched_off(progress.WHAT, f"{type(e).__name__}: {e}")
    round_ = _shared.rendezvous_round(spec.rdzv_handler)
    if round_ is None:
        return
    run_id = spec.rdzv_handler.get_run_id()
    remaining = getattr(agent, "_remaining_restarts", None)
    restarts = spec.max_restarts - remaining if isinstance(remaining, int) else None
    from torchelastic_otel.otel import settings

    # Workers are span events of their node's part: the part is their parent.
    trace_id, span_id = derived_ids.node_part_context(
        run_id, round_, group.group_rank, settings.from_env().trace_shard_nodes
    )
    workers = {w.local_rank: w for w in group.workers}
    for local_rank, env in envs.items():
        worker = workers.get(local_rank)
        if worker is None:
            continue
        # Sampled, as the agent's spans are: every span of the job is exported.
        env[TRACEPARENT] = f"00-{trace_id:032x}-{span_id:016x}-01"
        env[TRACESTATE] = ""  # an inherited one belongs to another trace
        ours = {
            sc.WORKER_RUN_ID: run_id,
            sc.WORKER_NODE_RANK: group.group_rank,
            sc.WORKER_LOCAL_RANK: local_rank,
            sc.WORKER_GLOBAL_RANK: worker.global_rank,
            sc.WORKER_ROUND: round_,
        }
        if restarts is not None:
            ours[sc.WORKER_RESTART_COUNT] = restarts
        existing = env.get(RESOURCE_ATTRIBUTES, os.environ.get(RESOURCE_ATTRIBUTES, ""))
        env[RESOURCE_ATTRIBUTES] = merge_resource_attributes(existing, ours)


def merge_resource_attributes(existing: str, ours: dict[str, object]) -> str:
    """``existing`` (``key=value,...``) with ours added where its keys are not set.

    Values are percent-encoded as the specification's format requires (a run id may
    hold a comma or an equals sign).

    Example::

        >>> merge_resource_attributes("team=ml,torchelastic.round=9", {"torchelastic.round": 1,
        ...     "torchelastic.run_id": "a,b"})
        'team=ml,torchelastic.round=9,torchelastic.run_id=a%2Cb'
    """
    entries = [e.strip() for e in existing.split(",") if e.strip()]
    present = {unquote(e.split("=", 1)[0].strip()) for e in entries if "=" in e}
    for key, value in ours.items():
        if key not in present:
            entries.append(f"{key}={quote(str(value), safe='')}")
    return ",".join(entries)
