// Charts of the dashboard, drawn with uPlot (window.uPlot, see web/README.md) on canvas, plus an
// HTML heatmap. Colours: Okabe & Ito's colour-blind-safe palette (yellow last: weak on white);
// beyond 8 values the colours repeat with dashes.
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9',
  '#000000', '#F0E442'];
export function colour(i) { return PALETTE[i % PALETTE.length]; }
export function dash(i) { return i < PALETTE.length ? undefined : [6, 3 * (1 + Math.floor(i / PALETTE.length))]; }
// Line styles for a second parameter (solid first), so lines of one colour stay apart.
const STYLES = [undefined, [8, 4], [2, 3], [12, 3, 2, 3], [4, 6], [16, 4, 4, 4]];
export function lineStyle(i) { return STYLES[i % STYLES.length]; }
export function alpha(hex, a) {
  const v = parseInt(hex.slice(1), 16);
  return `rgba(${v >> 16},${(v >> 8) & 255},${v & 255},${a})`;
}
function width(el) { return Math.max(320, Math.min(el.clientWidth || 900, 1400) - 8); }

// The y range of accuracies: up to 1, from a tenth below the lowest value drawn, so curves that
// all sit between 0.8 and 1 are not squeezed into the top fifth of the chart.
export function accuracyRange(u, min, max) {
  return [Number.isFinite(min) ? Math.max(0, Math.floor((Math.min(min, max) - 0.02) * 10) / 10) : 0, 1];
}
// uPlot's own range, except for flat data (all zeros would get 0..100, a flat 32 0..60): from 0
// to a quarter above the value.
function autoRange(u, min, max) {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) return min > 0 ? [0, min * 1.25] : min < 0 ? [min * 1.25, 0] : [0, 1];
  return window.uPlot.rangeNum(min, max, 0.1, true);
}

// A line chart: x values shared, each series {label, values, color, width, dash, lo, hi}
// (lo/hi: a band). Returns the uPlot instance.
export function lineChart(el, {x, series, xLabel, yLabel, height = 320, yRange}) {
  const useries = [{label: xLabel}];
  const data = [x];
  const bands = [];
  for (const s of series) {
    data.push(s.values);
    const main = data.length - 1;
    useries.push({label: s.label, stroke: s.color, width: s.width || 1.5, dash: s.dash,
                  points: {show: false}, spanGaps: true});
    if (s.lo && s.hi) {
      data.push(s.hi); useries.push({label: s.label + ' hi', stroke: 'transparent', points: {show: false}, spanGaps: true});
      data.push(s.lo); useries.push({label: s.label + ' lo', stroke: 'transparent', points: {show: false}, spanGaps: true});
      bands.push({series: [main + 1, main + 2], fill: alpha(s.color, 0.15)});
    }
  }
  el.innerHTML = '';
  const opts = {
    width: width(el), height, series: useries, bands, legend: {show: false},
    cursor: {drag: {x: true, y: false}, points: {show: false}},
    scales: {x: {time: false}, y: {range: yRange || autoRange}},
    axes: [{label: xLabel}, {label: yLabel, size: 60}],
  };
  return new window.uPlot(opts, data, el);
}

// Points with 95% error bars over categories: series {label, color, mean[], ci[]}. `bounds`:
// the values the quantity can take ([0, 1] for accuracies): bars are cut there, so an interval
// of a few noisy seeds does not draw negative iterations.
export function errorBarChart(el, {categories, series, xLabel, yLabel, height = 300, format,
                                   bounds = [-Infinity, Infinity]}) {
  const clamp = (v) => Math.min(bounds[1], Math.max(bounds[0], v));
  const k = series.length;
  const offset = (j) => (k > 1 ? (j - (k - 1) / 2) * 0.08 : 0);
  // uPlot needs one shared x: each series is drawn at its own offset by the draw hook, so the
  // data are placed on the categories and the points are drawn by hand.
  const x = categories.map((_, i) => i);
  const data = [x, ...series.map((s) => s.mean)];
  // The lines joining a series' points are drawn by the hook too, through the offset points
  // (uPlot would draw them at the category, beside the points).
  const useries = [{label: xLabel}, ...series.map((s) => ({
    label: s.label, stroke: s.color, width: 1.5, dash: s.dash, spanGaps: true,
    points: {show: false}, paths: () => null}))];
  const lows = series.flatMap((s) => s.mean.map((m, i) => clamp(m - (Number.isFinite(s.ci[i]) ? s.ci[i] : 0))));
  const highs = series.flatMap((s) => s.mean.map((m, i) => clamp(m + (Number.isFinite(s.ci[i]) ? s.ci[i] : 0))));
  const finite = (xs) => xs.filter(Number.isFinite);
  let lo = Math.min(...finite(lows)), hi = Math.max(...finite(highs));
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.05 || 0.01;
  el.innerHTML = '';
  const draw = (u) => {
    const ctx = u.ctx;
    ctx.save();
    series.forEach((s, j) => {
      ctx.strokeStyle = s.color; ctx.fillStyle = s.color; ctx.lineWidth = 1.5 * devicePixelRatio;
      ctx.setLineDash((s.dash || []).map((d) => d * devicePixelRatio));
      ctx.beginPath();
      let started = false;
      s.mean.forEach((m, i) => {
        if (!Number.isFinite(m)) return;
        const px = u.valToPos(i + offset(j), 'x', true), py = u.valToPos(m, 'y', true);
        if (started) ctx.lineTo(px, py); else ctx.moveTo(px, py);
        started = true;
      });
      ctx.stroke();
      ctx.setLineDash([]);
      s.mean.forEach((m, i) => {
        if (!Number.isFinite(m)) return;
        const px = u.valToPos(i + offset(j), 'x', true);
        const py = u.valToPos(m, 'y', true);
        const c = s.ci[i];
        if (Number.isFinite(c)) {
          const y0 = u.valToPos(clamp(m - c), 'y', true), y1 = u.valToPos(clamp(m + c), 'y', true);
          const w = 4 * devicePixelRatio;
          ctx.beginPath();
          ctx.moveTo(px, y0); ctx.lineTo(px, y1);
          ctx.moveTo(px - w, y0); ctx.lineTo(px + w, y0);
          ctx.moveTo(px - w, y1); ctx.lineTo(px + w, y1);
          ctx.stroke();
        }
        ctx.beginPath(); ctx.arc(px, py, 3.5 * devicePixelRatio, 0, 2 * Math.PI); ctx.fill();
      });
    });
    ctx.restore();
  };
  const opts = {
    width: width(el), height, series: useries, legend: {show: false},
    cursor: {show: false},
    scales: {x: {time: false, range: [-0.5, categories.length - 0.5]}, y: {range: [Math.max(bounds[0], lo - pad), Math.min(bounds[1], hi + pad)]}},
    axes: [{label: xLabel, splits: () => x, values: (u, vals) => vals.map((v) => categories[v] ?? '')},
           {label: yLabel, size: 60, values: format ? (u, vals) => vals.map(format) : undefined}],
    hooks: {draw: [draw]},
  };
  return new window.uPlot(opts, data, el);
}

// Viridis (perceptually uniform, colour-blind safe), t in [0, 1].
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
export function viridis(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x)), f = x - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
  return {bg: `rgb(${c})`, fg: t > 0.55 ? '#000' : '#fff'};
}

// Items {label, color, dash}: a line sample in the item's colour and dash pattern.
export function legend(items) {
  return '<div class="legend">' + items.map((it) =>
    `<span><svg width="22" height="8" aria-hidden="true"><line x1="0" y1="4" x2="22" y2="4" stroke="${it.color}" stroke-width="2.5"${it.dash ? ` stroke-dasharray="${it.dash.join(' ')}"` : ''}/></svg>${it.label}</span>`).join('') + '</div>';
}
