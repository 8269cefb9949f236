"""What a user of torchrun meets: a worker joining the job's trace, a mistyped flag,
and ``opentelemetry-instrument torchrun`` with opentelemetry-distro, collector up and
down. Real torchrun jobs on 127.0.0.1, each bounded in time."""

import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector import RealCollector
from tests.support.waiting import wait_until
from torchelastic_otel.demo.collector import free_port
from torchelastic_otel.demo.job import run_job, torchrun_command
from torchelastic_otel.otel import derived_ids

pytest.importorskip("torch.distributed.run", reason="torch is not installed: e2e tests skipped")

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).with_name("workers")
BIN = Path(sys.executable).parent


def _env(endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCHELASTIC_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_METRICS_EXPORTER="none")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def _wait_spans(receiver: RealCollector, run_id: str, name: str, n: int) -> list[Any]:
    wait_until(
        lambda: [s["name"] for s in list(receiver.received.spans) if _run_of(s) == run_id],
        lambda names: sum(x.startswith(name) for x in names) >= n,
        20,
        f"{n} spans named {name}*",
    )
    time.sleep(0.5)  # the rest of the batch, through the collector's other pipelines
    return [s for s in receiver.received.spans if _run_of(s) == run_id]


def _run_of(span: Any) -> Any:
    return span["attributes"].get("run_id") or span["resource"].get("torchelastic.run_id")


def test_a_worker_with_the_plain_sdk_joins_the_jobs_trace(
    collector: RealCollector,
) -> None:
    run_id = f"e2e-ctx-{uuid.uuid4().hex[:8]}"
    job = run_job(
        run_id,
        env=_env(collector.grpc_endpoint, OTEL_RESOURCE_ATTRIBUTES="team=trainers"),
        max_restarts=0,
        timeout_s=180,
        command=[str(WORKERS / "otel_span.py")],
    )
    assert job.returncodes == [0, 0], "\n".join(o[-3000:] for o in job.outputs)
    spans = _wait_spans(collector, run_id, "train.step", 4)
    steps = [s for s in spans if s["name"] == "train.step"]
    assert len(steps) == 4
    cycle_trace = f"{derived_ids.cycle_trace_id(run_id, 0):032x}"
    parts = {s["span_id"]: s for s in spans if s["name"].startswith("torchelastic.cycle.node")}
    for step in steps:
        rank = step["attributes"]["train.rank"]
        # In the cycle's trace, under the part of the node whose worker ran it (the
        # worker is a span event of that part).
        assert step["trace_id"] == cycle_trace
        parent = parts[step["parent_span_id"]]
        ranks = [e["attributes"]["torchelastic.global_rank"] for e in parent["events"]]
        assert rank in ranks
        # The worker's resource says where it ran, merged with the user's own.
        resource = step["resource"]
        assert resource["torchelastic.run_id"] == run_id
        assert resource["torchelastic.global_rank"] == str(rank)
        assert resource["torchelastic.node_rank"] == str(parent["attributes"]["rank"])
        assert resource["torchelastic.restart_count"] == "0"
        assert resource["team"] == "trainers"


def test_a_mistyped_destination_fails_in_one_line_before_the_rendezvous() -> None:
    import subprocess

    started = time.monotonic()
    proc = subprocess.run(
        [
            *torchrun_command(),
            "--nnodes=2",  # a rendezvous that would wait for a second node
            "--nproc-per-node=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{free_port()}",
            "--rdzv-id=typo",
            "--event_log_handler",
            "otle",
            str(WORKERS / "probe.py"),
        ],
        capture_output=True,
        text=True,
        env=_env(f"http://127.0.0.1:{free_port()}"),
        timeout=120,
        check=False,
    )
    took = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "otle" in line]
    assert errors == [
        "torchrun: error: --event_log_handler 'otle' is not a known event destination; "
        "known: console, dynamic_rendezvous, null, otel"
    ]
    assert "Traceback" not in proc.stderr
    assert "Rendezvous complete" not in proc.stderr
    assert took < 60  # it did not wait for the second node


def _instrumented_job(env: dict[str, str], run_id: str, **kwargs: Any) -> Any:
    return run_job(
        run_id,
        env=env,
        launcher=[str(BIN / "opentelemetry-instrument"), *torchrun_command()],
        event_log_handler="null",  # torchrun's default: no flag
        max_restarts=0,
        timeout_s=180,
        **kwargs,
    )


def test_opentelemetry_instrument_with_distro_gives_each_node_its_identity(
    collector: RealCollector,
) -> None:
    pytest.importorskip("opentelemetry.distro", reason="opentelemetry-distro is not installed")
    run_id = f"e2e-instr-{uuid.uuid4().hex[:8]}"
    env = _env(collector.grpc_endpoint, OTEL_TRACES_EXPORTER="otlp", OTEL_LOGS_EXPORTER="otlp")
    job = _instrumented_job(env, run_id, command=[str(WORKERS / "probe.py")])
    assert job.returncodes == [0, 0], "\n".join(o[-3000:] for o in job.outputs)
    # Nothing torch-related ran in the workers before their first line.
    for output in job.outputs:
        assert output.count("TORCH_PRELOADED=False") == 2, output[-2000:]  # 2 workers
        assert "TORCH_PRELOADED=True" not in output
    spans = _wait_spans(collector, run_id, "torchelastic.job", 1)
    logs = [r for r in collector.received.logs if r["attributes"].get("run_id") == run_id]
    resources = {(r["resource"]["host.name"], r["resource"]["process.pid"]) for r in logs}
    assert len(resources) == 2  # two nodes, told apart
    assert {r["resource"]["service.name"] for r in logs} == {"torchelastic"}
    assert {r["attributes"]["torchelastic.event.kind"] for r in logs} == {"agent", "rendezvous"}
    assert len([s for s in spans if s["name"].startswith("torchelastic.node ")]) == 2

    from torchelastic_otel.otlp_data import Received
    from torchelastic_otel.timeline.model import build_timelines

    received = Received(logs=logs, spans=spans)
    (timeline,) = build_timelines(received, run_id=run_id)
    assert len(timeline.lanes) == 2
    assert timeline.restarts == 0


def test_opentelemetry_instrument_with_the_collector_down_exits_as_the_flag_does(
    tmp_path: Path,
) -> None:
    pytest.importorskip("opentelemetry.distro", reason="opentelemetry-distro is not installed")
    dead = f"http://127.0.0.1:{free_port()}"
    env = _env(dead, OTEL_TRACES_EXPORTER="otlp", OTEL_LOGS_EXPORTER="otlp")
    plain = run_job(
        f"e2e-down-null-{uuid.uuid4().hex[:6]}",
        env=env,
        event_log_handler="null",
        max_restarts=0,
        timeout_s=180,
        command=[str(WORKERS / "probe.py")],
    )
    instrumented = _instrumented_job(
        env, f"e2e-down-instr-{uuid.uuid4().hex[:6]}", command=[str(WORKERS / "probe.py")]
    )
    assert plain.returncodes == instrumented.returncodes == [0, 0]
    # The 1 s bound, in parallel on both agents, plus torchrun's own jitter here
    # (the SDK's own processors and retries took ~17 s longer).
    extra = instrumented.wall_s - plain.wall_s
    assert extra < 4.0, (instrumented.wall_s, plain.wall_s)
    for output in instrumented.outputs:
        assert "torchelastic-otel: lost so far:" in output, output[-2000:]
