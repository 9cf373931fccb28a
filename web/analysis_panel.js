// The sweep page's analysis panel: GET /api/sweeps/ID/analysis (the same analysis as
// `bitsweep analyze`, analysis/sweep_analysis.h) stated in words — the fewest bits within δ of
// fp32 per slice of the other axes with the evidence either side and the knee, stochastic vs
// truncate iterations to target, and the sensitivity ranking as bars. δ is an input; the panel
// refetches (at most every REFRESH_MS) when the sweep's event stream reports finished trials.
// When a seed 001/003 prediction was recorded on the sweep (`bitsweep predict --record`,
// GET /api/sweeps/ID/predictions) a "Prediction" section shows it next to the measurements:
// per uniform B the bound and measured mismatch rate, and, on the verifying sweep, the mean final
// accuracy of its trials at each assignment (matched by their precision.layers values).
import {esc, fmtAcc, getJson} from './util.js';
import {PALETTE} from './charts.js';

const REFRESH_MS = 5000;
const WITHIN = PALETTE[0];   // blue: within δ of fp32
const BELOW = PALETTE[1];    // vermillion: below (also marked ✗, not by colour alone)
const INTERACTION = PALETTE[2];

function short(path) { return String(path).replace(/^precision\.default\./, '').replace(/^precision\./, ''); }
const points = (fraction) => (100 * fraction).toFixed(1);
const percent = (fraction) => (100 * fraction).toFixed(1) + '%';
const wholePercent = (fraction) => Math.round(100 * fraction) + '%';
function sliceLabel(others) {
  const entries = Object.entries(others || {});
  return entries.length ? entries.map(([p, v]) => `${short(p)}=${v}`).join(' · ') : 'all trials';
}
const bitsLabel = (bits) => (bits === 32 ? 'fp32' : `${bits} bits`);

export class AnalysisPanel {
  // el: the panel's container (rendered into); sweepId; axes: the table's axes (for the axis
  // choice when several format axes are swept).
  constructor(el, sweepId, axes) {
    this.el = el; this.id = sweepId;
    this.delta = 0.5;
    this.formatAxes = axes.map((a) => a.path).filter((p) => /format$/.test(p));
    this.axis = '';
    this.seq = 0;        // request number: answers of older requests are dropped
    this.predictionSeq = 0;
    this.fetches = 0;
    this.lastFetch = -Infinity;
    this.timer = null;
    this.renderFrame();
  }

  renderFrame() {
    const axisChoice = this.formatAxes.length > 1 ?
      `<label>precision axis <select data-analysis="axis"><option value="">(default)</option>${
        this.formatAxes.map((p) => `<option value="${esc(p)}">${esc(short(p))}</option>`).join('')}</select></label>` : '';
    this.el.innerHTML = `<h2>Analysis <span class="muted">(final test accuracy; same as <code>bitsweep analyze</code>)</span></h2>
      <div class="controls"><label>δ <input data-analysis="delta" type="number" min="0" step="0.1" value="${this.delta}" class="delta"> points below fp32</label>
        ${axisChoice}<span class="muted" data-analysis="info"></span></div>
      <div class="analysis-body"><p class="muted">computing…</p></div>
      <div class="prediction-body" data-prediction="loading"></div>`;
    const delta = this.el.querySelector('[data-analysis="delta"]');
    let debounce = null;
    delta.addEventListener('input', () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        const v = Number(delta.value);
        if (delta.value === '' || !Number.isFinite(v) || v < 0) { delta.classList.add('invalid'); return; }
        delta.classList.remove('invalid');
        this.delta = v;
        this.fetch();
      }, 300);
    });
    const axis = this.el.querySelector('[data-analysis="axis"]');
    if (axis) axis.addEventListener('change', () => { this.axis = axis.value; this.fetch(); });
  }

  // A finished trial changes the analysis: refetch, but at most every REFRESH_MS.
  refreshSoon() {
    if (this.timer) return;
    const wait = Math.max(0, this.lastFetch + REFRESH_MS - Date.now());
    this.timer = setTimeout(() => { this.timer = null; this.fetch(); }, wait);
  }
  close() { clearTimeout(this.timer); this.timer = null; this.closed = true; }

  async fetch() {
    this.fetchPrediction();
    const seq = ++this.seq;
    this.lastFetch = Date.now();
    this.el.dataset.state = this.el.dataset.state === 'ready' ? 'refreshing' : 'loading';
    const query = `delta=${encodeURIComponent(this.delta)}` + (this.axis ? `&axis=${encodeURIComponent(this.axis)}` : '');
    let a;
    try {
      a = await getJson(`/api/sweeps/${this.id}/analysis?${query}`);
    } catch (error) {
      if (seq !== this.seq || this.closed) return;
      this.el.querySelector('.analysis-body').innerHTML = `<p class="error">analysis unavailable: ${esc(error.message)}</p>`;
      this.el.dataset.state = 'error';
      return;
    }
    if (seq !== this.seq || this.closed) return;
    this.fetches++;
    this.render(a);
    this.el.dataset.fetches = String(this.fetches);
    this.el.dataset.state = 'ready';
  }

  render(a) {
    this.el.dataset.delta = String(this.delta);
    const finished = a.groups.reduce((n, g) => n + g.completed + g.diverged + g.pruned + g.failed + g.cancelled, 0);
    this.el.dataset.finished = String(finished);
    this.el.querySelector('[data-analysis="info"]').textContent =
      `${finished} of ${a.trials} trials finished, ${a.groups.length} seed groups · updated ${new Date().toLocaleTimeString()}`;
    this.el.querySelector('.analysis-body').innerHTML = `<div class="analysis-grid">
        <div><h3>How few bits?</h3>${this.tolerance(a)}</div>
        <div><h3>Convergence speed</h3>${this.convergence(a.convergence)}
          <h3>Sensitivity <span class="muted">(share of the variance of final accuracy)</span></h3>${this.sensitivity(a.sensitivity)}</div>
      </div>`;
  }

  tolerance(a) {
    const t = a.tolerance;
    if (!t) return `<p class="muted" data-tolerance="missing">No tolerance: ${esc(a.tolerance_missing || 'no precision axis')}.</p>`;
    const delta = `${+(100 * t.delta).toFixed(3)} points`;
    // Seed groups by their params, for each width's 95% interval (shown on hover).
    const key = (params) => JSON.stringify(Object.entries(params).sort());
    const groups = new Map(a.groups.map((g) => [key(g.params), g]));
    const interval = (others, format) => {
      const g = groups.get(key({...others, [t.axis]: format}));
      return g && g.ci95 && g.ci95[0] !== null ? `, 95% interval ${fmtAcc(g.ci95[0])}–${fmtAcc(g.ci95[1])}` : '';
    };
    const slices = t.slices.map((s, i) => {
      const widthOf = (format) => s.widths.find((w) => w.format === format);
      const within = widthOf(s.evidence_within), below = widthOf(s.evidence_below);
      let answer;
      if (s.baseline_mean === null && !s.widths.length) {
        answer = 'no trial finished in this slice yet';
      } else if (s.baseline_mean === null) {
        answer = `no fp32 baseline finished in this slice: nothing to compare with`;
      } else if (s.min_bits !== null) {
        answer = `<b>${s.min_bits} bits</b> stay within ${delta} of fp32 — ${esc(within.format)} ${fmtAcc(within.mean)} vs ${fmtAcc(s.baseline_mean)}; ` +
          (below ? `below: ${esc(below.format)} ${fmtAcc(below.mean)}` : 'no narrower width was run');
      } else if (below) {
        answer = `<b>no width</b> stays within ${delta} of fp32 (${fmtAcc(s.baseline_mean)}); the widest, ${esc(below.format)}, reaches ${fmtAcc(below.mean)}`;
      } else {
        answer = `only the fp32 baseline finished (${fmtAcc(s.baseline_mean)})`;
      }
      const knee = s.knee && s.knee.drop > 0 && s.knee.from_bits >= 0 ?
        `<span class="muted knee">knee ${bitsLabel(s.knee.from_bits)} → ${s.knee.to_bits} bits, −${points(s.knee.drop)} points</span>` : '';
      const chips = s.widths.map((w) => {
        const ok = s.baseline_mean === null ? null : w.within;
        const colour = ok === null ? '#6b7385' : ok ? WITHIN : BELOW;
        const mark = ok === null ? '' : ok ? ' ✓' : ' ✗';
        const evidence = w.format === s.evidence_within || w.format === s.evidence_below ? ' evidence' : '';
        return `<span class="chip${evidence}" style="border-color:${colour};color:${colour}" title="${esc(w.format)}: mean of ${w.n} trial(s)${interval(s.others, w.format)}">${w.bits}: ${fmtAcc(w.mean)}${mark}</span>`;
      }).join('') + (s.baseline_mean !== null ? `<span class="chip" title="fp32 baseline">fp32: ${fmtAcc(s.baseline_mean)}</span>` : '');
      return `<li data-slice="${i}" data-min-bits="${s.min_bits ?? ''}"><div><span class="slice">${esc(sliceLabel(s.others))}</span>: ${answer}</div><div class="chips">${knee}${chips}</div></li>`;
    }).join('');
    return `<p class="muted">per value of the other axes: the fewest bits of ${esc(short(t.axis))} whose every wider width stays within ${delta} of the fp32 mean (✓ within, ✗ below; bits: mean)</p><ul class="slices">${slices}</ul>`;
  }

  // The newest recorded prediction, with this sweep's measured accuracy per assignment.
  async fetchPrediction() {
    const seq = ++this.predictionSeq;
    const body = this.el.querySelector('.prediction-body');
    let predictions, sweep, table;
    try {
      predictions = (await getJson(`/api/sweeps/${this.id}/predictions`)).predictions;
      if (predictions.length) {
        [sweep, table] = await Promise.all([getJson(`/api/sweeps/${this.id}`), getJson(`/api/sweeps/${this.id}/table`)]);
      }
    } catch (error) {
      if (seq !== this.predictionSeq || this.closed) return;
      body.innerHTML = `<p class="error">prediction unavailable: ${esc(error.message)}</p>`;
      body.dataset.prediction = 'error';
      return;
    }
    if (seq !== this.predictionSeq || this.closed) return;
    const recorded = predictions.filter((p) => p.prediction);
    if (!recorded.length) {
      body.innerHTML = '';
      body.dataset.prediction = 'none';
      return;
    }
    body.innerHTML = predictionSection(recorded[recorded.length - 1], recorded.length, sweep, table);
    body.dataset.prediction = 'ready';
  }

  convergence(c) {
    if (!c) return '<p class="muted" data-convergence="missing">No comparison: the sweep does not run both stochastic and truncate rounding.</p>';
    const a = esc(c.a), b = esc(c.b);
    let text;
    if (!c.compared_slices || !(c.ratio > 0)) {
      text = `No slice where both ${a} and ${b} reached the target accuracy (yet).`;
    } else {
      const saved = 1 - c.ratio;
      const [lo, hi] = (c.ci95 || []).map((x) => (x === null ? NaN : 1 - x)).sort((x, y) => x - y);
      let interval = '';
      if (Number.isFinite(lo) && Number.isFinite(hi)) {
        if (lo >= 0) interval = `${wholePercent(lo)}–${wholePercent(hi)} fewer`;
        else if (hi <= 0) interval = `${wholePercent(-hi)}–${wholePercent(-lo)} more`;
        else interval = `from ${wholePercent(-lo)} more to ${wholePercent(hi)} fewer: no clear difference`;
        interval = `, 95% interval ${interval}`;
      }
      text = `<b>${a}</b> needs <b>${wholePercent(Math.abs(saved))} ${saved >= 0 ? 'fewer' : 'more'}</b> iterations than ${b} to reach the target accuracy` +
        ` (ratio ${c.ratio.toFixed(2)}${interval}), over ${c.compared_slices} slice${c.compared_slices === 1 ? '' : 's'}.`;
    }
    const meanOf = (xs) => (xs && xs.length ? Math.round(xs.reduce((s, x) => s + x, 0) / xs.length) : '—');
    const rows = c.slices.map((s) => `<tr><td>${esc(sliceLabel(s.others))}</td>
        <td class="num">${meanOf(s[c.a])} <span class="muted">(${(s[c.a] || []).length}${s[c.a + '_missed'] ? `, ${s[c.a + '_missed']} never` : ''})</span></td>
        <td class="num">${meanOf(s[c.b])} <span class="muted">(${(s[c.b] || []).length}${s[c.b + '_missed'] ? `, ${s[c.b + '_missed']} never` : ''})</span></td>
        <td class="num">${s.ratio > 0 ? s.ratio.toFixed(2) : '—'}</td></tr>`).join('');
    return `<p data-convergence="ratio" data-ratio="${c.ratio ?? ''}">${text}</p>
      <details><summary class="muted">per slice (mean iterations to target; trials that reached it)</summary>
        <table class="compact"><thead><tr><th>slice</th><th>${a}</th><th>${b}</th><th>ratio</th></tr></thead><tbody>${rows}</tbody></table>
        <p class="muted">interval: stratified percentile bootstrap, ${c.resamples} resamples</p></details>`;
  }

  sensitivity(s) {
    if (!s || !s.terms.length) return '<p class="muted">No swept parameter to rank.</p>';
    const rows = s.terms.map((t) => {
      const interaction = t.term.includes('×');
      const name = t.term.split('×').map((p) => short(p.trim())).join(' × ');
      const share = t.share ?? 0;
      const w = Math.max(0, Math.min(1, share)) * 100;
      return `<div class="sens-row" data-term="${esc(t.term)}" data-percent="${percent(share)}">
        <span class="sens-name" title="${esc(t.term)} (${t.levels} ${interaction ? 'cells' : 'levels'})">${esc(name)}</span>
        <span class="sens-track"><span class="sens-bar" style="width:${w.toFixed(2)}%;background:${interaction ? INTERACTION : WITHIN}"></span></span>
        <span class="sens-value">${percent(share)}</span></div>`;
    }).join('');
    return `<div class="sens">${rows}</div>
      <p class="muted legend-note"><span class="swatch" style="background:${WITHIN}"></span>main effect
        <span class="swatch" style="background:${INTERACTION}"></span>interaction with precision (×) · ${s.observations} trials</p>`;
  }
}

// JSON with sorted keys: precision.layers values compare equal whatever their key order.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

// Mean final test accuracy of the DONE trials at each of the prediction's assignments, when
// this sweep sweeps precision.layers over them (the verifying sweep `bitsweep predict
// --verify-sweep` writes). The table's axis values are the distinct values in the sweep's order,
// so the k-th distinct spec value is the k-th axis value. Null when the sweep is not one.
export function measuredAccuracy(prediction, sweep, table) {
  const parameter = ((sweep && sweep.spec && sweep.spec.parameters) || []).find((p) => p.path === 'precision.layers');
  const axis = (table.axes || []).findIndex((a) => a.path === 'precision.layers');
  if (!parameter || axis < 0) return null;
  const distinct = [...new Set((parameter.values || []).map(canonical))];
  const col = Object.fromEntries(table.columns.map((c, i) => [c, i]));
  const result = new Map();
  let matched = 0;
  for (const a of prediction.assignments || []) {
    const k = distinct.indexOf(canonical(a.precision_layers));
    if (k < 0 || k >= table.axes[axis].values.length) continue;
    matched++;
    const text = table.axes[axis].values[k];
    const accs = table.rows.filter((r) => r[col.params][axis] === text && r[col.state] === 'DONE' &&
      r[col.final_test_accuracy] !== null).map((r) => r[col.final_test_accuracy]);
    result.set(canonical(a.precision_layers),
               {n: accs.length, mean: accs.length ? accs.reduce((x, y) => x + y, 0) / accs.length : null});
  }
  return matched ? result : null;
}

function predictionSection(recorded, count, sweep, table) {
  const p = recorded.prediction;
  const measured = measuredAccuracy(p, sweep, table);
  const assignments = p.assignments || [];
  const accuracyOf = (a) => (measured && a ? measured.get(canonical(a.precision_layers)) : undefined);
  const accCell = (m) => (m === undefined ? '<td class="num muted">—</td>' :
    `<td class="num" data-accuracy="${m.mean ?? ''}" data-n="${m.n}">${m.mean === null ? '<span class="muted">not finished</span>' : fmtAcc(m.mean)} <span class="muted">(${m.n})</span></td>`);
  const sci = (x) => (x === null || x === undefined ? '' : Number(x).toPrecision(3));
  const uniformAt = (bits) => assignments.find((a) => a.bits === bits);
  const rows = (p.bounds || []).map((b) => {
    const m = accuracyOf(uniformAt(b.bits));
    return `<tr data-bits="${b.bits}" data-bound="${b.bound}" data-measured="${b.measured}"${b.bits === p.uniform.min_bits ? ' class="predicted"' : ''}>
      <td class="num">${b.bits}${b.bits === p.uniform.min_bits ? ' ◀' : ''}</td><td class="num">${sci(b.bound)}</td>
      <td class="num">${Number(b.measured).toFixed(4)}</td>${measured ? accCell(m) : ''}</tr>`;
  }).join('');
  const baseline = assignments.find((a) => (a.precision_layers || []).length === 0);
  const perLayer = assignments.find((a) => a.bits === null && (a.precision_layers || []).length > 0);
  const extra = measured ? `<p data-prediction="verifying">This sweep verifies the prediction: fp32 baseline
      <span data-assignment="baseline" data-accuracy="${accuracyOf(baseline)?.mean ?? ''}">${fmtAcc(accuracyOf(baseline)?.mean)}</span>,
      per-layer assignment <span data-assignment="per-layer" data-accuracy="${accuracyOf(perLayer)?.mean ?? ''}">${fmtAcc(accuracyOf(perLayer)?.mean)}</span>
      <span class="muted">(mean final test accuracy of the DONE trials)</span></p>` :
    '<p class="muted" data-prediction="not-verifying">This sweep does not sweep precision.layers over the prediction\'s assignments: submit its verifying sweep (<code>bitsweep predict … --verify-sweep FILE --submit</code>) to see accuracies here.</p>';
  const layers = (p.layers || []).map((l) => `<tr data-layer="${esc(l.layer)}" data-b-a="${l.B_A}" data-b-w="${l.B_W}">
      <td>${esc(l.layer)}</td><td class="num">${l.B_A}</td><td class="num">${l.B_W}</td><td class="num">${l.I_A}</td><td class="num">${l.I_W}</td>
      <td class="num">${sci(l.E_A)}</td><td class="num">${sci(l.E_W)}</td></tr>`).join('');
  const gemm = (g) => (g ? `${g.min_mantissa} <span class="muted">(n ${g.length}${g.groups > 1 ? ` × ${g.groups}` : ''})</span>` : '');
  const accumulators = (p.accumulators || []).map((a) => `<tr data-accumulator="${esc(a.layer)}" data-forward-m="${a.forward?.min_mantissa}" data-backward-m="${a.backward?.min_mantissa}" data-gradient-m="${a.gradient?.min_mantissa}">
      <td>${esc(a.layer)}</td><td class="num">${gemm(a.forward)}</td><td class="num">${gemm(a.backward)}</td><td class="num">${gemm(a.gradient)}</td></tr>`).join('');
  const perLayerText = p.per_layer ?
    `per-layer assignment B_ref ${p.per_layer.reference_bits} (bound ${sci(p.per_layer.bound)}, measured p<sub>m</sub> ${Number(p.per_layer.measured).toFixed(4)})` : '';
  return `<h3>Prediction (seeds 001/003) <span class="muted">from ${esc(recorded.source || 'an unnamed model')}${count > 1 ? `, newest of ${count}` : ''}, ${new Date(recorded.created_unix_ms).toLocaleString()}</span></h3>
    <p data-prediction="summary" data-min-bits="${p.uniform.min_bits}">Predicted for p<sub>m</sub> ≤ ${p.target_pm}: <b>uniform B = ${p.uniform.min_bits}</b>
      (bound ${sci(p.uniform.bound)}${p.uniform.measured_min_bits !== null && p.uniform.measured_min_bits !== undefined ? `; measured mismatch reaches it at B = ${p.uniform.measured_min_bits}` : ''}); ${perLayerText}.</p>
    ${extra}
    <div class="analysis-grid">
      <div><table class="compact" data-prediction="bounds"><thead><tr><th>B</th><th>bound p<sub>m</sub></th><th>measured p<sub>m</sub></th>${measured ? '<th>accuracy (this sweep)</th>' : ''}</tr></thead><tbody>${rows}</tbody></table>
        <p class="muted">bound p<sub>m</sub> ≤ Σ E·4<sup>I</sup>·4<sup>1−B</sup> (Sakr et al.); measured: the fixed-point network's mismatch against fp32 on the test images</p></div>
      <div><table class="compact" data-prediction="layers"><thead><tr><th>layer</th><th>B<sub>A</sub></th><th>B<sub>W</sub></th><th>I<sub>A</sub></th><th>I<sub>W</sub></th><th>E<sub>A</sub></th><th>E<sub>W</sub></th></tr></thead><tbody>${layers}</tbody></table>
        <h3>Accumulator <span class="muted">(seed 003: minimum mantissa bits per GEMM)</span></h3>
        <table class="compact" data-prediction="accumulators"><thead><tr><th>layer</th><th>forward</th><th>backward</th><th>gradient</th></tr></thead><tbody>${accumulators}</tbody></table></div>
    </div>`;
}
