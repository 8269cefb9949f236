"""The timeline on a real job's OTLP data, on made-up jobs of up to 1,024 nodes, and its CLI.

tests/data/demo-job.otlp.jsonl: ``make demo``'s 2-node job (2 workers each) in the
trace model of docs/mapping.md: worker 3 failed (RuntimeError), its agent killed
worker 2 (SIGTERM), the group restarted once, the job succeeded.
tests/support/timeline_synth.py makes what only shows with more nodes: a node
missing from the next round, a late joiner, a stalled rendezvous, 1,024 nodes.
"""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tests.support.benchmarks import load_benchmark
from tests.support.process import run_python
from tests.support.timeline_synth import synth_job
from torchelastic_otel import cli, otel
from torchelastic_otel import semconv as sc
from torchelastic_otel.demo.collector import free_port, wait_port
from torchelastic_otel.events import Event, EventSource
from torchelastic_otel.otel.settings import Settings
from torchelastic_otel.otlp_data import (
    LogItem,
    OtlpFileError,
    Received,
    read_otlp_json,
    write_otlp_json,
)
from torchelastic_otel.receiver import OtlpGrpcReceiver
from torchelastic_otel.timeline import goodput
from torchelastic_otel.timeline import job as job_module
from torchelastic_otel.timeline.html import render_html
from torchelastic_otel.timeline.model import (
    SUMMARY_NODES,
    JobTimeline,
    RendezvousWatch,
    build_timelines,
)
from torchelastic_otel.timeline.terminal import print_timelines, render

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "demo-job.otlp.jsonl"
ARTIFACTS = ROOT / "build" / "test-artifacts"
MAX_LINES = 200
MAX_HTML = 5_000_000


@pytest.fixture
def received() -> Received:
    return read_otlp_json(DATA)


def _text(job: JobTimeline, width: int = 120, summary: bool | None = None) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(render(job, width=width, summary=summary))
    return console.export_text()


def _page_data(page: str) -> list[dict[str, Any]]:
    found = re.findall(r'<script type="application/json" class="data">(.*?)</script>', page)
    return [json.loads(d.replace("<\\/", "</")) for d in found]


# --- the real job ---


def test_model_of_a_real_job(received: Received) -> None:
    (job,) = build_timelines(received)
    assert job.state == "SUCCEEDED"
    assert [n.rank for n in job.nodes] == [0, 1]
    assert len({n.pid for n in job.nodes}) == 2
    assert job.trace_id and len(job.trace_id) == 32
    # Cycles: round 0 restarted (as rank 0 saw it: a worker failed on its peer), round 1 ok.
    assert [(c.round, c.outcome, c.outcome_from_root) for c in job.cycles] == [
        (0, "restarted", True),
        (1, "succeeded", True),
    ]
    assert job.restarts == 1
    first = job.cycles[0]
    assert [n.rank for n in first.failed_nodes] == [1]
    assert (len(first.parts), first.nodes_expected, first.workers, first.workers_expected) == (
        2,
        2,
        4,
        4,
    )
    assert (first.remaining_restarts, first.max_restarts) == (1, 1)
    assert first.slowest is not None and first.slowest[0] > 1000
    assert first.workers_started_s is not None and 0 < first.workers_started_s < 5
    for node in job.nodes:
        assert [c.round for c in node.cycles] == [0, 1]
        assert all(len(c.workers) == 2 for c in node.cycles)
        assert all(c.rendezvous_ms is not None for c in node.cycles)
    assert job.workers == 4
    # The root cause first, then the worker its agent killed because of it.
    root, killed = job.failures
    assert (root.global_rank, root.killed, root.round) == (3, False, 0)
    assert root.label == "worker 3: RuntimeError: rank 3: simulated failure (loss is NaN)"
    assert "Traceback" in root.stacktrace or root.stacktrace
    assert (killed.global_rank, killed.killed, killed.signal) == (2, True, "SIGTERM")
    assert job.root_causes == [root]
    workers = {w.global_rank: w for w in job.nodes[1].cycles[0].workers}
    assert (workers[3].result, workers[2].result) == ("failed", "killed")
    assert {w.result for w in job.nodes[0].cycles[0].workers} == {"restarted"}
    assert {w.result for n in job.nodes for w in n.cycles[1].workers} == {"succeeded"}
    assert job.missing == [] and job.late == [] and job.waiting == []
    assert job.notes == []
    assert not job.large


def test_restarts_left_is_the_lowest_of_the_nodes_and_names_the_node(
    received: Received,
) -> None:
    """Issue 20, defect 7: after rank 1's worker failed, rank 1's agent has 0 restarts
    left and rank 0's (restarted by its peer) still 1; the cycle root is rank 0's and
    says 1. The job's budget is the lowest: 0, on rank 1."""
    (job,) = build_timelines(received)
    second = job.cycles[1]
    root_says = second.parts[0][1].attributes[sc.REMAINING_RESTARTS]
    parts = sorted((n.rank, p.remaining_restarts) for n, p in second.parts)
    assert (root_says, parts) == (1, [(0, 1), (1, 0)])  # the data: rank 1 has 0 left
    assert (second.remaining_restarts, second.max_restarts) == (0, 1)
    assert [n.rank for n in second.closest] == [1]
    assert job.cycles[0].closest == []  # the nodes agree: nobody is named
    for summary in (True, False):
        text = _text(job, width=200, summary=summary)
        assert "restarts left: 0 of 1 in round 1, on rank 1 vm: closest to its limit" in text
    table = _text(job, width=200, summary=True)
    assert re.search(r"succeeded\s+2\s+4\s+0/1\s", table), table
    assert re.search(r"restarted\s+2\s+4\s+1/1\s", table), table
    page = render_html([job])
    assert ">0/1<" in page and ">1/1<" in page
    assert "restarts left: 0 of 1 in round 1, on rank 1 vm: closest to its limit" in page


def test_terminal_shows_cycles_lanes_and_failures(received: Received) -> None:
    text = _text(build_timelines(received)[0])
    for needle in (
        "SUCCEEDED",
        "rank 0  vm (pid 22962)",
        "rank 1  vm (pid 22963)",
        "worker 3",
        "2 cycles (1 restart)",
        "1 worker failure (+1 killed)",
        "worker 3: RuntimeError: rank 3: simulated failure",
        "worker 2: killed by SIGTERM because worker 3 failed",
        "restarted",
        "succeeded",
        "✗",
        "✓",
        "↻",
    ):
        assert needle in text, needle
    # The root cause is listed before the killed worker.
    assert text.index("worker 3: RuntimeError") < text.index("worker 2: killed")


def test_terminal_pictures(received: Received) -> None:
    """The README's terminal pictures (docs/images/timeline-terminal*.svg come from here)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    big = synth_job(
        nodes=1024, workers=8, rounds=4, missing={3: [641]}, late={2: {97: 42.0, 310: 18.5}}
    )
    for name, job in (
        ("timeline-terminal.svg", build_timelines(received)[0]),
        ("timeline-terminal-scale.svg", build_timelines(big)[0]),
    ):
        with open(os.devnull, "w") as sink:
            console = Console(width=120, record=True, file=sink)
            console.print(render(job, width=120))
        svg = console.export_svg(title="torchelastic-otel timeline")
        assert "<svg" in svg
        (ARTIFACTS / name).write_text(svg)


def test_terminal_draws_root_cause_and_killed_apart(received: Received) -> None:
    console = Console(width=120, record=True, force_terminal=True, color_system="standard")
    console.print(render(build_timelines(received)[0], width=120))
    lines = console.export_text(styles=True).splitlines()
    root = next(line for line in lines if "worker 3" in line and "━" in line)
    killed = next(line for line in lines if "worker 2" in line and "━" in line)
    magenta = "\x1b[35m"
    assert magenta in killed
    assert magenta not in root and "31m" in root


def test_html_is_self_contained(received: Received) -> None:
    page = render_html(build_timelines(received))
    for forbidden in ('src="http', 'href="http', "@import", "url(", "fetch(", "XMLHttpRequest"):
        assert forbidden not in page
    (data,) = _page_data(page)
    assert data["initial"] == [0, 1]
    assert len(data["nodes"]) == 2
    assert [c[0] for c in data["cycles"]] == [0, 1]
    assert "worker 2: killed by SIGTERM because worker 3 failed" in page


def test_partial_data_is_noted(received: Received) -> None:
    """No job span, no root of round 0, one node's spans lost: said, and still drawn."""
    lost_pid = 22963
    spans = [
        s
        for s in received.spans
        if s["name"] != sc.JOB_SPAN
        and s["name"] != f"{sc.CYCLE_SPAN} 0"
        and s["resource"][sc.PROCESS_PID] != lost_pid
    ]
    spans[-1]["attributes"][sc.UNFINISHED] = True
    (job,) = build_timelines(Received(logs=received.logs, spans=spans))
    notes = " | ".join(job.notes)
    assert "parent that was not exported" in notes
    assert "still open" in notes
    assert "round 0: no cycle root span" in notes
    assert "1 node with log records only" in notes
    # The node without spans is still there, its cycles and workers from its records.
    lost = next(n for n in job.nodes if n.pid == lost_pid)
    assert [c.round for c in lost.cycles] == [0, 1]
    assert not lost.cycles[0].has_span
    assert {w.global_rank for c in lost.cycles for w in c.workers} == {2, 3}
    assert [f.global_rank for f in job.worker_failures] == [3, 2]
    assert job.cycles[0].outcome == "failed"  # the nodes' own, with no root
    assert job.run_id in _text(job)
    assert _page_data(render_html([job]))


def _failed_rendezvous(
    log: LogItem, t_ns: int, method: str, body: str, message: str | None = None
) -> LogItem:
    """A copy of ``log`` as a FAILED ``DynamicRendezvousHandler.<method>`` record."""
    record: LogItem = json.loads(json.dumps(log))
    record["time_unix_nano"] = t_ns
    record["event_name"] = f"dynamic_rendezvous.py:DynamicRendezvousHandler.{method}"
    record["body"] = body
    record["attributes"].update(
        {
            sc.NODE_STATE: sc.STATE_FAILED,
            sc.EVENT_KIND: sc.KIND_RENDEZVOUS,
            sc.EXCEPTION_TYPE: "torch.distributed.elastic.rendezvous.api.RendezvousConnectionError",
        }
    )
    if message is not None:
        record["attributes"][sc.EXCEPTION_MESSAGE] = message
    return record


def _keep_alive_failure(log: LogItem, t_ns: int) -> LogItem:
    return _failed_rendezvous(
        log,
        t_ns,
        "_keep_alive",
        "The node 'x' has failed to send a keep-alive heartbeat ...",
        "The connection to the C10d store has failed.",
    )


def test_a_cycle_in_shard_traces_is_not_a_disagreement() -> None:
    """Past TORCHELASTIC_OTEL_TRACE_SHARD_NODES a cycle is several traces, its root says so."""

    def sharded(shards: int | None) -> list[str]:
        received = synth_job(nodes=4, workers=1, rounds=2, records=False)
        roots = {
            s["trace_id"]: s for s in received.spans if s["name"].startswith(sc.CYCLE_SPAN + " ")
        }
        for s in received.spans:
            root = roots.get(s["trace_id"])
            if root is None:
                continue
            if s is root and shards is not None:
                s["attributes"][sc.SHARDS] = shards
            if s["name"].startswith(sc.CYCLE_NODE_SPAN) and s["attributes"][sc.RANK] >= 2:
                s["trace_id"] = s["trace_id"][:-4] + "beef"  # the second shard's trace
        (job,) = build_timelines(received)
        assert [len(c.trace_ids) for c in job.cycles] == [2, 2]
        return [n for n in job.notes if "trace ids" in n]

    assert sharded(2) == []
    assert len(sharded(None)) == 2  # two traces and no word of shards: a disagreement
    assert len(sharded(1)) == 2


def test_leaving_the_rendezvous_at_exit_is_a_note_not_a_failure(received: Received) -> None:
    """c10d's store host leaves first; the others' failed shutdown is not the job's failure."""
    (before,) = build_timelines(received)
    last = max(received.logs, key=lambda r: r["time_unix_nano"])
    at_exit = [
        _failed_rendezvous(
            log,
            last["time_unix_nano"] + 1_000_000 * (i + 1),
            "shutdown",
            "The node 'x' has failed to shutdown the rendezvous 'r' ...",
        )
        for i, log in enumerate(received.logs[:2])
    ]
    (job,) = build_timelines(Received(logs=[*received.logs, *at_exit], spans=received.spans))
    assert len(job.failures) == len(before.failures)
    assert "2 nodes could not leave the rendezvous at exit (2 RendezvousConnectionError)" in (
        " | ".join(job.notes)
    )


def test_rendezvous_error_after_the_job_succeeded_is_a_note(received: Received) -> None:
    """The store's host exited; another node's keep-alive failed before it left too."""
    (before,) = build_timelines(received)
    assert before.state == sc.STATE_SUCCEEDED
    last = max(received.logs, key=lambda r: r["time_unix_nano"])
    late = _keep_alive_failure(received.logs[0], last["time_unix_nano"] + 1_000_000)
    (job,) = build_timelines(Received(logs=[*received.logs, late], spans=received.spans))
    assert len(job.failures) == len(before.failures)
    assert "1 node could not leave the rendezvous at exit (1 RendezvousConnectionError)" in (
        " | ".join(job.notes)
    )
    # The same error before any node had finished is the job's failure, and listed.
    first = min(received.logs, key=lambda r: r["time_unix_nano"])
    early = _keep_alive_failure(received.logs[0], first["time_unix_nano"] + 1_000_000)
    (job,) = build_timelines(Received(logs=[*received.logs, early], spans=received.spans))
    assert len(job.failures) == len(before.failures) + 1


def test_records_only_still_give_nodes_cycles_workers(received: Received) -> None:
    (job,) = build_timelines(Received(logs=received.logs, spans=[]))
    assert len(job.nodes) == 2
    assert [c.round for c in job.cycles] == [0, 1]
    assert job.workers == 4
    assert [f.global_rank for f in job.worker_failures] == [3, 2]
    assert any("log records only" in n for n in job.notes)


def test_several_jobs_and_run_id_filter(received: Received) -> None:
    other = synth_job(nodes=2, workers=1, rounds=1, run_id="other")
    both = Received(logs=received.logs + other.logs, spans=received.spans + other.spans)
    assert sorted(j.run_id for j in build_timelines(both)) == ["demo-fixture", "other"]
    assert [j.run_id for j in build_timelines(both, run_id="other")] == ["other"]


# --- what only shows with more nodes ---


def test_missing_node_between_rounds() -> None:
    (job,) = build_timelines(synth_job(nodes=6, rounds=3, missing={2: [4]}))
    assert [(m.after, m.before, [n.host for n in m.nodes]) for m in job.missing] == [
        (1, 2, ["node-00004.test"])
    ]
    assert [len(c.parts) for c in job.cycles] == [6, 6, 5]
    text = _text(job)
    assert "missing: 1 node of round 1 not in round 2: rank 4 node-00004.test" in text


def test_late_joiner_and_slowest_rendezvous() -> None:
    (job,) = build_timelines(synth_job(nodes=6, rounds=3, late={1: {3: 20.0}}))
    (cycle, node, late_s) = job.late[0]
    assert (cycle.round, node.host, round(late_s)) == (1, "node-00003.test", 20)
    assert len(job.late) == 1
    # Everyone else waited ~21 s for it; its own rendezvous was the shortest.
    slowest = cycle.slowest
    assert slowest is not None and slowest[0] == pytest.approx(21_000)
    assert min(ms for ms, _ in cycle.rendezvous_ms()) == pytest.approx(1000)
    assert "joined late: round 1: rank 3 node-00003.test (+20.0 s)" in _text(job)


def test_stalled_rendezvous_names_waiting_and_missing_nodes() -> None:
    """The last round failed; the nodes left wait for one that never comes."""
    (job,) = build_timelines(synth_job(nodes=5, rounds=2, stall=True, missing={2: [3]}))
    assert sorted(n.host for n in job.waiting) == [
        "node-00000.test",
        "node-00001.test",
        "node-00002.test",
        "node-00004.test",
    ]
    (gone,) = job.missing
    assert (gone.after, gone.before, [n.host for n in gone.nodes]) == (1, None, ["node-00003.test"])
    text = _text(job)
    assert "waiting at exit: 4 nodes still in a rendezvous" in text
    assert "missing: 1 node of round 1 not in the rendezvous still waiting" in text


def test_stalled_rendezvous_from_records_alone() -> None:
    """The agents were killed while waiting: no rendezvous span, the records say it."""
    received = synth_job(nodes=3, rounds=2, stall=True)
    spans = [s for s in received.spans if s["name"] != sc.RENDEZVOUS_SPAN]
    (job,) = build_timelines(Received(logs=received.logs, spans=spans))
    assert len(job.waiting) == 3


def test_a_node_silent_in_a_rendezvous_is_missing_not_waiting() -> None:
    """Its last word was an attempt to join; then nothing, while the job went on."""
    received = synth_job(nodes=4, rounds=3, missing={2: [3]})
    join = next(
        log
        for log in received.logs
        if log["resource"][sc.HOST_NAME] == "node-00003.test"
        and "attempts to join" in str(log["body"])
    )
    round_2 = min(s["start"] for s in received.spans if s["attributes"].get(sc.ROUND) == 2)
    received.logs.append({**join, "time_unix_nano": round_2})
    (job,) = build_timelines(received)
    assert job.waiting == []
    (gone,) = job.missing
    assert [n.host for n in gone.nodes] == ["node-00003.test"]
    silent = gone.nodes[0].attempts[-1]
    assert (silent.waiting, silent.message) == (False, "went silent while waiting in a rendezvous")
    text = _text(job)
    assert "rank 3 node-00003.test (last seen +60.00s)" in text
    assert "went silent" in text


def test_failures_by_round_root_cause_first() -> None:
    (job,) = build_timelines(synth_job(nodes=3, workers=3, rounds=3))
    order = [(f.round, f.global_rank, f.killed) for f in job.failures]
    assert order == [
        (0, 1, False),
        (0, 0, True),
        (0, 2, True),
        (1, 1, False),
        (1, 0, True),
        (1, 2, True),
    ]


def test_failures_from_spans_when_records_are_missing() -> None:
    received = synth_job(nodes=3, workers=3, rounds=2)
    (job,) = build_timelines(Received(logs=[], spans=received.spans))
    assert [(f.global_rank, f.killed) for f in job.failures] == [(1, False), (0, True), (2, True)]
    assert job.failures[0].what == "RuntimeError: boom"


def test_summary_at_scale_fits_a_screen_and_the_page_5_mb() -> None:
    received = synth_job(
        nodes=1024,
        workers=8,
        rounds=4,
        missing={2: list(range(100, 140))},
        late={1: {n: 30.0 for n in range(200, 230)}},
    )
    (job,) = build_timelines(received)
    assert job.large and len(job.nodes) == 1024 > SUMMARY_NODES
    assert job.workers == 8192
    for width in (80, 120, 200):
        text = _text(job, width=width)
        assert len(text.splitlines()) <= MAX_LINES, width
    text = _text(job)
    assert "missing: 40 nodes of round 1 not in round 2" in text
    assert "... and 35 more" in text  # lists are capped
    assert "joined late: round 1:" in text
    assert "killed by SIGTERM" in text
    page = render_html([job])
    assert len(page.encode()) <= MAX_HTML
    (data,) = _page_data(page)
    assert len(data["nodes"]) == 1024
    assert data["initial"] == [0]  # the root cause's node, drawn on load
    # Lanes on demand, in the terminal too.
    console = Console(width=120, record=True, color_system=None)
    print_timelines([job], console, width=120, nodes=["node-00777.test"])
    assert "node-00777.test (pid 1777)" in console.export_text()


def test_lanes_forced_and_summary_forced(received: Received) -> None:
    (job,) = build_timelines(received)
    assert "failures, by error" in _text(job, summary=True)
    (big,) = build_timelines(synth_job(nodes=20, workers=1, rounds=1))
    assert "rendezvous" in _text(big, summary=False).split("cycles")[1]


def test_rendezvous_watch_follows_records() -> None:
    received = synth_job(nodes=3, rounds=2, stall=True)
    logs = sorted(received.logs, key=lambda log: log["time_unix_nano"])
    watch = RendezvousWatch()
    joins = [i for i, log in enumerate(logs) if "attempts to join" in str(log["body"])]
    assert watch.update(logs[: joins[0] + 1]) == ["node-00000.test:1000"]
    first_cycle = next(i for i, log in enumerate(logs) if log["event_name"] == sc.CYCLE_EVENT)
    assert watch.update(logs[: first_cycle + 3]) == []
    assert len(watch.update(logs)) == 3  # the stalled rendezvous at the end


# --- the file ---


def test_round_trip_through_otlp_json(received: Received, tmp_path: Path) -> None:
    out = tmp_path / "again.jsonl"
    write_otlp_json(received, out)
    again = read_otlp_json(out)
    assert again.logs == received.logs
    assert again.spans == received.spans


def test_base64_ids_are_read_as_hex(received: Received, tmp_path: Path) -> None:
    """protobuf's JSON mapping writes ids as base64; the Collector as hex: both read."""

    def b64(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and value:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                else:
                    b64(value)
        elif isinstance(node, list):
            for item in node:
                b64(item)

    lines = []
    for line in DATA.read_text().splitlines():
        data = json.loads(line)
        b64(data)
        lines.append(json.dumps(data))
    path = tmp_path / "b64.jsonl"
    path.write_text("\n".join(lines) + "\n")
    again = read_otlp_json(path)
    assert again.spans == received.spans
    assert again.logs == received.logs


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
        (
            '{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": [1]}]}]}]}\n',
            ":1: malformed OTLP",
        ),
        (
            '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}\n',
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


def test_binary_file_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b'{"resourceLogs": "\xff\xfe"}\n')
    with pytest.raises(OtlpFileError, match=r"bin.jsonl:1: cannot read"):
        read_otlp_json(path)


# --- the command ---


def test_cli_file_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "t.html"
    assert cli.main(["timeline", str(DATA), "--html", str(html), "--width", "110"]) == 0
    out = capsys.readouterr().out
    assert "SUCCEEDED" in out
    assert str(html.resolve()) in out
    assert html.read_text().startswith("<!DOCTYPE html>")


def test_cli_width_is_kept_when_piped(tmp_path: Path) -> None:
    """rich draws for 80 columns when not on a terminal; --width must win."""
    for width in (72, 150):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "torchelastic_otel.cli",
                "timeline",
                str(DATA),
                "--width",
                str(width),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path), "TERM": "dumb"},
        )
        lengths = {len(line) for line in proc.stdout.splitlines() if line.startswith(("╭", "╰"))}
        assert lengths == {width}, proc.stdout[:500]


def test_cli_at_scale_summary_node_and_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.jsonl"
    write_otlp_json(synth_job(nodes=1024, workers=8, rounds=4, missing={2: [5, 6]}), path)
    html = tmp_path / "big.html"
    started = time.monotonic()
    code = cli.main(
        ["timeline", str(path), "--html", str(html), "--width", "120", "--node", "node-00006.test"]
    )
    took = time.monotonic() - started
    assert code == 0
    out = capsys.readouterr().out
    summary, lanes = out.split("╰", 1)
    assert len(summary.splitlines()) <= MAX_LINES
    assert "missing: 2 nodes of round 1 not in round 2" in summary
    assert "node-00006.test" in lanes and "worker 48" in lanes
    assert html.stat().st_size <= MAX_HTML
    assert took < 60, took


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["timeline"]) == 2
    assert "give OTLP JSON files, or --listen" in capsys.readouterr().err
    bad = tmp_path / "x.jsonl"
    bad.write_text("{")
    assert cli.main(["timeline", str(bad)]) == 2
    assert "x.jsonl:1: not JSON" in capsys.readouterr().err
    assert cli.main(["timeline", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert cli.main(["timeline", str(DATA), "--width", "10"]) == 2
    assert "--width" in capsys.readouterr().err


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


def _listen(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], int, int, Path]:
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
            "--duration",
            "60",
            "--save",
            str(saved),
            "--html",
            str(tmp_path / "live.html"),
            "--width",
            "100",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, grpc_port, http_port, saved


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def test_cli_live_mode_grpc_and_http_then_sigterm_saves(tmp_path: Path) -> None:
    """The command receives a job's data over both protocols; SIGTERM still saves it."""
    proc, grpc_port, http_port, saved = _listen(tmp_path)
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
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": ":".join(sys.path),
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            }
            sent = run_python(code, env=env, check=True)
            assert "'logs': 2" in sent.stdout, sent.stderr
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        _stop(proc)
    assert proc.returncode == 0, err
    # Not a terminal: where to send data was said, once.
    assert f"gRPC http://127.0.0.1:{grpc_port}" in err
    assert f"HTTP http://127.0.0.1:{http_port}" in err
    assert "SIGTERM" in err
    assert "live-1" in out
    received = read_otlp_json(saved)
    assert len(received.logs) == 4
    assert (tmp_path / "live.html").read_text().startswith("<!DOCTYPE html>")


def _post_log(port: int, body: str, attributes: dict[str, object], t_ns: int) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    def kv(key: str, value: object) -> KeyValue:
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=str(value)))

    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[kv(sc.HOST_NAME, "late-peer"), kv(sc.PROCESS_PID, 7)]
                ),
                scope_logs=[
                    ScopeLogs(
                        log_records=[
                            LogRecord(
                                time_unix_nano=t_ns,
                                body=AnyValue(string_value=body),
                                event_name=str(attributes.pop("event_name")),
                                attributes=[kv(k, v) for k, v in attributes.items()],
                            )
                        ]
                    )
                ],
            )
        ]
    )
    urllib.request.urlopen(
        urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/logs",
            data=request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        ),
        timeout=10,
    ).read()


def test_cli_idle_exit_waits_for_a_waiting_rendezvous(tmp_path: Path) -> None:
    proc, _, http_port, _ = _listen(tmp_path, "--idle-exit", "1")
    try:
        wait_port(http_port)
        common = {sc.RUN_ID: "wait-1", sc.RANK: -1, sc.EVENT_KIND: sc.KIND_RENDEZVOUS}
        _post_log(
            http_port,
            "The node 'late-peer_7_0' attempts to join the next round of the rendezvous 'wait-1'.",
            {
                **common,
                "event_name": "dynamic_rendezvous.py:DynamicRendezvousHandler.next_rendezvous",
            },
            1_800_000_000_000_000_000,
        )
        time.sleep(3)  # idle for 3 s, but the node waits: still listening
        assert proc.poll() is None
        _post_log(
            http_port,
            "The node 'late-peer_7_0' has joined round 0 of the rendezvous 'wait-1' as rank 0 in "
            "a world of size 1.",
            {
                **common,
                "event_name": "dynamic_rendezvous.py:DynamicRendezvousHandler.next_rendezvous",
            },
            1_800_000_001_000_000_000,
        )
        started = time.monotonic()
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - started < 15
    finally:
        _stop(proc)
    assert proc.returncode == 0, err
    assert "no data for 1 s" in err
    assert "wait-1" in out


def test_cli_sigterm_as_soon_as_it_listens_still_saves(tmp_path: Path) -> None:
    """A SIGTERM the moment the HTTP port opens stops the listener cleanly.

    The handler used to be installed after the receivers started, so a sender that
    saw the port open and signalled at once killed the process (exit -15, nothing
    saved). The signal is sent from inside the receiver's start, so the window is
    hit every time.
    """
    saved = tmp_path / "early.jsonl"
    code = (
        "import os, signal, sys\n"
        "from torchelastic_otel import cli, receiver\n"
        "enter = receiver.OtlpHttpReceiver.__enter__\n"
        "def enter_then_sigterm(self):\n"
        "    r = enter(self)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return r\n"
        "receiver.OtlpHttpReceiver.__enter__ = enter_then_sigterm\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    proc = run_python(
        code,
        "timeline",
        "--listen",
        "--grpc-port",
        "0",
        "--http-port",
        str(free_port()),
        "--duration",
        "30",
        "--save",
        str(saved),
        timeout=60,
    )
    assert "SIGTERM: 0 records, 0 spans received" in proc.stderr, (proc.returncode, proc.stderr)
    assert saved.exists(), proc.stderr


def test_cli_host_is_honoured(tmp_path: Path) -> None:
    """--host 127.0.0.2 (a loopback address that is not the default) is where it listens."""
    proc, grpc_port, http_port, _ = _listen(tmp_path, "--host", "127.0.0.2")
    code = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.2:{http_port}/v1/nothing", timeout=2)
            except urllib.error.HTTPError as e:
                code = e.code
                break
            except OSError:
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        _stop(proc)
    # Whatever went wrong, the listener's own words say why.
    assert code == 501, (code, proc.returncode, err[-3000:])  # GET: it answers, so it listens
    assert f"gRPC http://127.0.0.2:{grpc_port}" in err, err[-3000:]
    assert f"HTTP http://127.0.0.2:{http_port}" in err, err[-3000:]


# --- a real agent's recorded stream, replayed as bench_scale.py does ---


def test_workers_counted_once_per_round_of_a_real_stream() -> None:
    """Issue 20, defect 8: a real torch 2.13 agent's stream (2 nodes x 8 workers, 3
    restarts, c10d), replayed through ``otel`` as bench_scale.py replays it (worker ids
    rewritten, so they repeat from cycle to cycle): 16 workers in every round, 8 a node."""
    bench = load_benchmark("bench_scale")
    failing, peer, _ = bench.load(ROOT / "benchmarks" / "streams" / "c10d-2x8-r3", 8, 3)
    t_base = time.time_ns() - 600_000_000_000
    nodes = {
        f"node-{node:05d}.cluster": [
            (t_base + offset, json.dumps(event))
            for offset, event in bench._rewrite(stream, node, 2, 8, "replayed", 0.0)
        ]
        for node, stream in enumerate((failing, peer))
    }
    (job,) = build_timelines(_replay(nodes))
    assert [c.round for c in job.cycles] == [0, 1, 2, 3]
    assert [c.workers for c in job.cycles] == [16] * 4
    for lane in job.nodes:
        assert [len(p.workers) for p in lane.cycles] == [8] * 4, lane.title
    assert job.workers == 16
    assert not [n for n in job.notes if "disagree" in n], job.notes
    assert "16 workers" in _text(job, summary=True)


# --- cycles keyed by restart counts that repeat (no round known) ---


def _replay(nodes: Mapping[str, Sequence[tuple[int, Event | str]]]) -> Received:
    """Each host's events (time, event or its JSON) through its own ``otel`` pipeline,
    into memory."""
    with OtlpGrpcReceiver() as receiver:
        for host, timed in nodes.items():
            pipeline = otel.Pipeline(
                Settings(
                    endpoint=receiver.endpoint,
                    use_global_providers=False,
                    metrics_exporters=("none",),
                    schedule_delay_ms=10,
                    resource_attributes={sc.HOST_NAME: host},
                )
            )
            for t_ns, event in timed:
                pipeline.submit(event, t_ns)
            pipeline.shutdown(10_000)
            assert not any(pipeline.drop_counts().values()), pipeline.drop_counts()
        return receiver.received


def _agent(state: str, group_rank: int, **md: Any) -> Event:
    return Event(
        f"torchelastic.worker.status.{state}",
        EventSource.AGENT,
        metadata={"run_id": "peer-restarts", "group_rank": group_rank, "state": state, **md},
    )


def _worker(state: str, group_rank: int, global_rank: int, cycle: int, restarts: int) -> Event:
    return Event(
        f"torchelastic.worker.status.{state}",
        EventSource.WORKER,
        metadata={
            "run_id": "peer-restarts",
            "group_rank": group_rank,
            "global_rank": global_rank,
            "worker_id": str(10_000 + 10 * cycle + global_rank),
            "state": state,
            "agent_restarts": restarts,
            "raw_error": '{"message": "RuntimeError: boom"}' if state == "FAILED" else None,
            "metadata": json.dumps({"local_rank": [global_rank % 2]}),
        },
    )


def _peer_restarted_job(failing_rank: int) -> Received:
    """Two nodes, no rendezvous events, no cycle events: one node's worker fails three
    times (restart counts 0, 1, 2, 3); the other is restarted by its peer each time and
    its restart count stays 0 (keys 0, 0.1, 0.2, 0.3)."""
    s = 1_000_000_000
    base = time.time_ns() - 600 * s
    nodes: dict[str, list[tuple[int, Event]]] = {}
    for rank in (0, 1):
        timed: list[tuple[int, Event]] = []
        failing = rank == failing_rank
        for cycle in range(4):
            t = base + cycle * 10 * s
            timed.append((t + s, _agent("RENDEZVOUS", rank, duration_ms=1000.0)))
            restarts = cycle if failing else 0
            for local in (0, 1):
                timed.append(
                    (t + s + s // 10, _worker("START", rank, 2 * rank + local, cycle, restarts))
                )
            if cycle < 3 and failing:
                timed.append((t + 5 * s, _worker("FAILED", rank, 2 * rank, cycle, restarts)))
            if cycle == 3:
                for local in (0, 1):
                    timed.append(
                        (t + 8 * s, _worker("SUCCEEDED", rank, 2 * rank + local, 3, restarts))
                    )
                timed.append((t + 9 * s, _agent("SUCCEEDED", rank)))
        nodes[f"node-{rank}"] = timed
    return _replay(nodes)


@pytest.mark.parametrize("failing_rank", [1, 0])
def test_repeated_restart_keys_are_cycles_of_their_own(failing_rank: int) -> None:
    """Issue 20, defect 3: a node restarted by its peer keys its cycles 0, 0.1, 0.2, 0.3;
    they are not one cycle (and no "nodes disagree"): each joins the cycle of the failing
    node it overlaps, whichever of the two is rank 0 (emits the roots)."""
    (job,) = build_timelines(_peer_restarted_job(failing_rank))
    assert [c.round for c in job.cycles] == [0, 1, 2, 3]
    assert [len(c.parts) for c in job.cycles] == [2] * 4
    assert [c.workers for c in job.cycles] == [4] * 4
    assert [[n.rank for n in c.failed_nodes] for c in job.cycles] == [[failing_rank]] * 3 + [[]]
    assert job.cycles[-1].outcome == "succeeded"
    assert all(c.outcome_from_root for c in job.cycles)
    assert not [n for n in job.notes if "disagree" in n], job.notes
    assert [f.round for f in job.root_causes] == [0, 1, 2]
    for lane in job.nodes:
        assert [p.round for p in lane.cycles] == [0, 1, 2, 3], lane.title


@pytest.mark.parametrize("failing_rank", [1, 0])
def test_repeated_restart_keys_from_records_alone(failing_rank: int) -> None:
    """The same, with the restarted node's spans lost (records only): its records name
    their part's trace, so its cycles 0.1-0.3 do not pile into cycle 0."""
    received = _peer_restarted_job(failing_rank)
    healthy = f"node-{1 - failing_rank}"
    received.spans[:] = [s for s in received.spans if s["resource"][sc.HOST_NAME] != healthy]
    (job,) = build_timelines(received)
    assert [(c.round, len(c.parts), c.workers) for c in job.cycles] == [(r, 2, 4) for r in range(4)]
    assert [f.round for f in job.root_causes] == [0, 1, 2]
    (restarted,) = job.node(healthy)
    assert [len(p.workers) for p in restarted.cycles] == [2] * 4


def test_html_keeps_repeated_restart_keys_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the restarted node reached the backend: its cycles 0, 0.1, 0.2 and 0.3
    match no peer's. The page names them by key, so its script, which looks cycles up
    by their name, draws four cycles, not one cycle 0 holding the last outcome."""
    received = _peer_restarted_job(failing_rank=1)
    received.spans[:] = [s for s in received.spans if s["resource"][sc.HOST_NAME] == "node-0"]
    received.logs[:] = [r for r in received.logs if r["resource"][sc.HOST_NAME] == "node-0"]
    (job,) = build_timelines(received)
    assert [c.label for c in job.cycles] == ["0", "0.1", "0.2", "0.3"]
    # The goodput line names them as the cycle table does.
    assert job.goodput is not None
    assert [str(c.round) for c in job.goodput.cycles] == ["0", "0.1", "0.2", "0.3"]
    assert "cycle 0.1 " in goodput.describe(job.goodput)
    for large in (False, True):  # the packed form of large jobs too
        monkeypatch.setattr(job_module, "SUMMARY_NODES", 0 if large else 64)
        assert job.large is large
        (data,) = _page_data(render_html([job]))
        keys = [str(c[0]) for c in data["cycles"]]
        assert keys == ["0", "0.1", "0.2", "0.3"], large
        (node,) = data["nodes"]
        assert [str(c[0]) for c in node["c"]] == keys, large
