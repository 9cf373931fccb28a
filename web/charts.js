// Charts of the dashboard, drawn with uPlot (window.uPlot, see web/README.md) on canvas, plus an
// HTML heatmap. Colours: Okabe & Ito's colour-blind-safe palette (yellow last: weak on white);
// beyond 8 values the colours repeat with dashes.
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9',
  '#000000', '#F0E442'];
export function colour(i) { return PALETTE[i % PALETTE.length]; }
export function dash(i) { return i < PALETTE.length ? undefined : [6, 3 * (1 + Math.floor(i / PALETTE.length))]; }
export function alpha(hex, a) {
  const v = parseInt(hex.slice(1), 16);
  return `rgba(${v >> 16},${(v >> 8) & 255},${v & 255},${a})`;
}
function width(el) { return Math.max(320, Math.min(el.clientWidth || 900, 1400) - 8); }

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
    scales: {x: {time: false}, y: yRange ? {range: yRange} : {auto: true}},
    axes: [{label: xLabel}, {label: yLabel, size: 60}],
  };
  return new window.uPlot(opts, data, el);
}

// Points with 95% error bars over categories: series {label, color, mean[], ci[]}.
export function errorBarChart(el, {categories, series, xLabel, yLabel, height = 300, format}) {
  const k = series.length;
  const offset = (j) => (k > 1 ? (j - (k - 1) / 2) * 0.08 : 0);
  // uPlot needs one shared x: each series is drawn at its own offset by the draw hook, so the
  // data are placed on the categories and the points are drawn by hand.
  const x = categories.map((_, i) => i);
  const data = [x, ...series.map((s) => s.mean)];
  const useries = [{label: xLabel}, ...series.map((s, j) => ({
    label: s.label, stroke: s.color, width: 1.5, dash: s.dash, spanGaps: true,
    points: {show: false}}))];
  const lows = series.flatMap((s) => s.mean.map((m, i) => m - (Number.isFinite(s.ci[i]) ? s.ci[i] : 0)));
  const highs = series.flatMap((s) => s.mean.map((m, i) => m + (Number.isFinite(s.ci[i]) ? s.ci[i] : 0)));
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
      s.mean.forEach((m, i) => {
        if (!Number.isFinite(m)) return;
        const px = u.valToPos(i + offset(j), 'x', true);
        const py = u.valToPos(m, 'y', true);
        const c = s.ci[i];
        if (Number.isFinite(c)) {
          const y0 = u.valToPos(m - c, 'y', true), y1 = u.valToPos(m + c, 'y', true);
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
    scales: {x: {time: false, range: [-0.5, categories.length - 0.5]}, y: {range: [lo - pad, hi + pad]}},
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

export function legend(items) {
  return '<div class="legend">' + items.map((it) =>
    `<span><i style="background:${it.color}"></i>${it.label}</span>`).join('') + '</div>';
}
