"""A thousand nodes: trace sizes, volume and the timeline, from real event streams.

Replays a real torchrun job's recorded event streams (``capture_stream.py``: one
JSON-lines file per node, with the time each event was recorded) as ``--nodes``
nodes of ``--workers`` workers through the real ``otel`` destination, **one
exporting process per simulated node** (forked from one that imported
everything, 4 at a time), into a real collector (rotel), which forwards to a
receiver here. Node 0 replays the recorded rank-0 stream (the node whose worker
failed in every cycle but the last), every other node the recorded rank-1 stream
(restarted by its peer), with their ranks, hosts, pids, worker ids and world sizes
rewritten; the steady state (the last cycle's keep-alive heartbeats) is looped to
``--steady-hours`` of event time, so that per-hour volumes are measured, not
extrapolated.

Reports, per run:

* spans and bytes (OTLP protobuf, as a backend stores them) of the largest trace,
  and of the run trace;
* log records and bytes per node per hour in steady state, and per restart cycle;
* ``torchelastic-otel timeline`` on what arrived (OTLP JSON): its time, terminal
  lines and HTML size;
* with ``--collector otelcol``: the collector we ship (``make collector``) in place
  of rotel, with the processors of ``otel-collector/config.yaml``, and the CPU time
  and peak memory it spent on the whole replay (gateway sizing).

Usage::

    python benchmarks/bench_scale.py --nodes 16 256 1024 --workers 8 --restarts 3 \\
        --json benchmarks/results-scale.json
"""

import argparse
import contextlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STREAMS = Path(__file__).with_name("streams")
PROCESSES = 4  # replaying processes
WINDOW = 4  # pipelines open at once in each
KEEP_ALIVE_PERIOD_NS = 5_000_000_000


# --- the recorded streams ---


@dataclass
class Stream:
    """One recorded node: its events (time, JSON) and what to rewrite in them."""

    events: list[tuple[int, dict[str, Any]]]
    group_rank: int
    workers: int
    node_name: str  # the rendezvous' name of the node, e.g. localhost_8057_0
    steady: tuple[int, int]  # the keep-alive events of the last cycle: [first, last]


def load(directory: Path, workers: int, restarts: int) -> tuple[Stream, Stream, dict[str, Any]]:
    """The failing node's stream and a peer's, recorded with ``restarts`` restarts."""
    job = json.loads((directory / "job.json").read_text())
    if job["restarts"] != restarts:
        raise SystemExit(
            f"{directory} was recorded with {job['restarts']} restarts, not {restarts}: "
            f"record one with capture_stream.py --restarts {restarts}"
        )
    streams = []
    for path in sorted(directory.glob("node-*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        events = [(int(r["t_ns"]), r["event"]) for r in rows]
        ranks = {e["metadata"].get("group_rank") for _, e in events if "metadata" in e}
        names = {
            m.group(1)
            for _, e in events
            for m in [re.search(r"The node '([^']+)'", str(e.get("message", "")))]
            if m
        }
        keep_alive = [
            i for i, (_, e) in enumerate(events) if str(e.get("name", "")).endswith("._keep_alive")
        ]
        last_start = max(
            i for i, (_, e) in enumerate(events) if e.get("metadata", {}).get("state") == "START"
        )
        steady = [i for i in keep_alive if i > last_start]
        streams.append(
            Stream(
                events,
                max(r for r in ranks if isinstance(r, int)),
                job["workers"],
                names.pop(),
                (steady[0], steady[-1]),
            )
        )
    by_rank = sorted(streams, key=lambda s: s.group_rank)
    if workers > by_rank[0].workers:
        print(f"note: {workers} workers per node from a recording of {by_rank[0].workers}")
    return by_rank[0], by_rank[1], job


def _rewrite(
    stream: Stream, node: int, nodes: int, workers: int, run_id: str, steady_hours: float
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``stream`` as node ``node`` of ``nodes``: (time offset, event) in order."""
    old_name = stream.node_name
    new_name = f"node-{node:05d}_{1000 + node}_0"
    host = f"node-{node:05d}.cluster"
    t0 = stream.events[0][0]
    first, last = stream.steady
    period_ns = stream.events[last][0] - stream.events[first][0] + KEEP_ALIVE_PERIOD_NS
    # A whole number of periods that covers the hours (the window counted is exact).
    loops = max(1, math.ceil(steady_hours * 3600e9 / period_ns) + 1)
    steady = stream.events[first : last + 1]
    extra = (loops - 1) * period_ns
    for index, (t_ns, event) in enumerate(stream.events):
        offset = t_ns - t0 + (extra if index > last else 0)
        if "metadata" in event and event["metadata"].get("worker_id") is not None:
            template_local = int(event["metadata"]["global_rank"]) % stream.workers
            for local in range(workers):
                if local % stream.workers == template_local:
                    yield offset, _worker_event(event, node, nodes, workers, local, host, run_id)
        else:
            yield offset, _node_event(event, node, nodes, host, new_name, old_name, run_id, workers)
        if index == last:  # the steady state, again, until the hours are full
            for loop in range(1, loops):
                for t, e in steady:
                    yield (
                        t - t0 + loop * period_ns,
                        _node_event(e, node, nodes, host, new_name, old_name, run_id, workers),
                    )


def _node_event(
    event: dict[str, Any],
    node: int,
    nodes: int,
    host: str,
    new_name: str,
    old_name: str,
    run_id: str,
    workers: int,
) -> dict[str, Any]:
    e: dict[str, Any] = json.loads(json.dumps(event))
    if "metadata" in e:  # the agent's
        md = e["metadata"]
        md.update(run_id=run_id, hostname=host)
        if md.get("group_rank") is not None:
            md["group_rank"] = node
        if "nodes" in md:
            md.update(nodes=nodes, workers=nodes * workers, local_world_size=workers)
        if isinstance(md.get("metadata"), str):
            nested = json.loads(md["metadata"])
            nested["group_world_size"] = nodes
            md["metadata"] = json.dumps(nested)
    else:  # the rendezvous'
        e.update(run_id=run_id, hostname=host, pid=1000 + node)
        if e.get("rank") is not None:
            e["rank"] = node
        e["message"] = (
            e["message"]
            .replace(old_name, new_name)
            .replace("world of size 2", f"world of size {nodes}")
        )
        e["message"] = re.sub(r"as rank \d+", f"as rank {node}", e["message"])
    return e


def _worker_event(
    event: dict[str, Any], node: int, nodes: int, workers: int, local: int, host: str, run_id: str
) -> dict[str, Any]:
    e: dict[str, Any] = json.loads(json.dumps(event))
    md = e["metadata"]
    global_rank = node * workers + local
    md.update(
        run_id=run_id,
        hostname=host,
        group_rank=node,
        global_rank=global_rank,
        worker_id=str(1_000_000 + global_rank),
    )
    nested = json.loads(md["metadata"])
    nested.update(
        group_world_size=nodes,
        local_rank=[local],
        role_rank=[global_rank],
        role_world_size=[nodes * workers],
    )
    md["metadata"] = json.dumps(nested)
    return e


# --- the receiver ---


class RawReceiver:
    """OTLP/HTTP on 127.0.0.1 that keeps the raw requests (decoded after the run)."""

    def __init__(self) -> None:
        import gzip
        import http.server

        self.logs: list[bytes] = []
        self.traces: list[bytes] = []
        self.metrics: list[bytes] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                signal = self.path.rsplit("/", 1)[-1]
                kept = {"logs": receiver.logs, "traces": receiver.traces}
                with receiver.lock:
                    kept.get(signal, receiver.metrics).append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the collector ---

# The gateway's work: otel-collector/config.yaml's processors, OTLP/gRPC in.
_OTELCOL_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:${env:GRPC_PORT}"}
extensions:
  health_check: {endpoint: "127.0.0.1:${env:HEALTH_PORT}"}
processors:
  # otel-collector/config.yaml's processors, in its order.
  memory_limiter: {check_interval: 1s, limit_percentage: 80, spike_limit_percentage: 20}
  resource:
    attributes: [{key: deployment.environment, value: bench, action: upsert}]
  batch: {send_batch_size: 1024, send_batch_max_size: 4096, timeout: 1s}
exporters:
  otlp_http: {endpoint: "${env:SINK}", compression: none}
service:
  extensions: [health_check]
  telemetry:
    metrics: {level: none}
  pipelines:
    traces: &pipeline
      receivers: [otlp]
      processors: [memory_limiter, resource, batch]
      exporters: [otlp_http]
    logs: *pipeline
    metrics: *pipeline
"""


@dataclass
class Collector:
    """A running collector: where to send, and (otelcol) what it cost so far."""

    grpc_endpoint: str
    pid: int | None = None

    def usage(self) -> tuple[float, float]:
        """CPU seconds (user + system) and peak RSS (MiB) of the collector process."""
        if self.pid is None:
            return 0.0, 0.0
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return cpu_s, int(line.split()[1]) / 1024
        return cpu_s, 0.0


# The sampler tier as otel-collector/kubernetes/collector-sampler.yaml deploys it:
# its processors, read from the manifest so that the two cannot drift, with a local
# receiver, the sink as exporter, and decisions after DECISION_WAIT (the manifest's
# 30 s; shorter here, as the burst arrives within seconds either way).
SAMPLER_MANIFEST = (
    Path(__file__).resolve().parents[1] / "otel-collector/kubernetes/collector-sampler.yaml"
)


def sampler_config(manifest: Path = SAMPLER_MANIFEST) -> str:
    """The sampler's collector config for the burst (JSON, which the collector reads as YAML).

    Example::

        >>> config = json.loads(sampler_config())
        >>> config["service"]["pipelines"]["traces"]["processors"]
        ['memory_limiter', 'tail_sampling', 'batch']
    """
    import yaml

    maps = [
        doc
        for doc in yaml.safe_load_all(manifest.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap"
    ]
    if len(maps) != 1 or "config.yaml" not in maps[0].get("data", {}):
        raise SystemExit(f"{manifest}: expected one ConfigMap with a config.yaml")
    deployed = yaml.safe_load(maps[0]["data"]["config.yaml"])
    chain = deployed["service"]["pipelines"]["traces"]["processors"]
    processors = {name: deployed["processors"][name] for name in chain}
    if "tail_sampling" not in processors:
        raise SystemExit(f"{manifest}: its traces pipeline has no tail_sampling")
    processors["tail_sampling"] = {
        **processors["tail_sampling"],
        "decision_wait": "${env:DECISION_WAIT}",
    }
    return json.dumps(
        {
            "receivers": {
                "otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:${env:HTTP_PORT}"}}}
            },
            "extensions": {"health_check": {"endpoint": "127.0.0.1:${env:HEALTH_PORT}"}},
            "processors": processors,
            "exporters": {"otlp_http": {"endpoint": "${env:SINK}", "compression": "none"}},
            "service": {
                "extensions": ["health_check"],
                "telemetry": {"metrics": {"level": "none"}},
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": chain,
                        "exporters": ["otlp_http"],
                    }
                },
            },
        },
        indent=1,
    )


DECISION_WAIT_S = 10


@contextlib.contextmanager
def collector(kind: str, sink: str, tmp: Path) -> Iterator[Collector]:
    """rotel, or ``otelcol-torchelastic`` (built by ``make collector``), into ``sink``."""
    if kind == "rotel":
        from torchelastic_otel.demo.collector import run_rotel

        with run_rotel(sink, tmp) as rotel:
            yield Collector(rotel.grpc_endpoint)
        return
    from torchelastic_otel.demo.collector import free_port

    grpc = free_port()
    with _otelcol(_OTELCOL_CONFIG, {"GRPC_PORT": str(grpc), "SINK": sink}, tmp, "gateway") as pid:
        yield Collector(f"http://127.0.0.1:{grpc}", pid)


@contextlib.contextmanager
def _otelcol(config_text: str, env: dict[str, str], tmp: Path, name: str) -> Iterator[int]:
    """``otelcol-torchelastic`` on ``config_text``, healthy; yields its pid."""
    import urllib.request

    from torchelastic_otel.demo.collector import free_port

    cache = Path(
        os.environ.get("TORCHELASTIC_OTEL_CACHE", Path.home() / ".cache/torchelastic-otel")
    )
    binary = cache / "bin" / "otelcol-torchelastic"
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"{binary} is not built: run `make collector` first")
    config = tmp / f"otelcol-{name}.yaml"
    config.write_text(config_text)
    health = free_port()
    log_path = tmp / f"otelcol-{name}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [str(binary), f"--config={config}"],
        env={**os.environ, **env, "HEALTH_PORT": str(health)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(log_path.read_text()[-2000:]) from None
                time.sleep(0.1)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _sampler_burst(traces: list[bytes], tmp: Path) -> dict[str, float]:
    """The sampler tier under a burst: every trace request of the job at once.

    In the replay, nodes follow one another over minutes, so a cycle's spans
    trickle in; in a job they arrive within the seconds of a rendezvous, and a
    sampler holds each trace for ``decision_wait`` before deciding. Here the spans
    of all cycles (what the collector forwarded, as it batched them) are posted as
    fast as two threads can to a sampler, and its CPU time and peak memory are read
    once everything has come out again (or ``DECISION_WAIT_S`` + 120 s passed).
    """
    import urllib.request

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from torchelastic_otel.demo.collector import free_port

    def spans_in(raw: bytes) -> int:
        request = ExportTraceServiceRequest.FromString(raw)
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)

    sent = sum(spans_in(raw) for raw in traces)
    sink = RawReceiver()
    port = free_port()
    env = {"HTTP_PORT": str(port), "SINK": sink.endpoint, "DECISION_WAIT": f"{DECISION_WAIT_S}s"}
    try:
        with _otelcol(sampler_config(), env, tmp, "sampler") as pid:
            running = Collector("", pid)
            url = f"http://127.0.0.1:{port}/v1/traces"

            def post(chunk: list[bytes]) -> None:
                for raw in chunk:
                    request = urllib.request.Request(
                        url, data=raw, headers={"Content-Type": "application/x-protobuf"}
                    )
                    with urllib.request.urlopen(request, timeout=60) as response:
                        response.read()

            started = time.monotonic()
            posters = [threading.Thread(target=post, args=(traces[i::2],)) for i in range(2)]
            for poster in posters:
                poster.start()
            for poster in posters:
                poster.join()
            posted_s = time.monotonic() - started
            deadline = time.monotonic() + DECISION_WAIT_S + 120
            out = counted = 0
            while out < sent and time.monotonic() < deadline:
                time.sleep(1)
                with sink.lock:
                    new = sink.traces[counted:]
                counted += len(new)
                out += sum(spans_in(raw) for raw in new)
            cpu_s, rss_mib = running.usage()
    finally:
        sink.close()
    return {
        "sampler_spans_in": sent,
        "sampler_spans_out": out,
        "sampler_posted_s": round(posted_s, 1),
        "sampler_cpu_s": round(cpu_s, 2),
        "sampler_peak_rss_mib": round(rss_mib),
    }


# --- the simulated nodes ---


def _node_pipeline(node: int, endpoint: str) -> Any:
    """Node ``node``'s own pipeline: its own resource, as its agent process would have.

    ``service.instance.id`` is new per pipeline; ``host.name`` and ``process.pid``
    are the node's (the pid its rendezvous events carry), not the replaying
    process's, so that nodes sharing a process stay distinct everywhere.
    """
    from torchelastic_otel.otel import Pipeline, settings

    return Pipeline(
        settings.from_env().with_overrides(
            endpoint=endpoint,
            resource_attributes={
                "host.name": f"node-{node:05d}.cluster",
                "process.pid": 1000 + node,
            },
            service_name="bench-scale",
            schedule_delay_ms=1000,
            use_global_providers=False,
        )
    )


def _replay_nodes(
    failing: Stream,
    peer: Stream,
    chunk: range,
    nodes: int,
    workers: int,
    run_id: str,
    hours: float,
    endpoint: str,
    t_base: int,
) -> None:
    """In a forked child: the nodes of ``chunk``, each through a pipeline of its own.

    One process replays many nodes (an agent's export thread is a small share of a
    core, and a process per node spent most of its time importing the SDK); up to
    ``WINDOW`` pipelines are open at once, so that one node's export overlaps the
    next one's events.
    """
    open_: list[tuple[int, Any]] = []

    def close(node: int, pipeline: Any) -> None:
        pipeline.shutdown(10_000)
        lost = {k: v for k, v in pipeline.drop_counts().items() if v}
        if lost:
            print(f"node {node}: lost {lost}", file=sys.stderr)

    for node in chunk:
        pipeline = _node_pipeline(node, endpoint)
        stream = failing if node == 0 else peer
        for offset, event in _rewrite(stream, node, nodes, workers, run_id, hours):
            # The recorded time, not now: spans and summaries follow the recording.
            pipeline.submit(json.dumps(event), t_base + offset)
        open_.append((node, pipeline))
        if len(open_) >= WINDOW:
            close(*open_.pop(0))
    for node, pipeline in open_:
        close(node, pipeline)


def _replay(
    failing: Stream,
    peer: Stream,
    nodes: int,
    workers: int,
    hours: float,
    endpoint: str,
    processes: int = PROCESSES,
) -> tuple[int, float]:
    """Replay ``nodes`` nodes in ``processes`` forked processes, a slice of nodes each."""
    run_id = f"scale-{nodes}x{workers}-{uuid.uuid4().hex[:6]}"
    t_base = time.time_ns() - int(hours * 3600e9) - 600_000_000_000
    # Imported once, before the fork: every child would otherwise import the SDK.
    from torchelastic_otel.otel import _stage, sinks  # noqa: F401

    started = time.monotonic()
    pids = []
    for index in range(processes):
        chunk = range(index, nodes, processes)  # interleaved: node 0 in the first
        if not chunk:
            continue
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _replay_nodes(failing, peer, chunk, nodes, workers, run_id, hours, endpoint, t_base)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    if failed:
        raise SystemExit(f"{failed} of {len(pids)} replaying processes failed")
    return t_base, time.monotonic() - started


# --- measuring ---


@dataclass
class Measured:
    traces: dict[bytes, list[int]] = field(default_factory=dict)  # trace -> [spans, bytes]
    records: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    # host -> (series, bytes) of its largest metric export: what one collection costs.
    metric_exports: dict[str, tuple[int, int]] = field(default_factory=dict)


def _measure(receiver: RawReceiver, json_path: Path) -> Measured:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

    out = Measured()
    traces: dict[bytes, list[int]] = defaultdict(lambda: [0, 0])
    records: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    with json_path.open("w") as f:
        for raw in receiver.traces:
            request = ExportTraceServiceRequest.FromString(raw)
            for rs in request.resource_spans:
                by_trace: dict[bytes, list[Any]] = defaultdict(list)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        by_trace[span.trace_id].append(span)
                for trace_id, spans in by_trace.items():
                    # What the trace weighs in a backend: its spans with their resource.
                    part = ResourceSpans(
                        resource=rs.resource, scope_spans=[ScopeSpans(spans=spans)]
                    )
                    traces[trace_id][0] += len(spans)
                    traces[trace_id][1] += part.ByteSize()
            f.write(_json_line(json_format.MessageToDict(request)) + "\n")
        for raw in receiver.logs:
            request = ExportLogsServiceRequest.FromString(raw)
            for rl in request.resource_logs:
                host = _host(rl.resource)
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        records[host].append(
                            (record.time_unix_nano, record.ByteSize(), record.event_name)
                        )
            f.write(_json_line(json_format.MessageToDict(request)) + "\n")
    for raw in receiver.metrics:
        metrics_request = ExportMetricsServiceRequest.FromString(raw)
        for rm in metrics_request.resource_metrics:
            host = _host(rm.resource)
            series = sum(
                len(getattr(m, m.WhichOneof("data")).data_points)
                for sm in rm.scope_metrics
                for m in sm.metrics
            )
            size = rm.ByteSize()
            if size > out.metric_exports.get(host, (0, 0))[1]:
                out.metric_exports[host] = (series, size)
    out.traces = dict(traces)
    out.records = dict(records)
    return out


def _host(resource: Any) -> str:
    return next((kv.value.string_value for kv in resource.attributes if kv.key == "host.name"), "?")


def _json_line(data: dict[str, Any]) -> str:
    import base64

    def hexify(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    hexify(value)
        elif isinstance(node, list):
            for item in node:
                hexify(item)

    hexify(data)
    return json.dumps(data, separators=(",", ":"))


def _timeline(json_path: Path, html: Path) -> tuple[float, int, int, float, float]:
    """``torchelastic-otel timeline`` on the file.

    Returns its seconds, terminal lines, HTML bytes, peak RSS (MiB) and CPU seconds
    (user + system: what a busy machine does not inflate as it does the seconds).
    """
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torchelastic_otel.cli",
            "timeline",
            str(json_path),
            "--html",
            str(html),
            "--width",
            "140",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    output: dict[str, bytes] = {}

    def drain(name: str, stream: Any) -> None:
        output[name] = stream.read()

    readers = [
        threading.Thread(target=drain, args=(name, stream))
        for name, stream in (("out", process.stdout), ("err", process.stderr))
    ]
    for reader in readers:
        reader.start()
    # wait4, not wait: the child's own peak memory (ru_maxrss, KiB on Linux).
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    took = time.monotonic() - started
    for reader in readers:
        reader.join(timeout=60)
    if process.returncode:
        print(output.get("err", b"").decode(errors="replace")[-2000:], file=sys.stderr)
    lines = len(output.get("out", b"").decode(errors="replace").splitlines())
    size = html.stat().st_size if html.exists() else 0
    return took, lines, size, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def _draw_s(html: Path) -> float | None:
    """Seconds headless Chromium takes to open the page and draw it (None: no Chromium).

    As tests/e2e/test_timeline_browser.py measures it: from navigation until the
    job's SVG is there (the script has parsed the data and drawn the overview and
    the first lanes).
    """
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None or not html.exists():
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            started = time.monotonic()
            page.goto(html.as_uri(), timeout=120_000)
            try:
                page.wait_for_selector("section.job svg", timeout=120_000)
            except Exception as e:  # a row without it, not a crash
                print(f"{html}: not drawn: {errors or e}", file=sys.stderr)
                return None
            return round(time.monotonic() - started, 2)
        finally:
            browser.close()


def run(
    nodes: int,
    workers: int,
    restarts: int,
    hours: float,
    directory: Path,
    keep: Path | None = None,
    collector_kind: str = "rotel",
    processes: int = PROCESSES,
) -> dict[str, Any]:
    """One replay at ``nodes`` x ``workers``; the row of the table."""
    failing, peer, job = load(directory, workers, restarts)
    receiver = RawReceiver()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        try:
            with collector(collector_kind, receiver.endpoint, tmp_path) as running:
                t_base, replay_s = _replay(
                    failing, peer, nodes, workers, hours, running.grpc_endpoint, processes
                )
                time.sleep(2)  # the collector's last batches
                collector_cpu_s, collector_rss_mib = running.usage()
        finally:
            receiver.close()
        json_path = tmp_path / "otlp.jsonl"
        measure_started = time.monotonic()
        measured = _measure(receiver, json_path)
        measure_s = time.monotonic() - measure_started
        sampler = _sampler_burst(receiver.traces, tmp_path) if collector_kind == "otelcol" else {}
        timeline_s, lines, html_bytes, timeline_rss_mib, timeline_cpu_s = _timeline(
            json_path, tmp_path / "timeline.html"
        )
        draw_s = _draw_s(tmp_path / "timeline.html")
        json_mb = json_path.stat().st_size / 1e6
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for name in ("otlp.jsonl", "timeline.html"):
                if (tmp_path / name).exists():
                    (tmp_path / name).replace(keep / f"{nodes}x{workers}-{name}")
    cycles = restarts + 1
    largest = max(measured.traces.values(), key=lambda v: v[1])
    steady = _steady_rates(measured, peer, t_base, hours)
    per_node_records = [len(v) for v in measured.records.values()]
    total_spans = sum(v[0] for v in measured.traces.values())
    row = {
        "nodes": nodes,
        "workers": workers,
        "restarts": restarts,
        "traces": len(measured.traces),
        "largest_trace_spans": largest[0],
        "largest_trace_bytes": largest[1],
        "records_per_node_per_hour_steady": steady[0],
        "bytes_per_node_per_hour_steady": steady[1],
        "records_per_node": sum(per_node_records) / max(1, len(per_node_records)),
        "spans_per_node_per_cycle": total_spans / nodes / cycles,
        "bytes_per_record": _mean(r[1] for v in measured.records.values() for r in v),
        "bytes_per_span": round(sum(v[1] for v in measured.traces.values()) / max(1, total_spans)),
        # One collection per export interval (60 s by default): series and bytes.
        "metric_series_per_node": _mean(v[0] for v in measured.metric_exports.values()),
        "metric_bytes_per_export_per_node": _mean(v[1] for v in measured.metric_exports.values()),
        "timeline_s": round(timeline_s, 1),
        "timeline_cpu_s": round(timeline_cpu_s, 1),
        "timeline_lines": lines,
        "timeline_html_bytes": html_bytes,
        "timeline_peak_rss_mib": round(timeline_rss_mib),
        "timeline_draw_s": draw_s,
        "otlp_json_mb": round(json_mb, 1),
        "replay_s": round(replay_s, 1),
        "replay_processes": processes,
        "measure_s": round(measure_s, 1),
        "collector": collector_kind,
        "collector_cpu_s_per_cycle": round(collector_cpu_s / cycles, 2),
        "collector_peak_rss_mib": round(collector_rss_mib),
        **sampler,
        "recorded_from": f"{directory.name} ({job['nnodes']} nodes x {job['workers']} workers)",
    }
    return row


def _mean(values: Iterable[int]) -> float:
    items = list(values)
    return round(sum(items) / len(items), 1) if items else 0.0


def _steady_rates(
    measured: Measured, peer: Stream, t_base: int, hours: float
) -> tuple[float, float]:
    """Records and bytes per node per hour, counted in the steady state.

    The steady state is the last cycle's keep-alive period, which the replay
    stretched to ``hours`` of event time; counted on the peer nodes (all but node
    0), in the window from its start, a whole number of hours long.
    """
    first, _ = peer.steady
    start = t_base + peer.events[first][0] - peer.events[0][0]
    end = start + int(hours * 3600e9)
    per_node = []
    for host, records in measured.records.items():
        if host.startswith("node-00000"):
            continue
        inside = [r for r in records if start <= r[0] < end]
        per_node.append((len(inside), sum(r[1] for r in inside)))
    if not per_node:
        return 0.0, 0.0
    count = sum(p[0] for p in per_node) / len(per_node) / hours
    size = sum(p[1] for p in per_node) / len(per_node) / hours
    return round(count, 1), round(size)


def main() -> int:
    """Run the replays and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[16, 256, 1024])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--steady-hours", type=float, default=1.0)
    parser.add_argument("--streams", type=Path, default=STREAMS / "c10d-2x8-r3")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--processes",
        type=int,
        default=PROCESSES,
        help="replaying processes; the nodes are shared out among them",
    )
    parser.add_argument("--keep", type=Path, help="save each run's OTLP JSON and HTML here")
    parser.add_argument(
        "--collector",
        choices=["rotel", "otelcol"],
        default="rotel",
        help="what the nodes export to (otelcol: ours, measured for CPU and memory)",
    )
    args = parser.parse_args()
    rows = []
    for nodes in args.nodes:
        row = run(
            nodes,
            args.workers,
            args.restarts,
            args.steady_hours,
            args.streams,
            args.keep,
            args.collector,
            args.processes,
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    _print(rows)
    if args.json:
        args.json.write_text(json.dumps({"scale": rows}, indent=1))
    return 0


def _print(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'nodes':>6} {'largest trace':>22} {'records/node/h':>15} {'bytes/node/h':>13} "
        f"{'spans/node/cycle':>17} {'metrics/node/export':>24} {'timeline':>26} {'replay':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['nodes']:>6} "
            f"{r['largest_trace_spans']:>7} spans {r['largest_trace_bytes'] / 1e6:>6.2f} MB "
            f"{r['records_per_node_per_hour_steady']:>15} "
            f"{r['bytes_per_node_per_hour_steady']:>13} "
            f"{r['spans_per_node_per_cycle']:>17.1f} "
            f"{r['metric_series_per_node']:>8.0f} series "
            f"{r['metric_bytes_per_export_per_node']:>7.0f} B "
            f"{r['timeline_s']:>6.1f} s {r['timeline_lines']:>4} lines "
            f"{r['timeline_html_bytes'] / 1e6:>5.2f} MB {r['replay_s']:>7.0f}s"
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
