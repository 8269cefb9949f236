"""A process that records numbered events to ``otel``, for the reliability tests.

    python tests/reliability/producer.py RUN_ID COUNT RATE [--sigterm-exits] [--fork]
        [--progress]

Records ``COUNT`` events (metadata ``i`` = 0..COUNT-1) at ``RATE`` per second
(0: as fast as it can), prints ``RECORDED <t>`` after the last one, then lets the
interpreter exit. At exit it shuts the pipeline down (what the pipeline's own
atexit hook does, with the same bound; that hook was registered first, so it would
run after this one) and prints the drop and export counts as JSON. ``--sigterm-exits``
turns SIGTERM into a normal exit, as torchrun's agent does (SignalException).
``--progress`` prints ``AT <i> <wall-clock ns>`` after every 50th event, for tests
that act when the producer is at a given point (not after a given time).
"""

import atexit
import json
import os
import signal
import sys
import time

from torchelastic_otel import events, otel

_signalled_at: float | None = None


def _exit_on_sigterm(*_: object) -> None:
    global _signalled_at  # noqa: PLW0603
    _signalled_at = time.monotonic()
    sys.exit(143)


def _report() -> None:
    otel.shutdown()
    counts: dict[str, object] = {"drops": otel.drop_counts(), "exported": otel.exported_counts()}
    if _signalled_at is not None:
        # From the signal to here: the flush at exit, which is ours to bound; what
        # follows is the interpreter's own teardown.
        counts["since_signal_s"] = time.monotonic() - _signalled_at
    print("COUNTS " + json.dumps(counts), flush=True)


def main() -> None:
    run_id, count, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    if "--sigterm-exits" in sys.argv:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    atexit.register(_report)
    progress = "--progress" in sys.argv
    start = time.monotonic()
    for i in range(count):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        events.record(
            events.Event("e", events.EventSource.AGENT, metadata={"run_id": run_id, "i": i}),
            "otel",
        )
        if progress and i % 50 == 0:
            print(f"AT {i} {time.time_ns()}", flush=True)
        if i == count // 2 and "--fork" in sys.argv:
            pid = os.fork()
            if pid == 0:
                events.record(
                    events.Event(
                        "child", events.EventSource.AGENT, metadata={"run_id": run_id, "i": -1}
                    ),
                    "otel",
                )
                sys.exit(0)  # a normal exit: the child's atexit flush runs
            os.waitpid(pid, 0)
    print(f"RECORDED {time.time()}", flush=True)


if __name__ == "__main__":
    main()
