"""The timeline as one self-contained HTML file: inline SVG, CSS and script.

Nothing is fetched from the network, so the file works offline and can be
attached to a ticket. Hovering a bar or a mark shows its attributes.
"""

import html
import json
from pathlib import Path
from typing import Any

from torchelastic_otel import semconv as sc
from torchelastic_otel.timeline.model import Bar, JobTimeline, Lane, Mark

WIDTH = 1100
LABEL = 230
ROW = 22
LANE_GAP = 14

_CSS = """
body { font: 13px/1.4 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif;
       margin: 24px; color: #1d2330; background: #fafbfc; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 24px 0 6px; }
.state-SUCCEEDED { color: #1a7f37; } .state-FAILED { color: #cf222e; }
.state-UNKNOWN { color: #9a6700; }
.summary { color: #57606a; margin-bottom: 12px; }
svg { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; }
.lane-title { font-weight: 600; font-size: 12px; }
.row-label { font-size: 12px; fill: #57606a; }
.axis { font-size: 11px; fill: #8c959f; } .grid { stroke: #eaeef2; }
.bar { cursor: pointer; } .bar:hover, .mark:hover { stroke: #1d2330; stroke-width: 1.5; }
.round { fill: #0969da; } .agent { fill: #54aeff; opacity: .55; }
.worker { fill: #2da44e; } .restarted { fill: #d4a72c; } .failed { fill: #cf222e; }
.unfinished { fill: #afb8c1; } .mark { fill: #cf222e; cursor: pointer; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; text-align: left; }
th { color: #57606a; font-weight: 600; border-bottom: 1px solid #d0d7de; }
.failure td { color: #cf222e; } .note { color: #9a6700; }
#tip { position: fixed; display: none; pointer-events: none; max-width: 560px;
       background: #1d2330; color: #fff; padding: 8px 10px; border-radius: 6px;
       font-size: 12px; box-shadow: 0 4px 12px rgba(0,0,0,.25); z-index: 10; }
#tip b { display: block; margin-bottom: 4px; } #tip td { padding: 0 8px 0 0;
       vertical-align: top; color: #fff; } #tip td:first-child { color: #8c959f; }
.legend span { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 14px; }
"""

_SCRIPT = """
const tip = document.getElementById('tip');
function esc(s) { const d = document.createElement('div'); d.textContent = s; return d.innerHTML; }
document.querySelectorAll('[data-info]').forEach(el => {
  el.addEventListener('mousemove', ev => {
    const info = JSON.parse(el.getAttribute('data-info'));
    let rows = '';
    for (const [k, v] of Object.entries(info.attributes)) {
      const text = typeof v === 'string' ? v : JSON.stringify(v);
      rows += '<tr><td>' + esc(k) + '</td><td>' + esc(text.slice(0, 400)) + '</td></tr>';
    }
    tip.innerHTML = '<b>' + esc(info.title) + '</b><table>' + rows + '</table>';
    tip.style.display = 'block';
    tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 580) + 'px';
    tip.style.top = (ev.clientY + 14) + 'px';
  });
  el.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
});
"""


def _info(title: str, attributes: dict[str, Any]) -> str:
    return html.escape(json.dumps({"title": title, "attributes": attributes}, default=str))


def _bar_class(bar: Bar) -> str:
    if bar.error or bar.state == sc.STATE_FAILED:
        return "failed"
    if bar.unfinished:
        return "unfinished"
    if bar.kind in ("round", "agent"):
        return bar.kind
    if bar.end_reason == sc.END_RESTARTED or bar.state == sc.STATE_TERMINATED:
        return "restarted"
    return "worker"


def _bar_title(bar: Bar, job: JobTimeline) -> str:
    start = (bar.start_ns - job.start_ns) / 1e9
    what = bar.label if bar.kind != "agent" else f"agent {bar.label}"
    extra = f" — {bar.message}" if bar.message else ""
    end = start + bar.duration_s
    return (
        f"{what}: {bar.state or '?'}, +{start:.2f}s to +{end:.2f}s ({bar.duration_s:.3f}s){extra}"
    )


class _Svg:
    def __init__(self, job: JobTimeline) -> None:
        self.job = job
        self.t0 = job.start_ns
        self.span = max(1, job.end_ns - job.start_ns)
        self.parts: list[str] = []
        self.y = 30

    def x(self, t_ns: int) -> float:
        return LABEL + (t_ns - self.t0) / self.span * (WIDTH - LABEL - 20)

    def axis(self) -> None:
        for i in range(6):
            x = LABEL + i * (WIDTH - LABEL - 20) / 5
            label = f"{self.job.duration_s * i / 5:.1f}s"
            self.parts.append(
                f'<line class="grid" x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{{HEIGHT}}"/>'
                f'<text class="axis" x="{x:.1f}" y="14" text-anchor="middle">{label}</text>'
            )

    def bar(self, bar: Bar, y: float, kind_class: str) -> None:
        x1, x2 = self.x(bar.start_ns), self.x(bar.end_ns)
        attrs = dict(bar.attributes)
        if bar.events:
            attrs["span events"] = [
                f"+{(e['time'] - self.t0) / 1e9:.3f}s {e['name']}: "
                f"{e['attributes'].get('torchelastic.message', '')}"
                for e in bar.events
            ]
        self.parts.append(
            f'<rect class="bar {kind_class} {_bar_class(bar)}" x="{x1:.1f}" y="{y + 4:.1f}" '
            f'width="{max(2.0, x2 - x1):.1f}" height="{ROW - 8}" rx="2" '
            f'data-info="{_info(_bar_title(bar, self.job), attrs)}"/>'
        )

    def mark(self, mark: Mark, y: float) -> None:
        x = self.x(mark.time_ns)
        title = f"FAILED at +{(mark.time_ns - self.t0) / 1e9:.2f}s — {mark.label}"
        self.parts.append(
            f'<path class="mark failure" d="M{x - 5:.1f},{y + 3:.1f} l10,10 m0,-10 l-10,10" '
            f'stroke="#cf222e" stroke-width="3" data-info="{_info(title, mark.attributes)}"/>'
            f'<rect class="mark" x="{x - 6:.1f}" y="{y + 2:.1f}" width="12" height="12" '
            f'fill-opacity="0" data-info="{_info(title, mark.attributes)}"/>'
        )

    def label(self, text: str, y: float, cls: str = "row-label", x: float = 16) -> None:
        self.parts.append(
            f'<text class="{cls}" x="{x}" y="{y + ROW / 2 + 4:.1f}">{html.escape(text)}</text>'
        )

    def lane(self, lane: Lane) -> None:
        top = self.y
        self.parts.append(f'<g class="lane" data-node="{html.escape(lane.title)}">')
        self.label(f"{lane.title} — {lane.state}", self.y, "lane-title", 6)
        self.y += ROW
        self.label("rendezvous", self.y)
        for bar in lane.bars:
            if bar.kind in ("round", "agent"):
                self.bar(bar, self.y, "rdzv")
        for mark in lane.marks:
            if mark.attributes.get(sc.EVENT_KIND) == sc.KIND_RENDEZVOUS:
                self.mark(mark, self.y)
        self.y += ROW
        workers: dict[str, list[Bar]] = {}
        for bar in lane.bars:
            if bar.kind == "worker":
                workers.setdefault(bar.label, []).append(bar)
        for label in sorted(workers, key=lambda s: (len(s), s)):
            self.label(label, self.y)
            for bar in workers[label]:
                self.bar(bar, self.y, "worker-bar")
            self.y += ROW
        self.parts.append("</g>")
        self.parts.append(
            f'<line x1="0" y1="{self.y + LANE_GAP / 2:.1f}" x2="{WIDTH}" '
            f'y2="{self.y + LANE_GAP / 2:.1f}" stroke="#d0d7de"/>'
            if top
            else ""
        )
        self.y += LANE_GAP

    def render(self) -> str:
        self.axis()
        for lane in self.job.lanes:
            self.lane(lane)
        height = self.y + 10
        body = "".join(self.parts).replace("{HEIGHT}", str(height))
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}">{body}</svg>'
        )


def _tables(job: JobTimeline) -> str:
    out = []
    if job.failures:
        rows = "".join(
            f'<tr class="failure"><td>+{(m.time_ns - job.start_ns) / 1e9:.2f}s</td>'
            f"<td>{html.escape(lane.title)}</td><td>{html.escape(m.label)}</td></tr>"
            for lane, m in job.failures
        )
        out.append(
            f"<h2>Failures</h2><table><tr><th>at</th><th>node</th><th>what</th></tr>{rows}</table>"
        )
    rows = "".join(
        f"<tr><td>{html.escape(lane.title)}</td><td>{html.escape(bar.label)}</td>"
        f"<td>+{(bar.start_ns - job.start_ns) / 1e9:.2f}s</td>"
        f"<td>{bar.duration_s * 1000:.0f} ms</td><td>{result}</td></tr>"
        for lane, bar, result in job.rendezvous_rounds()
    )
    if rows:
        out.append(
            "<h2>Rendezvous rounds</h2><table><tr><th>node</th><th>step</th><th>start</th>"
            f"<th>took</th><th>result</th></tr>{rows}</table>"
        )
    out += [f'<p class="note">note: {html.escape(n)}</p>' for n in job.notes]
    return "".join(out)


def _job_section(job: JobTimeline) -> str:
    workers = job.worker_labels
    summary = (
        f"{job.duration_s:.1f} s · {len(job.lanes)} nodes · {len(workers)} workers · "
        f"{len(job.worker_failures)} worker failures · {job.restarts} restarts · "
        f"trace id <code>{html.escape(job.trace_id)}</code> · "
        f"{job.records} records, {job.spans} spans"
    )
    legend = "".join(
        f'<span class="{cls}" style="background:{color}"></span>{what}'
        for cls, color, what in (
            ("round", "#0969da", "rendezvous round"),
            ("agent", "#a8d1ff", "agent step"),
            ("worker", "#2da44e", "worker"),
            ("restarted", "#d4a72c", "restarted"),
            ("failed", "#cf222e", "failed"),
            ("unfinished", "#afb8c1", "still open"),
        )
    )
    return (
        f'<section class="job" data-run-id="{html.escape(job.run_id)}">'
        f'<h1>run {html.escape(job.run_id)} <span class="state-{html.escape(job.state)}">'
        f"{html.escape(job.state)}</span></h1>"
        f'<div class="summary">{summary}</div>{_Svg(job).render()}'
        f'<div class="legend">{legend}</div>{_tables(job)}</section>'
    )


def render_html(jobs: list[JobTimeline]) -> str:
    """The whole page for ``jobs``."""
    sections = "".join(_job_section(job) for job in jobs) or "<p>no torchelastic data found</p>"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>torchelastic rendezvous timeline</title>"
        f"<style>{_CSS}</style></head><body>{sections}"
        f'<div id="tip"></div><script>{_SCRIPT}</script></body></html>'
    )


def write_html(jobs: list[JobTimeline], path: Path) -> Path:
    """Write the page to ``path`` (parents created); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(jobs), encoding="utf-8")
    return path
