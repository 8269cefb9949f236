"""Failures that don't say goodbye, with real torchrun agents (issue 18).

Three agents (``--nnodes 2:3``, c10d on 127.0.0.1, one gloo worker each) train in
lock-step; then one node goes:

* **lost**: its agent and its worker are SIGKILLed. It exports nothing more; the
  survivors' collectives fail, they restart and finish on two nodes. The cycle it
  died in must still hold its part (exported by the next cycle's rank 0), and the
  next cycle must name it, on its root and in a record.
* **preempted**: its agent gets SIGTERM (a scheduler's notice). It stops its worker,
  ends its part ``terminated`` with the signal and flushes; the survivors name it as
  preempted (it said so through the store), and invent no part for it.

Driven by files the workers write (their steps), never by sleeps; every wait is
bounded and fails with what it saw. gloo on one loaded host can take a restart or
two to reconnect (its full-mesh connect gives up after three refusals while a slow
peer still imports torch), so the agents may restart up to 5 times.
"""

import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector import RealCollector
from tests.support.waiting import wait_until
from torchelastic_otel import semconv as sc
from torchelastic_otel.demo.collector import free_port
from torchelastic_otel.demo.job import torchrun_command
from torchelastic_otel.otlp_data import Received

pytest.importorskip("torch.distributed.run", reason="torch is not installed: e2e tests skipped")

WORKER = Path(__file__).with_name("workers") / "elastic_loop.py"
NODES = 3
GOING = 2  # never agent 0, the c10d store's host


def _steps(work: Path) -> dict[tuple[int, int], int]:
    """(rendezvous round, node rank) -> the last step its worker wrote."""
    out = {}
    for path in work.glob("progress.*.*"):
        _, round_, rank = path.name.split(".")
        text = path.read_text().strip()
        if text.isdigit() and round_.isdigit():
            out[(int(round_), int(rank))] = int(text)
    return out


def _round_with(work: Path, ranks: set[int], after: int = -1) -> int | None:
    """A round later than ``after`` in which every node of ``ranks`` made 3 steps."""
    steps = _steps(work)
    rounds = sorted({r for r, _ in steps if r > after})
    return next((r for r in rounds if all(steps.get((r, k), 0) >= 3 for k in ranks)), None)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def _job(endpoint: str, run_id: str, work: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCHELASTIC_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_METRICS_EXPORTER="none",
        OMP_NUM_THREADS="1",
        LOGLEVEL="INFO",  # the agents' logs say what they did, when a wait fails
    )
    args = [
        *torchrun_command(),
        f"--nnodes=2:{NODES}",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        f"--rdzv-id={run_id}",
        # All three must meet in the first round (a node joining a running job fails
        # inside torch on one host), so the last call waits for a loaded machine.
        "--rdzv-conf=last_call_timeout=8,keep_alive_interval=1,keep_alive_max_attempt=3",
        "--max-restarts=5",
        "--monitor-interval=0.2",
        "--event-log-handler=otel",
        str(WORKER),
        f"--dir={work}",
    ]
    agents: list[subprocess.Popen[bytes]] = []
    logs = [open(work / f"agent-{i}.log", "wb") for i in range(NODES)]  # noqa: SIM115
    try:
        for i in range(NODES):
            if i == 1:
                # Agent 0 hosts the store: the others start once it listens.
                wait_until(lambda: _listening(port), bool, 60, "the rendezvous store", 0.2)
            agents.append(subprocess.Popen(args, env=env, stdout=logs[i], stderr=subprocess.STDOUT))
        yield agents
    finally:
        for agent in agents:
            if agent.poll() is None:
                for kid in _children(agent.pid):
                    os.kill(kid, signal.SIGKILL)
                agent.kill()
                agent.wait(30)
        for log in logs:
            log.close()


def run_with_a_node_going(endpoint: str, work_dir: Path, how: signal.Signals) -> str:
    """A 3-node job (OTLP to ``endpoint``) in which node GOING leaves by ``how``.

    Returns the run id once the survivors finished the job on two nodes.
    """
    run_id = f"e2e-{how.name.lower()}-{uuid.uuid4().hex[:8]}"
    work = work_dir / run_id
    work.mkdir()

    def seen() -> str:
        tails = [(work / f"agent-{i}.log").read_text(errors="replace")[-1500:] for i in range(3)]
        return f"steps {_steps(work)}\n" + "\n---\n".join(tails)

    with _job(endpoint, run_id, work) as agents:
        first = wait_until(
            lambda: _round_with(work, set(range(NODES))),
            lambda r: r is not None,
            180,
            "three nodes training",
            0.2,
            seen=seen,
        )
        assert first is not None
        going = agents[GOING]
        if how == signal.SIGKILL:
            # A node that vanishes: its agent and its worker at once.
            for kid in _children(going.pid):
                os.kill(kid, signal.SIGKILL)
        going.send_signal(how)
        going.wait(60)
        survivors = agents[:GOING]
        # A survivor restarted by the membership change keeps its restart count:
        # the round, not the count, says the job trains again.
        wait_until(
            lambda: _round_with(work, {0, 1}, after=first) is not None,
            bool,
            240,
            "the survivors training again on 2 nodes",
            0.2,
            seen=seen,
        )
        (work / "finish").touch()
        for agent in survivors:
            agent.wait(120)
        codes = [a.returncode for a in survivors]
        assert codes == [0, 0], seen()
    return run_id


def _run(collector: RealCollector, tmp_path: Path, how: signal.Signals) -> tuple[str, Received]:
    """The job of :func:`run_with_a_node_going` through ``collector``, and its data."""
    run_id = run_with_a_node_going(collector.grpc_endpoint, tmp_path, how)

    def arrived() -> bool:
        nodes = [
            s
            for s in collector.received.spans
            if s["attributes"].get(sc.RUN_ID) == run_id and s["name"].startswith(sc.NODE_SPAN)
        ]
        # A lost node's own node span never comes: a survivor's inferred one does,
        # emitted together with its inferred part.
        return len(nodes) >= NODES

    wait_until(
        arrived,
        bool,
        30,
        "every node's node span (a lost one's inferred)",
        0.2,
        seen=lambda: f"{len(collector.received.spans)} spans",
    )

    # The records the tests read: the survivors' word on the node that left and,
    # for a preemption, the node's own notice (each pipeline batches on its own, so
    # the node spans' arrival says nothing of the records).
    names = {sc.NODE_LOST_EVENT} | ({sc.NODE_LEAVING_EVENT} if how == signal.SIGTERM else set())

    def records_in() -> set[str]:
        return {
            r["event_name"]
            for r in collector.received.logs
            if r["attributes"].get(sc.RUN_ID) == run_id and r["event_name"] in names
        }

    wait_until(records_in, lambda got: got == names, 30, f"the records {sorted(names)}", 0.2)
    data = Received(
        logs=[r for r in collector.received.logs if r["attributes"].get(sc.RUN_ID) == run_id],
        spans=[s for s in collector.received.spans if s["attributes"].get(sc.RUN_ID) == run_id],
    )
    return run_id, data


def _lost_record(data: Received) -> dict[str, Any]:
    records = [r for r in data.logs if r["event_name"] == sc.NODE_LOST_EVENT]
    assert len(records) == 1, [r["body"] for r in records]
    return records[0]["attributes"]


def _cycle(data: Received, round_: int) -> list[Any]:
    """The spans of the cycle trace of ``round_``."""
    (root,) = [
        s
        for s in data.spans
        if s["name"].startswith(f"{sc.CYCLE_SPAN} ") and s["attributes"].get(sc.ROUND) == round_
    ]
    return [s for s in data.spans if s["trace_id"] == root["trace_id"]]


def _timeline_text(data: Received, run_id: str) -> tuple[Any, str]:
    from rich.console import Console

    from torchelastic_otel.timeline.model import build_timelines
    from torchelastic_otel.timeline.terminal import render

    (job,) = build_timelines(data, run_id=run_id)
    console = Console(width=140, record=True, color_system=None)
    console.print(render(job, width=140))
    return job, console.export_text()


def test_a_lost_node_is_in_the_cycle_it_died_in_and_named_in_the_next(
    collector: RealCollector, tmp_path: Path
) -> None:
    run_id, data = _run(collector, tmp_path, signal.SIGKILL)
    lost = _lost_record(data)
    died_in = lost[sc.LOST_ROUND]
    assert lost[sc.LOST_REASON] in (sc.LOST_REASON_COLLECTIVE, sc.LOST_REASON_HEARTBEAT)
    # Every node's part in the cycle it died in: two of their own, one inferred.
    parts = [s for s in _cycle(data, died_in) if s["name"].startswith(sc.CYCLE_NODE_SPAN)]
    assert sorted(p["attributes"][sc.RANK] for p in parts) == list(range(NODES)), parts
    (inferred,) = [p for p in parts if p["attributes"].get(sc.INFERRED)]
    assert inferred["attributes"][sc.RANK] == lost[sc.LOST_RANK]
    assert inferred["attributes"][sc.OUTCOME] == sc.OUTCOME_LOST
    assert inferred["attributes"][sc.NODE_ID] == lost[sc.LOST_NODE]
    # The next cycle names it.
    naming = [
        s
        for s in data.spans
        if s["name"].startswith(f"{sc.CYCLE_SPAN} ")
        and lost[sc.LOST_NODE] in (s["attributes"].get(sc.LOST_NODES) or ())
    ]
    assert naming and naming[0]["attributes"][sc.ROUND] > died_in
    job, text = _timeline_text(data, run_id)
    gone = [n for n in job.nodes if n.left.startswith("lost")]
    assert len(gone) == 1 and gone[0].cycle(died_in) is not None, [n.left for n in job.nodes]
    assert gone[0].cycle(died_in).outcome == sc.OUTCOME_LOST
    assert "lost (" in text, text


def test_a_preempted_node_says_so_and_the_survivors_name_it(
    collector: RealCollector, tmp_path: Path
) -> None:
    run_id, data = _run(collector, tmp_path, signal.SIGTERM)
    lost = _lost_record(data)
    assert (lost[sc.LOST_REASON], lost[sc.SIGNAL]) == (sc.LOST_REASON_PREEMPTED, "SIGTERM")
    parts = [
        s for s in _cycle(data, lost[sc.LOST_ROUND]) if s["name"].startswith(sc.CYCLE_NODE_SPAN)
    ]
    assert not [p for p in parts if p["attributes"].get(sc.INFERRED)]
    (own,) = [p for p in parts if p["attributes"][sc.RANK] == lost[sc.LOST_RANK]]
    assert own["attributes"][sc.OUTCOME] == sc.OUTCOME_TERMINATED
    assert own["attributes"][sc.SIGNAL] == "SIGTERM"
    assert own["status_code"] != sc.STATUS_ERROR
    terminated = [
        s
        for s in data.spans
        if s["name"].startswith(f"{sc.NODE_SPAN} ")
        and s["attributes"][sc.NODE_STATE] == sc.STATE_TERMINATED
    ]
    assert [s["attributes"][sc.SIGNAL] for s in terminated] == ["SIGTERM"]
    job, text = _timeline_text(data, run_id)
    assert [n.left for n in job.nodes if n.left] == ["preempted (SIGTERM)"], text
    assert "preempted (SIGTERM)" in text, text
