// Browser test of the dashboard: a real bitsweep-server on a database filled by
// dashboard_fixture (a completed and a running sweep), every page loaded in headless Chromium
// through playwright-core; the charts and table must show the store's data, and points appended
// to the running trial must arrive live. Screenshots go to $BITSWEEP_SCREENSHOT_DIR.
// Exit 77 (ctest: skipped) only when Chromium or playwright-core is missing.
import {spawn, execFileSync} from 'node:child_process';
import {createRequire} from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(repo, 'package.json'));
const chromiumPath = process.env.BITSWEEP_CHROMIUM || '/usr/bin/chromium';
let playwright;
try { playwright = require('playwright-core'); } catch {
  console.log('SKIP: playwright-core is missing (run scripts/setup)'); process.exit(77);
}
if (!fs.existsSync(chromiumPath)) { console.log(`SKIP: ${chromiumPath} is missing`); process.exit(77); }

const serverBin = process.env.BITSWEEP_SERVER;
const fixtureBin = process.env.BITSWEEP_DASHBOARD_FIXTURE;
const shots = process.env.BITSWEEP_SCREENSHOT_DIR || path.join(os.tmpdir(), 'bitsweep-screenshots');
fs.mkdirSync(shots, {recursive: true});
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitsweep-web-'));
const db = path.join(dir, 'dashboard.db');
let server = null, browser = null;
let failures = 0;

function check(condition, what) {
  if (condition) { console.log('ok   ' + what); return; }
  console.log('FAIL ' + what); failures++;
}
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

async function main() {
  const ids = JSON.parse(execFileSync(fixtureBin, ['small', db], {encoding: 'utf8'}));
  const portFile = path.join(dir, 'ports.json');
  server = spawn(serverBin, ['--db', db, '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0',
                             '--port-file', portFile, '--log-level', 'warn'], {stdio: 'inherit'});
  const exited = new Promise((resolve) => server.on('exit', resolve));
  const ports = await until('the port file', () => {
    try { return JSON.parse(fs.readFileSync(portFile, 'utf8')); } catch { return null; }
  });
  const base = `http://127.0.0.1:${ports.http_port}`;
  const api = async (p) => (await fetch(base + p)).json();

  browser = await playwright.chromium.launch({executablePath: chromiumPath, headless: true,
                                              args: ['--no-sandbox', '--disable-gpu']});
  const page = await browser.newPage({viewport: {width: 1440, height: 900}});
  const external = [];
  page.on('request', (r) => { if (!r.url().startsWith(base)) external.push(r.url()); });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const load = async (hash) => {
    await page.goto(`${base}/#${hash}`);
    await page.waitForSelector('body[data-ready="1"]', {timeout: 15000});
  };

  // Sweeps page.
  await load('/');
  check(await page.locator('#sweeps tbody tr').count() === 2, 'sweeps page lists both sweeps');
  await page.screenshot({path: path.join(shots, 'sweeps.png'), fullPage: true});

  // Completed sweep: 3 formats x 2 roundings x 3 seeds.
  const done = ids.completed_sweep;
  const rows = await api(`/api/sweeps/${done}/export?format=json`);
  await load(`/sweeps/${done}`);
  const curves = page.locator('#curves');
  check(await curves.getAttribute('data-lines') === '6', 'curves: one line per seed group (6)');
  check(await page.locator('#curves canvas').count() === 1, 'curves are drawn on a canvas');
  const bars = page.locator('#errorbars');
  check(await bars.getAttribute('data-series') === '2', 'error bars: one series per rounding');
  check(await bars.getAttribute('data-points') === '6', 'error bars: a point per format and rounding');
  const values = JSON.parse(await bars.getAttribute('data-values'));
  const fp32Truncate = mean(rows.filter((r) => r['precision.default.format'] === 'fp32' &&
    r['precision.default.rounding'] === 'truncate').map((r) => r.final_test_accuracy));
  const formats = JSON.parse(await page.evaluate(() => JSON.stringify(
    [...document.querySelectorAll('#heatmap thead th')].map((th) => th.textContent))));
  const fp32Column = formats.indexOf('fp32') - 1;
  check(fp32Column >= 0 && Math.abs(values[0][fp32Column] - fp32Truncate) < 1e-5,
        `error bars: fp32/truncate mean ${values[0][fp32Column]} = store's ${fp32Truncate.toFixed(6)}`);
  check(await page.locator('#table').getAttribute('data-rows') === '18', 'table: 18 trials');
  check(await page.locator('#table tbody tr').count() === 18, 'table: 18 rows shown');
  const firstId = await page.locator('#table tbody tr').first().getAttribute('data-trial');
  const first = rows.find((r) => String(r.id) === firstId);
  const firstText = await page.locator('#table tbody tr').first().innerText();
  check(firstText.includes((100 * first.final_test_accuracy).toFixed(2) + '%'),
        `table: trial ${firstId} shows its final accuracy ${(100 * first.final_test_accuracy).toFixed(2)}%`);
  check(await page.locator('#heatmap td.heat').count() === 6, 'heatmap: 6 cells');
  await page.screenshot({path: path.join(shots, 'sweep-completed.png'), fullPage: true});
  await page.locator('input[data-ui="seeds"]').check();
  await until('seed lines', async () => (await curves.getAttribute('data-seed-lines')) === '18');
  check(true, 'individual seeds: 18 lines');
  await page.locator('input[data-ui="filter"]').fill('stochastic');
  check(await page.locator('#table').getAttribute('data-rows') === '9', 'table filter: 9 stochastic trials');
  await page.screenshot({path: path.join(shots, 'sweep-completed-seeds.png'), fullPage: true});

  // Running sweep: points appended to the running trial arrive without reload.
  await load(`/sweeps/${ids.running_sweep}`);
  const before = Number(await curves.getAttribute('data-points'));
  const events = Number(await page.evaluate(() => document.body.dataset.liveEvents || 0));
  execFileSync(fixtureBin, ['append', db, String(ids.running_trial), ids.worker,
                            String(ids.attempt), String(ids.next_point), '5']);
  const after = await until('live points', async () => {
    const v = Number(await curves.getAttribute('data-points'));
    return v > before ? v : null;
  });
  check(after === before + 5, `live update: the group curves gained 5 points (${before} -> ${after})`);
  check(Number(await page.evaluate(() => document.body.dataset.liveEvents)) > events, 'live: events received');
  await page.screenshot({path: path.join(shots, 'sweep-running.png'), fullPage: true});

  // Trial page of a completed trial.
  await load(`/trials/${firstId}`);
  check(await page.locator('#confusion tbody tr').count() === 10, 'trial: 10x10 confusion matrix');
  check(await page.locator('#accuracy canvas').count() === 1, 'trial: accuracy curve drawn');
  check((await page.locator('#summary').innerText()).includes('kappa'), 'trial: kappa shown');
  check(await page.locator('#site-bits canvas').count() === 1 &&
        await page.locator('#site-bits').getAttribute('data-lines') === '2',
        'trial: effective bits per site drawn (weights, activations)');
  check(await page.locator('#layer-grad canvas').count() === 1, 'trial: gradient norm per layer drawn');
  await page.screenshot({path: path.join(shots, 'trial.png'), fullPage: true});

  // Workers page.
  await load('/workers');
  check((await page.locator('#workers').innerText()).includes('fixture-worker'), 'workers: the worker is listed');
  await page.screenshot({path: path.join(shots, 'workers.png'), fullPage: true});

  check(external.length === 0, 'nothing fetched from outside the server ' + external.join(' '));
  check(errors.length === 0, 'no page errors ' + errors.join('; '));
  await browser.close(); browser = null;
  server.kill('SIGTERM');
  await exited;
  server = null;
}

try {
  await main();
} catch (e) {
  console.log('FAIL ' + (e.stack || e));
  failures++;
} finally {
  if (browser) await browser.close().catch(() => {});
  if (server) { server.kill('SIGKILL'); }
  fs.rmSync(dir, {recursive: true, force: true});
}
console.log(failures ? `${failures} check(s) failed` : `all checks passed; screenshots in ${shots}`);
process.exit(failures ? 1 : 0);
