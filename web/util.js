// Shared helpers of the dashboard pages: formatting, fetching, statistics.
export function esc(text) {
  return String(text ?? '').replace(/[&<>"']/g, (c) =>
    ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
}
export const num = (x) => Number(x || 0);
export function stateName(s) { return String(s || '').replace(/^(SWEEP|TRIAL)_STATE_/, ''); }
export function badge(state) { const s = stateName(state); return `<span class="state ${s}">${s}</span>`; }
export function fmtTime(ms) { return num(ms) ? new Date(num(ms)).toLocaleString() : ''; }
export function fmtAcc(x) { return x === undefined || x === null || Number.isNaN(x) ? '' : (100 * x).toFixed(2) + '%'; }
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || ms < 0) return '';
  const s = Math.round(ms / 1000);
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
}
export async function getJson(path) {
  const response = await fetch(path, {cache: 'no-store'});
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}
// Two-sided 95% Student t quantile (same table as server/sweep_read_model.cc).
const T975 = [NaN, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201,
  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060,
  2.056, 2.052, 2.048, 2.045, 2.042];
export function t975(df) {
  if (df <= 0) return NaN;
  if (df <= 30) return T975[df];
  if (df <= 60) return 2.042 - 0.042 * (df - 30) / 30;
  if (df <= 120) return 2.0 - 0.02 * (df - 60) / 60;
  return 1.96;
}
// {mean, std, ci95, n} of finite values (sample std; ci95 null for n < 2).
export function stats(values) {
  const xs = values.filter((x) => x !== null && Number.isFinite(x));
  const n = xs.length;
  if (!n) return {mean: NaN, std: NaN, ci95: NaN, n: 0};
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : 0;
  return {mean, std, ci95: n > 1 ? t975(n - 1) * std / Math.sqrt(n) : NaN, n};
}
export function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], {type}));
  const a = document.createElement('a');
  a.href = url; a.download = name; a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
export function csvField(v) {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}
