"""The timeline on OTLP data recorded from a real job (``make demo``'s 2-node job).

tests/data/demo-job.otlp.jsonl: two torchrun agents, rank 3's worker failed once
(RuntimeError), torchrun restarted the group, the job succeeded.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from torchelastic_otel import cli
from torchelastic_otel.demo.collector import free_port, wait_port
from torchelastic_otel.otlp_data import OtlpFileError, Received, read_otlp_json, write_otlp_json
from torchelastic_otel.timeline.html import render_html
from torchelastic_otel.timeline.model import build_timelines
from torchelastic_otel.timeline.terminal import render

DATA = Path(__file__).resolve().parents[1] / "data" / "demo-job.otlp.jsonl"


@pytest.fixture
def received() -> Received:
    return read_otlp_json(DATA)


def test_model_of_a_real_job(received: Received) -> None:
    (job,) = build_timelines(received)
    assert job.state == "SUCCEEDED"
    assert [lane.rank for lane in job.lanes] == [0, 1]
    assert len({lane.pid for lane in job.lanes}) == 2
    workers = sorted({b.label for lane in job.lanes for b in lane.bars if b.kind == "worker"})
    assert workers == ["worker 0", "worker 1", "worker 2", "worker 3"]
    assert job.restarts == 1
    for lane in job.lanes:
        assert [b.label for b in lane.bars if b.kind == "round"] == ["round 0", "round 1"]
    culprit = [m for _, m in job.worker_failures if "simulated failure" in m.label]
    assert len(culprit) == 1
    assert culprit[0].attributes["torchelastic.global_rank"] == 3
    assert culprit[0].label.startswith("worker 3: RuntimeError")
    # The root cause comes first, before the worker the agent killed because of it.
    assert job.worker_failures[0][1] is culprit[0]
    assert job.trace_id and len(job.trace_id) == 32
    assert job.notes == []


def test_terminal_shows_nodes_rounds_failures(received: Received) -> None:
    console = Console(width=120, record=True, color_system=None)
    console.print(render(build_timelines(received)[0], width=120))
    text = console.export_text()
    for needle in (
        "SUCCEEDED",
        "rank 0",
        "rank 1",
        "worker 3",
        "RuntimeError: rank 3: simulated failure",
        "1 restart",
        "round 1",
        "✗",
        "✓",
    ):
        assert needle in text, needle


def test_html_is_self_contained(received: Received) -> None:
    page = render_html(build_timelines(received))
    assert page.count('class="lane"') == 2
    assert page.count('rect class="bar rdzv round') == 4
    for forbidden in ('src="http', 'href="http', "@import", "url(http"):
        assert forbidden not in page
    assert "data-info" in page


def test_partial_data_does_not_crash(received: Received) -> None:
    # No job span, no node spans (missing parents), half of the rest, one node's
    # clock 5 s ahead, and an unfinished span.
    spans = [
        s
        for s in received.spans
        if not s["name"].startswith(("torchelastic.job", "torchelastic.node"))
    ]
    spans = spans[::2]
    skewed_pid = spans[0]["resource"]["process.pid"]
    for s in spans:
        if s["resource"]["process.pid"] == skewed_pid:
            s["start"] += 5_000_000_000
            s["end"] += 5_000_000_000
    spans[-1]["attributes"]["torchelastic.unfinished"] = True
    partial = Received(logs=received.logs[: len(received.logs) // 3], spans=spans)
    (job,) = build_timelines(partial)
    assert job.state in ("SUCCEEDED", "UNKNOWN", "FAILED")
    assert any("parent that was not exported" in n for n in job.notes)
    assert any("still open" in n for n in job.notes)
    console = Console(width=100, record=True, color_system=None)
    console.print(render(job, width=100))
    assert job.run_id in console.export_text()
    assert "data-info" in render_html([job])


def test_records_only_still_give_lanes(received: Received) -> None:
    (job,) = build_timelines(Received(logs=received.logs, spans=[]))
    assert len(job.lanes) == 2
    assert any("only log records" in n for n in job.notes)


def test_round_trip_through_otlp_json(received: Received, tmp_path: Path) -> None:
    out = tmp_path / "again.jsonl"
    write_otlp_json(received, out)
    again = read_otlp_json(out)
    assert again.logs == received.logs
    assert again.spans == received.spans


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no OTLP data"),
        ("not json at all\n", ":1: not JSON"),
        ('{"hello": 1}\n', ":1: not OTLP JSON"),
        (
            '{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5, "kind": "nope"}]}]}]}\n',
            ":1: malformed OTLP",
        ),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(OtlpFileError, match=message):
        read_otlp_json(path)


def test_truncated_file_says_so(tmp_path: Path) -> None:
    text = DATA.read_text()
    path = tmp_path / "cut.jsonl"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(OtlpFileError, match=r"cut.jsonl:\d+: not JSON \(truncated\?\)"):
        read_otlp_json(path)


def test_cli_file_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "t.html"
    assert cli.main(["timeline", str(DATA), "--html", str(html), "--width", "110"]) == 0
    out = capsys.readouterr().out
    assert "SUCCEEDED" in out
    assert str(html.resolve()) in out
    assert html.read_text().startswith("<!DOCTYPE html>")


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["timeline"]) == 2
    assert "give OTLP JSON files, or --listen" in capsys.readouterr().err
    bad = tmp_path / "x.jsonl"
    bad.write_text("{")
    assert cli.main(["timeline", str(bad)]) == 2
    assert "x.jsonl:1: not JSON" in capsys.readouterr().err
    assert cli.main(["timeline", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_cli_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert cli.main(["timeline", "--listen", "--grpc-port", "0", "--http-port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err
    assert "choose another" in err


def test_cli_live_mode_receives_grpc_and_http(tmp_path: Path) -> None:
    """The command receives a job's data over both protocols, then shows it."""
    grpc_port, http_port = free_port(), free_port()
    saved = tmp_path / "live.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torchelastic_otel.cli",
            "timeline",
            "--listen",
            "--grpc-port",
            str(grpc_port),
            "--http-port",
            str(http_port),
            "--idle-exit",
            "1.5",
            "--duration",
            "60",
            "--save",
            str(saved),
            "--width",
            "100",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_port(grpc_port)
        wait_port(http_port)
        code = (
            "from torchelastic_otel import events, otel\n"
            "otel.configure(schedule_delay_ms=50)\n"
            "for st in ('RENDEZVOUS', 'ASSIGN_WORKER_RANKS'):\n"
            "    events.record(events.Event('torchelastic.worker.status.' + st,"
            " events.EventSource.AGENT, metadata={'run_id': 'live-1', 'group_rank': 0,"
            " 'state': st, 'duration_ms': 5.0}), 'otel')\n"
            "otel.shutdown(5000)\n"
            "print(otel.exported_counts())\n"
        )
        for protocol, port in (("grpc", grpc_port), ("http/protobuf", http_port)):
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            }
            sent = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert "'logs': 2" in sent.stdout, sent.stderr
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert "live-1" in out
    assert "rank 0" in out
    received = read_otlp_json(saved)
    assert len(received.logs) == 4
    assert {json.dumps(sorted(r["resource"])) for r in received.logs}
    time.sleep(0)
