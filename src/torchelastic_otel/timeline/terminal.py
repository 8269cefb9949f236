"""The timeline in a terminal, with rich colours.

Small jobs (up to ``SUMMARY_NODES`` nodes) are drawn as lanes: a row of cycles,
then per node a rendezvous row (the rendezvous, the agent's rank assignment,
failed or still-waiting attempts) and one row per worker across time, coloured by
how it ended: ✗ red the worker that failed with its own error, ✗ magenta a worker
its agent killed because of it, ↻ yellow restarted, ✓ green succeeded. Tables of
failures, cycles and each node's rendezvous follow.

Larger jobs get a summary that fits a screen whatever the node count: a row per
cycle, failures grouped by error, nodes missing between rounds, late joiners,
nodes still waiting; every list capped. ``nodes`` draws chosen nodes' lanes.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from torchelastic_otel import semconv as sc
from torchelastic_otel.timeline import goodput
from torchelastic_otel.timeline._text import secs
from torchelastic_otel.timeline.diagnose import restart_budget
from torchelastic_otel.timeline.model import (
    LATE_JOIN_S,
    Attempt,
    Failure,
    JobTimeline,
    Node,
    Worker,
)

LABEL_WIDTH = 24
LIST_CAP = 5
"""Items shown of any list in the summary before "... and N more"."""

_STATE_STYLE = {
    sc.STATE_SUCCEEDED: "bold green",
    sc.STATE_FAILED: "bold red",
    sc.UNKNOWN_STATE: "yellow",
}
_OUTCOME_STYLE = {
    sc.OUTCOME_SUCCEEDED: "green",
    sc.OUTCOME_FAILED: "red",
    sc.OUTCOME_RESTARTED: "yellow",
    sc.OUTCOME_UNFINISHED: "dim",
    sc.OUTCOME_TERMINATED: "yellow",
    sc.OUTCOME_LOST: "bold red",
}
_OUTCOME_MARK = {
    sc.OUTCOME_SUCCEEDED: "✓",
    sc.OUTCOME_FAILED: "✗",
    sc.OUTCOME_RESTARTED: "↻",
    sc.OUTCOME_UNFINISHED: "…",
    sc.OUTCOME_TERMINATED: "⊘",
    sc.OUTCOME_LOST: "†",
}
_WORKER_STYLE = {
    "failed": ("━", "red", "✗", "bold red"),
    "killed": ("━", "magenta", "✗", "magenta"),
    "restarted": ("━", "yellow", "↻", "yellow"),
    "succeeded": ("━", "green", "✓", "green"),
    "open": ("┄", "dim", "", "dim"),
}


def _plural(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _capped(items: list[str], cap: int = LIST_CAP) -> str:
    text = ", ".join(items[:cap])
    return text + (f" ... and {len(items) - cap:,} more" if len(items) > cap else "")


def _sec_ms(ms: float | None) -> str:
    return "?" if ms is None else f"{ms / 1000:.1f}s"


def _ms(ms: float | None) -> str:
    if ms is None:
        return "?"
    return f"{ms / 1000:.1f} s" if ms >= 10_000 else f"{ms:.0f} ms"


class _Scale:
    def __init__(self, job: JobTimeline, width: int) -> None:
        self.t0 = job.start_ns
        self.span = max(1, job.end_ns - job.start_ns)
        self.width = max(10, width)

    def col(self, t_ns: int) -> int:
        return min(self.width - 1, max(0, int((t_ns - self.t0) / self.span * self.width)))


class _Row:
    def __init__(self, scale: _Scale) -> None:
        self.scale = scale
        self.cells: list[tuple[str, str]] = [(" ", "")] * scale.width

    def bar(self, start_ns: int, end_ns: int, char: str, style: str) -> tuple[int, int]:
        first, last = self.scale.col(start_ns), self.scale.col(end_ns)
        for c in range(first, last + 1):
            self.cells[c] = (char, style)
        return first, last

    def put(self, col: int, char: str, style: str) -> None:
        self.cells[col] = (char, style)

    def write(self, col: int, text: str, style: str, limit: int) -> None:
        for i, ch in enumerate(text[: max(0, limit)]):
            if col + i < len(self.cells):
                self.cells[col + i] = (ch, style)

    def text(self, label: str, label_style: str = "") -> Text:
        out = Text(f"  {label:<{LABEL_WIDTH - 2}}"[:LABEL_WIDTH], style=label_style)
        for char, style in self.cells:
            out.append(char, style=style)
        return out


def _worker_row(workers: list[Worker], scale: _Scale) -> _Row:
    row = _Row(scale)
    for w in workers:
        char, style, mark, mark_style = _WORKER_STYLE[w.result]
        _, last = row.bar(w.start_ns, w.end_ns, char, style)
        if mark:
            row.put(last, mark, mark_style)
    return row


def _rendezvous_row(node: Node, scale: _Scale) -> _Row:
    row = _Row(scale)
    for part in node.cycles:
        rdzv_end = part.rendezvous_end_ns
        row.bar(part.start_ns, rdzv_end, "█", "blue")
        if part.assign_ms:
            row.bar(rdzv_end, rdzv_end + int(part.assign_ms * 1e6), "▒", "cyan")
    for attempt in node.attempts:
        _attempt(row, attempt)
    return row


def _attempt(row: _Row, attempt: Attempt) -> None:
    if attempt.failed:
        _, last = row.bar(attempt.start_ns, attempt.end_ns, "━", "red")
        row.put(last, "✗", "bold red")
    else:
        _, last = row.bar(attempt.start_ns, attempt.end_ns, "┄", "yellow")
        row.put(last, "…", "bold yellow")


def _cycle_row(job: JobTimeline, scale: _Scale) -> _Row:
    row = _Row(scale)
    cycles = job.cycles
    for i, cycle in enumerate(cycles):
        style = _OUTCOME_STYLE.get(cycle.outcome, "dim")
        # Cycles overlap (the failing node restarts first): end each where the next starts.
        end = min(cycle.end_ns, cycles[i + 1].start_ns) if i + 1 < len(cycles) else cycle.end_ns
        first, last = row.bar(cycle.start_ns, end, "━", style)
        if i + 1 < len(cycles) and last > first and scale.col(cycles[i + 1].start_ns) == last:
            last -= 1
        row.write(first, cycle.label, f"bold {style}", last - first)
        row.put(last, _OUTCOME_MARK.get(cycle.outcome, "?"), f"bold {style}")
    return row


def _lane_block(node: Node, scale: _Scale) -> list[Text]:
    head = Text(node.title, style="bold")
    head.append(f"  {node.state}", style=_STATE_STYLE.get(node.state, "yellow"))
    if node.left:
        lost = node.left.startswith("lost")
        head.append(f"  {node.left}", style="bold red" if lost else "yellow")
    if node.waiting is not None:
        head.append("  waiting in a rendezvous", style="bold yellow")
    rows = [head, _rendezvous_row(node, scale).text("rendezvous", "bold")]
    # A row per local rank (a worker slot): its global rank changes when nodes leave.
    every = [w for part in node.cycles for w in part.workers]
    by_local = all(w.local_rank >= 0 for w in every)
    workers: dict[int, list[Worker]] = defaultdict(list)
    for w in every:
        workers[w.local_rank if by_local else w.global_rank].append(w)
    for key in sorted(workers):
        ranks = "/".join(str(r) for r in dict.fromkeys(w.global_rank for w in workers[key]))
        rows.append(_worker_row(workers[key], scale).text(f"worker {ranks}"))
    return rows


def _axis(job: JobTimeline, scale: _Scale) -> Text:
    text = Text(" " * LABEL_WIDTH, style="dim")
    ticks = 4
    line = [" "] * scale.width
    for i in range(ticks + 1):
        col = min(scale.width - 1, round(i * (scale.width - 1) / ticks))
        label = f"{job.duration_s * i / ticks:.1f}s"
        start = max(0, min(col, scale.width - len(label)))
        for j, ch in enumerate(label[: scale.width]):
            line[start + j] = ch
    text.append("".join(line), style="dim")
    return text


def _legend() -> Text:
    legend = Text("  ")
    for char, style, what in (
        ("█", "blue", "rendezvous"),
        ("▒", "cyan", "assign ranks"),
        ("━✓", "green", "succeeded"),
        ("━↻", "yellow", "restarted"),
        ("━✗", "red", "failed"),
        ("━✗", "magenta", "killed by its agent"),
        ("┄…", "yellow", "waiting"),
    ):
        legend.append(char, style=style)
        legend.append(f" {what}  ")
    return legend


def _header(job: JobTimeline) -> list[RenderableType]:
    roots = len(job.root_causes)
    killed = len(job.worker_failures) - roots
    rdzv = sum(1 for f in job.failures if f.kind == "rendezvous")
    parts = [
        secs(job.duration_s),
        _plural(len(job.nodes), "node"),
        _plural(job.workers, "worker"),
        f"{_plural(len(job.cycles), 'cycle')} ({_plural(job.restarts, 'restart')})",
        _plural(roots, "worker failure") + (f" (+{killed:,} killed)" if killed else ""),
        _plural(rdzv, "rendezvous error"),
    ]
    if job.waiting:
        parts.append(f"{_plural(len(job.waiting), 'node')} waiting")
    lines: list[RenderableType] = [Text(" · ".join(parts), style="bold")]
    if job.goodput is not None and job.goodput.wall_s > 0:
        lines.append(Text(goodput.describe(job.goodput, LIST_CAP)))
    budget = restart_budget(job)
    if budget:
        lines.append(Text(budget))
    lines.append(
        Text(
            f"run trace {job.trace_id or '?'}  ·  {job.records:,} records, {job.spans:,} spans",
            style="dim",
        )
    )
    return lines


def _at(job: JobTimeline, t_ns: int) -> str:
    return f"+{(t_ns - job.start_ns) / 1e9:.2f}s"


def _failures_table(job: JobTimeline) -> Table:
    table = Table(title="failures", title_justify="left", box=None)
    table.add_column("at", justify="right", style="dim")
    table.add_column("round", justify="right")
    table.add_column("node")
    table.add_column("what", overflow="fold")
    for f in job.failures:
        table.add_row(
            _at(job, f.time_ns),
            "" if f.round is None else str(f.round),
            f.node.title,
            _failure_text(f, job),
        )
    return table


def _failure_text(f: Failure, job: JobTimeline) -> Text:
    if not f.killed:
        return Text(f.label, style="bold red")
    cause = next(
        (r for r in job.root_causes if r.round == f.round and r.node is f.node),
        next((r for r in job.root_causes if r.round == f.round), None),
    )
    because = f" because {cause.subject} failed" if cause is not None else ""
    return Text(f"{f.subject}: killed by {f.signal or 'its agent'}{because}", style="magenta")


def _of(n: int, expected: int | None) -> str:
    """``n``, or ``n/expected`` when they differ."""
    return str(n) if expected is None or expected == n else f"{n}/{expected}"


def _cycles_table(job: JobTimeline, width: int) -> Table:
    table = Table(title="cycles", title_justify="left", box=None, padding=(0, 1))
    # Narrow terminals lose the slowest node's name (the HTML page has it).
    slowest_column = width >= 110
    start_column = width >= 90
    columns = ["round", "start"] if start_column else ["round"]
    columns += ["took", "outcome", "nodes", "workers", "restarts", "rdzv p50/max"]
    columns += ["slowest"] if slowest_column else []
    columns += ["up"]
    for column in columns:
        last = column == "slowest"
        table.add_column(
            column,
            justify="left" if column in ("outcome", "slowest") else "right",
            no_wrap=True,
            overflow="ellipsis" if last else "crop",
            max_width=max(8, width - 92) if last else None,
        )
    table.caption = (
        "nodes, workers: joined (/expected when fewer) · restarts: left/allowed on the node "
        "closest to its limit · "
        "rdzv: the nodes' rendezvous durations"
        + (", slowest node" if slowest_column else "")
        + " · up: from the first rendezvous start until every node's workers were started"
        + (
            " · *: no cycle root span, the nodes' own outcome"
            if any(not c.outcome_from_root for c in job.cycles)
            else ""
        )
    )
    table.caption_justify = "left"
    table.caption_style = "dim"
    for c in job.cycles:
        slowest = c.slowest
        budget = (
            f"{c.remaining_restarts}/{c.max_restarts}"
            if c.remaining_restarts is not None and c.max_restarts is not None
            else "?"
        )
        up = c.workers_started_s
        outcome = Text(c.outcome, style=_OUTCOME_STYLE.get(c.outcome, ""))
        if not c.outcome_from_root:
            outcome.append("*", style="bold yellow")
        cells: list[str | Text] = [c.label]
        if start_column:
            cells.append(f"+{(c.start_ns - job.start_ns) / 1e9:.1f}s")
        cells += [
            secs(c.duration_s),
            outcome,
            _of(len(c.parts), c.nodes_expected),
            _of(c.workers, c.workers_expected),
            budget,
            f"{_sec_ms(c.rendezvous_p50_ms)}/{_sec_ms(slowest[0] if slowest else None)}",
        ]
        if slowest_column:
            cells.append(f"{slowest[1].host} (rank {slowest[1].rank})" if slowest else "")
        cells.append("?" if up is None else f"{up:.1f}s")
        table.add_row(*cells)
    return table


def _rendezvous_table(job: JobTimeline) -> Table:
    table = Table(title="rendezvous", title_justify="left", box=None)
    for column in ("node", "round", "start", "took", "result"):
        table.add_column(column, justify="right" if column in ("start", "took") else "left")
    rows: list[tuple[int, Node, str, int, str, str]] = []
    for node in job.nodes:
        for part in node.cycles:
            result = "joined" + (
                " late"
                if any(n is node for c in job.cycles if c.round == part.round for n, _ in c.late)
                else ""
            )
            rows.append(
                (
                    part.start_ns,
                    node,
                    str(part.round),
                    part.start_ns,
                    _ms(part.rendezvous_ms),
                    result,
                )
            )
        for a in node.attempts:
            took = _ms((a.end_ns - a.start_ns) / 1e6)
            result = "FAILED" if a.failed else ("waiting" if a.waiting else "went silent")
            rows.append((a.start_ns, node, "-", a.start_ns, took, result))
    for _, node, round_, start, took, result in sorted(rows, key=lambda r: (r[1].rank, r[0])):
        style = "red" if result == "FAILED" else ("yellow" if result != "joined" else "")
        table.add_row(node.title, round_, _at(job, start), took, Text(result, style=style))
    return table


def _node_lists(job: JobTimeline, cap: int) -> list[RenderableType]:
    """Missing nodes, late joiners, nodes still waiting: what to look at first."""
    out: list[RenderableType] = []
    for m in job.missing:
        before = f"round {m.before}" if m.before is not None else "the rendezvous still waiting"
        line = Text(
            f"missing: {_plural(len(m.nodes), 'node')} of round {m.after} not in {before}: ",
            style="bold red",
        )
        line.append(
            _capped(
                [
                    f"{n.short} ({n.left + ', ' if n.left else ''}last seen {_at(job, n.end_ns)})"
                    for n in m.nodes
                ],
                cap,
            ),
            style="red",
        )
        out.append(line)
    for cycle in job.cycles:
        if cycle.late:
            line = Text(f"joined late: round {cycle.round}: ", style="bold yellow")
            line.append(
                _capped([f"{n.short} (+{s:.1f} s)" for n, s in cycle.late], cap), style="yellow"
            )
            line.append(
                f" started the rendezvous {LATE_JOIN_S:g} s or more after the round's median "
                "start: the others waited"
            )
            out.append(line)
    waiting = job.waiting
    if waiting:
        line = Text(
            f"waiting at exit: {_plural(len(waiting), 'node')} still in a rendezvous: ",
            style="bold yellow",
        )
        items = []
        for n in waiting:
            attempt = n.waiting
            since = f" since {_at(job, attempt.start_ns)}" if attempt is not None else ""
            items.append(f"{n.short}{since}")
        line.append(_capped(items, cap), style="yellow")
        out.append(line)
    return out


def _failure_groups(job: JobTimeline, cap: int) -> Table:
    groups: dict[str, list[Failure]] = defaultdict(list)
    for f in job.failures:
        groups[f.group].append(f)
    table = Table(title="failures, by error", title_justify="left", box=None)
    table.add_column("count", justify="right")
    table.add_column("rounds")
    table.add_column("error", overflow="fold")
    table.add_column("nodes", overflow="fold")
    ordered = sorted(
        groups.values(), key=lambda g: (g[0].killed, g[0].kind != "worker", g[0].time_ns)
    )
    for group in ordered[: cap * 2]:
        first = group[0]
        rounds = sorted({f.round for f in group if f.round is not None})
        nodes: list[Node] = []
        for f in group:
            if all(f.node is not n for n in nodes):
                nodes.append(f.node)
        what = (
            Text(
                f"killed by {first.signal or 'its agent'} (after a failure on its node)",
                style="magenta",
            )
            if first.killed
            else Text(f"{first.kind}: {first.what}", style="bold red")
        )
        table.add_row(
            f"{len(group):,}",
            _rounds(rounds),
            what,
            _capped([n.short for n in nodes], 3),
        )
    if len(ordered) > cap * 2:
        table.add_row("", "", f"... and {len(ordered) - cap * 2:,} more kinds of error", "")
    return table


def _rounds(rounds: list[int]) -> str:
    if not rounds:
        return "-"
    if rounds == list(range(rounds[0], rounds[-1] + 1)) and len(rounds) > 2:
        return f"{rounds[0]}-{rounds[-1]}"
    return ",".join(str(r) for r in rounds)


def _notes(job: JobTimeline, cap: int) -> list[Text]:
    out = [Text(f"note: {note}", style="yellow") for note in job.notes[:cap]]
    if len(job.notes) > cap:
        out.append(Text(f"note: ... and {len(job.notes) - cap} more", style="yellow"))
    return out


def render_lanes(job: JobTimeline, nodes: Iterable[Node], width: int) -> list[RenderableType]:
    """The axis, the cycles row and a lane per node in ``nodes``."""
    scale = _Scale(job, width - LABEL_WIDTH - 4)
    parts: list[RenderableType] = [_axis(job, scale), _cycle_row(job, scale).text("cycles", "bold")]
    for node in nodes:
        parts.extend(_lane_block(node, scale))
    parts.append(_legend())
    return parts


def render(job: JobTimeline, width: int = 100, summary: bool | None = None) -> RenderableType:
    """A panel with the whole job: lanes for small jobs, else a summary."""
    large = job.large if summary is None else summary
    title = Text(f"run {job.run_id}  ", style="bold")
    title.append(job.state, style=_STATE_STYLE.get(job.state, "yellow"))
    parts: list[RenderableType] = _header(job)
    if not large:
        parts.extend(render_lanes(job, job.nodes, width))
        if job.failures:
            parts.append(_failures_table(job))
        if job.cycles:
            parts.append(_cycles_table(job, width))
        rdzv = _rendezvous_table(job)
        if rdzv.row_count:
            parts.append(rdzv)
        parts.extend(_node_lists(job, cap=len(job.nodes)))
        parts.extend(_notes(job, cap=len(job.notes)))
    else:
        if job.cycles:
            parts.append(_cycles_table(job, width))
        if job.failures:
            parts.append(_failure_groups(job, LIST_CAP))
        parts.extend(_node_lists(job, LIST_CAP))
        parts.extend(_notes(job, LIST_CAP))
        parts.append(
            Text(
                f"{_plural(len(job.nodes), 'node')}: a summary. --node HOST|RANK draws a "
                "node's lanes; --html FILE writes every node's lanes, searchable.",
                style="dim",
            )
        )
    return Panel(Group(*parts), title=title, title_align="left", width=width)


def render_nodes(job: JobTimeline, nodes: list[Node], width: int = 100) -> RenderableType:
    """Chosen nodes' lanes, with their failures (for ``--node`` on a large job)."""
    title = Text(f"run {job.run_id}: {_plural(len(nodes), 'node')}", style="bold")
    parts: list[RenderableType] = render_lanes(job, nodes, width)
    chosen = {id(n) for n in nodes}
    failures = [f for f in job.failures if id(f.node) in chosen]
    if failures:
        parts.append(_failures_table(replace(job, nodes=nodes, failures=failures)))
    return Panel(Group(*parts), title=title, title_align="left", width=width)


def print_timelines(
    jobs: list[JobTimeline],
    console: Console | None = None,
    width: int | None = None,
    summary: bool | None = None,
    nodes: list[str] | None = None,
) -> None:
    """Print every job's timeline (and, with ``nodes``, those nodes' lanes)."""
    console = console or Console()
    w = width or min(console.width, 140)
    if not jobs:
        console.print("[yellow]no torchelastic data found[/yellow]")
    for job in jobs:
        console.print(render(job, width=w, summary=summary))
        if nodes:
            chosen: list[Node] = []
            for query in nodes:
                for node in job.node(query):
                    if all(node is not c for c in chosen):
                        chosen.append(node)
            chosen.sort(key=job.nodes.index)
            if chosen:
                console.print(render_nodes(job, chosen[:16], width=w))
            else:
                console.print(f"[yellow]no node matches {', '.join(nodes)}[/yellow]")
