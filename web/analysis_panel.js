// The sweep page's analysis panel: GET /api/sweeps/ID/analysis (the same analysis as
// `bitsweep analyze`, analysis/sweep_analysis.h) stated in words — the fewest bits within δ of
// fp32 per slice of the other axes with the evidence either side and the knee, stochastic vs
// truncate iterations to target, and the sensitivity ranking as bars. δ is an input; the panel
// refetches (at most every REFRESH_MS) when the sweep's event stream reports finished trials.
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
      <div class="analysis-body"><p class="muted">computing…</p></div>`;
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
