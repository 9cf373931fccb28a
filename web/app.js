// bitsweep dashboard: plain JavaScript, no build step. Polls the JSON API every 2 s.
// Routes: #/ (sweeps), #/sweeps/ID (one sweep and its trials), #/sweeps/ID/trials/TID.
'use strict';

const POLL_MS = 2000;
const app = document.getElementById('app');
const statusLine = document.getElementById('status');
let timer = null;

function esc(text) {
  return String(text ?? '').replace(/[&<>"']/g, (c) =>
    ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
}
function stateName(state) { return String(state || '').replace(/^(SWEEP|TRIAL)_STATE_/, ''); }
function outcomeName(o) { return String(o || '').replace(/^TRIAL_OUTCOME_/, '').replace('UNSPECIFIED', ''); }
function badge(state) { const s = stateName(state); return `<span class="state ${s}">${s}</span>`; }
function num(x) { return Number(x || 0); }
function fmtTime(ms) { return num(ms) ? new Date(num(ms)).toLocaleString() : ''; }
function fmtAcc(x) { return x === undefined || x === null ? '' : (100 * x).toFixed(2) + '%'; }
function fmtDuration(ms) {
  if (ms <= 0) return '';
  const s = Math.round(ms / 1000);
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
}

async function getJson(path) {
  const response = await fetch(path, {cache: 'no-store'});
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function progressBar(counts) {
  const total = Math.max(1, num(counts.total));
  const part = (n, cls) => n ? `<span class="${cls}" style="width:${100 * n / total}%"></span>` : '';
  return `<div class="bar">${part(num(counts.done), 'done')}${part(num(counts.failed), 'failed')}` +
         `${part(num(counts.cancelled), 'cancelled')}${part(num(counts.running), 'running')}</div>` +
         `<div class="counts">${num(counts.queued)} queued · ${num(counts.running)} running · ` +
         `${num(counts.done)} done · ${num(counts.failed)} failed` +
         (num(counts.diverged) ? ` · ${num(counts.diverged)} diverged` : '') + '</div>';
}

function elapsed(sweep) {
  const end = num(sweep.finished_unix_ms) || Date.now();
  return fmtDuration(end - num(sweep.created_unix_ms));
}

async function renderSweeps() {
  const {sweeps} = await getJson('/api/sweeps');
  if (!sweeps.length) {
    app.innerHTML = '<h1>Sweeps</h1><p class="muted">No sweeps yet: submit one with ' +
                    '<code>bitsweep submit sweep.yaml</code>.</p>';
    return;
  }
  const rows = sweeps.map((s) => `
    <tr class="clickable" onclick="location.hash='#/sweeps/${esc(s.id)}'">
      <td class="num">${esc(s.id)}</td><td><a href="#/sweeps/${esc(s.id)}">${esc(s.name)}</a></td>
      <td>${badge(s.state)}</td><td>${progressBar(s.counts)}</td>
      <td class="num">${esc(s.priority)}</td><td>${fmtTime(s.created_unix_ms)}</td>
      <td>${elapsed(s)}</td></tr>`).join('');
  app.innerHTML = `<h1>Sweeps</h1><table><thead><tr><th>id</th><th>name</th><th>state</th>
    <th>progress</th><th>priority</th><th>created</th><th>elapsed</th></tr></thead>
    <tbody>${rows}</tbody></table>`;
}

// The test-accuracy curve as inline SVG.
function curveSvg(curve, target) {
  const W = 640, H = 260, L = 48, R = 12, T = 12, B = 32;
  const points = curve.map((p) => [num(p.iteration), num(p.test_accuracy)]);
  if (!points.length) return '<p class="muted">No curve points yet.</p>';
  const maxX = Math.max(1, ...points.map((p) => p[0]));
  const x = (v) => L + (W - L - R) * v / maxX;
  const y = (v) => T + (H - T - B) * (1 - v);
  let grid = '';
  for (let a = 0; a <= 1.0001; a += 0.25) {
    grid += `<line class="grid" x1="${L}" x2="${W - R}" y1="${y(a)}" y2="${y(a)}"/>` +
            `<text x="${L - 6}" y="${y(a) + 4}" text-anchor="end">${Math.round(a * 100)}%</text>`;
  }
  const path = points.map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
  const targetLine = target > 0 ?
    `<line class="target" x1="${L}" x2="${W - R}" y1="${y(target)}" y2="${y(target)}"/>` : '';
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img"
      aria-label="test accuracy by iteration">${grid}
    <line class="axis" x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}"/>
    <line class="axis" x1="${L}" x2="${L}" y1="${T}" y2="${H - B}"/>${targetLine}
    <path class="curve" d="${path}"/>
    <text x="${W - R}" y="${H - 8}" text-anchor="end">iteration (max ${maxX})</text>
    <text x="${L}" y="${H - 8}">0</text></svg>`;
}

async function renderTrialPanel(trialId) {
  const {trial, curve} = await getJson(`/api/trials/${trialId}`);
  const target = num(trial.config && trial.config.train && trial.config.train.target_accuracy);
  const result = trial.result || {};
  return `<div class="panel"><h2>Trial ${esc(trial.id)} ${badge(trial.state)}
      <span class="muted">seed ${esc(trial.seed)} · attempt ${esc(trial.attempt)} ·
      ${esc(trial.worker_id)}</span></h2>
    ${(trial.params || []).map((p) => `<code>${esc(p.path)}=${esc(p.value)}</code>`).join(' ')}
    ${trial.error ? `<p class="error">${esc(trial.error)}</p>` : ''}
    ${result.detail ? `<p class="muted">${esc(result.detail)}</p>` : ''}
    <h2>Test accuracy</h2>${curveSvg(curve || [], target)}</div>`;
}

async function renderSweep(sweepId, trialId) {
  const [sweep, {trials}] = await Promise.all([
    getJson(`/api/sweeps/${sweepId}`), getJson(`/api/sweeps/${sweepId}/trials`)]);
  const paths = (sweep.spec.parameters || []).map((p) => p.path);
  const head = ['id', ...paths, 'seed', 'state', 'attempt', 'final acc', 'best acc',
                'iters to target', 'outcome', 'worker'].map((h) => `<th>${esc(h)}</th>`).join('');
  const rows = trials.map((t) => {
    const values = Object.fromEntries((t.params || []).map((p) => [p.path, p.value]));
    const done = stateName(t.state) === 'DONE';
    const r = t.result || {};
    const toTarget = done ? (num(r.iterations_to_target) < 0 ? 'never' : esc(r.iterations_to_target)) : '';
    return `<tr class="clickable${String(t.id) === String(trialId) ? ' selected' : ''}"
        onclick="location.hash='#/sweeps/${esc(sweepId)}/trials/${esc(t.id)}'">
      <td class="num">${esc(t.id)}</td>${paths.map((p) => `<td>${esc(values[p])}</td>`).join('')}
      <td class="num">${esc(t.seed)}</td><td>${badge(t.state)}</td>
      <td class="num">${esc(t.attempt)}</td>
      <td class="num">${done ? fmtAcc(r.final_test_accuracy) : ''}</td>
      <td class="num">${done ? fmtAcc(r.best_test_accuracy) : ''}</td>
      <td class="num">${toTarget}</td><td>${done ? esc(outcomeName(r.outcome)) : ''}</td>
      <td>${esc(t.worker_id)}</td></tr>`;
  }).join('');
  const panel = trialId ? await renderTrialPanel(trialId) : '';
  app.innerHTML = `<p><a href="#/">← all sweeps</a></p>
    <h1>${esc(sweep.name)} ${badge(sweep.state)}</h1>
    ${progressBar(sweep.counts)}
    <p class="muted">created ${fmtTime(sweep.created_unix_ms)} · elapsed ${elapsed(sweep)} ·
      priority ${esc(sweep.priority)}</p>
    ${panel}
    <div class="table-wrap"><table><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table></div>`;
}

async function render() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  try {
    if (parts[0] === 'sweeps' && parts[1]) {
      await renderSweep(parts[1], parts[2] === 'trials' ? parts[3] : null);
    } else {
      await renderSweeps();
    }
    statusLine.textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (error) {
    statusLine.innerHTML = `<span class="error">${esc(error.message)}</span>`;
  }
}

function schedule() {
  clearTimeout(timer);
  render().finally(() => { timer = setTimeout(schedule, POLL_MS); });
}

window.addEventListener('hashchange', schedule);
schedule();
