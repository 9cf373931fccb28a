// The dashboard's page checks, written once against the page interface of browser_driver.mjs and
// run by dashboard_browser_test.mjs in every browser: each page loaded against a server on a
// database filled by dashboard_fixture (a completed and a running sweep); the charts and table
// must show the store's data, points appended to the running trial must arrive live, nothing may
// be fetched from outside the server and no page may throw. Screenshots go to `shots`.
import {execFileSync} from 'node:child_process';
import path from 'node:path';

async function until(what, fn, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

// The verifying sweep's page: the "Prediction (seeds 001/003)" section shows what
// GET .../predictions holds, and next to each assignment the mean final accuracy computed here
// from the sweep's export (trials matched by their precision.layers value).
async function checkPrediction({page, load, api, ids, check}) {
  const id = ids.verify_sweep;
  const [{predictions}, sweep, rows] = await Promise.all([
    api(`/api/sweeps/${id}/predictions`), api(`/api/sweeps/${id}`),
    api(`/api/sweeps/${id}/export?format=json`)]);
  check(predictions.length === 1 && predictions[0].prediction, 'prediction: one recorded on the verifying sweep');
  const p = predictions[0].prediction;
  await load(`/sweeps/${id}`);
  await page.waitFor('#analysis .prediction-body[data-prediction="ready"]', 15000);
  check(await page.attr('#analysis [data-prediction="summary"]', 'data-min-bits') === String(p.uniform.min_bits) &&
        (await page.text('#analysis [data-prediction="summary"]')).includes(`uniform B = ${p.uniform.min_bits}`),
        `prediction: uniform B = ${p.uniform.min_bits} as recorded`);
  // The trials of each assignment, from the store: their config's precision.layers, as the
  // export's params text, is the spec value's (same order: the k-th value of the spec).
  const values = sweep.spec.parameters.find((q) => q.path === 'precision.layers').values;
  const texts = [...new Set(rows.map((r) => r['precision.layers']))];
  const canonical = (v) => JSON.stringify(v, (k, x) => (x && typeof x === 'object' && !Array.isArray(x) ?
    Object.fromEntries(Object.entries(x).sort()) : x));
  const meanOf = (assignment) => {
    const k = values.findIndex((v) => canonical(v) === canonical(assignment.precision_layers));
    const accs = rows.filter((r) => r['precision.layers'] === texts[k] && r.state === 'DONE').map((r) => r.final_test_accuracy);
    return {mean: mean(accs), n: accs.length};
  };
  const shown = await page.evaluate(() => [...document.querySelectorAll('#analysis [data-prediction="bounds"] tbody tr')].map((tr) => {
    const acc = tr.querySelector('[data-accuracy]');
    return {bits: Number(tr.dataset.bits), bound: Number(tr.dataset.bound), measured: Number(tr.dataset.measured),
            accuracy: acc ? Number(acc.dataset.accuracy) : null, n: acc ? Number(acc.dataset.n) : null};
  }));
  check(shown.length === p.bounds.length && shown.every((r, k) => r.bits === p.bounds[k].bits &&
        r.bound === p.bounds[k].bound && r.measured === p.bounds[k].measured),
        `prediction: bound and measured p_m for each of ${p.bounds.length} widths as the API`);
  let compared = 0, agree = 0;
  for (const a of p.assignments.filter((x) => x.bits !== null)) {
    const row = shown.find((r) => r.bits === a.bits);
    const expected = meanOf(a);
    compared++;
    if (row && row.n === expected.n && expected.n === 2 && Math.abs(row.accuracy - expected.mean) < 1e-9) agree++;
  }
  check(compared === 5 && agree === compared,
        `prediction: mean final accuracy of the verifying trials at uniform B = 4..8 as the store's (${agree}/${compared})`);
  const perLayer = p.assignments.find((x) => x.bits === null && x.precision_layers.length);
  const baseline = p.assignments.find((x) => x.precision_layers.length === 0);
  const shownPerLayer = Number(await page.attr('#analysis [data-assignment="per-layer"]', 'data-accuracy'));
  const shownBaseline = Number(await page.attr('#analysis [data-assignment="baseline"]', 'data-accuracy'));
  check(Math.abs(shownPerLayer - meanOf(perLayer).mean) < 1e-9 && Math.abs(shownBaseline - meanOf(baseline).mean) < 1e-9,
        `prediction: per-layer assignment ${shownPerLayer.toFixed(4)} and fp32 baseline ${shownBaseline.toFixed(4)} as the store's`);
  check(shownBaseline > meanOf(p.assignments.find((x) => x.bits === 4)).mean,
        'prediction: the fixture\'s narrowest assignment is below the fp32 baseline');
  const layers = await page.evaluate(() => [...document.querySelectorAll('#analysis [data-prediction="layers"] tbody tr')].map(
    (tr) => [tr.dataset.layer, Number(tr.dataset.bA), Number(tr.dataset.bW)]));
  check(JSON.stringify(layers) === JSON.stringify(p.layers.map((l) => [l.layer, l.B_A, l.B_W])),
        `prediction: per-layer B_A / B_W as the API (${layers.map((l) => l.join(' ')).join(', ')})`);
  const accumulators = await page.evaluate(() => [...document.querySelectorAll('#analysis [data-prediction="accumulators"] tbody tr')].map(
    (tr) => [tr.dataset.accumulator, Number(tr.dataset.forwardM), Number(tr.dataset.backwardM), Number(tr.dataset.gradientM)]));
  check(JSON.stringify(accumulators) === JSON.stringify(p.accumulators.map((a) =>
    [a.layer, a.forward.min_mantissa, a.backward.min_mantissa, a.gradient.min_mantissa])),
        'prediction: seed 003 minimum accumulator mantissa per layer and GEMM as the API');
}

// page: a browser_driver.mjs page; base: the server's HTTP URL; ids: dashboard_fixture's output;
// check(condition, what): records a result.
export async function checkDashboard({page, base, ids, db, fixtureBin, shots, check}) {
  const api = async (p) => (await fetch(base + p)).json();
  const external = [];
  // data: URLs are inline, not fetches (Firefox reports one for a font of its own, omni.ja).
  page.onRequest((url) => { if (!url.startsWith(base) && !url.startsWith('data:')) external.push(url); });
  const errors = [];
  page.onPageError((message) => errors.push(message));
  const load = async (hash) => {
    await page.goto(`${base}/#${hash}`);
    await page.waitFor('body[data-ready="1"]', 15000);
  };
  const shot = (name) => page.screenshot(path.join(shots, name));

  // Sweeps page.
  await load('/');
  check(await page.count('#sweeps tbody tr') === 3, 'sweeps page lists the three sweeps');
  await shot('sweeps.png');

  // Completed sweep: 3 formats x 2 roundings x 3 seeds.
  const done = ids.completed_sweep;
  const rows = await api(`/api/sweeps/${done}/export?format=json`);
  await load(`/sweeps/${done}`);
  check(await page.attr('#curves', 'data-lines') === '6', 'curves: one line per seed group (6)');
  check(await page.count('#curves canvas') === 1, 'curves are drawn on a canvas');
  check(await page.attr('#errorbars', 'data-series') === '2', 'error bars: one series per rounding');
  check(await page.attr('#errorbars', 'data-points') === '6', 'error bars: a point per format and rounding');
  const values = JSON.parse(await page.attr('#errorbars', 'data-values'));
  const fp32Truncate = mean(rows.filter((r) => r['precision.default.format'] === 'fp32' &&
    r['precision.default.rounding'] === 'truncate').map((r) => r.final_test_accuracy));
  const formats = await page.texts('#heatmap thead th');
  const fp32Column = formats.indexOf('fp32') - 1;
  check(fp32Column >= 0 && Math.abs(values[0][fp32Column] - fp32Truncate) < 1e-5,
        `error bars: fp32/truncate mean ${values[0][fp32Column]} = store's ${fp32Truncate.toFixed(6)}`);
  check(await page.attr('#table', 'data-rows') === '18', 'table: 18 trials');
  check(await page.count('#table tbody tr') === 18, 'table: 18 rows shown');
  const firstId = await page.attr('#table tbody tr', 'data-trial');
  const first = rows.find((r) => String(r.id) === firstId);
  const firstText = await page.text('#table tbody tr');
  const firstAccuracy = (100 * first.final_test_accuracy).toFixed(2) + '%';
  check(firstText.includes(firstAccuracy),
        `table: trial ${firstId} shows its final accuracy ${firstAccuracy}`);
  check(await page.count('#heatmap td.heat') === 6, 'heatmap: 6 cells');

  // Analysis panel: the page states what GET .../analysis answers, and that answer agrees with
  // the fewest bits computed here from the store's export.
  await page.waitFor('#analysis[data-state="ready"]', 15000);
  const analysis = await api(`/api/sweeps/${done}/analysis`);
  const slices = analysis.tolerance ? analysis.tolerance.slices : [];
  check(slices.length === 2 && await page.count('#analysis li[data-slice]') === 2,
        'analysis: one tolerance slice per rounding (2)');
  for (const [i, s] of slices.entries()) {
    const rounding = s.others['precision.default.rounding'];
    const meanOf = (format) => mean(rows.filter((r) => r['precision.default.format'] === format &&
      r['precision.default.rounding'] === rounding).map((r) => r.final_test_accuracy));
    const floor = meanOf('fp32') - 0.005;
    let fewest = null;  // walk down from the widest width while within 0.5 points of fp32
    for (const [bits, format] of [[16, 'mask:16'], [12, 'mask:12']]) {
      if (meanOf(format) < floor) break;
      fewest = bits;
    }
    const shown = await page.attr(`#analysis li[data-slice="${i}"]`, 'data-min-bits');
    const text = await page.text(`#analysis li[data-slice="${i}"]`);
    check(s.min_bits === fewest && shown === String(fewest ?? '') &&
          (fewest === null ? text.includes('no width') : text.includes(`${fewest} bits stay within 0.5 points`)),
          `analysis: ${rounding} fewest bits ${shown || 'none'} = API ${s.min_bits} = store's ${fewest}`);
  }
  const terms = analysis.sensitivity.terms;
  const shares = await page.evaluate(() => [...document.querySelectorAll('#analysis .sens-row')].map(
    (e) => [e.dataset.term, e.querySelector('.sens-value').textContent]));
  check(terms.length === 3 && shares.length === terms.length &&
        terms.every((t, k) => shares[k][0] === t.term && shares[k][1] === (100 * t.share).toFixed(1) + '%'),
        `analysis: sensitivity ranking as the API (${shares.map((x) => x.join(' ')).join(', ')})`);
  const speed = analysis.convergence;
  const saved = speed && speed.ratio > 0 ? Math.round(100 * Math.abs(1 - speed.ratio)) + '%' : null;
  check(saved !== null && (await page.text('#analysis [data-convergence="ratio"]')).includes(`stochastic needs ${saved}`),
        `analysis: convergence "stochastic needs ${saved} ..." as the API's ratio ${speed && speed.ratio}`);
  await page.screenshotElement('#analysis', path.join(shots, 'sweep-analysis.png'));
  // δ refetches: at 0 points no reduced width may be below fp32's mean.
  await page.fill('input[data-analysis="delta"]', '0');
  await page.waitFor('#analysis[data-delta="0"][data-state="ready"]', 15000);
  const strict = await api(`/api/sweeps/${done}/analysis?delta=0`);
  const strictShown = await page.evaluate(() => [...document.querySelectorAll('#analysis li[data-slice]')].map((e) => e.dataset.minBits));
  check(JSON.stringify(strictShown) === JSON.stringify(strict.tolerance.slices.map((s) => String(s.min_bits ?? ''))),
        `analysis: δ = 0 refetched (fewest bits ${strictShown.join(', ')})`);
  await shot('sweep-completed.png');
  await page.check('input[data-ui="seeds"]');
  await until('seed lines', async () => (await page.attr('#curves', 'data-seed-lines')) === '18');
  check(true, 'individual seeds: 18 lines');
  await page.fill('input[data-ui="filter"]', 'stochastic');
  await until('the filtered table', async () => (await page.attr('#table', 'data-rows')) === '9');
  check(true, 'table filter: 9 stochastic trials');
  await shot('sweep-completed-seeds.png');

  // A sweep without a prediction shows no prediction section.
  // (An empty section is invisible: await its state, not its visibility.)
  await until('the prediction fetch', async () =>
    (await page.attr('#analysis .prediction-body', 'data-prediction')) === 'none');
  check(await page.count('#analysis [data-prediction="summary"]') === 0,
        'prediction: none recorded on the completed sweep, no section');

  // Verifying sweep: the recorded seed 001/003 prediction next to the sweep's accuracies.
  await checkPrediction({page, load, api, ids, check});
  await page.screenshotElement('#analysis', path.join(shots, 'sweep-prediction.png'));

  // Running sweep: points appended to the running trial arrive without reload.
  await load(`/sweeps/${ids.running_sweep}`);
  const before = Number(await page.attr('#curves', 'data-points'));
  const events = Number(await page.evaluate(() => document.body.dataset.liveEvents || 0));
  execFileSync(fixtureBin, ['append', db, String(ids.running_trial), ids.worker,
                            String(ids.attempt), String(ids.next_point), '5']);
  const after = await until('live points', async () => {
    const v = Number(await page.attr('#curves', 'data-points'));
    return v > before ? v : null;
  });
  check(after === before + 5, `live update: the group curves gained 5 points (${before} -> ${after})`);
  check(Number(await page.evaluate(() => document.body.dataset.liveEvents)) > events,
        'live: events received');
  // A trial that finishes refreshes the analysis panel (throttled to every 5 s), no reload.
  await page.waitFor('#analysis[data-state="ready"]', 15000);
  await page.evaluate(() => { window.bitsweepNoReload = true; });
  const finishedBefore = Number(await page.attr('#analysis', 'data-finished'));
  execFileSync(fixtureBin, ['complete', db, String(ids.running_trial), ids.worker, String(ids.attempt)]);
  const finishedAfter = await until('the analysis refresh', async () => {
    const v = Number(await page.attr('#analysis', 'data-finished'));
    return v > finishedBefore ? v : null;
  }, 20000);
  check(finishedAfter === finishedBefore + 1 && await page.evaluate(() => window.bitsweepNoReload === true),
        `live: the analysis counts the finished trial (${finishedBefore} -> ${finishedAfter}) without a reload`);
  await shot('sweep-running.png');

  // Trial page of a completed trial.
  await load(`/trials/${firstId}`);
  check(await page.count('#confusion tbody tr') === 10, 'trial: 10x10 confusion matrix');
  check(await page.count('#accuracy canvas') === 1, 'trial: accuracy curve drawn');
  check((await page.text('#summary')).includes('kappa'), 'trial: kappa shown');
  check(await page.count('#site-bits canvas') === 1 && await page.attr('#site-bits', 'data-lines') === '2',
        'trial: effective bits per site drawn (weights, activations)');
  check(await page.count('#layer-grad canvas') === 1, 'trial: gradient norm per layer drawn');
  await shot('trial.png');

  // Workers page.
  await load('/workers');
  check((await page.text('#workers')).includes('fixture-worker'), 'workers: the worker is listed');
  await shot('workers.png');

  check(external.length === 0, 'nothing fetched from outside the server ' + external.join(' '));
  check(errors.length === 0, 'no page errors ' + errors.join('; '));
}
