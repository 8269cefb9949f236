"""Plugging the ``otel`` destination into torchrun, with no change to user code.

Imports torch only when torch is there, and only when called. Each part lives in
its own module, gated on the torch features it needs (:mod:`._features`):

* :mod:`.hook` — the ``torchrun.handlers`` entry point, which calls :func:`install`;
* :mod:`.destinations` — ``otel`` in torch's own events module (the same handler
  object as ours, so an event recorded through either module is exported once),
  so ``torchrun --event_log_handler otel`` works;
* :mod:`.launcher` — a mistyped ``--event_log_handler`` fails before the rendezvous,
  in one line;
* :mod:`.agent` — the worker failures torch does not record when a restart follows,
  the restart cycles, and (:mod:`.workers`) each worker's ``TRACEPARENT``;
* :mod:`.rendezvous` — with ``TORCHELASTIC_OTEL_RDZV_EVENTS=1``, the dynamic
  rendezvous' own events, routed to ``otel`` and made cheap;
* :mod:`.instrumentor` — ``opentelemetry-instrument torchrun ...``.

:func:`install` is idempotent and :func:`uninstall` undoes it (wrapt wrappers are
unwrapped, swapped handlers put back).

Example::

    >>> from torchelastic_otel import integration
    >>> integration.install(rdzv_events=True)  # what the entry point does
    True
"""

import os

from torchelastic_otel.otel import settings

_AGENT_LOGGERS = ("torchelastic-events-otel", "torchelastic-events-null")


def torch_available() -> bool:
    """Whether torch's elastic events module can be imported here."""
    try:
        import torch.distributed.elastic.events  # noqa: F401
    except ImportError:
        return False
    return True


def is_worker_process() -> bool:
    """Whether this process is a worker a torchrun agent started (not an agent).

    torch sets these for workers only (every version from 2.7 on); an agent's own
    environment has neither.
    """
    return "TORCHELASTIC_RUN_ID" in os.environ and "TORCHELASTIC_RESTART_COUNT" in os.environ


def rdzv_events_requested() -> bool:
    """``TORCHELASTIC_OTEL_RDZV_EVENTS`` is on (read by :mod:`torchelastic_otel.otel.settings`)."""
    return settings.from_env().rdzv_events


def install(*, rdzv_events: bool | None = None, redirect_null: bool = False) -> bool:
    """Make torch's events module and agent send to ``otel``; idempotent.

    Args:
        rdzv_events: also export the dynamic rendezvous' events (default: the
            ``TORCHELASTIC_OTEL_RDZV_EVENTS`` variable).
        redirect_null: also send torch's ``null`` destination (torchrun's default)
            to ``otel``.

    Returns:
        ``False`` when torch is not installed (nothing done), else ``True``.
    """
    if not torch_available():
        return False
    import torch.distributed.elastic.events.handlers as torch_handlers

    from torchelastic_otel import events as ours
    from torchelastic_otel.integration import _imports, agent, destinations, launcher, rendezvous

    otel_handler = ours.get_logging_handler("otel")
    destinations.route_torch(torch_handlers, "otel", otel_handler)
    # Never import a torch module from here: patch each once it is fully imported.
    _imports.when_imported(agent.MODULE, agent.patch, _AGENT_LOGGERS)
    _imports.when_imported(agent.API_MODULE, agent.patch_api, _AGENT_LOGGERS)
    _imports.when_imported(launcher.MODULE, launcher.patch)
    if rdzv_events if rdzv_events is not None else rdzv_events_requested():
        destinations.route_torch(torch_handlers, "dynamic_rendezvous", otel_handler)
        destinations.route_ours("dynamic_rendezvous", otel_handler)
        _imports.when_imported(rendezvous.MODULE, rendezvous.patch)
    if redirect_null:
        agent.capture_for.add("null")
        destinations.route_torch(torch_handlers, "null", otel_handler)
    return True


def uninstall() -> None:
    """Undo :func:`install`: torch's handlers, the agent and the rendezvous as before."""
    from torchelastic_otel.integration import _imports, _wrapping, agent, destinations

    _imports.remove_hooks()
    _wrapping.unwrap_all()
    destinations.restore_all()
    agent.capture_for.intersection_update({"otel"})
