"""A job's rendezvous timeline, built from its exported log records and spans.

Reads what the ``otel`` destination exports (docs/mapping.md) and tolerates what
real data brings: spans still open when a node died (exported as unfinished, or
never exported: then its log records still place it), missing parents, records of
several jobs mixed together, clocks that disagree between nodes.

Example::

    >>> from torchelastic_otel.otlp_data import read_otlp_json
    >>> jobs = build_timelines(read_otlp_json(Path("otlp.json")))  # doctest: +SKIP
    >>> [(j.run_id, j.state, len(j.nodes)) for j in jobs]  # doctest: +SKIP
    [('demo-1', 'SUCCEEDED', 2)]
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchelastic_otel import semconv as sc
from torchelastic_otel.otlp_data import LogItem, Received, SpanItem, read_otlp_json


@dataclass
class Bar:
    """One interval on a node's lane: a rendezvous round, an agent step or a worker."""

    kind: str  # "round", "agent", "worker"
    label: str
    start_ns: int
    end_ns: int
    state: str
    error: bool = False
    unfinished: bool = False
    end_reason: str = ""
    message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return max(0, self.end_ns - self.start_ns) / 1e9


@dataclass
class Mark:
    """A point in time on a lane: a failure, a restart, a rendezvous event."""

    kind: str  # "failure", "rdzv", "event"
    time_ns: int
    label: str
    state: str
    error: bool
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Lane:
    """One node (one torchrun agent process)."""

    key: str
    host: str
    pid: int
    rank: int
    state: str = "UNKNOWN"
    bars: list[Bar] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    @property
    def title(self) -> str:
        """``rank N  host (pid P)``."""
        rank = f"rank {self.rank}" if self.rank >= 0 else "rank ?"
        return f"{rank}  {self.host} (pid {self.pid})"


@dataclass
class JobTimeline:
    """Everything known about one ``run_id``."""

    run_id: str
    trace_id: str
    start_ns: int
    end_ns: int
    state: str
    lanes: list[Lane]
    records: int
    spans: int
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[tuple[Lane, Mark]]:
        """Every failure mark, in time order."""
        out = [(lane, m) for lane in self.lanes for m in lane.marks if m.kind == "failure"]
        # torch records a failed group's workers together; within that moment, the
        # worker with an error of its own (the root cause) comes before those the
        # agent killed because of it.
        return sorted(
            out,
            key=lambda lm: (
                lm[1].time_ns // 100_000_000,
                bool(lm[1].attributes.get(sc.SIGNAL)),
                lm[1].time_ns,
            ),
        )

    @property
    def worker_failures(self) -> list[tuple[Lane, Mark]]:
        """Failures of workers (not of the rendezvous)."""
        return [
            (lane, m)
            for lane, m in self.failures
            if m.attributes.get(sc.EVENT_KIND) == sc.KIND_AGENT
        ]

    @property
    def restarts(self) -> int:
        """Rendezvous rounds after the first, counted on the node that had the most."""
        per_lane = [
            sum(1 for b in lane.bars if b.kind == "agent" and b.label == sc.STATE_RENDEZVOUS)
            for lane in self.lanes
        ]
        return max(0, max(per_lane, default=0) - 1)

    @property
    def worker_labels(self) -> set[str]:
        """``worker N`` for every worker rank seen."""
        return {b.label for lane in self.lanes for b in lane.bars if b.kind == "worker"}

    def rendezvous_rounds(self) -> list[tuple[Lane, Bar, str]]:
        """Each node's rounds with their result (``ok``, ``FAILED``, ``open``).

        The rendezvous' own rounds where it reported them, else the agent's
        RENDEZVOUS steps (the rendezvous' events are off by default).
        """
        out = []
        for lane in self.lanes:
            kind = "round" if any(b.kind == "round" for b in lane.bars) else "agent"
            for bar in sorted(lane.bars, key=lambda b: b.start_ns):
                if bar.kind == kind and bar.label != sc.STATE_ASSIGN_WORKER_RANKS:
                    result = sc.STATE_FAILED if bar.error else ("open" if bar.unfinished else "ok")
                    out.append((lane, bar, result))
        return out

    @property
    def duration_s(self) -> float:
        """From the first to the last thing seen, in seconds."""
        return max(0, self.end_ns - self.start_ns) / 1e9


def build_timelines(received: Received, run_id: str | None = None) -> list[JobTimeline]:
    """One timeline per ``run_id`` in ``received`` (or only ``run_id``), newest last."""
    logs: dict[str, list[LogItem]] = defaultdict(list)
    spans: dict[str, list[SpanItem]] = defaultdict(list)
    for log in received.logs:
        logs[str(log["attributes"].get(sc.RUN_ID, sc.UNKNOWN_RUN_ID))].append(log)
    for span in received.spans:
        spans[str(span["attributes"].get(sc.RUN_ID, sc.UNKNOWN_RUN_ID))].append(span)
    run_ids = sorted(set(logs) | set(spans))
    if run_id is not None:
        run_ids = [r for r in run_ids if r == run_id]
    jobs = [_build(r, logs[r], spans[r]) for r in run_ids]
    return sorted(jobs, key=lambda j: j.start_ns)


def _lane_key(resource: dict[str, Any]) -> tuple[str, int]:
    return str(resource.get(sc.HOST_NAME, "?")), int(resource.get(sc.PROCESS_PID, -1) or -1)


class _Builder:
    """Sorts one run's records and spans into lanes."""

    def __init__(self) -> None:
        self.lanes: dict[tuple[str, int], Lane] = {}
        self.ranks: dict[tuple[str, int], Counter[int]] = defaultdict(Counter)
        self.times: list[int] = []
        self.job_state = ""

    def lane_for(self, resource: dict[str, Any], rank: Any) -> Lane:
        host, pid = _lane_key(resource)
        if (host, pid) not in self.lanes:
            self.lanes[host, pid] = Lane(key=f"{host}:{pid}", host=host, pid=pid, rank=-1)
        if isinstance(rank, int) and not isinstance(rank, bool) and rank >= 0:
            self.ranks[host, pid][rank] += 1
        return self.lanes[host, pid]

    def add_span(self, s: SpanItem) -> None:
        a = s["attributes"]
        self.times += [s["start"], s["end"]]
        if s["name"] == sc.JOB_SPAN:
            self.job_state = str(a.get(sc.NODE_STATE, ""))
            return
        lane = self.lane_for(s["resource"], a.get(sc.RANK))
        if s["name"].startswith(sc.NODE_SPAN):
            lane.state = str(a.get(sc.NODE_STATE, lane.state))
        else:
            lane.bars.append(_bar(s))

    def add_log(self, log: LogItem) -> None:
        a = log["attributes"]
        self.times.append(log["time_unix_nano"])
        lane = self.lane_for(log["resource"], a.get(sc.RANK))
        if log["severity_number"] >= sc.SEVERITY_ERROR or a.get(sc.NODE_STATE) == sc.STATE_FAILED:
            lane.marks.append(_failure(log))

    def finish(self) -> list[Lane]:
        for key, lane in self.lanes.items():
            if self.ranks[key]:
                lane.rank = self.ranks[key].most_common(1)[0][0]
            # Agent steps first, so that rendezvous rounds are drawn over them.
            lane.bars.sort(key=lambda b: (b.kind != "agent", b.start_ns))
            lane.marks.sort(key=lambda m: m.time_ns)
        return sorted(self.lanes.values(), key=lambda lane: (lane.rank < 0, lane.rank, lane.key))


def _build(run_id: str, logs: list[LogItem], spans: list[SpanItem]) -> JobTimeline:
    builder = _Builder()
    for s in spans:
        builder.add_span(s)
    for log in logs:
        builder.add_log(log)
    lanes = builder.finish()
    trace_ids = {s["trace_id"] for s in spans} | {log["trace_id"] for log in logs}
    trace_ids.discard("")
    job_state = builder.job_state
    if not job_state:
        states = {lane.state for lane in lanes}
        job_state = (
            sc.STATE_FAILED
            if sc.STATE_FAILED in states
            else (states.pop() if len(states) == 1 else "")
        )
    return JobTimeline(
        run_id=run_id,
        trace_id=min(trace_ids) if trace_ids else "",
        start_ns=min(builder.times, default=0),
        end_ns=max(builder.times, default=0),
        state=job_state or "UNKNOWN",
        lanes=lanes,
        records=len(logs),
        spans=len(spans),
        notes=_notes(lanes, spans, trace_ids),
    )


def _notes(lanes: list[Lane], spans: list[SpanItem], trace_ids: set[str]) -> list[str]:
    """What a reader should know about gaps in the data."""
    notes = [
        f"{lane.title}: no rendezvous or agent spans (only log records)"
        for lane in lanes
        if not any(b.kind in ("round", "agent") for b in lane.bars)
    ]
    span_ids = {s["span_id"] for s in spans}
    missing = sum(1 for s in spans if s["parent_span_id"] and s["parent_span_id"] not in span_ids)
    if missing:
        notes.append(
            f"{missing} span(s) name a parent that was not exported "
            "(the rank-0 agent that emits the job span may have died)"
        )
    unfinished = sum(b.unfinished for lane in lanes for b in lane.bars)
    if unfinished:
        notes.append(f"{unfinished} span(s) were still open when their node shut down")
    if len(trace_ids) > 1:
        notes.append(f"{len(trace_ids)} trace ids for one run_id (mixed exporters?)")
    return notes


def _bar(s: SpanItem) -> Bar:
    a = s["attributes"]
    name = s["name"]
    if name.startswith(sc.ROUND_SPAN):
        kind, label = "round", f"round {a.get(sc.ROUND, '?')}"
    elif name.startswith(sc.AGENT_SPAN_PREFIX):
        kind, label = "agent", name.removeprefix(sc.AGENT_SPAN_PREFIX)
    elif name.startswith(sc.WORKER_SPAN):
        kind, label = "worker", "worker " + name.removeprefix(sc.WORKER_SPAN).strip()
    else:
        kind, label = "other", name
    return Bar(
        kind=kind,
        label=label,
        start_ns=s["start"],
        end_ns=max(s["end"], s["start"]),
        state=str(a.get(sc.NODE_STATE, "")),
        error=s["status_code"] == sc.STATUS_ERROR,
        unfinished=bool(a.get(sc.UNFINISHED, False)),
        end_reason=str(a.get(sc.END_REASON, "")),
        message=s["status_message"],
        attributes=dict(a),
        events=[dict(e) for e in s["events"]],
    )


def _failure(log: LogItem) -> Mark:
    a = log["attributes"]
    who = a.get(sc.GLOBAL_RANK)
    subject = f"worker {who}" if who is not None else str(a.get(sc.EVENT_KIND, ""))
    message = str(a.get(sc.EXCEPTION_MESSAGE) or log["body"] or log["event_name"])
    exc_type = str(a.get(sc.EXCEPTION_TYPE, sc.STATE_FAILED))
    what = message if message.startswith(exc_type.rsplit(".", 1)[-1]) else f"{exc_type}: {message}"
    return Mark(
        kind="failure",
        time_ns=log["time_unix_nano"],
        label=f"{subject}: {what}",
        state=str(a.get(sc.NODE_STATE, "")),
        error=True,
        attributes=dict(a),
    )


def load(paths: list[Path]) -> Received:
    """Read OTLP JSON files into one :class:`Received`."""
    received = Received()
    for path in paths:
        read_otlp_json(path, into=received)
    return received
