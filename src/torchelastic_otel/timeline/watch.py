"""Which nodes wait in a rendezvous, live, for ``timeline --listen --idle-exit``."""

from typing import Any

from torchelastic_otel import semconv as sc
from torchelastic_otel.otlp_data import LogItem
from torchelastic_otel.torch_messages import is_closed, is_join_attempt, joined_round


class RendezvousWatch:
    """Which nodes wait in a rendezvous, from the records received so far.

    For ``timeline --listen --idle-exit``: a job is quiet while a rendezvous
    waits for a late or missing node, and that is no time to stop listening. A
    node waits when its last rendezvous event is an attempt to join, with no cycle
    started since. Incremental: each :meth:`update` reads only the new records.
    """

    def __init__(self) -> None:
        self._seen = 0
        self._since: dict[tuple[str, Any, Any], tuple[int, int | None]] = {}

    def update(self, logs: list[LogItem]) -> list[str]:
        """Read ``logs[seen:]``; return the waiting nodes (``host:pid``)."""
        end = len(logs)
        for log in logs[self._seen : end]:
            verdict = _waits(log)
            if verdict is None:
                continue
            r = log["resource"]
            key = (
                str(r.get(sc.HOST_NAME, "?")),
                r.get(sc.PROCESS_PID),
                r.get(sc.SERVICE_INSTANCE_ID),
            )
            t = log["time_unix_nano"]
            last = self._since.get(key)
            if last is not None and t < last[0]:
                continue  # an older record, arrived late
            since = (last[1] if last and last[1] is not None else t) if verdict else None
            self._since[key] = (t, since)
        self._seen = end
        return sorted(
            f"{k[0]}:{k[1]}" for k, (_, since) in self._since.items() if since is not None
        )


def _waits(log: LogItem) -> bool | None:
    """True: the node waits in a rendezvous after this record; False: it does not; None: no
    telling."""
    a = log["attributes"]
    state = a.get(sc.NODE_STATE)
    if a.get(sc.EVENT_KIND) == sc.KIND_RENDEZVOUS:
        body = str(log["body"] or "")
        if state == sc.STATE_FAILED or joined_round(body) is not None or is_closed(body):
            return False
        if is_join_attempt(log["event_name"], body):
            return True
        return None
    if log["event_name"] == sc.CYCLE_EVENT or state in (
        sc.STATE_START,
        sc.STATE_RENDEZVOUS,
        sc.STATE_SUCCEEDED,
        sc.STATE_FAILED,
    ):
        return False
    return None
