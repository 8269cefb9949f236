"""The ``torchrun.handlers`` entry point.

torch (2.7.1 and later) loads every entry point of the group ``torchrun.handlers``
when ``torch.distributed.elastic.rendezvous`` is imported, which every torchrun
agent does before it records any event; it calls the loaded object with no
arguments and registers the result as a rendezvous backend under the entry
point's name, logging (not raising) what a plug-in raises.
"""

import logging
from collections.abc import Callable
from typing import Any

_log = logging.getLogger("torchelastic_otel")


def torchrun_hook() -> Callable[[Any], Any]:
    """Install the integration, then return a backend factory that explains itself.

    torch registers the returned callable as a rendezvous backend named after the
    entry point; it is not one, and says so if someone selects it.
    """
    from torchelastic_otel import integration

    try:
        integration.install()
    except Exception as e:  # noqa: BLE001 -- never stop torchrun
        _log.warning("torchelastic-otel: not installed into torch: %s: %s", type(e).__name__, e)
    return _not_a_rendezvous_backend


def _not_a_rendezvous_backend(params: Any) -> Any:
    raise ValueError(
        "torchelastic_otel is an event destination, not a rendezvous backend: "
        "use --event_log_handler otel with a rendezvous backend such as c10d"
    )
