"""The export pipeline end to end: throughput, exit delay, memory.

One run measures, each in a fresh interpreter:

* **throughput**: ``--events`` events recorded as fast as the caller can, exported
  over OTLP/gRPC to a real collector (rotel) that forwards them to a receiver in
  this process, which counts what arrives. Events/s = events / (first record
  until the producer's flush returned, i.e. until the collector acknowledged every
  event); an event counts as not lost only once the receiver behind the collector
  has it. Two kinds: the rendezvous' keep-alive event (the most frequent
  event of a real job; folded into one summary record per node and window, whose
  heartbeat count accounts for every event it stands for) and the agent's worker
  event (a log record and a worker span).
* **exit delay**: how long the interpreter takes to exit after recording 2,000
  events, collector up and collector down (nothing listening), and collector down
  with two CPU hogs beside it; split into the flush (what the package bounds) and
  the interpreter's teardown after it (median of three runs each).
* **peak RSS** while recording 1,000,000 events with the collector down: bounded by
  the queue, not by the number of events.

Prints a table; ``--json PATH`` writes the numbers.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

_PRODUCER = textwrap.dedent(
    """
    import json, sys, time
    from torchelastic_otel import events, otel
    kind, n = sys.argv[1], int(sys.argv[2])

    def peak_rss_mib():
        # VmHWM, not ru_maxrss: the latter carries the parent's peak across fork+exec.
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    if kind == "rdzv":
        ev = events.RdzvEvent(
            "dynamic_rendezvous.py:DynamicRendezvousHandler._keep_alive", "bench",
            "The node 'n1' has sent a keep-alive heartbeat to the rendezvous 'bench'.",
            "node-1.example", 4242, events.NodeState.RUNNING, "127.0.0.1:29400", 0, 0)
    else:
        ev = events.Event("torchelastic.worker.status.SUCCEEDED", events.EventSource.WORKER,
            metadata={"run_id": "bench", "global_rank": 3, "group_rank": 1,
                      "worker_id": "4242", "role": "default", "hostname": "node-1",
                      "state": "SUCCEEDED", "total_run_time": 12, "rdzv_backend": "c10d",
                      "raw_error": None, "metadata": "{}", "agent_restarts": 0,
                      "duration_ms": None})
    record = events._record
    t0 = time.time()
    for _ in range(n):
        record(ev, "otel")
    t1 = time.time()
    flushed = otel.force_flush(float(sys.argv[3]))
    t2 = time.time()
    print(json.dumps({"start": t0, "recorded": t1, "flushed": t2, "flush_ok": flushed,
                      "drops": otel.drop_counts(), "exported": otel.exported_counts(),
                      "maxrss_mib": peak_rss_mib()}),
          flush=True)
    """
)


def _producer(kind: str, n: int, env: dict[str, str], flush_s: float = 120) -> dict[str, Any]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _PRODUCER, kind, str(n), str(flush_s)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.monotonic() - t0
    result["exit_s"] = time.time() - result["flushed"]
    return result


def _accounted(records: list[Any]) -> int:
    """Events the records stand for: a keep-alive summary stands for its heartbeats."""
    from torchelastic_otel.semconv import HEARTBEAT_SUMMARY, HEARTBEATS

    return sum(
        int(r["attributes"][HEARTBEATS]) if r["event_name"] == HEARTBEAT_SUMMARY else 1
        for r in records
    )


def bench_throughput(n: int, base: dict[str, str]) -> dict[str, Any]:
    from torchelastic_otel.demo.collector import run_rotel
    from torchelastic_otel.receiver import OtlpHttpReceiver

    out: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        OtlpHttpReceiver() as receiver,
        run_rotel(receiver.endpoint, Path(tmp)) as rotel,
    ):
        env = {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.grpc_endpoint}
        for kind in ("rdzv", "worker"):
            before = len(receiver.received.logs)
            r = _producer(kind, n, env)
            deadline = time.monotonic() + 60
            while _accounted(receiver.received.logs[before:]) < n and time.monotonic() < deadline:
                time.sleep(0.05)
            arrived = _accounted(receiver.received.logs[before:])
            out[kind] = {
                "events": n,
                "records": len(receiver.received.logs) - before,
                "arrived": arrived,
                "lost": n - arrived,
                "events_per_s": n / (r["flushed"] - r["start"]),
                "record_s": r["recorded"] - r["start"],
                "flush_ok": r["flush_ok"],
                "drops": {k: v for k, v in r["drops"].items() if v},
            }
    return out


_EXIT = textwrap.dedent(
    """
    import atexit, sys, time
    from torchelastic_otel import events
    ev = events.Event("e", events.EventSource.AGENT, metadata={"run_id": "exit"})
    for _ in range(int(sys.argv[1])):
        events.record(ev, "otel")
    time.sleep(0.5)
    # atexit runs newest first, and after threading's exit hooks, from which the
    # pipeline flushes: this line is the end of the flush, before the teardown.
    atexit.register(lambda: print(time.time(), flush=True))
    print(time.time(), flush=True)
    """
)

_HOG = "import time\nt = time.monotonic() + 600\nwhile time.monotonic() < t: pass"


def _exit_once(env: dict[str, str]) -> tuple[float, float]:
    """(flush, whole exit) after the script's last line, in seconds."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _EXIT, "2000"], stdout=subprocess.PIPE, text=True, env=env
    )
    out, _ = proc.communicate(timeout=120)
    ended = time.time()
    marker, flushed = (float(x) for x in out.split())
    return flushed - marker, ended - marker


def _median_exit(env: dict[str, str], runs: int) -> dict[str, float]:
    samples = [_exit_once(env) for _ in range(runs)]
    flush = statistics.median(f for f, _ in samples)
    whole = statistics.median(w for _, w in samples)
    return {"flush_s": flush, "whole_s": whole, "teardown_s": whole - flush}


def bench_exit(base: dict[str, str], runs: int = 3) -> dict[str, Any]:
    """Exit after 2,000 events: collector up, down, and down with two CPU hogs beside it.

    What the package bounds is the flush (``flush_s``): with the collector down
    it gives up once a request failed and the SDK's retry could not come within
    ``TORCHELASTIC_OTEL_SHUTDOWN_TIMEOUT_MS`` (or one waited that long). The
    interpreter's teardown after it (``teardown_s``: unloading gRPC, protobuf and
    the SDK) is not ours to bound, and under load it is most of the exit.
    """
    from torchelastic_otel.demo.collector import free_port, run_rotel

    with tempfile.TemporaryDirectory() as tmp, run_rotel(None, Path(tmp)) as rotel:
        up = _median_exit({**base, "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.grpc_endpoint}, runs)
    down_env = {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    down = _median_exit(down_env, runs)
    hogs = [subprocess.Popen([sys.executable, "-c", _HOG]) for _ in range(2)]
    try:
        loaded = _median_exit(down_env, runs)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    return {
        "collector_up_s": up["whole_s"],
        "collector_down_s": down["whole_s"],
        "collector_down": down,
        "collector_down_two_hogs": loaded,
    }


def bench_rss(n: int, base: dict[str, str]) -> dict[str, Any]:
    from torchelastic_otel.demo.collector import free_port

    env = {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    small = _producer("rdzv", 10_000, env, flush_s=0.1)
    big = _producer("rdzv", n, env, flush_s=0.1)
    return {
        "events": n,
        "peak_rss_mib": big["maxrss_mib"],
        "peak_rss_mib_10k_events": small["maxrss_mib"],
        "queue_full_drops": big["drops"].get("queue_full", 0),
        "record_s": big["recorded"] - big["start"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="for throughput")
    parser.add_argument("--rss-events", type=int, default=1_000_000)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    results = {
        "throughput": bench_throughput(args.events, base),
        "exit": bench_exit(base),
        "rss": bench_rss(args.rss_events, base),
    }
    for kind, r in results["throughput"].items():
        print(
            f"throughput {kind:<7} {r['events_per_s']:>9,.0f} events/s  "
            f"arrived {r['arrived']}/{r['events']} in {r['records']} records  "
            f"lost {r['lost']}  drops {r['drops'] or 0}"
        )
    e = results["exit"]
    h = e["collector_down_two_hogs"]
    print(
        f"exit delay: collector up {e['collector_up_s']:.2f} s, "
        f"down {e['collector_down_s']:.2f} s; "
        f"down with two CPU hogs: flush {h['flush_s']:.2f} s, whole {h['whole_s']:.2f} s "
        f"(teardown {h['teardown_s']:.2f} s)"
    )
    m = results["rss"]
    print(
        f"peak RSS recording {m['events']:,} events, collector down: {m['peak_rss_mib']:.0f} MiB "
        f"(10,000 events: {m['peak_rss_mib_10k_events']:.0f} MiB); "
        f"queue_full drops {m['queue_full_drops']:,}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
