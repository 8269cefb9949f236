"""Record a real torchrun job's event streams, one JSON-lines file per node.

The job: ``--nnodes`` torchrun agents on 127.0.0.1 (c10d rendezvous), ``--workers``
workers each; global rank 1's worker fails on its first ``--restarts`` attempts,
so torchrun restarts the group that many times (``--max-restarts`` equal to it),
and the last attempt trains for ``--steady-seconds`` so that the steady state
(keep-alive heartbeats) is in the recording. Every agent runs through
``capture_agent.py``, which writes what the ``otel`` destination would receive:
torch's agent and rendezvous events and this package's cycle events.

Usage::

    python benchmarks/capture_stream.py --out benchmarks/streams/c10d-2x8-r3
"""

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

from torchelastic_otel.demo.job import run_job


def main() -> int:
    """Run the job and write ``node-<i>.jsonl`` and ``job.json`` into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--nnodes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--steady-seconds", type=float, default=90.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("node-*.jsonl"):
        old.unlink()
    agent = Path(__file__).with_name("capture_agent.py")
    run_id = f"capture-{uuid.uuid4().hex[:8]}"
    job = run_job(
        run_id,
        nnodes=args.nnodes,
        nproc_per_node=args.workers,
        event_log_handler="capture",
        fail_once_ranks=[1],
        fail_times=args.restarts,
        max_restarts=args.restarts,
        # The failing attempts fail a quarter of the way in; the last one trains
        # for the whole steady period.
        train_seconds=args.steady_seconds,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout_s=args.steady_seconds * (args.restarts + 2) + 300,
        launcher=[sys.executable, str(agent)],
        node_env=lambda node: {"CAPTURE_OUT": str(args.out.resolve() / f"node-{node}.jsonl")},
    )
    (args.out / "job.json").write_text(
        json.dumps(
            {
                "run_id": run_id,
                "nnodes": args.nnodes,
                "workers": args.workers,
                "restarts": args.restarts,
                "steady_seconds": args.steady_seconds,
                "returncodes": job.returncodes,
                "wall_s": round(job.wall_s, 1),
            },
            indent=1,
        )
    )
    print(f"job {run_id}: exit codes {job.returncodes}, {job.wall_s:.0f} s -> {args.out}")
    if job.returncode:
        for output in job.outputs:
            print(output[-3000:])
    return job.returncode


if __name__ == "__main__":
    sys.exit(main())
