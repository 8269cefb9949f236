"""The torchrun agent: what torch does not record.

* **Worker failures before a restart.** torch's agent records worker states only at
  the end of a run, so a failure followed by a successful restart never shows.
  ``LocalElasticAgent._monitor_workers`` is wrapped: when a worker group failed and
  the agent is about to restart it, the workers' states (``FAILED`` for the failed
  ones, ``TERMINATED`` for the ones the restart stops) are recorded through torch's
  own ``_record_worker_events``. Needs (gates): ``_monitor_workers``,
  ``_record_worker_events``; at run time the agent's ``_remaining_restarts``.
* **Restart cycles.** ``SimpleElasticAgent._rendezvous`` is wrapped: the agent
  records a ``torchelastic.rendezvous.start`` event when it starts a rendezvous
  (a node waiting in one is then known, rendezvous events on or off), and after every
  completed rendezvous a ``torchelastic.cycle.start`` event with
  the rendezvous round every node of it agrees on (the key of the cycle's trace),
  the node's rank, the world sizes and the restarts left and allowed. Needs:
  ``_rendezvous``, ``_construct_event``; the round is read from the dynamic
  rendezvous' state (other rendezvous backends: the event has no round, and the
  mapping falls back on the restart count).

* **Who left, and who is leaving** (:mod:`.membership`): the cycle event of the new
  round's rank 0 names the nodes that left since the cycle before (``lost.*``);
  ``LocalElasticAgent._shutdown`` is wrapped so that an agent stopped by a signal
  (torch's ``SignalException``: a preemption notice) records a
  ``torchelastic.node.leaving`` event and tells the survivors through the store.
  Needs: ``_shutdown``; the dynamic rendezvous' state and store (else nobody is
  named).

* **The workers' trace context** (:mod:`.workers`): ``TRACEPARENT`` and resource
  attributes in every worker's environment.

All act only for destinations routed to ``otel``: installed but unused, the
package changes nothing.
"""

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from torchelastic_otel.integration import _features, _shared, _wrapping

MODULE = "torch.distributed.elastic.agent.server.local_elastic_agent"
API_MODULE = "torch.distributed.elastic.agent.server.api"
WHAT = "recording worker failures before a restart"
CYCLE_WHAT = "recording restart cycles"
LEAVING_WHAT = "recording a node stopped by a signal"

capture_for = _shared.capture_for
rendezvous_round = _shared.rendezvous_round
_off = False  # a gate failed at run time
_cycles_off = False


def patch(module: ModuleType) -> None:
    """Wrap ``LocalElasticAgent._monitor_workers`` (gated; idempotent)."""
    if not _features.require(module, MODULE, WHAT, "LocalElasticAgent"):
        return
    agent_class = module.LocalElasticAgent
    if not _features.require(
        agent_class, "LocalElasticAgent", WHAT, "_monitor_workers", "_record_worker_events"
    ):
        return
    _wrapping.wrap(agent_class, "_monitor_workers", _monitor_workers)
    if _features.require(agent_class, "LocalElasticAgent", LEAVING_WHAT, "_shutdown"):
        _wrapping.wrap(agent_class, "_shutdown", _shutdown)
    from torchelastic_otel.integration import workers

    workers.patch(agent_class)


def _monitor_workers(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    global _off  # noqa: PLW0603 -- one switch for the process
    result = wrapped(*args, **kwargs)
    if _off:
        return result
    try:
        worker_group = args[0] if args else kwargs["worker_group"]
        if not record_failure_before_restart(instance, worker_group, result):
            _off = True
    except Exception as e:  # noqa: BLE001 -- the agent must go on
        _off = True
        _features.switched_off(WHAT, f"{type(e).__name__}: {e}")
    return result


def _shutdown(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # torch calls _shutdown(e.sigval) inside its `except SignalException` block: the
    # exception being handled says the agent was told to stop, not that it finished.
    handling = sys.exc_info()[1]
    if handling is not None and type(handling).__name__ == "SignalException":
        try:
            record_leaving(instance, handling)
        except Exception as e:  # noqa: BLE001 -- the agent must stop its workers anyway
            _features.switched_off(LEAVING_WHAT, f"{type(e).__name__}: {e}")
    return wrapped(*args, **kwargs)


def record_leaving(agent: Any, exc: BaseException) -> None:
    """Record that a signal stops this agent, and tell the survivors (``otel`` only)."""

    from torch.distributed.elastic.events import EventSource, record

    from torchelastic_otel import semconv, torch_messages
    from torchelastic_otel.integration import membership

    spec = agent._worker_group.spec
    if spec.event_log_handler not in capture_for:
        return
    sigval = getattr(exc, "sigval", None)
    name = torch_messages.signal_name(int(sigval)) if sigval is not None else "SIGTERM"
    event = agent._construct_event(state=semconv.STATE_LEAVING, source=EventSource.AGENT)
    event.name = semconv.NODE_LEAVING_EVENT
    event.metadata["signal"] = name
    record(event, spec.event_log_handler)
    membership.say_leaving(spec.rdzv_handler, spec.rdzv_handler.get_run_id(), name)


def record_failure_before_restart(agent: Any, worker_group: Any, result: Any) -> bool:
    """Record the group's worker states when a restart follows this result.

    Returns ``False`` when a gate failed (the capture is then switched off).
    """
    from torch.distributed.elastic.agent.server.api import WorkerState

    if result.state not in (WorkerState.UNHEALTHY, WorkerState.FAILED):
        return True
    if worker_group.spec.event_log_handler not in capture_for:
        return True
    remaining = getattr(agent, "_remaining_restarts", None)
    if not isinstance(remaining, int):
        _features.switched_off(WHAT, "the agent has no _remaining_restarts")
        return False
    # With no restart left, torch records these states itself at the end of run().
    if remaining > 0:
        agent._record_worker_events(result)
    return True


def patch_api(module: ModuleType) -> None:
    """Wrap ``SimpleElasticAgent._rendezvous`` to record each cycle (gated; idempotent)."""
    if not _features.require(module, API_MODULE, CYCLE_WHAT, "SimpleElasticAgent"):
        return
    agent_class = module.SimpleElasticAgent
    if not _features.require(
        agent_class, "SimpleElasticAgent", CYCLE_WHAT, "_rendezvous", "_construct_event"
    ):
        return
    _wrapping.wrap(agent_class, "_rendezvous", _rendezvous)


def _rendezvous(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    worker_group = args[0] if args else kwargs.get("worker_group")
    _record_cycle_step(record_rendezvous_start, instance, worker_group)
    result = wrapped(*args, **kwargs)
    _record_cycle_step(record_cycle, instance, worker_group)
    return result


def _record_cycle_step(step: Callable[[Any, Any], None], agent: Any, worker_group: Any) -> None:
    """Run ``step`` unless cycles are off; its first exception switches them off."""
    global _cycles_off  # noqa: PLW0603 -- one switch for the process
    if _cycles_off:
        return
    try:
        step(agent, worker_group)
    except Exception as e:  # noqa: BLE001 -- the agent must go on
        _cycles_off = True
        _features.switched_off(CYCLE_WHAT, f"{type(e).__name__}: {e}")


def record_rendezvous_start(agent: Any, worker_group: Any) -> None:
    """Record that this agent starts a rendezvous (only for ``otel`` destinations).

    Also the moment torch's own metrics get their OpenTelemetry handler: the
    agent's first ``@prof`` metric is this rendezvous'.
    """
    from torch.distributed.elastic.events import EventSource, record

    from torchelastic_otel import semconv
    from torchelastic_otel.integration import metrics

    spec = worker_group.spec
    if spec.event_log_handler not in capture_for:
        return
    if metrics.requested():
        metrics.bridge()
    event = agent._construct_event(state=semconv.STATE_RENDEZVOUS_START, source=EventSource.AGENT)
    event.name = semconv.RENDEZVOUS_START_EVENT
    record(event, spec.event_log_handler)


def record_cycle(agent: Any, worker_group: Any) -> None:
    """Record the cycle that starts after this rendezvous (only for ``otel`` destinations)."""
    from torch.distributed.elastic.events import EventSource, record

    from torchelastic_otel import semconv
    from torchelastic_otel.integration import membership

    spec = worker_group.spec
    if spec.event_log_handler not in capture_for:
        return
    event = agent._construct_event(state=semconv.STATE_CYCLE, source=EventSource.AGENT)
    event.name = semconv.CYCLE_EVENT
    workers = getattr(worker_group, "workers", None) or []
    round_ = rendezvous_round(spec.rdzv_handler)
    left = membership.left_since_last_cycle(
        spec.rdzv_handler, spec.rdzv_handler.get_run_id(), round_, worker_group.group_rank
    )
    if left:
        # Mapped to semconv.LOST_NODES, LOST_HOSTS, LOST_RANKS, LOST_SIGNALS, LOST_ROUND.
        event.metadata.update(left)
    # Mapped to torchelastic.<key>: semconv.ROUND, MAX_RESTARTS, REMAINING_RESTARTS,
    # NODES, WORKERS, LOCAL_WORLD_SIZE.
    event.metadata.update(
        {
            "round": round_,
            "max_restarts": spec.max_restarts,
            "remaining_restarts": getattr(agent, "_remaining_restarts", None),
            "nodes": getattr(worker_group, "group_world_size", None),
            "workers": getattr(workers[0], "world_size", None) if workers else None,
            "local_world_size": getattr(spec, "local_world_size", None),
        }
    )
    record(event, spec.event_log_handler)
