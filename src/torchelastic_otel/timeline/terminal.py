"""The timeline in a terminal: nodes by time, with rich colours.

Each node is a block: one row for its rendezvous (rounds and the agent's
RENDEZVOUS / ASSIGN_WORKER_RANKS steps), one row per worker rank. Failures are red
crosses, restarted workers yellow, open spans dim. A table of failures (with their
error) and one of rendezvous rounds follow.
"""

from collections import defaultdict

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from torchelastic_otel import semconv as sc
from torchelastic_otel.timeline.model import Bar, JobTimeline, Lane

LABEL_WIDTH = 24

_STATE_STYLE = {
    sc.STATE_SUCCEEDED: "bold green",
    sc.STATE_FAILED: "bold red",
    sc.UNKNOWN_STATE: "yellow",
}


def _bar_style(bar: Bar) -> tuple[str, str]:
    """(character, style) for a bar."""
    if bar.error or bar.state == sc.STATE_FAILED:
        return "━", "red"
    if bar.unfinished:
        return "┄", "dim"
    if bar.kind == "round":
        return "█", "blue"
    if bar.kind == "agent":
        return "▒", "cyan"
    if bar.end_reason == sc.END_RESTARTED or bar.state == sc.STATE_TERMINATED:
        return "━", "yellow"
    return "━", "green"


class _Scale:
    def __init__(self, job: JobTimeline, width: int) -> None:
        self.t0 = job.start_ns
        self.span = max(1, job.end_ns - job.start_ns)
        self.width = max(10, width)

    def col(self, t_ns: int) -> int:
        return min(self.width - 1, max(0, int((t_ns - self.t0) / self.span * self.width)))


def _row(label: str, bars: list[Bar], marks: list[tuple[int, str, str]], scale: _Scale) -> Text:
    cells: list[tuple[str, str]] = [(" ", "")] * scale.width
    for bar in bars:
        char, style = _bar_style(bar)
        first, last = scale.col(bar.start_ns), scale.col(bar.end_ns)
        for c in range(first, last + 1):
            cells[c] = (char, style)
        if bar.kind == "worker" and not bar.unfinished:
            end_char = "✗" if bar.error or bar.state == sc.STATE_FAILED else "↻"
            if bar.state == sc.STATE_SUCCEEDED:
                end_char = "✓"
            cells[last] = (end_char, style)
    for col, char, style in marks:
        cells[col] = (char, style)
    text = Text(f"  {label:<{LABEL_WIDTH - 2}}", style="bold" if label.startswith("rdzv") else "")
    for char, style in cells:
        text.append(char, style=style)
    return text


def _lane_block(lane: Lane, scale: _Scale) -> list[Text]:
    head = Text(f"{lane.title}", style="bold")
    head.append(f"  {lane.state}", style=_STATE_STYLE.get(lane.state, "yellow"))
    rows = [head]
    rdzv = [b for b in lane.bars if b.kind in ("round", "agent")]
    rdzv_marks = [
        (scale.col(m.time_ns), "✗", "bold red")
        for m in lane.marks
        if m.kind == "failure" and m.attributes.get(sc.EVENT_KIND) == sc.KIND_RENDEZVOUS
    ]
    rows.append(_row("rendezvous", rdzv, rdzv_marks, scale))
    workers: dict[str, list[Bar]] = defaultdict(list)
    for bar in lane.bars:
        if bar.kind == "worker":
            workers[bar.label].append(bar)
    for label in sorted(workers, key=_rank_order):
        rows.append(_row(label, workers[label], [], scale))
    return rows


def _plural(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _rank_order(label: str) -> tuple[int, str]:
    tail = label.rsplit(" ", 1)[-1]
    return (int(tail), label) if tail.isdigit() else (1 << 30, label)


def _axis(job: JobTimeline, scale: _Scale) -> Text:
    text = Text(" " * LABEL_WIDTH, style="dim")
    ticks = 4
    line = [" "] * scale.width
    for i in range(ticks + 1):
        col = min(scale.width - 1, round(i * (scale.width - 1) / ticks))
        label = f"{job.duration_s * i / ticks:.1f}s"
        start = min(col, scale.width - len(label))
        for j, ch in enumerate(label):
            line[start + j] = ch
    text.append("".join(line), style="dim")
    return text


def render(job: JobTimeline, width: int = 100) -> RenderableType:
    """A panel with the whole job: header, lanes, failures and rounds."""
    scale = _Scale(job, width - LABEL_WIDTH - 4)
    workers = job.worker_labels
    failures = job.failures
    worker_failures = len(job.worker_failures)
    rdzv_errors = len(failures) - worker_failures
    title = Text(f"run {job.run_id}  ", style="bold")
    title.append(job.state, style=_STATE_STYLE.get(job.state, "yellow"))
    summary = Text(
        f"{job.duration_s:.1f} s · {len(job.lanes)} nodes · {len(workers)} workers · "
        f"{_plural(worker_failures, 'worker failure')} · "
        f"{_plural(rdzv_errors, 'rendezvous error')} · {_plural(job.restarts, 'restart')}",
        style="bold",
    )
    parts: list[RenderableType] = [
        summary,
        Text(f"trace id {job.trace_id or '?'}  ·  {job.records} records, {job.spans} spans", "dim"),
        _axis(job, scale),
    ]
    for lane in job.lanes:
        parts.extend(_lane_block(lane, scale))
    legend = Text("  ")
    for char, style, what in (
        ("█", "blue", "rendezvous round"),
        ("▒", "cyan", "agent step"),
        ("━", "green", "worker"),
        ("━", "yellow", "restarted"),
        ("━", "red", "failed"),
        ("┄", "dim", "still open"),
    ):
        legend.append(char * 2, style=style)
        legend.append(f" {what}   ")
    parts.append(legend)
    if failures:
        table = Table(title="failures", title_justify="left", expand=False, box=None)
        table.add_column("at", justify="right", style="dim")
        table.add_column("node")
        table.add_column("what", style="red", overflow="fold")
        for lane, mark in failures:
            table.add_row(f"+{(mark.time_ns - job.start_ns) / 1e9:.2f}s", lane.title, mark.label)
        parts.append(table)
    rounds = Table(title="rendezvous rounds", title_justify="left", box=None)
    for column in ("node", "step", "start", "took", "result"):
        rounds.add_column(column, justify="right" if column in ("start", "took") else "left")
    for lane, bar, result in job.rendezvous_rounds():
        rounds.add_row(
            lane.title,
            bar.label,
            f"+{(bar.start_ns - job.start_ns) / 1e9:.2f}s",
            f"{bar.duration_s * 1000:.0f} ms",
            result,
        )
    if rounds.row_count:
        parts.append(rounds)
    for note in job.notes:
        parts.append(Text(f"note: {note}", style="yellow"))
    return Panel(Group(*parts), title=title, title_align="left", width=width)


def print_timelines(
    jobs: list[JobTimeline], console: Console | None = None, width: int | None = None
) -> None:
    """Print every job's timeline."""
    console = console or Console()
    w = width or min(console.width, 140)
    if not jobs:
        console.print("[yellow]no torchelastic data found[/yellow]")
    for job in jobs:
        console.print(render(job, width=w))
