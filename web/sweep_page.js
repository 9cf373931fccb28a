// The sweep page: seed-group curves, final accuracy vs an axis with error bars, a heatmap,
// iterations to target, the trial table, and the analysis panel (analysis_panel.js); kept live by
// the sweep's event stream.
import {esc, num, badge, fmtAcc, fmtDuration, getJson, stats, t975, download, csvField} from './util.js';
import {lineChart, errorBarChart, colour, dash, lineStyle, alpha, viridis, legend, accuracyRange} from './charts.js';
import {progressBar} from './sweeps_page.js';
import {AnalysisPanel} from './analysis_panel.js';

const PAGE_ROWS = 100;
const MAX_SEED_LINES = 2000;
const METRICS = ['test_accuracy', 'test_loss', 'train_accuracy', 'train_loss'];
const COL = {}; // column name -> index in table rows

function short(path) { return path.replace(/^precision\.default\./, '').replace(/^precision\./, ''); }
function pickAxis(axes, patterns, fallback) {
  for (const p of patterns) {
    const i = axes.findIndex((a) => p.test(a.path));
    if (i >= 0) return i;
  }
  return fallback;
}

export class SweepPage {
  constructor(app, sweepId, setStatus) {
    this.app = app; this.id = sweepId; this.setStatus = setStatus;
    this.ui = {metric: 'test_accuracy', band: 'ci95', seeds: false, sort: 'idx', desc: false,
               filter: '', state: '', page: 0};
    this.known = new Map(); // trial id -> last curve iteration included in the group curves
    this.pending = [];      // events received before the first load finished
    this.loaded = false;
    this.liveEvents = 0;
  }

  async load() {
    const [sweep, table, groups] = await Promise.all([
      getJson(`/api/sweeps/${this.id}`), getJson(`/api/sweeps/${this.id}/table`),
      getJson(`/api/sweeps/${this.id}/groups?metric=${this.ui.metric}`)]);
    this.sweep = sweep; this.table = table; this.axes = table.axes;
    table.columns.forEach((c, i) => { COL[c] = i; });
    this.rowIndex = new Map(table.rows.map((r, i) => [r[COL.id], i]));
    if (this.ui.colorAxis === undefined) {
      this.ui.colorAxis = pickAxis(this.axes, [/format$/, /bits?/, /precision/], 0);
      this.ui.xAxis = pickAxis(this.axes, [/format$/, /bits?/, /precision/], 0);
      this.ui.seriesAxis = pickAxis(this.axes, [/rounding/], this.axes.length > 1 ? 1 : -1);
      if (this.ui.seriesAxis === this.ui.xAxis) this.ui.seriesAxis = this.axes.length > 1 ? (this.ui.xAxis + 1) % this.axes.length : -1;
      // Lines of one colour differ in the other axes: tell the series axis (rounding) apart by style.
      this.ui.styleAxis = this.ui.seriesAxis !== this.ui.colorAxis ? this.ui.seriesAxis : -1;
      this.ui.hx = this.ui.xAxis;
      this.ui.hy = this.ui.seriesAxis >= 0 ? this.ui.seriesAxis : this.ui.xAxis;
    }
    this.setGroups(groups);
    this.renderFrame();
    // Not awaited: the analysis (bootstrap included) may take longer than the page's own data.
    this.analysis = new AnalysisPanel(this.app.querySelector('#analysis'), this.id, this.axes);
    this.analysis.fetch();
    this.renderAll();
    this.loaded = true;
    for (const delta of this.pending) this.apply(delta);
    this.pending = [];
    document.body.dataset.ready = '1';
  }

  setGroups(groups) {
    this.groups = groups.groups;
    this.known.clear();
    for (const g of this.groups) {
      g.sum = g.curve.mean.map((m, k) => (Number.isFinite(m) ? m * g.curve.n[k] : 0));
      g.sumsq = g.curve.mean.map((m, k) => {
        const n = g.curve.n[k], s = g.curve.std[k];
        return Number.isFinite(m) ? (n > 1 ? s * s * (n - 1) : 0) + m * m * n : 0;
      });
      g.trial_ids.forEach((id, j) => this.known.set(id, g.last_iteration[j]));
    }
    this.groupOf = new Map();
    this.groups.forEach((g, gi) => g.trial_ids.forEach((id) => this.groupOf.set(id, gi)));
  }

  connect() {
    this.source = new EventSource(`/api/sweeps/${this.id}/events`);
    this.source.addEventListener('delta', (e) => {
      const delta = JSON.parse(e.data);
      this.liveEvents++;
      document.body.dataset.liveEvents = String(this.liveEvents);
      if (!this.loaded) this.pending.push(delta); else this.apply(delta);
    });
  }
  close() {
    if (this.source) this.source.close();
    if (this.analysis) this.analysis.close();
    // A pending redraw would set the status line of the next page to "live".
    clearTimeout(this.redraw);
    this.redraw = null;
  }

  // Applies an event: replaced rows, new points (added to the group statistics), counts.
  apply(delta) {
    for (const row of delta.trials || []) {
      const i = this.rowIndex.get(row[COL.id]);
      if (i !== undefined) this.table.rows[i] = row;
    }
    let curvesChanged = false;
    for (const p of delta.points || []) {
      const gi = this.groupOf.get(p.trial_id);
      if (gi === undefined) continue;
      const g = this.groups[gi], c = g.curve;
      const known = this.known.get(p.trial_id) ?? -1;
      const values = p[this.ui.metric];
      p.iteration.forEach((it, k) => {
        if (it <= known || values[k] === null) return;
        let slot = c.iteration.indexOf(it);
        if (slot < 0) {
          slot = c.iteration.findIndex((x) => x > it);
          if (slot < 0) slot = c.iteration.length;
          for (const a of [c.iteration, c.mean, c.std, c.ci95, c.n, g.sum, g.sumsq]) a.splice(slot, 0, 0);
          c.iteration[slot] = it;
        }
        const v = values[k];
        g.sum[slot] += v; g.sumsq[slot] += v * v; c.n[slot] += 1;
        const n = c.n[slot], m = g.sum[slot] / n;
        const sd = n > 1 ? Math.sqrt(Math.max(0, (g.sumsq[slot] - g.sum[slot] * m) / (n - 1))) : 0;
        c.mean[slot] = m; c.std[slot] = sd;
        c.ci95[slot] = n > 1 ? t975(n - 1) * sd / Math.sqrt(n) : NaN;
      });
      if (p.iteration.length) this.known.set(p.trial_id, Math.max(known, p.iteration[p.iteration.length - 1]));
      if (this.seedCurves) {
        const s = this.seedCurves.get(p.trial_id) || {iteration: [], value: []};
        p.iteration.forEach((it, k) => {
          if (it > (s.iteration[s.iteration.length - 1] ?? -1)) { s.iteration.push(it); s.value.push(values[k]); }
        });
        this.seedCurves.set(p.trial_id, s);
      }
      curvesChanged = true;
    }
    // A trial that finished changes the analysis (throttled by the panel).
    const finishedStates = ['DONE', 'FAILED', 'CANCELLED'];
    if (this.analysis && (delta.trials || []).some((r) => finishedStates.includes(r[COL.state]))) this.analysis.refreshSoon();
    if (delta.sweep) {
      this.sweep.counts = delta.sweep.counts;
      const el = this.app.querySelector('#progress');
      if (el) el.innerHTML = progressBar(this.sweep.counts);
    }
    // Redraw at most every 500 ms while events stream in.
    this.dirtyCurves ||= curvesChanged;
    this.dirtyRows ||= (delta.trials || []).length > 0;
    if (!this.redraw) {
      this.redraw = setTimeout(() => {
        this.redraw = null;
        if (this.dirtyCurves) this.renderCurves();
        if (this.dirtyRows) { this.renderSummaries(); this.renderTable(); }
        this.dirtyCurves = this.dirtyRows = false;
        this.setStatus('live · ' + new Date().toLocaleTimeString());
      }, 500);
    }
  }

  axisSelect(name, value, allowNone) {
    const opts = (allowNone ? ['<option value="-1">(none)</option>'] : []).concat(
      this.axes.map((a, i) => `<option value="${i}"${i === value ? ' selected' : ''}>${esc(short(a.path))}</option>`));
    return `<select data-ui="${name}">${opts.join('')}</select>`;
  }

  renderFrame() {
    const s = this.sweep, ui = this.ui;
    const fmt = (ms) => (ms === undefined ? '' : fmtDuration(ms));
    this.app.innerHTML = `<p><a href="#/">← all sweeps</a></p>
      <h1>${esc(s.name)} ${badge(s.state)} <span class="muted">sweep ${esc(s.id)}</span></h1>
      <div id="progress">${progressBar(s.counts)}</div>
      <p class="muted">started ${s.started_unix_ms ? new Date(num(s.started_unix_ms)).toLocaleString() : '—'} ·
        elapsed ${fmt(s.elapsed_ms)} · remaining ${s.eta_ms >= 0 ? fmt(s.eta_ms) : '—'} ·
        ${this.table.rows.length} trials in ${this.groups.length} seed groups ·
        target accuracy ${fmtAcc(this.table.target_accuracy)}</p>
      <div class="panel" id="analysis"></div>
      <div class="panel"><h2>Curves <span class="muted">(mean of each seed group, band = ${ui.band === 'ci95' ? '95% interval' : '±1 std'})</span></h2>
        <div class="controls">
          <label>metric <select data-ui="metric">${METRICS.map((m) => `<option${m === ui.metric ? ' selected' : ''}>${m}</option>`).join('')}</select></label>
          <label>colour by ${this.axisSelect('colorAxis', ui.colorAxis)}</label>
          <label>line style by ${this.axisSelect('styleAxis', ui.styleAxis, true)}</label>
          <label>band <select data-ui="band"><option value="ci95"${ui.band === 'ci95' ? ' selected' : ''}>95% interval</option><option value="std"${ui.band === 'std' ? ' selected' : ''}>±1 std</option><option value="none"${ui.band === 'none' ? ' selected' : ''}>none</option></select></label>
          <label><input type="checkbox" data-ui="seeds"${ui.seeds ? ' checked' : ''}> individual seeds</label>
        </div>
        <div id="curves-legend"></div><div id="curves" class="chart"></div></div>
      <div class="grid2">
        <div class="panel"><h2>Final test accuracy <span class="muted">(mean ± 95% interval over seeds)</span></h2>
          <div class="controls"><label>x ${this.axisSelect('xAxis', ui.xAxis)}</label>
            <label>series ${this.axisSelect('seriesAxis', ui.seriesAxis, true)}</label></div>
          <div id="errorbars-legend"></div><div id="errorbars" class="chart"></div></div>
        <div class="panel"><h2>Iterations to target accuracy <span class="muted">(trials that reached it)</span></h2>
          <div id="speed-legend"></div><div id="speed" class="chart"></div></div>
      </div>
      <div class="panel"><h2>Mean final test accuracy</h2>
        <div class="controls"><label>rows ${this.axisSelect('hy', ui.hy)}</label>
          <label>columns ${this.axisSelect('hx', ui.hx)}</label></div>
        <div id="heatmap"></div></div>
      <div class="panel"><h2>Trials</h2>
        <div class="controls"><label>filter <input data-ui="filter" value="${esc(ui.filter)}" placeholder="text in any column"></label>
          <label>state <select data-ui="state">${['', 'QUEUED', 'RUNNING', 'DONE', 'FAILED', 'CANCELLED'].map((v) => `<option${v === ui.state ? ' selected' : ''} value="${v}">${v || 'any'}</option>`).join('')}</select></label>
          <button data-export="csv">export CSV</button> <button data-export="json">export JSON</button>
          <span id="table-info" class="muted"></span></div>
        <div id="table" class="table-wrap"></div></div>`;
    this.app.querySelectorAll('[data-ui]').forEach((el) => {
      const name = el.dataset.ui;
      const event = el.tagName === 'INPUT' && el.type !== 'checkbox' ? 'input' : 'change';
      el.addEventListener(event, () => this.onControl(name, el));
    });
    this.app.querySelectorAll('[data-export]').forEach((el) =>
      el.addEventListener('click', () => this.exportShown(el.dataset.export)));
  }

  async onControl(name, el) {
    const ui = this.ui;
    if (el.type === 'checkbox') ui[name] = el.checked;
    else if (['colorAxis', 'styleAxis', 'xAxis', 'seriesAxis', 'hx', 'hy'].includes(name)) ui[name] = Number(el.value);
    else ui[name] = el.value;
    if (name === 'metric') {
      this.setGroups(await getJson(`/api/sweeps/${this.id}/groups?metric=${ui.metric}`));
      this.seedCurves = null;
    }
    if (name === 'filter' || name === 'state') { ui.page = 0; return this.renderTable(); }
    if (['xAxis', 'seriesAxis', 'hx', 'hy'].includes(name)) return this.renderSummaries();
    return this.renderCurves();
  }

  renderAll() { this.renderCurves(); this.renderSummaries(); this.renderTable(); }

  async renderCurves() {
    const ui = this.ui, axis = ui.colorAxis;
    const values = this.axes[axis] ? this.axes[axis].values : [''];
    const colorOf = (params) => Math.max(0, values.indexOf(params[axis]));
    const styleAxis = ui.styleAxis !== axis && this.axes[ui.styleAxis] ? ui.styleAxis : -1;
    const styleValues = styleAxis >= 0 ? this.axes[styleAxis].values : [];
    const styleOf = (params, ci) =>
      (styleAxis >= 0 ? lineStyle(Math.max(0, styleValues.indexOf(params[styleAxis]))) : dash(ci));
    const xs = new Set();
    for (const g of this.groups) for (const it of g.curve.iteration) xs.add(it);
    if (ui.seeds && !this.seedCurves) {
      const c = await getJson(`/api/sweeps/${this.id}/curves?metric=${ui.metric}`);
      this.seedCurves = new Map();
      c.trial_ids.forEach((id, i) => this.seedCurves.set(id, {
        iteration: c.iteration.slice(c.offsets[i], c.offsets[i + 1]),
        value: c.value.slice(c.offsets[i], c.offsets[i + 1])}));
    }
    if (ui.seeds) for (const s of this.seedCurves.values()) for (const it of s.iteration) xs.add(it);
    const x = [...xs].sort((a, b) => a - b);
    const pos = new Map(x.map((v, i) => [v, i]));
    const place = (its, vals) => {
      const out = new Array(x.length).fill(null);
      its.forEach((it, k) => { out[pos.get(it)] = vals[k]; });
      return out;
    };
    const series = [];
    // Many groups: bands would cover each other; drop them beyond 120 groups.
    const bands = ui.band !== 'none' && this.groups.length <= 120;
    if (ui.seeds) {
      // Thousands of extra lines make every redraw slow: draw the first MAX_SEED_LINES.
      let drawn = 0;
      for (const [id, s] of this.seedCurves) {
        if (++drawn > MAX_SEED_LINES) break;
        const g = this.groups[this.groupOf.get(id)];
        if (!g) continue;
        const ci = colorOf(g.params);
        series.push({label: 'trial ' + id, values: place(s.iteration, s.value),
                     color: alpha(colour(ci), 0.35), width: 1, dash: styleOf(g.params, ci)});
      }
    }
    let lines = 0;
    for (const g of this.groups) {
      if (!g.curve.iteration.length) continue;
      const ci = colorOf(g.params), c = g.curve;
      const half = c.mean.map((m, k) => (ui.band === 'std' ? c.std[k] : c.ci95[k]));
      const s = {label: g.params.join(' · '), values: place(c.iteration, c.mean), color: colour(ci),
                 width: 2, dash: styleOf(g.params, ci)};
      if (bands) {
        s.lo = place(c.iteration, c.mean.map((m, k) => (Number.isFinite(half[k]) ? m - half[k] : m)));
        s.hi = place(c.iteration, c.mean.map((m, k) => (Number.isFinite(half[k]) ? m + half[k] : m)));
      }
      series.push(s);
      lines++;
    }
    const el = this.app.querySelector('#curves');
    el.dataset.lines = String(lines);
    el.dataset.seedLines = String(ui.seeds ? Math.min(MAX_SEED_LINES, this.seedCurves.size) : 0);
    const capped = ui.seeds && this.seedCurves.size > MAX_SEED_LINES ?
      `<p class="muted">individual seeds: the first ${MAX_SEED_LINES} of ${this.seedCurves.size} trials are drawn</p>` : '';
    const colourItems = values.map((v, i) => ({label: `${esc(short(this.axes[axis]?.path || ''))} = ${esc(v)}`,
                                               color: colour(i), dash: styleAxis >= 0 ? undefined : dash(i)}));
    const styleItems = styleValues.map((v, i) => ({label: `${esc(short(this.axes[styleAxis].path))} = ${esc(v)}`,
                                                   color: '#555', dash: lineStyle(i)}));
    this.app.querySelector('#curves-legend').innerHTML = capped + legend(colourItems.concat(styleItems));
    el.dataset.maxIteration = String(x.length ? x[x.length - 1] : -1);
    // Points behind the group curves (tests watch this grow as live points arrive).
    el.dataset.points = String(this.groups.reduce((a, g) => a + g.curve.n.reduce((b, n) => b + n, 0), 0));
    if (!x.length) { el.innerHTML = '<p class="muted">No curve points yet.</p>'; return; }
    if (this.curvesPlot) this.curvesPlot.destroy();
    this.curvesPlot = lineChart(el, {x, series, xLabel: 'iteration', yLabel: ui.metric.replace('_', ' '),
                                     yRange: ui.metric.endsWith('accuracy') ? accuracyRange : undefined});
  }

  // Rows' values grouped by (x value, series value): {categories, series: [{label, mean, ci}]}.
  summarise(xAxis, sAxis, valueOf) {
    const xv = this.axes[xAxis].values, sv = sAxis >= 0 ? this.axes[sAxis].values : [''];
    const cells = sv.map(() => xv.map(() => []));
    for (const r of this.table.rows) {
      const v = valueOf(r);
      if (v === null || v === undefined) continue;
      const p = r[COL.params], i = xv.indexOf(p[xAxis]), j = sAxis >= 0 ? sv.indexOf(p[sAxis]) : 0;
      if (i >= 0 && j >= 0) cells[j][i].push(v);
    }
    return {categories: xv, series: sv.map((label, j) => {
      const st = cells[j].map(stats);
      return {label: sAxis >= 0 ? `${short(this.axes[sAxis].path)} = ${label}` : 'all', color: colour(j), dash: dash(j),
              mean: st.map((s) => s.mean), ci: st.map((s) => s.ci95), n: st.map((s) => s.n)};
    })};
  }

  renderSummaries() {
    const ui = this.ui;
    if (!this.axes.length) return;
    const finished = (r) => r[COL.state] === 'DONE' && r[COL.outcome] !== 'PRUNED';
    const acc = this.summarise(ui.xAxis, ui.seriesAxis, (r) => (finished(r) ? r[COL.final_test_accuracy] : null));
    const el = this.app.querySelector('#errorbars');
    el.dataset.series = String(acc.series.length);
    el.dataset.points = String(acc.series.reduce((a, s) => a + s.mean.filter(Number.isFinite).length, 0));
    el.dataset.values = JSON.stringify(acc.series.map((s) => s.mean.map((m) => (Number.isFinite(m) ? +m.toFixed(6) : null))));
    this.app.querySelector('#errorbars-legend').innerHTML = legend(acc.series.map((s) => ({label: esc(s.label), color: s.color, dash: s.dash})));
    if (this.barsPlot) this.barsPlot.destroy();
    this.barsPlot = errorBarChart(el, {...acc, xLabel: short(this.axes[ui.xAxis].path), yLabel: 'final test accuracy',
                                       format: (v) => (100 * v).toFixed(1) + '%', bounds: [0, 1]});
    const speed = this.summarise(ui.xAxis, ui.seriesAxis, (r) => (finished(r) && r[COL.iterations_to_target] >= 0 ? r[COL.iterations_to_target] : null));
    const sel = this.app.querySelector('#speed');
    this.app.querySelector('#speed-legend').innerHTML = legend(speed.series.map((s) => ({label: esc(s.label), color: s.color, dash: s.dash})));
    if (this.speedPlot) this.speedPlot.destroy();
    this.speedPlot = errorBarChart(sel, {...speed, xLabel: short(this.axes[ui.xAxis].path), yLabel: 'iterations to target',
                                          bounds: [0, Infinity]});
    // Heatmap of mean final accuracy over two axes.
    const heat = this.summarise(ui.hx, ui.hy === ui.hx ? -1 : ui.hy, (r) => (finished(r) ? r[COL.final_test_accuracy] : null));
    const all = heat.series.flatMap((s) => s.mean).filter(Number.isFinite);
    const lo = Math.min(...all), hi = Math.max(...all);
    const cell = (m, n) => {
      if (!Number.isFinite(m)) return '<td class="num muted">—</td>';
      const c = viridis(hi > lo ? (m - lo) / (hi - lo) : 1);
      return `<td class="num heat" style="background:${c.bg};color:${c.fg}" title="n = ${n}">${fmtAcc(m)}</td>`;
    };
    this.app.querySelector('#heatmap').innerHTML = `<table class="heatmap"><thead><tr><th>${esc(ui.hy === ui.hx ? '' : short(this.axes[ui.hy].path))} \\ ${esc(short(this.axes[ui.hx].path))}</th>${heat.categories.map((c) => `<th title="${esc(c)}"><span class="clip">${esc(c)}</span></th>`).join('')}</tr></thead>
      <tbody>${heat.series.map((s) => `<tr><th title="${esc(s.label.replace(/^.* = /, ''))}"><span class="clip">${esc(s.label.replace(/^.* = /, ''))}</span></th>${s.mean.map((m, i) => cell(m, s.n[i])).join('')}</tr>`).join('')}</tbody></table>`;
  }

  columns() {
    return [['id', 'id'], ...this.axes.map((a, i) => [short(a.path), 'p' + i]), ['seed', 'seed'],
      ['state', 'state'], ['outcome', 'outcome'], ['final acc', 'final_test_accuracy'],
      ['best acc', 'best_test_accuracy'], ['iters to target', 'iterations_to_target'],
      ['worker', 'worker_id'], ['duration', 'duration_ms'], ['attempt', 'attempt']];
  }
  cellValue(r, key) { return key[0] === 'p' && /^p\d+$/.test(key) ? r[COL.params][Number(key.slice(1))] : r[COL[key]]; }

  shownRows() {
    const ui = this.ui, f = ui.filter.toLowerCase();
    let rows = this.table.rows;
    if (ui.state) rows = rows.filter((r) => r[COL.state] === ui.state);
    if (f) rows = rows.filter((r) => r.some((v) => String(Array.isArray(v) ? v.join(' ') : v ?? '').toLowerCase().includes(f)));
    const key = ui.sort === 'idx' ? 'idx' : ui.sort;
    const val = (r) => (key === 'idx' ? r[COL.idx] : this.cellValue(r, key));
    const numeric = rows.every((r) => { const v = val(r); return v === null || v === '' || Number.isFinite(Number(v)); });
    rows = rows.slice().sort((a, b) => {
      let va = val(a), vb = val(b);
      if (numeric) { va = va === null ? -Infinity : Number(va); vb = vb === null ? -Infinity : Number(vb); }
      else { va = String(va ?? ''); vb = String(vb ?? ''); }
      return (va < vb ? -1 : va > vb ? 1 : 0) * (ui.desc ? -1 : 1);
    });
    return rows;
  }

  renderTable() {
    const ui = this.ui, cols = this.columns();
    const rows = this.shownRows();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
    ui.page = Math.min(ui.page, pages - 1);
    const page = rows.slice(ui.page * PAGE_ROWS, (ui.page + 1) * PAGE_ROWS);
    const fmt = (key, v) => {
      if (key.endsWith('accuracy')) return fmtAcc(v);
      if (key === 'duration_ms') return v === null ? '' : fmtDuration(v);
      if (key === 'iterations_to_target') return v === null ? '' : v < 0 ? 'never' : v;
      if (key === 'state') return badge(v);
      return esc(v);
    };
    const head = cols.map(([label, key]) => `<th data-sort="${key}" class="sortable">${esc(label)}${ui.sort === key ? (ui.desc ? ' ▾' : ' ▴') : ''}</th>`).join('');
    const body = page.map((r) => `<tr class="clickable" data-trial="${r[COL.id]}">${cols.map(([, key]) =>
      `<td${['state', 'outcome', 'worker_id'].includes(key) || key[0] === 'p' ? '' : ' class="num"'}>${fmt(key, this.cellValue(r, key))}</td>`).join('')}</tr>`).join('');
    const el = this.app.querySelector('#table');
    el.dataset.rows = String(rows.length);
    el.innerHTML = `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>` +
      (pages > 1 ? `<p class="pager"><button data-page="-1"${ui.page ? '' : ' disabled'}>‹ previous</button>
        page ${ui.page + 1} of ${pages} <button data-page="1"${ui.page + 1 < pages ? '' : ' disabled'}>next ›</button></p>` : '');
    this.app.querySelector('#table-info').textContent = `${rows.length} of ${this.table.rows.length} trials`;
    el.querySelectorAll('th[data-sort]').forEach((th) => th.addEventListener('click', () => {
      if (ui.sort === th.dataset.sort) ui.desc = !ui.desc; else { ui.sort = th.dataset.sort; ui.desc = false; }
      this.renderTable();
    }));
    el.querySelectorAll('tr[data-trial]').forEach((tr) => tr.addEventListener('click', () => {
      location.hash = `#/trials/${tr.dataset.trial}`;
    }));
    el.querySelectorAll('button[data-page]').forEach((b) => b.addEventListener('click', () => {
      ui.page += Number(b.dataset.page); this.renderTable();
    }));
  }

  // Exports the filtered, sorted rows (all pages) with the columns shown.
  exportShown(format) {
    const cols = this.columns(), rows = this.shownRows();
    const name = `sweep-${this.id}-trials.${format}`;
    if (format === 'json') {
      const objects = rows.map((r) => Object.fromEntries(cols.map(([label, key]) => [label, this.cellValue(r, key) ?? null])));
      return download(name, 'application/json', JSON.stringify(objects, null, 1));
    }
    const lines = [cols.map(([label]) => csvField(label)).join(',')].concat(
      rows.map((r) => cols.map(([, key]) => csvField(this.cellValue(r, key))).join(',')));
    download(name, 'text/csv', lines.join('\n') + '\n');
  }
}
