"""Per-call cost of ``record()``: our ``otel`` destination against torch's ``console``.

One run measures, each scenario in a fresh interpreter so that no scenario's
threads or imports disturb another:

* ``torch console``: torch 2.13.0's ``record(e, "console")``, stream on /dev/null;
* ``ours console``: ours, same;
* ``ours otel, collector up``: ``record(e, "otel")`` exporting over OTLP/gRPC to a
  real collector (rotel, discarding what it receives);
* ``ours otel, collector down``: the same with nothing listening on the endpoint;
* ``stock SDK LoggingHandler``: what a user would wire by hand: the OpenTelemetry
  SDK's ``LoggingHandler`` with a ``BatchLogRecordProcessor`` and the OTLP/gRPC
  exporter to the same collector, registered as a destination in torch's module
  and called through torch's ``record()``;
* ``torch put_metric`` and ``torch put_metric, bridged``: the cost to torch's agent
  of one ``torch.distributed.elastic.metrics.put_metric`` (what ``@prof`` does three
  times per decorated call) with torch's default ``NullMetricHandler``, and with
  this package's handler (queued for the export worker, which records it into an
  OpenTelemetry instrument and exports it over OTLP to the collector).

The ``otel`` scenarios run with the metrics on (``OTEL_METRICS_EXPORTER=otlp``, the
default): the events' metrics are recorded on the export worker, off the caller's
path.

The event is what torch's agent records (``torchelastic.worker.status.*`` with its
13 metadata keys). Prints median and p99 per call and the ratio to torch's
console median; ``--json PATH`` writes the numbers.

Usage::

    python benchmarks/bench_record.py [--calls 20000] [--json out.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

_SCENARIO = textwrap.dedent(
    """
    import gc, json, logging, os, sys, time, warnings
    warnings.filterwarnings("ignore")
    which, destination, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if which == "metric":
        from torch.distributed.elastic import metrics
        if destination == "bridged":
            from torchelastic_otel.integration import metrics as bridge
            bridge.bridge()
        clock = time.perf_counter_ns
        for _ in range(500):
            metrics.put_metric("workers.default.healthy", 1)
        time.sleep(0.5)
        out = []
        gc.disable()
        for _ in range(calls):
            t0 = clock()
            metrics.put_metric("workers.default.healthy", 1)
            out.append(clock() - t0)
        gc.enable()
        extra = {}
        if destination == "bridged":
            from torchelastic_otel import otel
            t0 = time.monotonic()
            otel.shutdown()
            extra = {"drops": otel.drop_counts(), "exported": otel.exported_counts(),
                     "shutdown_s": time.monotonic() - t0}
        print(json.dumps({"ns": out, **extra}))
        sys.exit(0)
    if which in ("torch", "sdk"):
        import torch.distributed.elastic.events as ev
    else:
        import torchelastic_otel.events as ev
    if which == "sdk":
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        provider = LoggerProvider()
        provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
        import torch.distributed.elastic.events.handlers as torch_handlers
        torch_handlers._log_handlers["sdk"] = LoggingHandler(logger_provider=provider)
    devnull = open(os.devnull, "w")
    ev.get_logging_handler("console").setStream(devnull)
    md = {
        "run_id": "bench", "global_rank": 3, "group_rank": 1, "worker_id": "4242",
        "role": "default", "hostname": "node-1.example", "state": "SUCCEEDED",
        "total_run_time": 12, "rdzv_backend": "c10d", "raw_error": None,
        "metadata": json.dumps({"group_world_size": 2, "entry_point": "python",
                                "local_rank": [1]}),
        "agent_restarts": 0, "duration_ms": None,
    }
    event = ev.Event("torchelastic.worker.status.SUCCEEDED", ev.EventSource.WORKER, metadata=md)
    for _ in range(500):
        ev.record(event, destination)
    time.sleep(0.5)  # let a lazily started worker settle
    clock = time.perf_counter_ns
    out = []
    gc.disable()
    for _ in range(calls):
        t0 = clock()
        ev.record(event, destination)
        out.append(clock() - t0)
    gc.enable()
    extra = {}
    if which == "sdk":
        t0 = time.monotonic()
        provider.shutdown()
        extra = {"shutdown_s": time.monotonic() - t0}
    if destination == "otel":
        from torchelastic_otel import otel
        t0 = time.monotonic()
        otel.shutdown()
        extra = {"drops": otel.drop_counts(), "exported": otel.exported_counts(),
                 "shutdown_s": time.monotonic() - t0}
    print(json.dumps({"ns": out, **extra}))
    """
)


def _run(which: str, destination: str, calls: int, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _SCENARIO, which, destination, str(calls)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{which} {destination} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    samples = sorted(result.pop("ns"))
    result["median_us"] = statistics.median(samples) / 1000
    result["p99_us"] = samples[int(len(samples) * 0.99) - 1] / 1000
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.calls < 1000:
        parser.error("--calls must be at least 1000 for a meaningful p99")

    from torchelastic_otel.demo.collector import free_port, run_rotel

    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    results: dict[str, dict[str, Any]] = {}
    results["torch console"] = _run("torch", "console", args.calls, base)
    results["ours console"] = _run("ours", "console", args.calls, base)
    with tempfile.TemporaryDirectory() as tmp, run_rotel(None, Path(tmp)) as rotel:
        up = {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.grpc_endpoint}
        results["ours otel, collector up"] = _run("ours", "otel", args.calls, up)
        results["stock SDK LoggingHandler"] = _run("sdk", "sdk", args.calls, up)
        results["torch put_metric"] = _run("metric", "null", args.calls, up)
        results["torch put_metric, bridged"] = _run("metric", "bridged", args.calls, up)
    down = {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    results["ours otel, collector down"] = _run("ours", "otel", args.calls, down)

    anchor = results["torch console"]["median_us"]
    print(f"{'record() per call':<28}{'median µs':>11}{'p99 µs':>9}{'x torch median':>16}")
    for name, r in results.items():
        print(
            f"{name:<28}{r['median_us']:>11.1f}{r['p99_us']:>9.1f}{r['median_us'] / anchor:>15.2f}x"
        )
    for name, r in results.items():
        if "drops" in r:
            lost = {k: v for k, v in r["drops"].items() if v}
            print(
                f"{name}: exported {r['exported']}, lost {lost or 0}, "
                f"shutdown {r['shutdown_s']:.2f} s"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
