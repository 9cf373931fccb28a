// Dashboard benchmark: fills (once, cached in $BITSWEEP_BENCH_DIR) a database with a 10,000-trial
// sweep of 100 curve points each through dashboard_fixture, starts bitsweep-server on it and
// prints (1) p50/p95/max latency of each API call the sweep page makes, over 50 requests after
// one cold request, (2) the sweep page's time to interactive in headless Chromium (navigation
// to charts and table drawn, body[data-ready]), 5 loads. Screenshots go next to the database.
// Environment: BITSWEEP_SERVER, BITSWEEP_DASHBOARD_FIXTURE, BITSWEEP_BENCH_DIR,
// BENCH_TRIALS (10000), BENCH_POINTS (100).
import {spawn, execFileSync} from 'node:child_process';
import {createRequire} from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(repo, 'package.json'));
const playwright = require('playwright-core');
const trials = Number(process.env.BENCH_TRIALS || 10000);
const points = Number(process.env.BENCH_POINTS || 100);
const dir = process.env.BITSWEEP_BENCH_DIR || '.';
const db = path.join(dir, `dashboard-${trials}x${points}.db`);

if (!fs.existsSync(db)) {
  const t0 = Date.now();
  execFileSync(process.env.BITSWEEP_DASHBOARD_FIXTURE, ['large', db + '.tmp', String(trials), String(points)]);
  for (const suffix of ['-wal', '-shm']) fs.rmSync(db + '.tmp' + suffix, {force: true});
  fs.renameSync(db + '.tmp', db);
  console.log(`filled ${trials} trials x ${points} points in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
const portFile = path.join(dir, 'bench-ports.json');
fs.rmSync(portFile, {force: true});
const server = spawn(process.env.BITSWEEP_SERVER, ['--db', db, '--listen', '127.0.0.1:0',
  '--http', '127.0.0.1:0', '--port-file', portFile, '--log-level', 'warn'], {stdio: 'inherit'});
try {
  let ports = null;
  for (let i = 0; i < 200 && !ports; i++) {
    try { ports = JSON.parse(fs.readFileSync(portFile, 'utf8')); } catch { await new Promise((r) => setTimeout(r, 50)); }
  }
  const base = `http://127.0.0.1:${ports.http_port}`;
  const {sweeps} = await (await fetch(base + '/api/sweeps')).json();
  const id = sweeps[0].id;
  const timed = async (p) => {
    const t = performance.now();
    const r = await fetch(base + p);
    const body = await r.arrayBuffer();
    return {ms: performance.now() - t, bytes: body.byteLength};
  };
  console.log(`\nAPI latency, sweep ${id} (${trials} trials x ${points} points), ms:`);
  console.log('endpoint'.padEnd(44) + 'cold'.padStart(8) + 'p50'.padStart(8) + 'p95'.padStart(8) + 'max'.padStart(8) + '  size');
  let worstP95 = 0;
  for (const p of [`/api/sweeps`, `/api/sweeps/${id}`, `/api/sweeps/${id}/table`,
                   `/api/sweeps/${id}/groups?metric=test_accuracy`, `/api/sweeps/${id}/groups?metric=test_loss`,
                   `/api/sweeps/${id}/curves?metric=test_accuracy`, `/api/workers`,
                   `/api/sweeps/${id}/analysis`]) {
    const cold = await timed(p);
    const times = [];
    // The analysis is computed per request (bootstrap included): fewer repetitions.
    for (let i = 0; i < (p.includes('/analysis') ? 10 : 50); i++) times.push((await timed(p)).ms);
    times.sort((a, b) => a - b);
    const q = (f) => times[Math.min(times.length - 1, Math.ceil(f * times.length) - 1)];
    if (!p.includes('/curves') && !p.includes('/analysis')) worstP95 = Math.max(worstP95, q(0.95));
    console.log(p.padEnd(44) + cold.ms.toFixed(1).padStart(8) + q(0.5).toFixed(1).padStart(8) +
                q(0.95).toFixed(1).padStart(8) + times[times.length - 1].toFixed(1).padStart(8) +
                `  ${(cold.bytes / 1024).toFixed(0)} KiB`);
  }
  console.log(`worst p95 of the sweep page's calls (sweeps, sweep, table, groups): ${worstP95.toFixed(1)} ms (target <= 100)`);

  const browser = await playwright.chromium.launch({executablePath: process.env.BITSWEEP_CHROMIUM || '/usr/bin/chromium',
    headless: true, args: ['--no-sandbox', '--disable-gpu']});
  const page = await browser.newPage({viewport: {width: 1440, height: 900}});
  const loads = [], analysed = [];
  for (let i = 0; i < 5; i++) {
    await page.goto('about:blank');
    const t = Date.now();
    await page.goto(`${base}/#/sweeps/${id}`);
    await page.waitForSelector('body[data-ready="1"]', {timeout: 30000});
    loads.push(Date.now() - t);
    // The analysis panel fills in after the page is interactive (not part of the target).
    await page.waitForSelector('#analysis[data-state="ready"]', {timeout: 60000});
    analysed.push(Date.now() - t);
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[2];
  console.log(`\nsweep page time to interactive (ms, 5 loads): ${loads.join(', ')}; ` +
              `median ${median(loads)} (target <= 2000)`);
  console.log(`analysis panel filled (ms, same loads): ${analysed.join(', ')}; median ${median(analysed)}`);
  await page.screenshot({path: path.join(dir, 'bench-sweep.png'), fullPage: true});
  await page.locator('input[data-ui="seeds"]').check();
  const t = Date.now();
  await page.waitForFunction(() => Number(document.querySelector('#curves').dataset.seedLines) > 0, null, {timeout: 60000});
  console.log(`individual seeds (${trials} lines) drawn in ${Date.now() - t} ms`);
  await page.screenshot({path: path.join(dir, 'bench-sweep-seeds.png')});
  await browser.close();
  console.log(`screenshots: ${dir}/bench-sweep.png, bench-sweep-seeds.png`);
} finally {
  server.kill('SIGTERM');
}
