"""Wall time of a real torchrun job: ``--event_log_handler otel`` against ``null``.

Runs the demo's job (``--nnodes`` agents on 127.0.0.1, default 2, of
``--nproc-per-node`` workers, default 2; 2 s of "training", no failure)
``--rounds`` times per handler, alternating, in one run; ``otel`` exports through
a real collector (rotel) with the rendezvous' events on. Prints the medians and
their difference.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nnodes", type=int, default=2)
    parser.add_argument("--nproc-per-node", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    from torchelastic_otel.demo.collector import run_rotel
    from torchelastic_otel.demo.job import run_job

    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCHELASTIC_"))}
    walls: dict[str, list[float]] = {"null": [], "otel": []}
    with tempfile.TemporaryDirectory() as tmp, run_rotel(None, Path(tmp)) as rotel:
        env = {
            **base,
            "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.grpc_endpoint,
            "TORCHELASTIC_OTEL_RDZV_EVENTS": "1",
        }
        for _ in range(args.rounds):
            for handler in ("null", "otel"):
                job = run_job(
                    f"bench-{handler}-{uuid.uuid4().hex[:6]}",
                    event_log_handler=handler,
                    nnodes=args.nnodes,
                    nproc_per_node=args.nproc_per_node,
                    env=env,
                    train_seconds=2.0,
                    timeout_s=240,
                )
                if job.returncode:
                    print(job.outputs[0][-3000:], file=sys.stderr)
                    return 1
                walls[handler].append(job.wall_s)
    med = {k: statistics.median(v) for k, v in walls.items()}
    for handler, values in walls.items():
        runs = ", ".join(f"{w:.2f}" for w in values)
        print(
            f"{args.nnodes}-node job x {args.nproc_per_node} workers, --event_log_handler "
            f"{handler:<4}: median {med[handler]:.2f} s ({runs})"
        )
    print(f"otel - null: {med['otel'] - med['null']:+.2f} s ({med['otel'] / med['null']:.2f}x)")
    if args.json:
        shape = {"nnodes": args.nnodes, "nproc_per_node": args.nproc_per_node}
        Path(args.json).write_text(json.dumps({**shape, "walls": walls, "median": med}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
