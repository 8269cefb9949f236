"""The torchrun agent: the worker failures torch does not record.

torch's agent records worker states only at the end of a run, so a failure
followed by a successful restart never shows. ``LocalElasticAgent._monitor_workers``
is wrapped: when a worker group failed and the agent is about to restart it, the
workers' states (``FAILED`` for the failed ones, ``TERMINATED`` for the ones the
restart stops) are recorded to the agent's destination through torch's own
``_record_worker_events``. Only for destinations routed to ``otel``: installed but
unused, the package changes nothing.

Needs (gates): ``LocalElasticAgent._monitor_workers`` and
``_record_worker_events``; at run time, the agent's ``_remaining_restarts``.
"""

from collections.abc import Callable
from types import ModuleType
from typing import Any

from torchelastic_otel.integration import _features, _wrapping

MODULE = "torch.distributed.elastic.agent.server.local_elastic_agent"
WHAT = "recording worker failures before a restart"

# Destinations whose agents get the restart-failure events.
capture_for: set[str] = {"otel"}
_off = False  # a gate failed at run time


def patch(module: ModuleType) -> None:
    """Wrap ``LocalElasticAgent._monitor_workers`` (gated; idempotent)."""
    agent_class = getattr(module, "LocalElasticAgent", None)
    if agent_class is None:
        _features.switched_off(WHAT, f"{MODULE} has no LocalElasticAgent")
        return
    absent = _features.missing(agent_class, "_monitor_workers", "_record_worker_events")
    if absent:
        _features.switched_off(WHAT, f"LocalElasticAgent has no {', '.join(absent)}")
        return
    _wrapping.wrap(agent_class, "_monitor_workers", _monitor_workers)


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
