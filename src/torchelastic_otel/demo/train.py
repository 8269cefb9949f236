"""The demo's training script: a tiny CPU job that can fail once on purpose.

Each worker "trains" (sleeps) for ``--train-seconds``. With ``--fail-once-ranks
R,..`` the workers of those global ranks raise a quarter of the way in on their
first attempt (a marker file in ``--marker-dir`` records that it did), so torchrun
restarts the group and the second attempt succeeds; ``--fail-times K`` makes them
fail on their first K attempts. In an attempt where a failure is due, the other
workers never finish: they keep "training" until their agent stops them for the
restart, and the failing worker fails only once they all are up (each bounded by
``--wait-for-failure-seconds``). Otherwise a worker could finish before its agent
noticed the restart (16 processes importing torch on 2 cores start seconds apart),
its agent would leave for the exit barrier, and the restart's rendezvous would
wait for a node that is gone. No collectives: with torch 2.13, a
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
        help="how long workers wait for each other in an attempt that ends in a failure",
    )
    args = parser.parse_args(argv)

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    started = time.time()
    deadline = time.monotonic() + args.wait_for_failure_seconds
    due = _due(args.fail_once_ranks, world, args.fail_times, args.marker_dir)
    if rank in due:
        time.sleep(args.train_seconds / 4)
        # Fail only once every other worker of this attempt is up and waiting:
        # one that started later would otherwise not know a failure was coming.
        others = set(range(world)) - due
        while not _ready(others, started, args.marker_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        with (args.marker_dir / f"failed-rank-{rank}").open("a") as f:
            f.write(f"restart {restart}\n")
        raise RuntimeError(f"rank {rank}: simulated failure (loss is NaN)")
    if due:
        # This attempt ends in a restart: keep "training" (and saying so) until
        # the agent stops this worker for it.
        ready = args.marker_dir / f"ready-rank-{rank}"
        while time.monotonic() < deadline:
            ready.touch()
            time.sleep(0.1)
    else:
        time.sleep(args.train_seconds)
    print(f"rank {rank}/{world}: done (restart count {restart})")
    return 0


def _due(ranks: set[int], world: int, times: int, marker_dir: Path) -> set[int]:
    """The ranks of this world that have yet to fail as often as they were told to."""
    due = set()
    for rank in ranks:
        if rank >= world:
            continue
        marker = marker_dir / f"failed-rank-{rank}"
        done = len(marker.read_text().splitlines()) if marker.exists() else 0
        if done < times:
            due.add(rank)
    return due


def _ready(ranks: set[int], since: float, marker_dir: Path) -> bool:
    """Whether every one of ``ranks`` said it is waiting, at ``since`` or later.

    Waiting workers touch their file every 0.1 s; a file last touched before
    ``since`` is a previous attempt's, whose worker is gone.
    """
    for rank in ranks:
        try:
            if (marker_dir / f"ready-rank-{rank}").stat().st_mtime < since:
                return False
        except FileNotFoundError:
            return False
    return True


if __name__ == "__main__":
    sys.exit(main())
