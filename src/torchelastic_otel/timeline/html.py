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
"""

import html
import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from torchelastic_otel import semconv as sc
from torchelastic_otel.timeline import goodput
from torchelastic_otel.timeline.model import LATE_JOIN_S, Failure, JobTimeline, Node

_CSS = """
body { font: 13px/1.4 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif;
       margin: 24px; color: #1d2330; background: #fafbfc; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 22px 0 6px; }
.state-SUCCEEDED { color: #1a7f37; } .state-FAILED { color: #cf222e; }
.state-UNKNOWN { color: #9a6700; }
.summary { color: #57606a; margin-bottom: 10px; } code { font-size: 12px; }
svg { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; display: block; }
.lane-title { font-weight: 600; font-size: 12px; cursor: default; }
.row-label { font-size: 12px; fill: #57606a; }
.axis { font-size: 11px; fill: #8c959f; } .grid { stroke: #eaeef2; }
.bar { cursor: pointer; }
.bar:hover, .mark:hover, .cell:hover { stroke: #1d2330; stroke-width: 1.5; }
.rdzv { fill: #0969da; } .assign { fill: #54aeff; opacity: .6; }
.worker.succeeded, .o-succeeded { fill: #2da44e; }
.worker.restarted, .o-restarted { fill: #d4a72c; }
.worker.failed, .o-failed, .attempt.failed { fill: #cf222e; }
.worker.killed { fill: #f4a4a8; stroke: #cf222e; stroke-dasharray: 3 2; }
.worker.open, .o-unfinished { fill: #afb8c1; } .attempt.waiting { fill: #fff1c2; stroke: #bf8700; }
.o-absent { fill: #f6f8fa; } .cycle { cursor: zoom-in; }
.endmark { font-size: 11px; font-weight: 700; pointer-events: none; }
table { border-collapse: collapse; margin-bottom: 4px; }
td, th { padding: 2px 10px; text-align: left; vertical-align: top; }
th { color: #57606a; font-weight: 600; border-bottom: 1px solid #d0d7de; }
td.num, th.num { text-align: right; }
.root td.what { color: #cf222e; font-weight: 600; } .killed td.what { color: #bc4c00; }
.note { color: #9a6700; margin: 2px 0; } .alert { margin: 4px 0; }
.alert b { color: #cf222e; } .alert.late b, .alert.waiting b { color: #9a6700; }
.nodelink { color: #0969da; cursor: pointer; text-decoration: underline dotted; }
.nodes-table tr.node-row { cursor: pointer; }
.nodes-table tr.node-row:hover { background: #eef4ff; }
.nodes-table tr.selected { background: #ddf4ff; }
.toolbar { margin: 8px 0; } .toolbar input { font: inherit; padding: 3px 6px; width: 280px; }
.toolbar button { font: inherit; margin-left: 6px; }
.dots span { display: inline-block; width: 9px; height: 9px; margin-right: 2px;
             border-radius: 2px; }
.d-succeeded { background: #2da44e; } .d-failed { background: #cf222e; }
.d-restarted { background: #d4a72c; } .d-unfinished { background: #afb8c1; }
.d-absent { background: #eaeef2; }
#tip { position: fixed; display: none; pointer-events: none; max-width: 560px;
       background: #1d2330; color: #fff; padding: 8px 10px; border-radius: 6px;
       font-size: 12px; box-shadow: 0 4px 12px rgba(0,0,0,.25); z-index: 10; }
#tip b { display: block; margin-bottom: 4px; } #tip td { padding: 0 8px 0 0;
       vertical-align: top; color: #fff; white-space: pre-wrap; word-break: break-word; }
#tip td:first-child { color: #8c959f; white-space: nowrap; }
.legend span { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 14px; }
.hint { color: #57606a; }
"""

_SCRIPT = r"""
'use strict';
const tip = document.getElementById('tip');
const W = 1100, L = 230, ROW = 20;
function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;',
    '"': '&quot;', "'": '&#39;'}[c]));
}
function secs(ms) { return (ms / 1000).toFixed(2) + 's'; }
// Which outcome an overview cell of many nodes shows: the one worth a look first.
const TELLING = {failed: 5, absent: 4, unfinished: 3, restarted: 2, succeeded: 1};
// A large job's nodes come packed (html.py's _packed_node): back to the plain form.
function unpack(n) {
  n.w = n.w || 0; n.a = n.a || []; n.f = n.f || []; n.tags = n.tags || [];
  const at = (v, i, step) => Array.isArray(v) ? v[i] : (step ? v + i : v);
  for (const c of n.c) {
    const [g, l, steps, back, res, msg] = c[6], workers = [];
    let t = c[1];
    (steps || []).forEach((step, i) => {
      t += step;
      workers.push([at(g, i, true), t, c[2] - at(back, i), res === undefined ? c[3] : at(res, i),
        msg === undefined ? '' : at(msg, i), null, at(l, i, true)]);
    });
    c[6] = workers;
    c[7] = null;
  }
  return n;
}
function showTip(ev, title, attrs) {
  let rows = '';
  for (const [k, v] of Object.entries(attrs || {})) {
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    rows += '<tr><td>' + esc(k) + '</td><td>' + esc(text.slice(0, 400)) + '</td></tr>';
  }
  tip.innerHTML = '<b>' + esc(title) + '</b>' + (rows ? '<table>' + rows + '</table>' : '');
  tip.style.display = 'block';
  tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 580) + 'px';
  tip.style.top = (ev.clientY + 14) + 'px';
}
document.addEventListener('mouseout', ev => {
  if (ev.target.closest && ev.target.closest('[data-t]')) tip.style.display = 'none';
});

class Job {
  constructor(section) {
    this.el = section;
    this.d = JSON.parse(section.querySelector('script.data').textContent);
    if (this.d.packed) this.d.nodes.forEach(unpack);
    this.selected = [];
    this.win = [0, this.d.dur];
    this.tips = [];
    section.addEventListener('mousemove', ev => {
      const t = ev.target.closest && ev.target.closest('[data-t]');
      if (!t || !section.contains(t)) return;
      const [title, attrs] = this.tips[+t.getAttribute('data-t')] || ['', {}];
      showTip(ev, title, attrs);
    });
    section.addEventListener('click', ev => {
      const n = ev.target.closest && ev.target.closest('[data-node]');
      if (n && n.hasAttribute('data-n')) { this.toggle(+n.getAttribute('data-n')); return; }
      const c = ev.target.closest && ev.target.closest('[data-zoom]');
      if (c) { this.zoom(+c.getAttribute('data-zoom')); }
    });
    const search = section.querySelector('input.search');
    if (search) {
      search.addEventListener('input', () => this.list(search.value));
      this.list('');
    }
    const clear = section.querySelector('button.clear');
    if (clear) {
      clear.addEventListener('click', () => { this.selected = []; this.draw(); this.mark(); });
    }
    const whole = section.querySelector('button.whole');
    if (whole) whole.addEventListener('click', () => this.zoom(-1));
    this.overview();
    this.selected = this.d.initial.slice();
    this.draw();
    this.mark();
  }
  tipId(title, attrs) { this.tips.push([title, attrs]); return this.tips.length - 1; }
  zoom(i) {
    if (i < 0 || i >= this.d.cycles.length) { this.win = [0, this.d.dur]; }
    else {
      const c = this.d.cycles[i], pad = Math.max(1, (c[2] - c[1]) * 0.04);
      this.win = [Math.max(0, c[1] - pad), Math.min(this.d.dur, c[2] + pad)];
    }
    this.draw();
  }
  toggle(i) {
    const at = this.selected.indexOf(i);
    if (at >= 0) this.selected.splice(at, 1); else this.selected.push(i);
    this.draw(); this.mark();
  }
  mark() {
    this.el.querySelectorAll('tr.node-row').forEach(tr =>
      tr.classList.toggle('selected', this.selected.includes(+tr.getAttribute('data-n'))));
  }
  title(n) { return (n.r >= 0 ? 'rank ' + n.r : 'rank ?') + '  ' + n.h + ' (pid ' + n.p + ')'; }
  list(query) {
    const body = this.el.querySelector('tbody.nodes');
    if (!body) return;
    const q = query.trim().toLowerCase(), max = 200, d = this.d;
    let html = '', shown = 0, matched = 0;
    d.nodes.forEach((n, i) => {
      const text = (this.title(n) + ' ' + n.s + ' ' + (n.tags || []).join(' ')).toLowerCase();
      if (q && !text.includes(q) && !(q.startsWith('rank ') && ('rank ' + n.r) === q)) return;
      matched++;
      if (shown >= max) return;
      shown++;
      const byRound = {};
      n.c.forEach(c => { byRound[c[0]] = c[3]; });
      const dots = d.cycles.map(c => '<span class="d-' + (byRound[c[0]] || 'absent') +
        '" title="round ' + c[0] + ': ' + (byRound[c[0]] || 'not in it') + '"></span>').join('');
      const rdzv = Math.max(0, ...n.c.map(c => c[4] || 0));
      html += '<tr class="node-row" data-node="' + esc(this.title(n)) + '" data-n="' + i + '">' +
        '<td class="num">' + (n.r >= 0 ? n.r : '?') + '</td><td>' + esc(n.h) +
        '</td><td class="num">' +
        n.p + '</td><td>' + esc(n.s) + '</td><td class="dots">' + dots + '</td><td class="num">' +
        (rdzv ? (rdzv / 1000).toFixed(2) + 's' : '') + '</td><td class="num">' + n.f.length +
        '</td><td>' + esc((n.tags || []).join(', ')) + '</td></tr>';
    });
    if (matched > shown) html += '<tr><td colspan="8" class="hint">... and ' + (matched - shown) +
      ' more: refine the search</td></tr>';
    if (!matched) html = '<tr><td colspan="8" class="hint">no node matches</td></tr>';
    body.innerHTML = html;
    this.mark();
  }
  overview() {
    const box = this.el.querySelector('.overview');
    if (!box) return;
    // One cell per node while they fit; past that, a cell per pixel column shows the
    // most telling outcome of its nodes, and clicking it draws that node.
    const d = this.d, n = d.nodes.length, span = W - L - 20, rh = 16;
    const per = Math.max(1, Math.ceil(n / span)), cells = Math.ceil(n / per), cw = span / cells;
    const outcomes = d.nodes.map(node => {
      const byRound = {};
      node.c.forEach(c => { byRound[c[0]] = c[3]; });
      return byRound;
    });
    let parts = [];
    const h = d.cycles.length * (rh + 6) + 10;
    d.cycles.forEach((c, ci) => {
      const y = 6 + ci * (rh + 6);
      parts.push('<text class="row-label" x="8" y="' + (y + 12) + '">round ' + c[0] + ' — ' +
        esc(c[3]) + '</text>');
      for (let b = 0; b < cells; b++) {
        const first = b * per, last = Math.min(n, first + per) - 1, counts = {};
        let shown = first;
        for (let i = first; i <= last; i++) {
          const o = outcomes[i][c[0]] || 'absent';
          counts[o] = (counts[o] || 0) + 1;
          if ((TELLING[o] || 0) > (TELLING[outcomes[shown][c[0]] || 'absent'] || 0)) shown = i;
        }
        const o = outcomes[shown][c[0]] || 'absent', node = d.nodes[shown];
        const what = o === 'absent' ? 'not in this round' : o;
        const t = per === 1 ? this.tipId(this.title(node), {round: c[0], outcome: what})
          : this.tipId(this.title(node) + ' (the most telling of ' + (last - first + 1) +
              ' nodes: ranks ' + d.nodes[first].r + ' to ' + d.nodes[last].r + ')',
            Object.assign({round: c[0], outcome: what}, counts));
        parts.push('<rect class="cell o-' + o + '" x="' + (L + b * cw).toFixed(2) + '" y="' + y +
          '" width="' + Math.max(1, cw - (cw > 3 ? 1 : 0)).toFixed(2) + '" height="' + rh +
          '" data-t="' + t + '" data-node="' + esc(this.title(node)) + '" data-n="' + shown +
          '"/>');
      }
    });
    box.innerHTML = '<svg width="' + W + '" height="' + h + '" viewBox="0 0 ' + W + ' ' + h + '">' +
      parts.join('') + '</svg>';
  }
  x(t) { return L + (t - this.win[0]) / Math.max(1e-9, this.win[1] - this.win[0]) * (W - L - 20); }
  bar(cls, t0, t1, y, title, attrs, extra) {
    if (t1 < this.win[0] || t0 > this.win[1]) return '';
    const x1 = Math.max(L, this.x(t0)), x2 = Math.min(W - 20, this.x(t1));
    const t = this.tipId(title, attrs);
    return '<rect class="bar ' + cls + '" x="' + x1.toFixed(1) + '" y="' + (y + 3) + '" width="' +
      Math.max(2, x2 - x1).toFixed(1) + '" height="' + (ROW - 6) + '" rx="2" data-t="' + t + '"' +
      (extra || '') + '/>';
  }
  endmark(t, y, ch, color) {
    if (t < this.win[0] || t > this.win[1]) return '';
    return '<text class="endmark" x="' + (Math.min(W - 20, this.x(t)) + 2).toFixed(1) + '" y="' +
      (y + 14) + '" fill="' + color + '">' + ch + '</text>';
  }
  draw() {
    const box = this.el.querySelector('.lanes');
    if (!box) return;
    const d = this.d, p = [], ticks = 5;
    let y = 28;
    for (let i = 0; i <= ticks; i++) {
      const x = L + i * (W - L - 20) / ticks;
      const t = this.win[0] + (this.win[1] - this.win[0]) * i / ticks;
      p.push('<line class="grid" x1="' + x.toFixed(1) + '" y1="18" x2="' + x.toFixed(1) +
        '" y2="{H}"/><text class="axis" x="' + x.toFixed(1) + '" y="13" text-anchor="middle">' +
        secs(t) + '</text>');
    }
    p.push('<text class="lane-title" x="6" y="' + (y + 14) + '">cycles</text>');
    d.cycles.forEach((c, i) => {
      const end = i + 1 < d.cycles.length ? Math.min(c[2], d.cycles[i + 1][1]) : c[2];
      p.push(this.bar('cycle o-' + c[3], c[1], end, y, 'round ' + c[0] + ': ' + c[3] + ', ' +
        secs(c[1]) + ' to ' + secs(c[2]) + ' (click to zoom)', c[4], ' data-zoom="' + i + '"'));
      const x1 = Math.max(L, this.x(c[1])), x2 = Math.min(W - 20, this.x(end));
      if (x2 - x1 > 60 && c[1] < this.win[1] && end > this.win[0]) {
        p.push('<text class="endmark" x="' + (x1 + 4).toFixed(1) + '" y="' + (y + 14) +
          '" fill="#fff">round ' + c[0] + ' · ' + esc(c[3]) + '</text>');
      }
    });
    y += ROW + 6;
    for (const i of this.selected) {
      const n = d.nodes[i];
      p.push('<g class="lane" data-node="' + esc(this.title(n)) + '">');
      p.push('<text class="lane-title" x="6" y="' + (y + 14) + '">' + esc(this.title(n)) + ' — ' +
        esc(n.s) + (n.w ? ' — waiting in a rendezvous' : '') + '</text>');
      y += ROW;
      p.push('<text class="row-label" x="16" y="' + (y + 14) + '">rendezvous</text>');
      const workers = {};
      const byLocal = n.c.every(c => c[6].every(w => w[6] >= 0));
      for (const c of n.c) {
        const rdzvEnd = c[4] != null ? Math.min(c[2], c[1] + c[4]) : c[1];
        p.push(this.bar('rdzv', c[1], rdzvEnd, y, 'round ' + c[0] + ' rendezvous: ' +
          (c[4] != null ? (c[4] / 1000).toFixed(3) + 's' : '?') + ', from ' + secs(c[1]) +
          ' — node ' + c[3], c[7]));
        if (c[5]) p.push(this.bar('assign', rdzvEnd, rdzvEnd + c[5], y, 'round ' + c[0] +
          ' assign worker ranks: ' + (c[5] / 1000).toFixed(3) + 's', null));
        for (const w of c[6]) {
          // A row per local rank (a worker slot): its global rank changes when nodes leave.
          const k = byLocal ? w[6] : w[0];
          (workers[k] = workers[k] || []).push([c[0], w]);
        }
      }
      for (const a of n.a) {
        p.push(this.bar('attempt ' + (a[2] ? 'failed' : 'waiting'), a[0], a[1], y,
          (a[2] ? 'rendezvous FAILED: ' : 'waiting in a rendezvous since ' + secs(a[0]) + ' ') +
          a[3], null));
      }
      y += ROW;
      for (const k of Object.keys(workers).map(Number).sort((a, b) => a - b)) {
        const ranks = [...new Set(workers[k].map(rw => rw[1][0]))].join('/');
        p.push('<text class="row-label" x="16" y="' + (y + 14) + '">worker ' + ranks + '</text>');
        for (const [round, w] of workers[k]) {
          const g = w[0];
          const res = w[3];
          const title = 'worker ' + g + ' (round ' + round + '): ' + res + ', ' + secs(w[1]) +
            ' to ' + secs(w[2]) + ' (' + ((w[2] - w[1]) / 1000).toFixed(3) + 's)' +
            (w[4] ? ' — ' + w[4] : '');
          p.push(this.bar('worker ' + res, w[1], w[2], y, title, w[5]));
          const m = {failed: ['✗', '#cf222e'], killed: ['✗', '#bc4c00'],
                     restarted: ['↻', '#9a6700'], succeeded: ['✓', '#1a7f37']}[res];
          if (m) p.push(this.endmark(w[2], y, m[0], m[1]));
        }
        y += ROW;
      }
      p.push('</g><line x1="0" y1="' + (y + 4) + '" x2="' + W + '" y2="' + (y + 4) +
        '" stroke="#d0d7de"/>');
      y += 10;
    }
    const h = y + 6;
    box.innerHTML = '<svg width="' + W + '" height="' + h + '" viewBox="0 0 ' + W + ' ' + h + '">' +
      p.join('').split('{H}').join(String(h)) + '</svg>';
  }
}
document.querySelectorAll('section.job').forEach(s => { s.job = new Job(s); });
"""

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
        "cycles": [
            [
                c.round,
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
                c.round,
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
        cycle = [
            c.round,
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

    ``cycle`` is the packed cycle: ``[round, start, end, outcome, ...]``. Results are
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
            f'<tr class="cycle-row"><td class="num">{c.round}</td>'
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
        f'</h1><div class="summary">{summary}</div>{_goodput(job)}{body}'
        f'<script type="application/json" class="data">{data}</script></section>'
    )


def _goodput(job: JobTimeline) -> str:
    if job.goodput is None or job.goodput.wall_s <= 0:
        return ""
    return f'<div class="summary goodput">{_esc(goodput.describe(job.goodput))}</div>'


def render_html(jobs: list[JobTimeline]) -> str:
    """The whole page for ``jobs``."""
    sections = "".join(_job_section(job, i) for i, job in enumerate(jobs))
    sections = sections or "<p>no torchelastic data found</p>"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>torchelastic timeline</title>"
        f"<style>{_CSS}</style></head><body>{sections}"
        f'<div id="tip"></div><script>{_SCRIPT}</script></body></html>'
    )


def write_html(jobs: list[JobTimeline], path: Path) -> Path:
    """Write the page to ``path`` (parents created); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(jobs), encoding="utf-8")
    return path
