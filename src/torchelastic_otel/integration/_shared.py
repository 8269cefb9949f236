"""What the integration's patches share: which destinations they act for, the round."""

from typing import Any

capture_for: set[str] = {"otel"}
"""Destinations (torchrun's ``--event_log_handler``) routed to ``otel``: the agent
patches act only for those, so an installed but unused package changes nothing."""


def rendezvous_round(handler: Any) -> int | None:
    """The round the dynamic rendezvous just completed (every node of it agrees)."""
    state = getattr(getattr(handler, "_state_holder", None), "state", None)
    value = getattr(state, "round", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
