"""The demo's training script: a tiny CPU job that can fail once on purpose.

Each worker "trains" (sleeps) for ``--train-seconds``. With ``--fail-once-ranks
R,..`` the workers of those global ranks raise a quarter of the way in on their
first attempt (a marker file in ``--marker-dir`` records that it did), so torchrun
restarts the group and the second attempt succeeds; ``--fail-times K`` makes them
fail on their first K attempts. While a failure is still due, the other workers do
not finish: they keep training until their agent stops them for the restart
(bounded by ``--wait-for-failure-seconds``). Otherwise a worker that started
seconds earlier than the failing one (16 processes importing torch on 2 cores)
could finish first, its agent would leave for the exit barrier, and the restart's
rendezvous would wait for a node that is gone. No collectives: with torch 2.13, a
node restarted after a failure and a node restarted for the membership change get
different restart counts, and a process group across them does not form again.

Run by torchrun: ``torchrun ... -m torchelastic_otel.demo.train --fail-once-ranks 3``.
"""

import argparse
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Train (sleep); fail once if asked to."""
    from torch.distributed.elastic.multiprocessing.errors import record

    # torch's @record writes the exception to the error file the agent reads, so
    # the failure arrives with its type, message and traceback.
    return int(record(_train)(argv))


def _train(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fail-once-ranks",
        type=lambda text: {int(r) for r in text.split(",") if r},
        default=set(),
        help="comma-separated global ranks that fail on their first attempt",
    )
    parser.add_argument(
        "--fail-times", type=int, default=1, help="attempts on which those ranks fail"
    )
    parser.add_argument("--marker-dir", type=Path, default=Path("."))
    parser.add_argument("--train-seconds", type=float, default=2.0)
    parser.add_argument(
        "--wait-for-failure-seconds",
        type=float,
        default=120.0,
        help="how long a healthy worker keeps training while a failure is still due",
    )
    args = parser.parse_args(argv)

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    marker = args.marker_dir / f"failed-rank-{rank}"
    failures = len(marker.read_text().splitlines()) if marker.exists() else 0
    if rank in args.fail_once_ranks and failures < args.fail_times:
        time.sleep(args.train_seconds / 4)
        with marker.open("a") as f:
            f.write(f"restart {restart}\n")
        raise RuntimeError(f"rank {rank}: simulated failure (loss is NaN)")
    time.sleep(args.train_seconds)
    # Markers are written before the failing worker raises, so by the time the
    # restarted attempt starts, every failure of the previous one is on disk.
    deadline = time.monotonic() + args.wait_for_failure_seconds
    while _failure_due(args.fail_once_ranks, world, args.fail_times, args.marker_dir):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    print(f"rank {rank}/{world}: done (restart count {restart})")
    return 0


def _failure_due(ranks: set[int], world: int, times: int, marker_dir: Path) -> bool:
    """Whether some rank of this world has yet to fail as often as it was told to."""
    for rank in ranks:
        if rank >= world:
            continue
        marker = marker_dir / f"failed-rank-{rank}"
        done = len(marker.read_text().splitlines()) if marker.exists() else 0
        if done < times:
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
