"""torch's messages that start, end or repeat a cycle, matched in one place.

torch says in prose what its dynamic rendezvous does (``RdzvEvent.message``) and why
an agent stopped (a ``SignalException``'s text). The exporter (otel/spans.py,
otel/_chatter.py) and the timeline read the same sentences: they are matched here,
once, with semconv's ``RDZV_*`` names. No OpenTelemetry here, so that the viewer
stays light.

Example::

    >>> joined_round("The node 'n1' has joined round 3 of the rendezvous 'j' as rank 0 ...")
    3
    >>> is_join_attempt(
    ...     "DynamicRendezvousHandler.next_rendezvous",
    ...     "The node 'n1' attempts to join the next round of the rendezvous 'j'.",
    ... )
    True
    >>> chatter_kind("DynamicRendezvousHandler._keep_alive", "has sent a keep-alive heartbeat")
    'heartbeat'
    >>> got_signal("SignalException: Process 12 got signal: 15")
    15
"""

import re

from torchelastic_otel.semconv import (
    RDZV_CLOSED,
    RDZV_JOIN_ATTEMPT,
    RDZV_JOINED_PATTERN,
    RDZV_NEXT_RENDEZVOUS,
    RDZV_SHUTDOWN,
    describe_exit,
)

_JOINED = re.compile(RDZV_JOINED_PATTERN)
# torch's SignalException: "Process 1234 got signal: 15" (the type may be on the line
# before, in a traceback).
_SIGNAL_EXCEPTION = re.compile(r"SignalException\b.*?got signal: (\d+)", re.S)
_GOT_SIGNAL = re.compile(r"got signal: (\d+)")

# The rendezvous' periodic chatter (otel/_chatter.py folds it).
_KEEP_ALIVE = "._keep_alive"
_HANDLER_KEEP_ALIVE = "DynamicRendezvousHandler._keep_alive"
_SYNCED = "has successfully synced its local changes"
_STALE = "failed to sync its local changes"


def is_next_rendezvous(name: str) -> bool:
    """An event of the handler's ``next_rendezvous`` (joining a round, or joined one)."""
    return name.endswith(RDZV_NEXT_RENDEZVOUS)


def is_join_attempt(name: str, message: str) -> bool:
    """ "The node ... attempts to join the next round": a rendezvous starts here."""
    return is_next_rendezvous(name) and RDZV_JOIN_ATTEMPT in message


def joined_round(message: str) -> int | None:
    """The round of "The node ... has joined round N ... as rank R", else ``None``."""
    found = _JOINED.search(message)
    return int(found.group(1)) if found else None


def is_closed(message: str) -> bool:
    """ "... has closed the rendezvous": no further round."""
    return RDZV_CLOSED in message


def is_shutdown(name: str) -> bool:
    """An event of the handler's ``shutdown`` (leaving the rendezvous at exit)."""
    return name.endswith(RDZV_SHUTDOWN)


def chatter_kind(name: str, message: str) -> str | None:
    """What a keep-alive or sync event is: ``heartbeat`` (the handler's), ``sync``,
    ``stale_sync`` (a compare-and-set lost to another node, retried), ``keep_alive``
    (the op executor's); ``None``: no chatter."""
    if name.endswith(_HANDLER_KEEP_ALIVE):
        return "heartbeat"
    if _SYNCED in message:
        return "sync"
    if _STALE in message:
        return "stale_sync"
    if name.endswith(_KEEP_ALIVE):
        return "keep_alive"
    return None


def got_signal(text: str, typed: bool = False) -> int | None:
    """The signal number of torch's ``SignalException`` in ``text``, else ``None``.

    ``typed``: the exception type is known to be ``SignalException`` (only the
    "got signal: N" part is looked for).
    """
    found = (_GOT_SIGNAL if typed else _SIGNAL_EXCEPTION).search(text)
    return int(found.group(1)) if found else None


def signal_name(number: int) -> str:
    """A signal number as the exporter and the timeline write it.

    Example::

        >>> signal_name(15), signal_name(99)
        ('SIGTERM', 'signal 99')
    """
    return describe_exit(-number)[1] or f"signal {number}"
