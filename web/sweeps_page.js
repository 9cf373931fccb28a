// The sweeps page: every sweep with its state, progress, start, elapsed and remaining time.
import {esc, num, badge, fmtTime, fmtDuration, getJson} from './util.js';

export function progressBar(counts) {
  const total = Math.max(1, num(counts.total));
  const part = (n, cls) => (n ? `<span class="${cls}" style="width:${100 * n / total}%"></span>` : '');
  const done = num(counts.done) - num(counts.diverged) - num(counts.pruned);
  return `<div class="bar">${part(done, 'done')}${part(num(counts.diverged), 'diverged')}` +
    `${part(num(counts.pruned), 'pruned')}${part(num(counts.failed), 'failed')}` +
    `${part(num(counts.cancelled), 'cancelled')}${part(num(counts.running), 'running')}</div>` +
    `<div class="counts">${num(counts.queued)} queued · ${num(counts.running)} running · ` +
    `${num(counts.done)} done · ${num(counts.failed)} failed · ${num(counts.diverged)} diverged · ` +
    `${num(counts.pruned)} pruned · ${num(counts.cancelled)} cancelled</div>`;
}

export async function renderSweeps(app) {
  const {sweeps = []} = await getJson('/api/sweeps');
  if (!sweeps.length) {
    app.innerHTML = '<h1>Sweeps</h1><p class="muted">No sweeps yet: submit one with ' +
                    '<code>bitsweep submit sweep.yaml</code>.</p>';
    return;
  }
  const rows = sweeps.map((s) => `
    <tr class="clickable" data-sweep="${esc(s.id)}">
      <td class="num">${esc(s.id)}</td><td><a href="#/sweeps/${esc(s.id)}">${esc(s.name)}</a></td>
      <td>${badge(s.state)}</td><td>${progressBar(s.counts)}</td>
      <td>${fmtTime(s.started_unix_ms)}</td><td>${fmtDuration(s.elapsed_ms)}</td>
      <td>${s.eta_ms >= 0 ? fmtDuration(s.eta_ms) : '—'}</td></tr>`).join('');
  app.innerHTML = `<h1>Sweeps</h1><table id="sweeps"><thead><tr><th>id</th><th>name</th><th>state</th>
    <th>progress</th><th>started</th><th>elapsed</th><th>remaining</th></tr></thead>
    <tbody>${rows}</tbody></table>`;
  app.querySelectorAll('tr[data-sweep]').forEach((tr) => tr.addEventListener('click', () => {
    location.hash = `#/sweeps/${tr.dataset.sweep}`;
  }));
}
