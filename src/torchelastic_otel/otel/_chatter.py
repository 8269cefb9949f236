"""The rendezvous' periodic chatter, summarised instead of recorded one by one.

torch's dynamic rendezvous records three events every keep-alive (every 5 s):
the op executor's "updated its keep-alive heartbeat time", its "has successfully
synced its local changes", and the handler's "has sent a keep-alive heartbeat":
36 records per node per minute for the life of the job, which say nothing new.
While a node waits in a round, the state syncs repeat too, some of them "has a
stale state and failed to sync its local changes" (a compare-and-set lost to
another node, then retried): also folded, and counted apart.
They are folded here, per run, into one summary record per interval
(``TORCHELASTIC_OTEL_CHATTER_SUMMARY_S``, 300 s: 12 records per node per hour),
which counts them; a summary record stands for the events it folds in the books.
Every other event (state changes, errors, a failed heartbeat) stays a record of
its own. Time is the events' own, so a replay at any speed summarises alike.
"""

from dataclasses import dataclass

from torchelastic_otel.events import RdzvEvent
from torchelastic_otel.otel.mapping import MappedEvent
from torchelastic_otel.semconv import (
    EVENT_KIND,
    FOLDED,
    HEARTBEAT_SUMMARY,
    HEARTBEATS,
    INTERVAL_S,
    KIND_RENDEZVOUS,
    NODE_STATE,
    RANK,
    RUN_ID,
    SEVERITY_INFO,
    STALE_SYNCS,
    STATE_FAILED,
    SYNCS,
)
from torchelastic_otel.torch_messages import chatter_kind


def _kind(event: RdzvEvent) -> str | None:
    """The chatter ``event`` is (see :func:`chatter_kind`), ``None`` if none or failed."""
    state = getattr(event.node_state, "value", event.node_state)
    if state == STATE_FAILED or not isinstance(event.name, str):
        return None
    message = event.message if isinstance(event.message, str) else ""
    return chatter_kind(event.name, message)


def is_chatter(event: RdzvEvent) -> bool:
    """A rendezvous keep-alive or sync event that went well."""
    return _kind(event) is not None


@dataclass
class _Window:
    start_ns: int
    heartbeats: int = 0
    syncs: int = 0
    stale_syncs: int = 0
    folded: int = 0


class Chatter:
    """Counts each run's chatter and says when a summary is due.

    Args:
        interval_s: the longest a summary waits (0: no folding at all).
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_ns = int(interval_s * 1e9)
        self._windows: dict[str, _Window] = {}

    def fold(self, event: RdzvEvent, t_ns: int) -> bool:
        """Count ``event`` if it is chatter (``True``: it needs no record of its own).

        Looked at before the event is mapped: chatter is most of the events, and
        folding it costs a few string tests.
        """
        kind = _kind(event) if self.interval_ns > 0 else None
        if kind is None:
            return False
        run_id = event.run_id if isinstance(event.run_id, str) and event.run_id else "unknown"
        window = self._windows.get(run_id)
        if window is None:
            window = self._windows[run_id] = _Window(t_ns)
        window.folded += 1
        if kind == "heartbeat":
            window.heartbeats += 1
        elif kind == "sync":
            window.syncs += 1
        elif kind == "stale_sync":
            window.stale_syncs += 1
        return True

    def due(self, t_ns: int, everything: bool = False) -> list[tuple[MappedEvent, int]]:
        """Summaries whose interval ended by ``t_ns`` (all, when ``everything``)."""
        out = []
        for run_id, window in list(self._windows.items()):
            if everything or t_ns - window.start_ns >= self.interval_ns:
                del self._windows[run_id]
                out.append((_summary(run_id, window, t_ns), window.folded))
        return out


def _summary(run_id: str, window: _Window, t_ns: int) -> MappedEvent:
    seconds = max(0.0, (t_ns - window.start_ns) / 1e9)
    return MappedEvent(
        kind=KIND_RENDEZVOUS,
        event_name=HEARTBEAT_SUMMARY,
        body=(
            f"{window.heartbeats} keep-alive heartbeats, {window.syncs} syncs, "
            f"{window.stale_syncs} stale syncs retried ({window.folded} rendezvous events) "
            f"in {seconds:.0f} s"
        ),
        severity=SEVERITY_INFO,
        attributes={
            RUN_ID: run_id,
            RANK: -1,  # the stage puts the node's rank here
            NODE_STATE: "RUNNING",
            EVENT_KIND: KIND_RENDEZVOUS,
            HEARTBEATS: window.heartbeats,
            SYNCS: window.syncs,
            STALE_SYNCS: window.stale_syncs,
            FOLDED: window.folded,
            INTERVAL_S: round(seconds, 3),
        },
        timestamp_ns=t_ns,
    )
