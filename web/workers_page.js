// The workers page: host, slots, running trials, last heartbeat, throughput.
import {esc, num, fmtTime, getJson} from './util.js';

export async function renderWorkers(app) {
  const {workers = []} = await getJson('/api/workers');
  const rows = workers.map((w) => `<tr><td>${esc(w.worker_id)}</td><td>${esc(w.host)}</td>
    <td>${w.alive ? '<span class="state DONE">alive</span>' : '<span class="state FAILED">lost</span>'}</td>
    <td class="num">${esc(w.slots)}</td><td class="num">${esc(w.running)}</td>
    <td>${fmtTime(w.last_heartbeat_unix_ms)} <span class="muted">(${Math.max(0, Math.round((Date.now() - num(w.last_heartbeat_unix_ms)) / 1000))} s ago)</span></td>
    <td class="num">${esc(w.trials_done)}</td><td class="num">${esc(w.finished_last_hour ?? '')}</td></tr>`).join('');
  app.innerHTML = `<h1>Workers</h1>` + (workers.length ? `<table id="workers"><thead><tr><th>worker</th><th>host</th>
    <th>status</th><th>slots</th><th>running</th><th>last heartbeat</th><th>trials done</th>
    <th>trials in the last hour</th></tr></thead><tbody>${rows}</tbody></table>` :
    '<p class="muted">No worker has registered yet.</p>');
}
