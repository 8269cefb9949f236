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
