"""`make demo`: a job's events, recorded the way torchrun records them.

For now it records a few events to the ``console`` destination: each line on
stderr is one event, exactly as torch's own module would print it.

Run it with ``python -m torchelastic_otel.demo``.
"""

import logging

from torchelastic_otel import events
from torchelastic_otel.events import Event, EventSource, NodeState


def _wait_for_peers() -> None:
    raise TimeoutError("rendezvous timed out waiting for node 1")


def main() -> None:
    run_id = "demo-run"
    for state in ("RENDEZVOUS", "ASSIGN_WORKER_RANKS"):
        events.record(
            Event(
                f"torchelastic.worker.status.{state}",
                EventSource.AGENT,
                metadata={"run_id": run_id, "group_rank": 0, "state": state, "duration_ms": 1.5},
            ),
            "console",
        )
    # The rendezvous' own events go to `dynamic_rendezvous`, a NullHandler by default.
    events.register_handler("dynamic_rendezvous", logging.StreamHandler(), replace=True)
    events.construct_and_record_rdzv_event(run_id, "joined rendezvous", NodeState.RUNNING, rank=0)
    try:
        _wait_for_peers()
    except TimeoutError:
        events.construct_and_record_rdzv_event(run_id, "rendezvous failed", NodeState.FAILED)


if __name__ == "__main__":
    main()
