"""``make demo``: a real 2-node torchrun job, its events through a real collector.

What it does, all on 127.0.0.1, with no Docker:

1. starts the rotel OTLP collector, forwarding to a receiver in this process;
2. runs two ``torchrun --event_log_handler otel`` agents (``--nnodes 2``, c10d
   rendezvous, 2 workers each); the worker of rank 3 fails once and torchrun
   restarts the group (``--max-restarts 1``);
3. saves what arrived as OTLP JSON (``build/demo/otlp.jsonl``; render it again with
   ``torchelastic-otel timeline build/demo/otlp.jsonl``), prints the job's
   rendezvous timeline and writes it as a self-contained page
   (``build/demo/timeline.html``).

With ``--endpoint`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``) the job exports to that
collector instead, e.g. the docker compose stack of ``otel-collector/``.
"""

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

from rich.console import Console

from torchelastic_otel.demo.job import JobResult, run_job


def _job_env(endpoint: str) -> dict[str, str]:
    env = dict(os.environ)
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    env.setdefault("TORCHELASTIC_OTEL_RDZV_EVENTS", "1")
    env.setdefault("OTEL_SERVICE_NAME", "torchelastic-demo")
    return env


def _run(console: Console, run_id: str, endpoint: str, args: argparse.Namespace) -> JobResult:
    with console.status(
        f"running 2-node torchrun job [bold]{run_id}[/bold] "
        f"(rank 3 fails once, then the group restarts)…"
    ):
        return run_job(
            run_id,
            env=_job_env(endpoint),
            fail_once_ranks=[] if args.no_failure else [3],
            max_restarts=1,
            train_seconds=args.train_seconds,
            timeout_s=args.timeout,
        )


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 0 when the job succeeded and its data arrived."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    parser.add_argument("--out", type=Path, default=Path("build/demo"))
    parser.add_argument("--run-id", default=f"demo-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--train-seconds", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=240.0, help="job time limit, s")
    parser.add_argument("--no-failure", action="store_true", help="no worker fails")
    args = parser.parse_args(argv)
    console = Console()

    if args.endpoint:
        job = _run(console, args.run_id, args.endpoint, args)
        console.print(
            f"job [bold]{args.run_id}[/bold] exit codes {job.returncodes} in {job.wall_s:.1f} s; "
            f"its events went to {args.endpoint}: search run_id={args.run_id} in Jaeger/Grafana."
        )
        return job.returncode

    from torchelastic_otel.demo.collector import run_rotel
    from torchelastic_otel.otlp_data import write_otlp_json
    from torchelastic_otel.receiver import OtlpHttpReceiver
    from torchelastic_otel.timeline.html import write_html
    from torchelastic_otel.timeline.model import build_timelines
    from torchelastic_otel.timeline.terminal import print_timelines

    args.out.mkdir(parents=True, exist_ok=True)
    with OtlpHttpReceiver() as receiver, run_rotel(receiver.endpoint, args.out) as rotel:
        console.print(
            f"collector: rotel, OTLP gRPC on {rotel.grpc_endpoint} → receiver {receiver.endpoint}"
        )
        job = _run(console, args.run_id, rotel.grpc_endpoint, args)
        console.print(
            f"job finished: agent exit codes {job.returncodes}, wall time {job.wall_s:.1f} s"
        )
        deadline = time.monotonic() + 15
        with console.status("waiting for the collector to deliver…"):
            while time.monotonic() < deadline:
                jobs = build_timelines(receiver.received, run_id=args.run_id)
                if jobs and any(s["name"] == "torchelastic.job" for s in receiver.received.spans):
                    break
                time.sleep(0.2)
            time.sleep(0.5)
    data = args.out / "otlp.jsonl"
    write_otlp_json(receiver.received, data)
    if job.returncode:
        for i, output in enumerate(job.outputs):
            console.print(f"[red]agent {i} output (last lines):[/red]\n{output[-2000:]}")
    jobs = build_timelines(receiver.received, run_id=args.run_id)
    print_timelines(jobs, console)
    page = write_html(jobs, args.out / "timeline.html")
    console.print(
        f"{len(receiver.received.logs)} log records and {len(receiver.received.spans)} spans "
        f"saved to {data}\nHTML timeline (hover for attributes): {page.resolve()}\n"
        f"render again with: torchelastic-otel timeline {data} --html timeline.html"
    )
    return job.returncode or (0 if jobs else 1)


if __name__ == "__main__":
    sys.exit(main())
