"""The timeline as one self-contained HTML file: inline CSS, script and SVG.

Nothing is fetched from the network, so the file works offline and can be
attached to a ticket. Every job carries its nodes, cycles and workers as compact
JSON; a small script draws the lanes from it:

* a small job (up to ``SUMMARY_NODES`` nodes): every node's lanes, drawn on load;
* a large one: the same summary as the terminal's (cycles, failures by error,
  missing nodes, late joiners, nodes still waiting), an overview (per cycle a
  strip of every node coloured by its outcome), and a searchable node list;
  clicking a node (in the list, the strip or a summary) draws its lanes.

Hovering a bar shows what it is; clicking a cycle zooms the lanes to it.

The style and the script are package data (timeline/static/timeline.css and
timeline.js), inlined in every page.
"""

import functools
import html
import itertools
import json
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

from torchelastic_otel import semconv as sc
from torchelastic_otel.timeline import goodput
from torchelastic_otel.timeline.diagnose import restart_budget
from torchelastic_otel.timeline.model import LATE_JOIN_S, Failure, JobTimeline, Node

# The page's style and script: package data (timeline/static/), inlined in every page.
_STATIC = resources.files("torchelastic_otel.timeline").joinpath("static")


@functools.cache
def _static(name: str) -> str:
    """``timeline/static/<name>``, as inlined in the page."""
    return _STATIC.joinpath(name).read_text(encoding="utf-8")


_LEGEND = (
    ("rdzv", "#0969da", "rendezvous"),
    ("assign", "#a8d1ff", "assign ranks"),
    ("succeeded", "#2da44e", "succeeded"),
    ("restarted", "#d4a72c", "restarted"),
    ("failed", "#cf222e", "failed (own error)"),
    ("killed", "#f4a4a8", "killed by its agent"),
    ("waiting", "#fff1c2", "waiting in a rendezvous"),
    ("open", "#afb8c1", "still open"),
)
_LIST_CAP = 8
_SMALL_ATTRS_NODES = 16  # below this, bars carry all their attributes for the tooltip


def _ms(job: JobTimeline, t_ns: int) -> float:
    return round((t_ns - job.start_ns) / 1e6, 1)


def _job_data(job: JobTimeline) -> dict[str, Any]:
    """The compact JSON the script draws from (offsets in ms from the job's start)."""
    attrs = not job.large
    index = {id(n): i for i, n in enumerate(job.nodes)}
    tags: dict[int, list[str]] = defaultdict(list)
    for f in job.root_causes:
        tags[id(f.node)].append("root cause")
    for m in job.missing:
        for n in m.nodes:
            tags[id(n)].append("missing")
    for _, n, _ in job.late:
        tags[id(n)].append("late")
    for n in job.waiting:
        tags[id(n)].append("waiting")
    errors: dict[tuple[int, int | None, int | None], dict[str, Any]] = {}
    if attrs:  # a failed worker's tooltip gets its error record's exception.* too
        for f in job.worker_failures:
            errors[id(f.node), f.round, f.global_rank] = {
                k: v for k, v in f.attributes.items() if k.startswith(sc.EXCEPTION_PREFIX)
            }
    nodes = [
        _packed_node(job, n, sorted(set(tags.get(id(n), []))))
        if job.large
        else _node_data(job, n, errors, attrs, sorted(set(tags.get(id(n), []))))
        for n in job.nodes
    ]
    if job.large:
        first = job.root_causes[:1] or job.failures[:1]
        initial = [index[id(first[0].node)]] if first else []
    else:
        initial = list(range(len(job.nodes)))
    return {
        "dur": _ms(job, job.end_ns),
        # A cycle is named by its key, as node cycles name theirs: a round, or a
        # repeated restart count such as "0.1" (the script keys cycles by it, so two
        # cycles of round 0 stay two).
        "cycles": [
            [
                c.key.id_key if c.key is not None else c.round,
                _ms(job, c.start_ns),
                _ms(job, c.end_ns),
                c.outcome,
                {"nodes": f"{len(c.parts)}/{c.nodes_expected or '?'}", "workers": c.workers},
            ]
            for c in job.cycles
        ],
        "nodes": nodes,
        "initial": initial,
        # Large jobs: nodes as _packed_node writes them (the script unpacks them).
        "packed": 1 if job.large else 0,
    }


def _node_data(
    job: JobTimeline,
    n: Node,
    errors: dict[tuple[int, int | None, int | None], dict[str, Any]],
    attrs: bool,
    tags: list[str],
) -> dict[str, Any]:
    """A node as the script draws it: cycles with their workers, attempts, failures."""
    cycles = []
    for c in n.cycles:
        workers = [
            [
                w.global_rank,
                _ms(job, w.start_ns),
                _ms(job, w.end_ns),
                w.result,
                (f"killed by {w.signal}" if w.killed else w.message)[:200],
                {**w.attributes, **errors.get((id(n), c.round, w.global_rank), {})}
                if attrs
                else None,
                w.local_rank,
            ]
            for w in c.workers
        ]
        cycles.append(
            [
                c.cycle_key.id_key,
                _ms(job, c.start_ns),
                _ms(job, c.end_ns),
                c.outcome,
                None if c.rendezvous_ms is None else round(c.rendezvous_ms, 1),
                None if c.assign_ms is None else round(c.assign_ms, 1),
                workers,
                c.attributes if attrs else None,
            ]
        )
    return {
        "h": n.host,
        "p": n.pid,
        "r": n.rank,
        "s": n.state,
        "w": 1 if n.waiting is not None else 0,
        "c": cycles,
        "a": [
            [_ms(job, a.start_ns), _ms(job, a.end_ns), int(a.failed), a.message[:200]]
            for a in n.attempts
        ],
        "f": [[_ms(job, f.time_ns), f.round, f.label[:200]] for f in n.failures],
        "tags": tags,
    }


def _whole_ms(job: JobTimeline, t_ns: int) -> int:
    return round((t_ns - job.start_ns) / 1e6)


def _run(values: list[Any]) -> Any:
    """One value when all are the same (the common case), else the list."""
    return values[0] if values and all(v == values[0] for v in values) else values


def _packed_node(job: JobTimeline, n: Node, tags: list[str]) -> dict[str, Any]:
    """A node of a large job in a quarter of the bytes of :func:`_node_data`.

    At 10,000 nodes x 8 workers the plain form is ~18 MB; what repeats is packed
    instead: times in whole milliseconds, a cycle's workers as columns, with
    consecutive ranks as their first one, starts as steps from the previous
    worker's, ends counted back from the cycle's end, and one result (or message)
    when all workers share it. Empty lists are left out. The script's ``unpack``
    turns it back into the plain form; tooltips carry no attributes at this size.
    """
    cycles = []
    for c in n.cycles:
        cycle: list[Any] = [
            c.cycle_key.id_key,
            _whole_ms(job, c.start_ns),
            _whole_ms(job, c.end_ns),
            c.outcome,
            None if c.rendezvous_ms is None else round(c.rendezvous_ms),
            None if c.assign_ms is None else round(c.assign_ms),
        ]
        cycle.append(_packed_workers(c.workers, job, cycle))
        cycles.append(cycle)
    node: dict[str, Any] = {"h": n.host, "p": n.pid, "r": n.rank, "s": n.state, "c": cycles}
    if n.waiting is not None:
        node["w"] = 1
    if n.attempts:
        node["a"] = [
            [_whole_ms(job, a.start_ns), _whole_ms(job, a.end_ns), int(a.failed), a.message[:200]]
            for a in n.attempts
        ]
    if n.failures:
        node["f"] = [[_whole_ms(job, f.time_ns), f.round, f.label[:200]] for f in n.failures]
    if tags:
        node["tags"] = tags
    return node


def _packed_workers(workers: list[Any], job: JobTimeline, cycle: list[Any]) -> list[Any]:
    """``[ranks, local ranks, start steps, ends back from the cycle's end, results, messages]``.

    ``cycle`` is the packed cycle: ``[key, start, end, outcome, ...]``. Results are
    left out when every worker's is the cycle's outcome, messages when all are empty.

    Example: 8 workers of ranks 40-47 that started within a millisecond and all
    restarted when the cycle did: ``[40, 0, [2025, 0, 0, 0, 0, 0, 1, 0], 0]``.
    """
    if not workers:
        return []
    _, start, end, outcome = cycle[:4]
    ranks = [w.global_rank for w in workers]
    local = [w.local_rank for w in workers]
    starts = [_whole_ms(job, w.start_ns) for w in workers]
    first, first_local = ranks[0], local[0]
    packed = [
        first if ranks == list(range(first, first + len(ranks))) else ranks,
        first_local if local == list(range(first_local, first_local + len(local))) else local,
        [starts[0] - start] + [b - a for a, b in itertools.pairwise(starts)],
        _run([end - _whole_ms(job, w.end_ns) for w in workers]),
        _run([w.result for w in workers]),
        _run([(f"killed by {w.signal}" if w.killed else w.message)[:200] for w in workers]),
    ]
    if packed[5] == "":
        packed.pop()
        if packed[4] == outcome:
            packed.pop()
    return packed


def _esc(text: object) -> str:
    return html.escape(str(text))


def _node_link(job: JobTimeline, node: Node, index: dict[int, int]) -> str:
    return (
        f'<span class="nodelink" data-node="{_esc(node.title)}" data-n="{index[id(node)]}">'
        f"{_esc(node.short)}</span>"
    )


def _capped_links(job: JobTimeline, nodes: list[Node], index: dict[int, int], cap: int) -> str:
    links = ", ".join(_node_link(job, n, index) for n in nodes[:cap])
    return links + (f" ... and {len(nodes) - cap:,} more" if len(nodes) > cap else "")


def _cycles_table(job: JobTimeline) -> str:
    rows = []
    for c in job.cycles:
        slowest = c.slowest
        p50 = c.rendezvous_p50_ms
        up = c.workers_started_s
        budget = (
            f"{c.remaining_restarts}/{c.max_restarts}"
            if c.remaining_restarts is not None and c.max_restarts is not None
            else "?"
        )
        rows.append(
            f'<tr class="cycle-row"><td class="num">{_esc(c.label)}</td>'
            f'<td class="num">+{(c.start_ns - job.start_ns) / 1e9:.2f}s</td>'
            f'<td class="num">{c.duration_s:.1f}s</td>'
            f'<td class="o-{_esc(c.outcome)}">{_esc(c.outcome)}'
            f"{'' if c.outcome_from_root else ' (no root span)'}</td>"
            f'<td class="num">{len(c.parts):,}/{c.nodes_expected or "?"}</td>'
            f'<td class="num">{c.workers:,}/{c.workers_expected or "?"}</td>'
            f'<td class="num">{budget}</td>'
            f'<td class="num">{"?" if p50 is None else f"{p50 / 1000:.2f}s"}</td>'
            f'<td class="num">{"?" if slowest is None else f"{slowest[0] / 1000:.2f}s"}</td>'
            f"<td>{'' if slowest is None else _esc(slowest[1].short)}</td>"
            f'<td class="num">{"?" if up is None else f"{up:.1f}s"}</td></tr>'
        )
    head = "".join(
        f'<th class="{"num" if num else ""}">{_esc(h)}</th>'
        for h, num in (
            ("round", True),
            ("start", True),
            ("took", True),
            ("outcome (rank 0)", False),
            ("nodes joined/expected", True),
            ("workers", True),
            ("restarts left", True),
            ("rendezvous p50", True),
            ("max", True),
            ("slowest node", False),
            ("workers up after", True),
        )
    )
    return f"<h2>Cycles</h2><table><tr>{head}</tr>{''.join(rows)}</table>"


def _failure_row(job: JobTimeline, f: Failure, index: dict[int, int]) -> str:
    if f.killed:
        cause = next((r for r in job.root_causes if r.round == f.round), None)
        because = f" because {cause.subject} failed" if cause is not None else ""
        what = f"{f.subject}: killed by {f.signal or 'its agent'}{because}"
    else:
        what = f.label
    return (
        f'<tr class="{"killed" if f.killed else "root"}">'
        f'<td class="num">+{(f.time_ns - job.start_ns) / 1e9:.2f}s</td>'
        f'<td class="num">{"" if f.round is None else f.round}</td>'
        f'<td>{_node_link(job, f.node, index)}</td><td class="what">{_esc(what)}</td></tr>'
    )


def _failures(job: JobTimeline, index: dict[int, int]) -> str:
    if not job.failures:
        return ""
    if not job.large:
        every = "".join(_failure_row(job, f, index) for f in job.failures)
        return (
            '<h2>Failures</h2><table class="failures"><tr><th class="num">at</th>'
            f'<th class="num">round</th><th>node</th><th>what</th></tr>{every}</table>'
        )
    groups: dict[str, list[Failure]] = defaultdict(list)
    for f in job.failures:
        groups[f.group].append(f)
    ordered = sorted(
        groups.values(), key=lambda g: (g[0].killed, g[0].kind != "worker", g[0].time_ns)
    )
    rows = []
    for group in ordered[: _LIST_CAP * 2]:
        first = group[0]
        nodes: list[Node] = []
        for f in group:
            if all(f.node is not n for n in nodes):
                nodes.append(f.node)
        rounds = sorted({f.round for f in group if f.round is not None})
        what = (
            f"killed by {first.signal or 'its agent'} (after a failure on its node)"
            if first.killed
            else f"{first.kind}: {first.what}"
        )
        rows.append(
            f'<tr class="{"killed" if first.killed else "root"}">'
            f'<td class="num">{len(group):,}</td>'
            f'<td>{_esc(",".join(map(str, rounds)) or "-")}</td><td class="what">{_esc(what)}</td>'
            f"<td>{_capped_links(job, nodes, index, 4)}</td></tr>"
        )
    more = (
        f'<tr><td colspan="4" class="hint">... and {len(ordered) - _LIST_CAP * 2} more kinds'
        "</td></tr>"
        if len(ordered) > _LIST_CAP * 2
        else ""
    )
    return (
        '<h2>Failures, by error</h2><table class="failures"><tr><th class="num">count</th>'
        f"<th>rounds</th><th>error</th><th>nodes</th></tr>{''.join(rows)}{more}</table>"
    )


def _alerts(job: JobTimeline, index: dict[int, int]) -> str:
    cap = _LIST_CAP if job.large else len(job.nodes)
    out = []
    for m in job.missing:
        before = f"round {m.before}" if m.before is not None else "the rendezvous still waiting"
        items = ", ".join(
            f"{_node_link(job, n, index)} ({_esc(n.left) + ', ' if n.left else ''}"
            f"last seen +{(n.end_ns - job.start_ns) / 1e9:.1f}s)"
            for n in m.nodes[:cap]
        )
        more = f" ... and {len(m.nodes) - cap:,} more" if len(m.nodes) > cap else ""
        out.append(
            f'<p class="alert missing"><b>missing:</b> {len(m.nodes):,} node(s) of round '
            f"{m.after} not in {before}: {items}{more}</p>"
        )
    for c in job.cycles:
        if c.late:
            items = ", ".join(f"{_node_link(job, n, index)} (+{s:.1f}s)" for n, s in c.late[:cap])
            more = f" ... and {len(c.late) - cap:,} more" if len(c.late) > cap else ""
            out.append(
                f'<p class="alert late"><b>joined late:</b> round {c.round}: {items}{more} '
                f"started the rendezvous {LATE_JOIN_S:g} s or more after the round's median "
                "start: the others waited</p>"
            )
    if job.waiting:
        out.append(
            f'<p class="alert waiting"><b>waiting at exit:</b> {len(job.waiting):,} node(s) still '
            f"in a rendezvous: {_capped_links(job, job.waiting, index, cap)}</p>"
        )
    notes = "".join(f'<p class="note">note: {_esc(n)}</p>' for n in job.notes[:cap])
    return "".join(out) + notes


def _legend() -> str:
    return (
        '<div class="legend">'
        + "".join(f'<span style="background:{color}"></span>{what}' for _, color, what in _LEGEND)
        + "</div>"
    )


def _job_section(job: JobTimeline, number: int) -> str:
    index = {id(n): i for i, n in enumerate(job.nodes)}
    roots = len(job.root_causes)
    killed = len(job.worker_failures) - roots
    summary = (
        f"{job.duration_s:.1f} s · {len(job.nodes):,} nodes · {job.workers:,} workers · "
        f"{len(job.cycles)} cycles ({job.restarts} restarts) · {roots} worker failures"
        f"{f' (+{killed} killed)' if killed else ''} · {len(job.waiting)} waiting · "
        f"run trace <code>{_esc(job.trace_id)}</code> · "
        f"{job.records:,} records, {job.spans:,} spans"
    )
    data = json.dumps(_job_data(job), separators=(",", ":"), default=str).replace("</", "<\\/")
    if job.large:
        body = (
            _cycles_table(job)
            + _failures(job, index)
            + _alerts(job, index)
            + "<h2>Overview: every node in every round</h2>"
            '<p class="hint">one cell per node (by rank), coloured by its outcome in the round '
            "(where nodes outnumber pixels, a cell per few neighbouring ranks shows the most "
            "telling: failed, absent, unfinished, restarted); click one to draw its lanes</p>"
            '<div class="overview"></div>'
            "<h2>Lanes</h2>"
            '<div class="toolbar"><button class="whole">whole run</button>'
            '<button class="clear">clear</button> <span class="hint">click nodes below, in the '
            "overview or in the lists above to draw them; click a cycle to zoom</span></div>"
            f'<div class="lanes"></div>{_legend()}'
            "<h2>Nodes</h2>"
            '<div class="toolbar"><input class="search" type="search" '
            'placeholder="search: host, rank 12, FAILED, missing, late, waiting, root cause">'
            "</div>"
            '<table class="nodes-table"><thead><tr><th class="num">rank</th><th>host</th>'
            '<th class="num">pid</th><th>state</th><th>rounds</th><th class="num">rdzv max</th>'
            '<th class="num">failures</th><th>tags</th></tr></thead><tbody class="nodes"></tbody>'
            "</table>"
        )
    else:
        body = (
            '<div class="toolbar"><button class="whole">whole run</button> '
            '<span class="hint">click a cycle to zoom</span></div>'
            f'<div class="lanes"></div>{_legend()}'
            + _failures(job, index)
            + _cycles_table(job)
            + _alerts(job, index)
        )
    return (
        f'<section class="job" id="job-{number}" data-run-id="{_esc(job.run_id)}" '
        f'data-nodes="{len(job.nodes)}">'
        f'<h1>run {_esc(job.run_id)} <span class="state-{_esc(job.state)}">{_esc(job.state)}</span>'
        f'</h1><div class="summary">{summary}</div>{_goodput(job)}{_budget(job)}{body}'
        f'<script type="application/json" class="data">{data}</script></section>'
    )


def _goodput(job: JobTimeline) -> str:
    if job.goodput is None or job.goodput.wall_s <= 0:
        return ""
    return f'<div class="summary goodput">{_esc(goodput.describe(job.goodput))}</div>'


def _budget(job: JobTimeline) -> str:
    text = restart_budget(job, _LIST_CAP)
    return f'<div class="summary budget">{_esc(text)}</div>' if text else ""


def render_html(jobs: list[JobTimeline]) -> str:
    """The whole page for ``jobs``."""
    sections = "".join(_job_section(job, i) for i, job in enumerate(jobs))
    sections = sections or "<p>no torchelastic data found</p>"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>torchelastic timeline</title>"
        f"<style>{_static('timeline.css')}</style></head><body>{sections}"
        f'<div id="tip"></div><script>{_static("timeline.js")}</script></body></html>'
    )


def write_html(jobs: list[JobTimeline], path: Path) -> Path:
    """Write the page to ``path`` (parents created); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(jobs), encoding="utf-8")
    return path
