// The trial page: config, curves (accuracy, loss, per-site and per-layer statistics when
// recorded), confusion matrix, per-class recall, kappa, attempts and workers.
import {esc, num, badge, fmtAcc, fmtTime, fmtDuration, getJson, stateName} from './util.js';
import {lineChart, colour, viridis, legend, accuracyRange} from './charts.js';

function chart(app, id, title, x, series, yLabel, yRange) {
  const box = document.createElement('div');
  box.className = 'panel';
  box.innerHTML = `<h2>${esc(title)}</h2>${legend(series.map((s) => ({label: esc(s.label), color: s.color})))}<div id="${id}" class="chart"></div>`;
  app.querySelector('#trial-charts').appendChild(box);
  const el = box.querySelector('.chart');
  el.dataset.lines = String(series.length);
  lineChart(el, {x, series, xLabel: 'iteration', yLabel, height: 240, yRange});
}

export async function renderTrial(app, trialId) {
  const body = await getJson(`/api/trials/${trialId}`);
  const {trial} = body, curve = body.curve || [], r = trial.result || {};
  const done = stateName(trial.state) === 'DONE';
  const k = num(r.num_classes);
  const confusion = (r.confusion || []).map(Number);
  let matrix = '<p class="muted">No confusion matrix (the trial has not finished).</p>';
  if (done && k > 0 && confusion.length === k * k) {
    const max = Math.max(...confusion);
    const cell = (v) => { const c = viridis(max ? Math.sqrt(v / max) : 0); return `<td class="num heat" style="background:${c.bg};color:${c.fg}">${v}</td>`; };
    matrix = `<table class="heatmap" id="confusion"><thead><tr><th>true \\ predicted</th>${[...Array(k).keys()].map((j) => `<th>${j}</th>`).join('')}<th>recall</th></tr></thead><tbody>` +
      [...Array(k).keys()].map((i) => `<tr><th>${i}</th>${confusion.slice(i * k, i * k + k).map(cell).join('')}<td class="num">${fmtAcc((r.per_class_recall || [])[i])}</td></tr>`).join('') + '</tbody></table>';
  }
  const params = (trial.params || []).map((p) => `<code>${esc(p.path)} = ${esc(p.value)}</code>`).join(' ');
  const history = body.history || {events: [], curve_attempts: []};
  const events = history.events.map((e) => `<li>${fmtTime(e.at_unix_ms)} · ${esc(e.kind)} ${e.worker_id ? 'on ' + esc(e.worker_id) : ''} ${esc(e.detail)}</li>`).join('');
  const attempts = history.curve_attempts.map((a) => `<li>attempt ${esc(a.attempt)}: ${esc(a.points)} points, iterations ${esc(a.first_iteration)}–${esc(a.last_iteration)}</li>`).join('');
  app.innerHTML = `<p><a href="#/sweeps/${esc(trial.sweep_id)}">← sweep ${esc(trial.sweep_id)}</a></p>
    <h1>Trial ${esc(trial.id)} ${badge(trial.state)} <span class="muted">seed ${esc(trial.seed)}</span></h1>
    <p>${params}</p>
    <p class="muted">attempt ${esc(trial.attempt)} · last worker ${esc(trial.worker_id) || '—'} ·
      started ${fmtTime(trial.started_unix_ms)} · ${num(trial.finished_unix_ms) ? 'took ' + fmtDuration(num(trial.finished_unix_ms) - num(trial.started_unix_ms)) : ''}</p>
    ${trial.error ? `<p class="error">${esc(trial.error)}</p>` : ''}
    ${done ? `<div class="panel" id="summary"><h2>Result</h2><p>outcome <b>${esc(String(r.outcome || '').replace('TRIAL_OUTCOME_', ''))}</b> ·
      final test accuracy <b>${fmtAcc(r.final_test_accuracy)}</b> · best ${fmtAcc(r.best_test_accuracy)} ·
      final test loss ${Number(r.final_test_loss || 0).toFixed(4)} · iterations to target ${num(r.iterations_to_target) < 0 ? 'never' : esc(r.iterations_to_target)} ·
      kappa <b>${Number(r.kappa || 0).toFixed(4)}</b> · ${Number(r.images_per_second || 0).toFixed(0)} images/s
      ${r.detail ? ' · ' + esc(r.detail) : ''}</p></div>` : ''}
    <div id="trial-charts" class="grid2"></div>
    <div class="grid2"><div class="panel"><h2>Confusion matrix and per-class recall</h2>${matrix}</div>
      <div class="panel"><h2>Attempts and workers</h2><ul>${attempts || '<li class="muted">no points yet</li>'}</ul>
        <h2>Events</h2><ul>${events || '<li class="muted">none</li>'}</ul></div></div>
    <details class="panel"><summary>Config</summary><pre>${esc(JSON.stringify(trial.config, null, 2))}</pre></details>`;
  if (!curve.length) return;
  const x = curve.map((p) => num(p.iteration));
  const col = (f) => curve.map((p) => (p[f] === undefined ? null : Number(p[f])));
  chart(app, 'accuracy', 'Accuracy', x, [
    {label: 'test', values: col('test_accuracy'), color: colour(0), width: 2},
    {label: 'train', values: col('train_accuracy'), color: colour(1)}], 'accuracy', accuracyRange);
  chart(app, 'loss', 'Loss', x, [
    {label: 'test', values: col('test_loss'), color: colour(0), width: 2},
    {label: 'train', values: col('train_loss'), color: colour(1)}], 'loss');
  // Per quantised site and per layer, when the worker recorded them (columnar, see docs/api.md).
  // Sites often coincide (every site at 10 bits, no overflow anywhere): earlier lines are drawn
  // wider, so a line hidden under a later one still shows at its edges.
  const seriesOf = (block, list, key, field) => block[list].map((e, i, all) => ({label: e[key], color: colour(i),
    width: 1.5 + Math.min(3, all.length - 1 - i),
    values: e[field].map((v) => (v === null || v === undefined ? null : Number(v)))}));
  const sites = body.site_series;
  if (sites && sites.sites.length) {
    const sx = sites.iteration.map(num);
    chart(app, 'site-bits', 'Effective bits per site', sx, seriesOf(sites, 'sites', 'site', 'effective_bits'), 'bits');
    chart(app, 'site-error', 'Quantisation error per site (%)', sx, seriesOf(sites, 'sites', 'site', 'quantization_error_percent'), '%');
    chart(app, 'site-overflow', 'Overflow rate per site (%)', sx, seriesOf(sites, 'sites', 'site', 'overflow_percent'), '%');
  }
  const layers = body.layer_series;
  if (layers && layers.layers.length) {
    const lx = layers.iteration.map(num);
    chart(app, 'layer-grad', 'Weight-gradient norm per layer', lx, seriesOf(layers, 'layers', 'layer', 'gradient_norm'), 'L2 norm');
    chart(app, 'layer-flush', 'Gradients flushed to zero per layer', lx, seriesOf(layers, 'layers', 'layer', 'flushed_to_zero'), 'fraction');
  }
}
